#!/usr/bin/env bash
# The README's weights picture: the bundled example at a small size with the defaults and with
# one weight changed at a time (docs/weights-256.jpg), to show how the weights interact.
#
#   bash scripts/weight-sweep.sh                 # 256 px
#   SIZE=384 PICTURE=/tmp/w.jpg bash scripts/weight-sweep.sh
#
# Outputs go to $OUT (default target/weight-sweep); the picture is composed like
# scripts/compare-configs.sh does (same pillow venv).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

size="${SIZE:-256}"
out="${OUT:-target/weight-sweep}"
picture="${PICTURE:-docs/weights-256.jpg}"

source scripts/picture-setup.sh
mkdir -p "$out"

# name|flags (the defaults otherwise)
runs=(
    "defaults|"
    "--content-weight 1000|--content-weight 1000"
    "--content-weight 100000|--content-weight 100000"
    "--tv-weight 100000|--tv-weight 100000"
    "--tv-weight 1000000|--tv-weight 1000000"
    "--style-scale 2|--style-scale 2"
)
tiles=()
for entry in "${runs[@]}"; do
    IFS='|' read -r label flags <<<"$entry"
    file="$out/$(echo "$label" | tr -c 'a-z0-9\n' '_').png"
    echo "== $label" >&2
    # shellcheck disable=SC2086 # flags are words on purpose
    target/release/neural-style --content examples/astronaut.jpg \
        --style examples/starry-night.jpg --size "$size" --output "$file" --print-every 0 $flags
    tiles+=("$label|$size px, 100 L-BFGS iterations|$file")
done
"$venv/bin/python" scripts/compose_grid.py "$picture" 256 "${tiles[@]}"
echo "wrote $picture" >&2
