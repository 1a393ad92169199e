#!/usr/bin/env bash
# Our engine against an equivalent PyTorch script, side by side: seconds per optimisation step
# and peak RSS per engine (see scripts/bench-vs-pytorch.py for exactly what is compared).
#
#   bash scripts/bench-vs-pytorch.sh                          # 256 and 512 px, 2 threads
#   bash scripts/bench-vs-pytorch.sh --sizes 256 --threads 1,2 --steps 10 --json out.json
#
# Uses the same private venv as scripts/golden.sh (torch, numpy, pillow; psutil is added):
#   ${XDG_CACHE_HOME:-$HOME/.cache}/neural-style/torch-venv
# (override with NEURAL_STYLE_TORCH_VENV=/path/to/venv; PYTHON picks the interpreter that
# creates it). Builds target/release/neural-style with `cargo build --release` when it is
# missing (--build forces a rebuild check). Needs weights/vgg19.npz (scripts/fetch-weights.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${NEURAL_STYLE_TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/neural-style/torch-venv}"
python="${PYTHON:-python3}"

if ! "$venv/bin/python" -c 'import torch, numpy, PIL' >/dev/null 2>&1; then
    echo "bench-vs-pytorch.sh: setting up $venv (torch, numpy, pillow, psutil)" >&2
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet torch numpy pillow psutil
elif ! "$venv/bin/python" -c 'import psutil' >/dev/null 2>&1; then
    # Optional (a fallback for reading the worker's RSS); never fail the benchmark over it.
    "$venv/bin/python" -m pip install --quiet psutil >/dev/null 2>&1 || true
fi

exec "$venv/bin/python" "$here/bench-vs-pytorch.py" "$@"
