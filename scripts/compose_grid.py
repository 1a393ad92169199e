"""Composes the README's pictures: rows of labelled tiles (inputs, then outputs).

Usage: compose_grid.py OUT.jpg TILE "LABEL|CAPTION|PATH" ... [/ "LABEL|CAPTION|PATH" ...]
Each tile is the image at PATH scaled to TILE pixels on its long side, centred on a white
square, with LABEL and CAPTION (e.g. the seconds a run took) written above it. A lone "/"
starts a new row.
"""

import sys

from PIL import Image, ImageDraw, ImageFont

HEADER = 40


def main() -> None:
    out, tile = sys.argv[1], int(sys.argv[2])
    rows = [[]]
    for arg in sys.argv[3:]:
        if arg == "/":
            rows.append([])
        else:
            rows[-1].append(arg.split("|", 2))
    if not any(rows) or any(len(item) != 3 for row in rows for item in row):
        sys.exit("usage: compose_grid.py OUT TILE 'LABEL|CAPTION|PATH' ... [/ ...]")
    height = tile + HEADER
    sheet = Image.new("RGB", (max(map(len, rows)) * tile, len(rows) * height), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=15)
    for r, row in enumerate(rows):
        y0 = r * height
        for k, (label, caption, path) in enumerate(row):
            img = Image.open(path).convert("RGB")
            img.thumbnail((tile, tile), Image.Resampling.LANCZOS)
            x0 = k * tile
            sheet.paste(img, (x0 + (tile - img.width) // 2, y0 + HEADER + (tile - img.height) // 2))
            draw.text((x0 + 6, y0 + 3), label, fill="black", font=font)
            draw.text((x0 + 6, y0 + 21), caption, fill=(90, 90, 90), font=font)
    sheet.save(out, quality=90)


if __name__ == "__main__":
    main()
