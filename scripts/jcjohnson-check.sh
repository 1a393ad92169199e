#!/usr/bin/env bash
# Checks `--preset jcjohnson` against jcjohnson/neural-style's own definitions: paints the
# bundled example with the preset and with scripts/jcjohnson_port.py (that tool's objective,
# start and optimiser in PyTorch, as its neural_style.lua runs them), on the same resized
# pixels, then scores both with scripts/quality.sh and puts them side by side.
#
#   bash scripts/jcjohnson-check.sh                 # 512 px, the tool's default size
#   SIZE=256 ITERATIONS=1000 bash scripts/jcjohnson-check.sh
#
# Leaves $OUT (default target/jcjohnson) /{content,style,ours,port}.png, ours.jsonl, port.log,
# *.secs and scores.csv, and the picture $PICTURE (default docs/jcjohnson-check.jpg).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

size="${SIZE:-512}"
iterations="${ITERATIONS:-1000}"
out="${OUT:-target/jcjohnson}"
picture="${PICTURE:-docs/jcjohnson-check.jpg}"
torch_venv="${NEURAL_STYLE_TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/neural-style/torch-venv}"

source scripts/picture-setup.sh
# quality.sh makes the torch venv (torch, pillow, scikit-image) when it is missing.
[ -x "$torch_venv/bin/python" ] || bash scripts/quality.sh --help >/dev/null
mkdir -p "$out"

# Both engines get the same pixels: the inputs resized once, long side $size.
"$torch_venv/bin/python" - "$size" "$out" <<'EOF'
import sys
from PIL import Image
size, out = int(sys.argv[1]), sys.argv[2]
for name, path in (("content", "examples/astronaut.jpg"), ("style", "examples/starry-night.jpg")):
    img = Image.open(path).convert("RGB")
    scale = size / max(img.size)
    img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS).save(f"{out}/{name}.png")
EOF

# The preset's TV weight is exact at 512 x 512 (ours is normalised by the pixel count, the
# tool's is not); pass the exact one for this picture's size.
read -r w h < <("$torch_venv/bin/python" -c "from PIL import Image; print(*Image.open('$out/content.png').size)")
tv=$(awk -v w="$w" -v h="$h" 'BEGIN { printf "%.6g", 1e-3 * 3 * w * h / 2 }')

timed() {
    local secs="$1"
    shift
    local start
    start=$(date +%s.%N)
    "$@"
    awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f\n", b - a }' >"$secs"
}

echo "== ours: --preset jcjohnson --iterations $iterations --tv-weight $tv ($w x $h)" >&2
timed "$out/ours.secs" target/release/neural-style --preset jcjohnson --content "$out/content.png" \
    --style "$out/style.png" --size "$size" --iterations "$iterations" --tv-weight "$tv" \
    --output "$out/ours.png" --json --print-every 1 >"$out/ours.jsonl"
echo "== port: scripts/jcjohnson_port.py --iterations $iterations" >&2
timed "$out/port.secs" "$torch_venv/bin/python" scripts/jcjohnson_port.py --content "$out/content.png" \
    --style "$out/style.png" --output "$out/port.png" --iterations "$iterations" >"$out/port.log"

{
    echo "painting,photo,style,name"
    for name in ours port; do
        echo "$(realpath "$out/$name.png"),$(realpath "$out/content.png"),$(realpath "$out/style.png"),$name"
    done
} >"$out/list.csv"
bash scripts/quality.sh --list "$out/list.csv" >"$out/scores.csv"
cat "$out/scores.csv"

evals=$(tail -n 1 "$out/ours.jsonl" | sed -n 's/.*"evaluations":\([0-9]*\).*/\1/p')
port_evals=$(sed -n 's/^\([0-9]*\) evaluations.*/\1/p' "$out/port.log")
"$venv/bin/python" scripts/compose_grid.py "$picture" 384 \
    "content|astronaut.jpg|$out/content.png" "style|starry-night.jpg|$out/style.png" \
    "--preset jcjohnson|$(cat "$out/ours.secs") s, $evals evaluations, $size px|$out/ours.png" \
    "jcjohnson_port.py (PyTorch)|$(cat "$out/port.secs") s, $port_evals evaluations|$out/port.png"
echo "wrote $picture" >&2
