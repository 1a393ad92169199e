#!/usr/bin/env python3
"""The multiply count of one objective evaluation, and hence the shortest possible step.

Tracker issue 11 ("state the limit"); results in docs/performance-limit.md. Pure python3.

Counts the GEMM fused multiply-adds (FMAs) of ONE evaluation of the default objective
(content conv4_2, style conv1_1..conv5_1: VGG-19's first 13 conv layers forward, the input
gradient of all 13 backward, no weight gradients, the 5 style Gram matrices and their gradient
products) under the algorithm the code uses per layer and direction. The rules mirror the
source as read for this script (keep them in step if the code changes):

- src/vgg.rs calls `ops::conv3x3` (forward) and `ops::conv3x3_input_grad` (backward), both of
  which transform the Winograd kernel on every call, so `winograd_tile(.., kernel_cached=false)`
  picks the algorithm (src/ops/conv.rs); the backward asks with the channel counts swapped.
- im2col GEMM: cout x (9 cin) x pixels FMAs. Winograd F(m x m, 3x3): (m+2)^2 GEMMs of
  cout x cin x tiles, tiles = ceil(h/m) ceil(w/m) (padding tiles included; 36 multiplies per
  16 outputs for F(4x4), 16 per 4 for F(2x2)).
- conv1_1 backward (cin = 3 < 16) is `ops::col2im`: one GEMM dcol = W^T dY, (9 cin) x cout x
  columns, over fixed bands of rows that each recompute a one-row halo, then a gather.
- Gram (src/loss/mod.rs `gram_scaled_into`): only the 64 x 64 blocks on and above the diagonal
  are multiplied, and of a diagonal block only its 4 x 4 tiles on and above its diagonal
  (c = 64: 136 of 256 tiles); the style gradient (G - T) F is a
  full c x c x n product (`par_gemm`).

`--peak GFLOPS` (e.g. from `cargo run --release --example peak_fma -- --threads 2`) gives the
GEMM-only limit: 2 x FMAs / peak. `--profile FILE` (the output of `neural-style ... --profile`)
adds the measured time of each layer and direction, the time its FMAs would take at the peak,
and the whole step as a fraction of the limit.

    python3 scripts/step-limit.py --size 512 --peak 363.7 --profile /tmp/limit/profile512.txt
"""

import argparse
import json
import re
import sys
from math import ceil

# VGG-19 up to conv5_1: (name, cin, cout, block).
LAYERS = [
    ("conv1_1", 3, 64, 1), ("conv1_2", 64, 64, 1),
    ("conv2_1", 64, 128, 2), ("conv2_2", 128, 128, 2),
    ("conv3_1", 128, 256, 3), ("conv3_2", 256, 256, 3),
    ("conv3_3", 256, 256, 3), ("conv3_4", 256, 256, 3),
    ("conv4_1", 256, 512, 4), ("conv4_2", 512, 512, 4),
    ("conv4_3", 512, 512, 4), ("conv4_4", 512, 512, 4),
    ("conv5_1", 512, 512, 5),
]
STYLE_LAYERS = ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]

# src/ops/conv.rs
WINOGRAD_MIN_CIN = 16
FEW_INPUT_CHANNELS = 16
COL_TILE_ELEMS = 1 << 20
MIN_TILE_COLS, MIN_TILES, MIN_TILE_ROWS = 256, 8, 16
# src/ops/winograd.rs
MIN_TASKS, MIN_CHUNK_ROWS = 8, 32
# src/ops/col2im.rs
BAND_ELEMS = 1 << 18
# src/loss/mod.rs
GRAM_BLOCK = 64


def cdiv(a, b):
    return -(-a // b)


def wino_mults(m, h, w):
    """Tile::multiplies: GEMM multiplies per (cin, cout) pair."""
    return (m + 2) ** 2 * cdiv(h, m) * cdiv(w, m)


def winograd_tile(cin, cout, h, w, kernel_cached):
    """ops::conv::winograd_tile: 2 (F(2x2)), 4 (F(4x4)) or None (im2col)."""
    pixels = h * w
    min_pixels = 64 if kernel_cached else 256
    f2 = wino_mults(2, h, w)
    if cin < WINOGRAD_MIN_CIN or pixels < min_pixels or 3 * f2 > 2 * 9 * pixels:
        return None
    small = max(cin, cout) <= 256
    f4_pixels = 1024 if kernel_cached and small else 4096
    f4 = wino_mults(4, h, w)
    if pixels >= f4_pixels and 5 * f4 <= 4 * f2:
        return 4
    return 2


def im2col_aux(cin, cout, hw):
    """Values im2col writes (each m-chunk of a pixel tile unrolls its own block)."""
    k = cin * 9
    n_tile = max(1, min(hw, max(COL_TILE_ELEMS // k, MIN_TILE_COLS)))
    n_tiles = cdiv(hw, n_tile)
    m_chunks = min(max(cdiv(MIN_TILES, n_tiles), 1), max(cout // MIN_TILE_ROWS, 1))
    return k * hw * m_chunks, n_tiles * m_chunks


def winograd_aux(m, cin, cout, h, w):
    """(values the input transform writes, values the GEMMs write / output transform reads,
    kernel values transformed per call, tasks, GEMM calls, GEMM shape)."""
    a2 = (m + 2) ** 2
    ntiles = cdiv(h, m) * cdiv(w, m)
    band_tiles = 64 if cin <= (256 if m == 2 else 128) else 32
    nbands = max(cdiv(ntiles, band_tiles), 1)
    band = cdiv(ntiles, nbands)
    chunks = min(max(cdiv(MIN_TASKS, nbands), 1), max(cout // MIN_CHUNK_ROWS, 1))
    chunk = cdiv(cout, chunks)
    nchunks = cdiv(cout, chunk)
    return {
        "input_transform": a2 * cin * ntiles * nchunks,
        "products": a2 * cout * ntiles,
        "kernel_transform": a2 * cin * cout,
        "tasks": nbands * nchunks,
        "gemm_calls": nbands * nchunks * a2,
        "gemm_shape": f"{chunk}x{cin}x{band}",
    }


def col2im_gemm(cin, cout, h, w):
    """FMAs of ops::col2im's GEMM, halo rows included."""
    k = cin * 9
    band = min(max(BAND_ELEMS // (k * w), 1), h)
    cols = 0
    for b in range(cdiv(h, band)):
        y0, y1 = b * band, min((b + 1) * band, h)
        cols += (min(y1 + 1, h) - max(y0 - 1, 0)) * w
    return k * cout * cols, cols, cdiv(h, band)


def gram_fmas(c, n):
    """Blocks of G = F F^T on and above the diagonal; a diagonal block multiplies only its
    4 x 4 tiles on and above its own diagonal (the AVX-512 row-dot kernel of
    src/loss/gram_kernel.rs; elsewhere a GEMM multiplies the whole diagonal block)."""
    nb = cdiv(c, GRAM_BLOCK)
    span = [min((b + 1) * GRAM_BLOCK, c) - b * GRAM_BLOCK for b in range(nb)]
    total = 0
    for i in range(nb):
        t = cdiv(span[i], 4)
        total += t * (t + 1) // 2 * 16 * n
        total += sum(span[i] * span[j] * n for j in range(i + 1, nb))
    return total


def count(h, w, kernel_cached=False):
    rows = []
    shapes = {}
    hh, ww = h, w
    prev_block = 1
    for name, cin, cout, block in LAYERS:
        if block != prev_block:
            hh, ww = hh // 2, ww // 2
            prev_block = block
        shapes[name] = (cin, cout, hh, ww)
    for direction in ("fwd", "bwd"):
        for name, cin, cout, _ in LAYERS:
            _, _, lh, lw = shapes[name]
            hw = lh * lw
            direct = 9 * cin * cout * hw
            row = {"layer": name, "dir": direction, "h": lh, "w": lw, "cin": cin,
                   "cout": cout, "direct": direct}
            if direction == "fwd":
                tile = winograd_tile(cin, cout, lh, lw, kernel_cached)
                xin, xout = cin, cout
            elif cin < FEW_INPUT_CHANNELS:
                tile = "col2im"
            else:
                # conv3x3_input_grad: winograd_tile(cout, cin, ..): cout gradient channels in.
                tile = winograd_tile(cout, cin, lh, lw, kernel_cached)
                xin, xout = cout, cin
            if tile == "col2im":
                fmas, cols, bands = col2im_gemm(cin, cout, lh, lw)
                row.update(algo="col2im GEMM", gemm=fmas,
                           note=f"{bands} bands, {cols / hw:.3f}x columns (halo)",
                           aux=9 * cin * cols)
            elif tile is None:
                aux, tasks = im2col_aux(xin, xout, hw)
                row.update(algo="im2col GEMM", gemm=xout * 9 * xin * hw, aux=aux,
                           note=f"{tasks} tasks, K={9 * xin}")
            else:
                a = winograd_aux(tile, xin, xout, lh, lw)
                row.update(algo=f"Winograd F({tile}x{tile})",
                           gemm=wino_mults(tile, lh, lw) * xin * xout,
                           aux=a["input_transform"] + a["products"] + a["kernel_transform"],
                           kernel_transform=a["kernel_transform"],
                           note=f"{a['gemm_calls']} GEMMs of {a['gemm_shape']}")
            rows.append(row)
    for name in STYLE_LAYERS:
        _, c, lh, lw = shapes[name]
        n = lh * lw
        rows.append({"layer": name, "dir": "style", "algo": "Gram upper blocks",
                     "gemm": gram_fmas(c, n), "direct": c * c * n, "h": lh, "w": lw,
                     "cin": c, "cout": c, "aux": 0, "note": f"{c}x{c}x{n}"})
        rows.append({"layer": name, "dir": "style", "algo": "style grad (G-T)F",
                     "gemm": c * c * n, "direct": c * c * n, "h": lh, "w": lw,
                     "cin": c, "cout": c, "aux": 0, "note": f"{c}x{c}x{n}"})
    return rows


def parse_profile(path):
    """{label: ms per step} from `neural-style --profile` output (ms/call x calls per step,
    the calls inferred from the shares against conv1_1 fwd, which runs once a step)."""
    entries = {}
    step = None
    with open(path) as f:
        for line in f:
            m = re.match(r"^(\S.*?)\s+([0-9.]+)\s+([0-9.]+)%\s*$", line)
            if m and m.group(1) != "phase":
                entries[m.group(1)] = (float(m.group(2)), float(m.group(3)))
            s = re.search(r"([0-9.]+) s/step", line)
            if s:
                step = float(s.group(1))
    if "conv1_1 fwd" not in entries:
        sys.exit(f"{path}: no 'conv1_1 fwd' line; is it a --profile output?")
    ref_ms, ref_share = entries["conv1_1 fwd"]
    per_step = {}
    for label, (ms, share) in entries.items():
        calls = max(1, round(share / ref_share * ref_ms / ms)) if ms > 0 else 1
        per_step[label] = ms * calls
    return per_step, step


def fmt_g(x):
    return f"{x / 1e9:.3f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, nargs="+", default=[512, 256],
                   help="square sizes to count (default 512 256)")
    p.add_argument("--hw", type=int, nargs=2, metavar=("H", "W"),
                   help="one non-square size instead of --size")
    p.add_argument("--peak", type=float, help="peak GFLOP/s (FMA = 2 flops)")
    p.add_argument("--profile", help="neural-style --profile output for the (first) size")
    p.add_argument("--cached", action="store_true",
                   help="model Conv3x3::run (kernel transforms kept: kernel_cached=true)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = p.parse_args()
    sizes = [tuple(args.hw)] if args.hw else [(s, s) for s in args.size]
    prof, step = parse_profile(args.profile) if args.profile else (None, None)
    out = []
    for k, (h, w) in enumerate(sizes):
        rows = count(h, w, args.cached)
        conv = [r for r in rows if r["dir"] != "style"]
        total = sum(r["gemm"] for r in rows)
        res = {"h": h, "w": w, "rows": rows, "gemm_fmas": total,
               "conv_gemm_fmas": sum(r["gemm"] for r in conv),
               "direct_conv_fmas": sum(r["direct"] for r in conv),
               "style_fmas": sum(r["gemm"] for r in rows if r["dir"] == "style")}
        if args.peak:
            res["limit_s"] = 2 * total / (args.peak * 1e9)
        out.append(res)
        if args.json:
            continue
        print(f"\n== {h}x{w}: one evaluation (forward 13 layers, input gradient 13, "
              f"5 Grams + gradients){' [cached kernels]' if args.cached else ''}")
        use_prof = prof is not None and k == 0
        hdr = f"{'layer':<8} {'dir':<5} {'algorithm':<20} {'GEMM GFMA':>10} {'direct':>9} " \
              f"{'x fewer':>7}"
        if args.peak:
            hdr += f" {'limit ms':>9}"
        if use_prof:
            hdr += f" {'meas ms':>8} {'x limit':>7} {'above ms':>8}"
        print(hdr + "  notes")
        for r in rows:
            line = f"{r['layer']:<8} {r['dir']:<5} {r['algo']:<20} {fmt_g(r['gemm']):>10} " \
                   f"{fmt_g(r['direct']):>9} {r['direct'] / r['gemm']:>7.2f}"
            if args.peak:
                lim = 2 * r["gemm"] / (args.peak * 1e9) * 1e3
                line += f" {lim:>9.2f}"
                if use_prof and r["dir"] != "style":
                    meas = prof.get(f"{r['layer']} {r['dir']}")
                    if meas is not None:
                        line += f" {meas:>8.2f} {meas / lim:>7.2f} {meas - lim:>8.2f}"
            print(line + f"  {r['note']}")
        print(f"conv GEMM FMAs {fmt_g(res['conv_gemm_fmas'])} G, direct convolution "
              f"{fmt_g(res['direct_conv_fmas'])} G ({res['direct_conv_fmas'] / res['conv_gemm_fmas']:.2f}x"
              f" more; {2 * res['direct_conv_fmas'] / 1e9:.1f} GFLOP), style "
              f"{fmt_g(res['style_fmas'])} G; total {fmt_g(total)} G FMAs = "
              f"{2 * total / 1e9:.1f} GFLOP")
        if args.peak:
            print(f"shortest possible step at {args.peak:.1f} GFLOP/s (GEMM FMAs only): "
                  f"{res['limit_s'] * 1e3:.1f} ms; direct convolution at the same peak: "
                  f"{2 * res['direct_conv_fmas'] / (args.peak * 1e9) * 1e3:.1f} ms")
        if use_prof and args.peak:
            lim_style = 2 * res["style_fmas"] / (args.peak * 1e9) * 1e3
            meas_style = prof.get("style loss", 0.0)
            print(f"style loss (5 Grams + gradients): measured {meas_style:.2f} ms, limit "
                  f"{lim_style:.2f} ms ({meas_style / lim_style:.2f}x)")
            total_prof = sum(prof.values())
            conv_meas = sum(v for l, v in prof.items() if re.match(r"conv\d_\d (fwd|bwd)$", l))
            other = {l: v for l, v in prof.items()
                     if not re.match(r"conv\d_\d (fwd|bwd)$", l) and l != "style loss"}
            print(f"profiled step {total_prof:.1f} ms (printed {step * 1e3 if step else 0:.0f} "
                  f"ms/step); convolutions {conv_meas:.1f} ms, style loss {meas_style:.1f}, "
                  + ", ".join(f"{l} {v:.1f}" for l, v in other.items()))
            ref = step * 1e3 if step else total_prof
            print(f"limit / step = {res['limit_s'] * 1e3:.1f} / {ref:.1f} ms = "
                  f"{res['limit_s'] * 1e3 / ref:.3f} of the limit's speed "
                  f"(step = {ref / (res['limit_s'] * 1e3):.2f}x the limit)")
    if args.json:
        print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
