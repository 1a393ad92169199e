#!/usr/bin/env bash
# The README's comparison picture: the bundled example painted with the defaults, with the seed's
# configuration and with jcjohnson/neural-style-like settings, each timed, in one labelled row
# next to the two inputs (docs/comparison.jpg).
#
#   bash scripts/compare-configs.sh                  # 512 px, all cores
#   SIZE=256 OUT=/tmp/cmp bash scripts/compare-configs.sh
#
# The outputs and each run's JSON progress go to $OUT (default target/compare). The picture is
# composed by scripts/compose_grid.py in a private venv with pillow:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/neural-style/pillow-venv
# Run it on a quiet machine: the captions are the runs' wall-clock seconds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

size="${SIZE:-512}"
out="${OUT:-target/compare}"
picture="${PICTURE:-docs/comparison.jpg}"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/neural-style/pillow-venv"
content=examples/astronaut.jpg
style=examples/starry-night.jpg

if ! "$venv/bin/python" -c 'import PIL' >/dev/null 2>&1; then
    echo "compare-configs.sh: setting up $venv (pillow)" >&2
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet pillow
fi
cargo build --release --quiet
[ -f weights/vgg19.npz ] || bash scripts/fetch-weights.sh
mkdir -p "$out"

# name|label|flags
configs=(
    "defaults|defaults|"
    "seed|seed: Adam lr 2, 300 steps, noise init|--optimizer adam --iterations 300 --init noise --init-ratio 0.6 --content-weight 10 --style-weight 40 --tv-weight 0 --pool avg --learning-rate 2"
    "jcjohnson|jcjohnson-like: L-BFGS 300, content init, max pool|--optimizer lbfgs --iterations 300 --init content --pool max"
)

tiles=("content|$(basename "$content")|$content" "style|$(basename "$style")|$style")
for entry in "${configs[@]}"; do
    IFS='|' read -r name label flags <<<"$entry"
    echo "== $name: $flags" >&2
    start=$(date +%s.%N)
    # shellcheck disable=SC2086 # flags are words on purpose
    target/release/neural-style --content "$content" --style "$style" --size "$size" \
        --output "$out/$name.png" --json $flags >"$out/$name.jsonl"
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
    steps=$(tail -n 1 "$out/$name.jsonl" | sed -n 's/.*"evaluations":\([0-9]*\).*/\1/p')
    echo "$name: $secs s, $steps evaluations" >&2
    tiles+=("$label|$secs s wall, $steps evaluations, ${size} px|$out/$name.png")
done
"$venv/bin/python" scripts/compose_grid.py "$picture" 320 "${tiles[@]}"
echo "wrote $picture" >&2
