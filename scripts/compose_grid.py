"""Composes the README's comparison picture: one row of labelled tiles (inputs, then outputs).

Usage: compose_grid.py OUT.jpg TILE "LABEL|CAPTION|PATH" ...
Each tile is the image at PATH scaled to TILE pixels on its long side, centred on a white
square, with LABEL and CAPTION (e.g. the seconds a run took) written above it.
"""

import sys

from PIL import Image, ImageDraw, ImageFont

HEADER = 40


def main() -> None:
    out, tile = sys.argv[1], int(sys.argv[2])
    items = [arg.split("|", 2) for arg in sys.argv[3:]]
    if not items or any(len(item) != 3 for item in items):
        sys.exit("usage: compose_grid.py OUT TILE 'LABEL|CAPTION|PATH' ...")
    sheet = Image.new("RGB", (len(items) * tile, tile + HEADER), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=15)
    for k, (label, caption, path) in enumerate(items):
        img = Image.open(path).convert("RGB")
        img.thumbnail((tile, tile), Image.Resampling.LANCZOS)
        x0 = k * tile
        sheet.paste(img, (x0 + (tile - img.width) // 2, HEADER + (tile - img.height) // 2))
        draw.text((x0 + 6, 3), label, fill="black", font=font)
        draw.text((x0 + 6, 21), caption, fill=(90, 90, 90), font=font)
    sheet.save(out, quality=90)


if __name__ == "__main__":
    main()
