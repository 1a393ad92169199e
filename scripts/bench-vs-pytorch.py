#!/usr/bin/env python3
"""Side-by-side speed and memory of our engine and an equivalent PyTorch script.

For every requested image size and thread count this runs, one after the other and each in its
own subprocess (so that peak RSS is per engine):

  ours   target/release/neural-style --size S --iterations W+N --threads T --print-every 1 ...
  torch  this file with --torch-worker: the same network, objective and optimiser in PyTorch

and prints a table of steady-state seconds per step and peak resident memory.

Usage
-----
    bash scripts/bench-vs-pytorch.sh [options]         # makes/reuses the torch venv, then this
    python3 scripts/bench-vs-pytorch.py [options]      # with any python that has torch, numpy,
                                                       # pillow (psutil optional)
Options:
    --sizes 256,512        long side of the images (default 256,512)
    --threads 2            comma-separated thread counts (default 2), e.g. --threads 1,2
    --steps N              timed steps per run (default 10 at <=256, 5 at <=512, 3 above)
    --warmup W             untimed steps first (default 1)
    --content FILE         default examples/astronaut.jpg
    --style FILE           default examples/starry-night.jpg
    --weights FILE         default weights/vgg19.npz
    --binary FILE          default target/release/neural-style (built with
                           `cargo build --release` if missing; --build rebuilds first)
    --keep-kernels SIZE    pass --keep-kernels SIZE to ours (auto, the default, 0, or e.g. 200M)
    --engines ours,torch   run only some engines
    --torch-layouts nchw,channels_last
                           PyTorch memory layouts to run (default both); the table compares
                           ours with the faster one and names it (channels_last is PyTorch's
                           faster CPU layout for convolutions, what a user who cares would use)
    --repeat R             run each (ours, torch) pair R times, alternating, and pool the
                           timed steps (evens out other jobs' load on a shared machine)
    --stat median          per-step statistic in the table: median (default), min (the best
                           step: closest to an idle machine when other jobs share the CPU), mean
    --json FILE            also save the results (and the run's settings) as JSON

What is compared (DESIGN.md, "seed" configuration)
--------------------------------------------------
* Weights: both engines read weights/vgg19.npz (OIHW f32, RGB-ordered conv1_1), layers
  conv1_1..conv5_1 only (the deepest one a loss needs); 3x3 convs, pad 1, ReLU, 2x2 average
  pooling between blocks.
* Images: net space (RGB 0..255 minus mean R 123.68, G 116.779, B 103.939). The content image and
  the style image are each resized so that their long side is S, keeping the aspect ratio, with
  Lanczos filtering in float, and the rounding of the new sides done as in src/image.rs (half away
  from zero), so both engines see the same H x W (checked: the run aborts if ours prints another
  size). Pixel values may differ in the last bits (different JPEG decoders and Lanczos kernels);
  that does not change the work.
* Objective: content conv4_2 (w 1), style conv1_1, conv2_1, conv3_1, conv4_1, conv5_1 (0.2
  each), alpha 10, beta 40, no TV; Gram G = F F^T / (H W); style term 1/(4 C^2) sum (G - T)^2;
  content term 1/(4 C H W) sum (a - a_c)^2. Gradients: ours hand-written, torch autograd (input
  gradient only, the weights have requires_grad=False).
* Optimiser: Adam, lr 2.0, betas (0.9, 0.999), eps 1e-8, on the net-space pixels.
* Ours runs `--preset seed` (the built-in defaults weigh the same layers differently: the
  same work, another objective value).
* Start image: the content image (`--init content` for ours), so that the objective value at the
  first step is deterministic and the two engines can be cross-checked (column "J1 rel diff":
  relative difference of the first step's total loss). It is not zero because of the decoder and
  resampling differences above: with the example JPEGs about 4e-3 at 512 (no resampling; the two
  JPEG decoders differ) and 3e-4 at 256; with the same images as PNG at 512, 4e-5, the 5
  significant digits ours prints. Speed does not depend on the start image.
* Layouts: torch runs once per layout: NCHW (its default) and channels_last (weights, images
  and the optimised tensor converted with `.contiguous(memory_format=torch.channels_last)`;
  oneDNN then keeps the activations NHWC). The ratio column uses the faster layout's step.
* Threads: ours `--threads T` (rayon); torch `torch.set_num_threads(T)` with OMP_NUM_THREADS and
  MKL_NUM_THREADS set to T in its environment.
* Timing: both engines take W warm-up steps, then N timed steps; the figure is the median time
  of the N steps (robust to other jobs on a shared machine; --stat min/mean for the others, and
  --json keeps every step time), model loading, image decoding and target computation excluded. Ours prints the running mean
  `X s/step` after every step (--print-every 1); step i ends at X_i * i seconds, so step i took
  X_i i - X_{i-1} (i-1) seconds (X is printed to 1 ms: good to about +-1 ms * i), and the mean
  of the timed steps is (X_{W+N} (W+N) - X_W W) / N.
* Peak RSS: os.wait4's ru_maxrss of each engine's subprocess, i.e. the whole process over its
  whole life: weights, activations, image buffers, allocator slack and the runtime itself (for
  torch: the Python interpreter and the torch/MKL/oneDNN libraries, reported separately as
  "torch base", its RSS right after `import torch`). Ours keeps each layer's weights twice
  (forward kernel and the rotated kernel of the backward pass).
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from statistics import median

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN = (123.68, 116.779, 103.939)
LAYERS = [
    "conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv3_4",
    "conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1",
]
CONTENT_LAYERS = [("conv4_2", 1.0)]
STYLE_LAYERS = [(name, 0.2) for name in ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")]
ALPHA, BETA = 10.0, 40.0
LR, BETA1, BETA2, EPS = 2.0, 0.9, 0.999, 1e-8


def block_of(name):
    return int(name[4]) - 1


def default_steps(size):
    return 10 if size <= 256 else 5 if size <= 512 else 3


# --------------------------------------------------------------------------------------------
# PyTorch worker (runs in its own process: `bench-vs-pytorch.py --torch-worker ...`)
# --------------------------------------------------------------------------------------------


def rss_now_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        return float("nan")


def load_net(path, long_side):
    """Image file -> float32 net-space HxWx3 -> CHW, resized as src/image.rs does."""
    import numpy as np
    from PIL import Image

    img = Image.open(path)
    img = img.convert("RGBA") if "A" in img.getbands() else img.convert("RGB")
    arr = np.asarray(img, dtype=np.float32) / 255.0
    if arr.shape[2] == 4:  # composite over white, like src/image.rs
        a = arr[:, :, 3:4]
        arr = arr[:, :, :3] * a + (1.0 - a)
    h, w = arr.shape[:2]
    if max(w, h) != long_side:
        scale = long_side / max(w, h)
        # Rust's f64::round rounds half away from zero; Python's round() would round half to even.
        nw = max(1, int(w * scale + 0.5))
        nh = max(1, int(h * scale + 0.5))
        chans = [
            np.asarray(Image.fromarray(arr[:, :, c], mode="F").resize((nw, nh), Image.LANCZOS))
            for c in range(3)
        ]
        arr = np.stack(chans, axis=2)
    arr = arr * 255.0 - np.asarray(MEAN, dtype=np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)


def torch_worker(args):
    base_rss = rss_now_mb()  # interpreter only
    import numpy as np
    import torch
    import torch.nn.functional as F

    base_rss = rss_now_mb()  # interpreter + torch runtime, before any data
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(True)
    t0 = time.perf_counter()

    npz = np.load(args.weights)
    weights = [
        (
            torch.from_numpy(np.ascontiguousarray(npz[f"{n}.weight"], dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(npz[f"{n}.bias"], dtype=np.float32)),
        )
        for n in LAYERS
    ]
    del npz
    layout = torch.channels_last if args.layout == "channels_last" else torch.contiguous_format
    weights = [(w.contiguous(memory_format=layout), b) for w, b in weights]

    def forward(x):
        feats = {}
        h = x
        for i, name in enumerate(LAYERS):
            if i > 0 and block_of(name) != block_of(LAYERS[i - 1]):
                h = F.avg_pool2d(h, 2)
            w, b = weights[i]
            h = F.relu(F.conv2d(h, w, b, padding=1))
            feats[name] = h
        return feats

    def gram(a):
        c = a.shape[1]
        f = a.reshape(c, -1)
        return f @ f.t() / f.shape[1]

    content = torch.from_numpy(load_net(args.content, args.size))[None]
    style = torch.from_numpy(load_net(args.style, args.size))[None]
    content = content.contiguous(memory_format=layout)
    style = style.contiguous(memory_format=layout)
    with torch.no_grad():
        fc = forward(content)
        content_targets = {n: fc[n].clone() for n, _ in CONTENT_LAYERS}
        del fc
        fs = forward(style)
        style_targets = {n: gram(fs[n]) for n, _ in STYLE_LAYERS}
        del fs

    def objective(x):
        feats = forward(x)
        jc = 0.0
        for n, wl in CONTENT_LAYERS:
            a = feats[n]
            jc = jc + wl * ((a - content_targets[n]) ** 2).sum() / (4.0 * a.numel())
        js = 0.0
        for n, wl in STYLE_LAYERS:
            g = gram(feats[n])
            c = g.shape[0]
            js = js + wl * ((g - style_targets[n]) ** 2).sum() / (4.0 * c * c)
        return ALPHA * jc + BETA * js

    x = content.clone(memory_format=layout).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=LR, betas=(BETA1, BETA2), eps=EPS)
    setup = time.perf_counter() - t0

    times, totals = [], []
    for _ in range(args.warmup + args.steps):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = objective(x)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
        totals.append(float(loss.detach()))
    timed = times[args.warmup:]
    result = {
        "shape": [int(content.shape[2]), int(content.shape[3])],
        "style_shape": [int(style.shape[2]), int(style.shape[3])],
        "setup_s": setup,
        "step_times_s": times,
        "s_per_step_median": median(timed),
        "s_per_step_min": min(timed),
        "s_per_step_mean": sum(timed) / len(timed),
        "first_total": totals[0],
        "base_rss_mb": base_rss,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "layout": args.layout,
        "torch_backends": {
            "mkl": torch.backends.mkl.is_available(),
            "mkldnn": torch.backends.mkldnn.is_available(),
            "openmp": torch.backends.openmp.is_available(),
        },
    }
    print("RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def run_measured(cmd, env, log_prefix):
    """Runs `cmd` in its own process; returns (exit code, stdout, stderr, wall s, peak RSS MB)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=REPO)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        so, se = out.read(), err.read()
    rss_mb = usage.ru_maxrss / 1024.0  # kilobytes on Linux
    if p.returncode != 0:
        sys.stderr.write(f"{log_prefix}: exit code {p.returncode}\n{so}{se}\n")
    return p.returncode, so, se, wall, rss_mb


STEP_RE = re.compile(r"^step\s+(\d+)/(\d+)\s+total\s+(\S+).*?([0-9.]+) s/step\s*$")
# "neural-style: [stage 1/1 at ]WxH, ... ; setup X s" (the last such line is the final stage).
SIZE_RE = re.compile(r"neural-style:.*?(\d+)x(\d+),.*?setup ([0-9.]+) s")


def run_ours(args, size, threads, steps, tmp):
    total_steps = args.warmup + steps
    cmd = [
        args.binary,
        "--content", args.content,
        "--style", args.style,
        "--output", os.path.join(tmp, f"ours-{size}-{threads}.png"),
        "--weights", args.weights,
        "--size", str(size),
        "--iterations", str(total_steps),
        "--threads", str(threads),
        "--print-every", "1",
        "--preset", "seed",
        "--init", "content",
        "--optimizer", "adam",
    ]
    if args.keep_kernels:
        cmd += ["--keep-kernels", args.keep_kernels]
    env = dict(os.environ)
    env.pop("RAYON_NUM_THREADS", None)
    rc, so, se, wall, rss = run_measured(cmd, env, "ours")
    if rc != 0:
        return None
    cumulative = {}  # step -> seconds since the loop started, at the end of that step
    first_total = None
    for line in se.splitlines():
        m = STEP_RE.match(line.strip())
        if m:
            i = int(m.group(1))
            cumulative[i] = float(m.group(4)) * i
            if i == 1:
                first_total = float(m.group(3))
    shape, setup = None, None
    for m in SIZE_RE.finditer(se):
        shape, setup = [int(m.group(2)), int(m.group(1))], float(m.group(3))
    if shape is None:
        sys.stderr.write("ours: warning: no 'neural-style: WxH ... setup' line; size not checked\n")
    if total_steps not in cumulative or (args.warmup > 0 and args.warmup not in cumulative):
        sys.stderr.write(f"ours: could not parse the step lines:\n{se}\n")
        return None
    start = cumulative.get(args.warmup, 0.0)
    # Per-step times from the running means (printed to 1 ms, so each is good to about
    # +-1 ms * step number).
    cumulative[0] = 0.0
    step_times = [cumulative[i] - cumulative[i - 1] for i in range(1, total_steps + 1)
                  if i in cumulative and i - 1 in cumulative]
    timed = step_times[args.warmup:] if len(step_times) == total_steps else []
    return {
        "shape": shape,
        "setup_s": setup,
        "step_times_s": step_times,
        "s_per_step_median": median(timed) if timed else None,
        "s_per_step_min": min(timed) if timed else None,
        "s_per_step_mean": (cumulative[total_steps] - start) / steps,
        "first_total": first_total,
        "wall_s": wall,
        "peak_rss_mb": rss,
    }


def run_torch(args, size, threads, steps, layout):
    cmd = [
        sys.executable, os.path.abspath(__file__), "--torch-worker", "--layout", layout,
        "--size", str(size), "--threads", str(threads), "--steps", str(steps),
        "--warmup", str(args.warmup), "--content", args.content, "--style", args.style,
        "--weights", args.weights,
    ]
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env["CUDA_VISIBLE_DEVICES"] = ""
    rc, so, se, wall, rss = run_measured(cmd, env, "torch")
    if rc != 0:
        return None
    lines = [l for l in so.splitlines() if l.startswith("RESULT ")]
    if not lines:
        sys.stderr.write(f"torch: no result line:\n{so}{se}\n")
        return None
    r = json.loads(lines[-1][len("RESULT "):])
    r["wall_s"] = wall
    r["peak_rss_mb"] = rss
    return r


def merge_runs(runs, warmup):
    """One engine's repeated runs of one configuration: statistics over all their timed steps,
    the largest peak RSS; every run is kept under "runs"."""
    if any(r is None for r in runs):
        return None
    if len(runs) == 1:
        return runs[0]
    timed = [t for r in runs for t in r["step_times_s"][warmup:]]
    merged = dict(runs[0])
    merged.update({
        "s_per_step_median": median(timed),
        "s_per_step_min": min(timed),
        "s_per_step_mean": sum(timed) / len(timed),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "runs": runs,
    })
    return merged


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def ensure_binary(args):
    if args.build or not os.path.exists(args.binary):
        print("bench-vs-pytorch: cargo build --release", file=sys.stderr)
        subprocess.run(["cargo", "build", "--release"], cwd=REPO, check=True)
    if not os.path.exists(args.binary):
        sys.exit(f"error: {args.binary} not found after cargo build --release")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--threads", default="2")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--content", default=os.path.join(REPO, "examples/astronaut.jpg"))
    ap.add_argument("--style", default=os.path.join(REPO, "examples/starry-night.jpg"))
    ap.add_argument("--weights", default=os.path.join(REPO, "weights/vgg19.npz"))
    ap.add_argument("--binary", default=os.path.join(REPO, "target/release/neural-style"))
    ap.add_argument("--keep-kernels", default=None)
    ap.add_argument("--build", action="store_true", help="run cargo build --release first")
    ap.add_argument("--engines", default="ours,torch")
    ap.add_argument("--torch-layouts", default="nchw,channels_last")
    ap.add_argument("--layout", default="nchw", help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--stat", choices=("median", "min", "mean"), default="median")
    ap.add_argument("--json", default=None)
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.torch_worker:
        args.threads = int(args.threads)
        torch_worker(args)
        return

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    engines = {e.strip() for e in args.engines.split(",") if e.strip()}
    layouts = [l.strip() for l in args.torch_layouts.split(",") if l.strip()]
    if not layouts or any(l not in ("nchw", "channels_last") for l in layouts):
        sys.exit("error: --torch-layouts takes nchw and/or channels_last")
    if args.warmup < 0 or (args.steps is not None and args.steps < 1) or args.repeat < 1:
        sys.exit("error: --warmup must be >= 0, --steps and --repeat >= 1")
    for what, path in (("content", args.content), ("style", args.style)):
        if not os.path.exists(path):
            sys.exit(f"error: {what} image {path} not found")
    if not os.path.exists(args.weights):
        sys.exit(f"error: {args.weights} not found: run bash scripts/fetch-weights.sh")
    args.content, args.style, args.weights = map(
        os.path.abspath, (args.content, args.style, args.weights))
    if "ours" in engines:
        ensure_binary(args)

    rows = []
    tmp = tempfile.mkdtemp(prefix="bench-vs-pytorch-")
    try:
        for size in sizes:
            steps = args.steps or default_steps(size)
            for t in threads:
                row = {"size": size, "threads": t, "warmup": args.warmup, "steps": steps,
                       "repeat": args.repeat}
                runs = {"ours": [], **{f"torch-{l}": [] for l in layouts}}
                for rep in range(args.repeat):
                    tag = f"[{size} px, {t} threads, run {rep + 1}/{args.repeat}]"
                    if "ours" in engines:
                        print(f"{tag} ours: {args.warmup}+{steps} steps ...",
                              file=sys.stderr, flush=True)
                        runs["ours"].append(run_ours(args, size, t, steps, tmp))
                    if "torch" in engines:
                        for l in layouts:
                            print(f"{tag} torch {l}: {args.warmup}+{steps} steps ...",
                                  file=sys.stderr, flush=True)
                            runs[f"torch-{l}"].append(run_torch(args, size, t, steps, l))
                for engine, rs in runs.items():
                    if rs:
                        row[engine] = merge_runs(rs, args.warmup)
                # Compare with the faster PyTorch layout.
                timed = [row[f"torch-{l}"] for l in layouts if row.get(f"torch-{l}")]
                if timed:
                    row["torch"] = min(timed, key=lambda r: r[f"s_per_step_{args.stat}"])
                o, p = row.get("ours"), row.get("torch")
                if o and p and o["shape"] and o["shape"] != p["shape"]:
                    sys.exit(f"error: image sizes differ: ours {o['shape']} torch {p['shape']} "
                             "(H, W); the comparison would be unfair")
                rows.append(row)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    header = (f"{'size':>5} {'HxW':>9} {'thr':>3} {'steps':>7} | {'ours s/step':>11} "
              f"{'torch s/step':>12} {'ratio':>6} | {'ours RSS MB':>11} {'torch RSS MB':>12} "
              f"{'RSS ratio':>9} {'torch base':>10} | {'J1 rel diff':>11} | torch per layout")
    print()
    print(header)
    print("-" * len(header))
    for r in rows:
        o, p = r.get("ours") or {}, r.get("torch") or {}
        so, sp = o.get(f"s_per_step_{args.stat}"), p.get(f"s_per_step_{args.stat}")
        mo, mp = o.get("peak_rss_mb"), p.get("peak_rss_mb")
        shape = o.get("shape") or p.get("shape")
        hw = f"{shape[0]}x{shape[1]}" if shape else "-"
        jo, jp = o.get("first_total"), p.get("first_total")
        jd = abs(jo - jp) / abs(jp) if jo is not None and jp else None
        steps = f"{r['warmup']}+{r['steps']}" + (f"x{r['repeat']}" if r["repeat"] > 1 else "")
        print(f"{r['size']:>5} {hw:>9} {r['threads']:>3} {steps:>7} | "
              f"{fmt(so, '11.3f')} {fmt(sp, '12.3f')} "
              f"{fmt(so / sp if so and sp else None, '6.2f')} | "
              f"{fmt(mo, '11.0f')} {fmt(mp, '12.0f')} "
              f"{fmt(mo / mp if mo and mp else None, '9.2f')} {fmt(p.get('base_rss_mb'), '10.0f')} | "
              f"{fmt(jd, '11.1e')} | "
              + ", ".join(f"{l} {fmt(r[f'torch-{l}'].get(f's_per_step_{args.stat}'), '.3f')}"
                          + (" *" if r.get(f"torch-{l}") is p else "")
                          for l in layouts if r.get(f"torch-{l}")))
    print()
    print(f"s/step: {args.stat} of the timed steps after the warm-up (setup excluded; --json "
          "keeps every step); ratio = ours/torch, < 1 means we are faster; torch = its faster "
          "layout (marked *).")
    print("RSS: peak resident set of each engine's whole process (weights + activations + "
          "buffers + runtime);")
    print("     'torch base' is the torch process's RSS right after `import torch` (interpreter + "
          "libraries, no data).")
    print("J1 rel diff: relative difference of the first step's total loss (sanity check that both"
          " compute the same objective).")
    torch_meta = next((r["torch"] for r in rows if r.get("torch")), None)
    if torch_meta:
        backends = ", ".join(k for k, v in torch_meta["torch_backends"].items() if v)
        print(f"torch {torch_meta['torch_version']} (CPU; available: {backends}).")

    if args.json:
        meta = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "host": platform.node(),
            "cpu_count": os.cpu_count(),
            "loadavg_at_end": os.getloadavg(),
            "binary": args.binary,
            "keep_kernels": args.keep_kernels,
            "content": args.content,
            "style": args.style,
            "weights": args.weights,
        }
        try:
            meta["git_head"] = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
            ).stdout.strip()
        except OSError:
            pass
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": rows}, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
