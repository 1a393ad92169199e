#!/usr/bin/env bash
# Batch throughput: images per hour for a 2-styles x N-photos batch with the default painting
# settings, and the share of time the style cache saves, from the batch's own results file.
#   bash scripts/batch-throughput.sh [SIZE:PHOTOS ...]     (default: 256:4 512:2)
# Photos: scikit-image 0.26.0's astronaut, chelsea, coffee and rocket (public domain / CC0,
# fetched from PyPI into a cache); styles: examples/starry-night.jpg and scikit-image's grass
# texture. Needs the release binary and weights/vgg19.npz.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/target/release/neural-style"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/neural-style-bench"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$CACHE" "$WORK/photos" "$WORK/paintings"
WHEEL="$CACHE/scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl"
[[ -f "$WHEEL" ]] || pip download --quiet --no-deps scikit-image==0.26.0 -d "$CACHE"
python3 - "$WHEEL" "$WORK" <<'PY'
import sys, zipfile
wheel, work = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name, dest in [("astronaut.png", "photos/1-astronaut.png"), ("chelsea.png", "photos/2-chelsea.png"),
                       ("coffee.png", "photos/3-coffee.png"), ("rocket.jpg", "photos/4-rocket.jpg"),
                       ("grass.png", "paintings/grass.png")]:
        with open(f"{work}/{dest}", "wb") as f:
            f.write(z.read(f"skimage/data/{name}"))
PY
cp "$ROOT/examples/starry-night.jpg" "$WORK/paintings/"
for spec in "${@:-256:4 512:2}"; do
  for s in $spec; do
    size=${s%:*}; photos=${s#*:}
    rm -rf "$WORK/sel" "$WORK/out-$size"; mkdir -p "$WORK/sel"
    ls "$WORK/photos" | head -n "$photos" | while read -r p; do cp "$WORK/photos/$p" "$WORK/sel/"; done
    start=$(date +%s.%N)
    "$BIN" batch --contents "$WORK/sel" --styles "$WORK/paintings" --output-dir "$WORK/out-$size" \
      --size "$size" --results "$WORK/r-$size.jsonl" --weights "$ROOT/weights/vgg19.npz" --print-every 0 2>/dev/null || true
    end=$(date +%s.%N)
    python3 - "$WORK/r-$size.jsonl" "$size" "$start" "$end" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
size, wall = sys.argv[2], float(sys.argv[4]) - float(sys.argv[3])
ok = [r for r in rows if r["status"] == "ok"]
# The first item of each style computed its Gram targets; the others found them cached.
first, seen = {}, set()
for r in ok:
    key = tuple(r["styles"])
    if key not in seen:
        seen.add(key); first[key] = r["style_seconds"]
cached = [r for r in ok if r["style_seconds"] < 0.5 * first[tuple(r["styles"])]]
saved = sum(first[tuple(r["styles"])] - r["style_seconds"] for r in cached)
print(f"{size} px: {len(ok)} paintings in {wall:.0f} s = {3600 * len(ok) / wall:.0f} images/hour "
      f"({sum(r['evaluations'] for r in ok) / len(ok):.0f} evaluations each); style targets "
      f"{sum(first.values()) / len(first):.2f} s per style, reused by {len(cached)} items: "
      f"{saved:.1f} s saved = {100 * saved / (wall + saved):.1f}% of the batch")
PY
  done
done
