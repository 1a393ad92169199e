#!/usr/bin/env bash
# The README's comparison picture: the bundled example painted with the defaults next to the two
# inputs, and below with the previous defaults, the seed's configuration and
# jcjohnson/neural-style-like settings, each timed and labelled (docs/comparison.jpg).
#
#   bash scripts/compare-configs.sh                  # 512 px, all cores
#   SIZE=256 OUT=/tmp/cmp bash scripts/compare-configs.sh
#   RUNS=defaults bash scripts/compare-configs.sh    # rerun one, reuse the others' results
#
# Each run leaves NAME.png, NAME.jsonl (progress) and NAME.secs (wall-clock seconds) in $OUT
# (default target/compare). The picture is composed by scripts/compose_grid.py in a private
# venv with pillow: ${XDG_CACHE_HOME:-$HOME/.cache}/neural-style/pillow-venv.
# Run it on a quiet machine: the captions are the runs' wall-clock seconds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

size="${SIZE:-512}"
out="${OUT:-target/compare}"
picture="${PICTURE:-docs/comparison.jpg}"
runs="${RUNS:-defaults previous seed jcjohnson}"
content=examples/astronaut.jpg
style=examples/starry-night.jpg

source scripts/picture-setup.sh
mkdir -p "$out"

# name|label|flags
# The defaults before session 8's tuning (docs/quality-pairs.md): the seed's objective.
previous="--optimizer lbfgs --history 10 --init content --content-weight 10 --style-weight 40 --style-layers conv1_1,conv2_1,conv3_1,conv4_1,conv5_1"
configs=(
    "defaults|defaults (L-BFGS 100, recoloured start)|"
    "previous|previous defaults (L-BFGS 100, content init)|$previous"
    "seed|seed (Adam 300, noise init)|--optimizer adam --iterations 300 --init noise --init-ratio 0.6 --content-weight 10 --style-weight 40 --tv-weight 0 --pool avg --learning-rate 2"
    "jcjohnson|jcjohnson-like (L-BFGS 300, max pool)|$previous --iterations 300 --pool max"
)

tiles=("content|$(basename "$content")|$content" "style|$(basename "$style")|$style")
for entry in "${configs[@]}"; do
    IFS='|' read -r name label flags <<<"$entry"
    if [[ " $runs " == *" $name "* ]]; then
        echo "== $name: ${flags:-(no flags)}" >&2
        start=$(date +%s.%N)
        # shellcheck disable=SC2086 # flags are words on purpose
        target/release/neural-style --content "$content" --style "$style" --size "$size" \
            --output "$out/$name.png" --json --print-every 1 $flags >"$out/$name.jsonl"
        awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f\n", b - a }' >"$out/$name.secs"
    elif [ ! -f "$out/$name.secs" ]; then
        echo "compare-configs.sh: no earlier result for $name in $out; add it to RUNS" >&2
        exit 1
    fi
    secs=$(cat "$out/$name.secs")
    evals=$(tail -n 1 "$out/$name.jsonl" | sed -n 's/.*"evaluations":\([0-9]*\).*/\1/p')
    echo "$name: $secs s, $evals evaluations" >&2
    tiles+=("$label|$secs s, $evals evaluations, $size px|$out/$name.png")
    # The inputs and the defaults on the first row, the other configurations below.
    [ "$name" = defaults ] && tiles+=("/")
done
"$venv/bin/python" scripts/compose_grid.py "$picture" 384 "${tiles[@]}"
echo "wrote $picture" >&2
