# Sourced by the scripts that make the README's pictures (compare-configs.sh, weight-sweep.sh),
# from the repository root: a private venv with pillow for scripts/compose_grid.py (path in
# $venv), a release build of the binary, and the weights.
venv="${XDG_CACHE_HOME:-$HOME/.cache}/neural-style/pillow-venv"
if ! "$venv/bin/python" -c 'import PIL' >/dev/null 2>&1; then
    echo "setting up $venv (pillow)" >&2
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet pillow
fi
cargo build --release --quiet
[ -f weights/vgg19.npz ] || bash scripts/fetch-weights.sh
