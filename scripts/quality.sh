#!/usr/bin/env bash
# Structure kept and style distance of paintings (see scripts/quality.py for the
# exact formulas and the CSV/JSON output).
#
#   scripts/quality.sh --painting out.png --photo photo.png --style painting.png
#   scripts/quality.sh --list runs.csv          # columns painting,photo,style[,name]
#
# Uses the torch venv of scripts/golden.sh,
#   ${XDG_CACHE_HOME:-$HOME/.cache}/neural-style/torch-venv
# (override with NEURAL_STYLE_TORCH_VENV), making it once if needed, and adds
# scikit-image (SSIM, Canny; it brings scipy) from PyPI when missing.
# Needs weights/vgg19.npz: run scripts/fetch-weights.sh first.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${NEURAL_STYLE_TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/neural-style/torch-venv}"
python="${PYTHON:-python3}"

if ! "$venv/bin/python" -c 'import torch, numpy, PIL' >/dev/null 2>&1; then
    echo "quality.sh: setting up $venv (torch, numpy, pillow)" >&2
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet torch numpy pillow
fi
if ! "$venv/bin/python" -c 'import skimage, scipy' >/dev/null 2>&1; then
    echo "quality.sh: adding scikit-image to $venv" >&2
    "$venv/bin/python" -m pip install --quiet scikit-image
fi

exec "$venv/bin/python" "$here/quality.py" "$@"
