#!/usr/bin/env bash
# Paints every pair of pairs/pairs.csv (scripts/fetch-pairs.sh) with named settings and scores
# each painting with scripts/quality.sh: the table behind the README's "Picking the defaults".
#
#   bash scripts/tune-defaults.sh NAME "FLAGS" [NAME "FLAGS" ...]
#   SIZE=512 OUT=target/tune bash scripts/tune-defaults.sh w2 "--style-loss w2 --style-weight 300"
#
# Each painting is $OUT/NAME/PAIR.png with PAIR.secs (wall-clock seconds of the run) and
# PAIR.jsonl (progress); `--save-every K` in FLAGS also leaves PAIR-<step>.png, which is scored
# as NAME@<step> (so one 300-step run gives the 100- and 200-step pictures as well, their
# seconds read from the progress at that step). Scores: $OUT/scores.csv, one row per painting,
# appended (rerunning a name replaces nothing; delete its rows to redo it). Run it on a quiet
# machine: the seconds are wall-clock.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

size="${SIZE:-256}"
out="${OUT:-target/tune}"
pairs=pairs/pairs.csv
[ -f "$pairs" ] || { echo "tune-defaults.sh: no $pairs; run scripts/fetch-pairs.sh" >&2; exit 1; }
[ $# -ge 2 ] && [ $(($# % 2)) -eq 0 ] || { echo "usage: tune-defaults.sh NAME FLAGS [NAME FLAGS ...]" >&2; exit 2; }
cargo build --release --quiet
[ -f weights/vgg19.npz ] || bash scripts/fetch-weights.sh
mkdir -p "$out"

list="$out/list.csv"
echo "painting,photo,style,name" >"$list"
while [ $# -gt 0 ]; do
    name="$1" flags="$2"
    shift 2
    mkdir -p "$out/$name"
    while IFS=, read -r pair photo painting; do
        [ "$pair" = pair ] && continue
        dest="$out/$name/$pair"
        echo "== $name $pair: ${flags:-(defaults)}" >&2
        start=$(date +%s.%N)
        # shellcheck disable=SC2086 # flags are words on purpose
        target/release/neural-style --content "pairs/$photo" --style "pairs/$painting" \
            --size "$size" --output "$dest.png" --json --print-every 1 $flags >"$dest.jsonl"
        awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f\n", b - a }' >"$dest.secs"
        echo "$(realpath "$dest.png"),$(realpath "pairs/$photo"),$(realpath "pairs/$painting"),$name/$pair" >>"$list"
        for snap in "$dest"-*.png; do
            [ -e "$snap" ] || continue
            step="${snap##*-}"
            step="${step%.png}"
            echo "$(realpath "$snap"),$(realpath "pairs/$photo"),$(realpath "pairs/$painting"),$name@$step/$pair" >>"$list"
        done
    done <"$pairs"
done
bash scripts/quality.sh --list "$list" >"$out/scores.new.csv"
if [ -f "$out/scores.csv" ]; then
    tail -n +2 "$out/scores.new.csv" >>"$out/scores.csv"
else
    mv "$out/scores.new.csv" "$out/scores.csv"
fi
rm -f "$out/scores.new.csv"
echo "scores in $out/scores.csv" >&2
