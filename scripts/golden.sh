#!/usr/bin/env bash
# Regenerate the PyTorch golden data under tests/data/ (see scripts/golden.py
# for what is written and the exact formulas).
#
#   scripts/golden.sh                 # tiny files + golden_real.npz (reusing its stored inputs)
#   scripts/golden.sh --skip-real     # tiny files only (no real weights needed)
#   scripts/golden.sh --content-image A.png --style-image B.png   # rebuild real inputs
#
# Makes (once) a private venv with torch, numpy and Pillow under
#   ${XDG_CACHE_HOME:-$HOME/.cache}/neural-style/torch-venv
# (override with NEURAL_STYLE_TORCH_VENV=/path/to/venv; PYTHON picks the
# interpreter that creates it).  torch from PyPI is large (it pulls the CUDA
# runtime wheels although only the CPU is used); the first run takes a while.
# golden_real.npz needs weights/vgg19.npz: run scripts/fetch-weights.sh first.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${NEURAL_STYLE_TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/neural-style/torch-venv}"
python="${PYTHON:-python3}"

if ! "$venv/bin/python" -c 'import torch, numpy, PIL' >/dev/null 2>&1; then
    echo "golden.sh: setting up $venv (torch, numpy, pillow)" >&2
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet torch numpy pillow
fi

exec "$venv/bin/python" "$here/golden.py" "$@"
