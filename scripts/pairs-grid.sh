#!/usr/bin/env bash
# The README's grid of the quality pairs: for each pair of pairs/pairs.csv, the photograph,
# the painting, and the engine's result of each setting NAME painted by
# scripts/tune-defaults.sh (from $OUT/NAME/PAIR.png, with its seconds), captioned LABEL when
# given as NAME=LABEL.
#
#   bash scripts/tune-defaults.sh defaults ""
#   bash scripts/pairs-grid.sh "defaults=the defaults" [NAME[=LABEL] ...]   # -> docs/pairs-grid.jpg
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out="${OUT:-target/tune}"
picture="${PICTURE:-docs/pairs-grid.jpg}"
tile="${TILE:-256}"
[ $# -ge 1 ] || { echo "usage: pairs-grid.sh NAME [NAME ...]" >&2; exit 2; }
source scripts/picture-setup.sh

tiles=()
while IFS=, read -r pair photo painting; do
    [ "$pair" = pair ] && continue
    [ ${#tiles[@]} -eq 0 ] || tiles+=("/")
    tiles+=("$pair|photograph|pairs/$photo" "|painting|pairs/$painting")
    for arg in "$@"; do
        name="${arg%%=*}" label="${arg#*=}"
        result="$out/$name/$pair.png"
        [ -f "$result" ] || { echo "pairs-grid.sh: no $result; run scripts/tune-defaults.sh $name first" >&2; exit 1; }
        tiles+=("$label|$(cat "$out/$name/$pair.secs") s|$result")
    done
done <pairs/pairs.csv
"$venv/bin/python" scripts/compose_grid.py "$picture" "$tile" "${tiles[@]}"
echo "wrote $picture" >&2
