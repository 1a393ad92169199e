#!/usr/bin/env python3
"""Two numbers for a painting made by the engine: structure kept and style distance.

    scripts/quality.sh --painting P --photo C --style S [--json]
    scripts/quality.sh --list runs.csv [--json]     # header: painting,photo,style[,name]
                                                    # (relative paths: from the CSV's folder)

One CSV row (or JSON object) per painting on stdout, deterministic for given
inputs and library versions (float64 statistics, one torch thread).  Neither
number alone is a goal: the photograph itself keeps all structure (ssim = 1,
edge_f1 = 1) at style_rel = 1; the style image itself has style_rel = 0 and
keeps no structure.

Structure kept (painting P against photograph C)
------------------------------------------------
C is resized to P's size (Lanczos).  Both are turned into luminance
Y = 0.299 R + 0.587 G + 0.114 B in [0, 1] and blurred with a Gaussian of
sigma = 2 px * (long side of P) / 512, so that brush strokes finer than about
4 px at 512 px do not count as structure, only what a viewer reads as shapes.
* ssim: mean SSIM of the two blurred luminances (skimage structural_similarity,
  Gaussian window sigma 1.5, data range 1, population covariance).
* edge_f1: Canny edges (skimage canny, no extra blur, hysteresis thresholds at the
  0.80 / 0.90 quantiles of each image's own gradient magnitude, so the edge
  density is the same for both images whatever their contrast) of the two
  blurred luminances; precision = share of P's edge pixels within r px of an edge
  of C, recall = share of C's edge pixels within r px of an edge of P,
  r = max(1, round(sigma)); edge_f1 = 2 p q / (p + q).

Style distance (painting P against style image S)
------------------------------------------------
P and S are each resized so that their long side is --size (default 512) and
fed in net space (RGB 0..255 minus the mean 123.68, 116.779, 103.939; no std
division, as in scripts/golden.py) to VGG-19 with the project's weights
(weights/vgg19.npz) but MAX pooling, read at relu1_2, relu2_2, relu3_2 and
relu4_2: taps and pooling that the engine's default objective (average pooling,
Gram matrices at conv1_1 .. conv5_1) does not optimise, so the objective does
not grade itself.  At each layer l with C_l channels, the activations at all
positions give a mean m and a population covariance K (float64), and
    d_l(X, S) = ( |m_X - m_S|^2 + tr(K_X + K_S - 2 (K_X^1/2 K_S K_X^1/2)^1/2) ) / C_l,
the squared Wasserstein-2 distance between the two Gaussians, per channel.
The same is computed for the photograph C (resized the same way) as a baseline:
    style_rel = (1/4) sum_l d_l(P, S) / d_l(C, S)
0 means the painting has the style image's feature statistics at every layer,
1 means it is on average as far from them as the photograph was.  The columns
d_<layer> (painting) and d0_<layer> (photograph) give the per-layer values.
"""

import argparse
import csv
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as Fn
from PIL import Image
from scipy import ndimage
from skimage.feature import canny
from skimage.metrics import structural_similarity

NET_MEAN_RGB = (123.68, 116.779, 103.939)
BLOCK_SIZES = [2, 2, 4, 4, 4]
LAYERS = [f"conv{b + 1}_{i + 1}" for b, n in enumerate(BLOCK_SIZES) for i in range(n)]
TAPS = ["conv1_2", "conv2_2", "conv3_2", "conv4_2"]  # post-ReLU, i.e. relu1_2 .. relu4_2
TAP_NAMES = [t.replace("conv", "relu") for t in TAPS]


def load_rgb(path):
    with Image.open(path) as im:
        return im.convert("RGB")


def resized(img, size):
    return img if img.size == size else img.resize(size, Image.LANCZOS)


def long_side(img, n):
    s = n / max(img.size)
    return resized(img, (max(1, round(img.width * s)), max(1, round(img.height * s))))


# ---------------------------------------------------------------------------
# Structure
# ---------------------------------------------------------------------------

def blurred_luma(img, sigma):
    a = np.asarray(img, dtype=np.float64) / 255.0
    y = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
    return ndimage.gaussian_filter(y, sigma, mode="reflect")


def edges(y):
    return canny(y, sigma=0.0, low_threshold=0.80, high_threshold=0.90, use_quantiles=True)


def structure(painting, photo):
    sigma = 2.0 * max(painting.size) / 512.0
    yp = blurred_luma(painting, sigma)
    yc = blurred_luma(resized(photo, painting.size), sigma)
    ssim = structural_similarity(yp, yc, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False)
    ep, ec = edges(yp), edges(yc)
    r = max(1, round(sigma))
    disk = np.hypot(*np.mgrid[-r:r + 1, -r:r + 1]) <= r
    near_c = ndimage.binary_dilation(ec, structure=disk)
    near_p = ndimage.binary_dilation(ep, structure=disk)
    p = (ep & near_c).sum() / max(ep.sum(), 1)
    q = (ec & near_p).sum() / max(ec.sum(), 1)
    f1 = 0.0 if p + q == 0 else 2 * p * q / (p + q)
    return float(ssim), float(f1)


# ---------------------------------------------------------------------------
# Style
# ---------------------------------------------------------------------------

class VggStats:
    """Mean and covariance of max-pool VGG-19 features at TAPS, cached per image."""

    def __init__(self, weights_path, size):
        npz = np.load(weights_path)
        deepest = LAYERS.index(TAPS[-1])
        self.params = {k: torch.from_numpy(np.ascontiguousarray(npz[k]))
                       for name in LAYERS[:deepest + 1] for k in (name + ".weight", name + ".bias")}
        self.size = size
        self.cache = {}

    @torch.no_grad()
    def features(self, img):
        a = np.asarray(long_side(img, self.size), dtype=np.float32)
        x = torch.from_numpy(a - np.asarray(NET_MEAN_RGB, dtype=np.float32)).permute(2, 0, 1)
        h = x.unsqueeze(0).contiguous()
        out, block = {}, 1
        for name in LAYERS[:LAYERS.index(TAPS[-1]) + 1]:
            if int(name[4]) != block:
                h = Fn.max_pool2d(h, kernel_size=2, stride=2)
                block = int(name[4])
            h = torch.relu(Fn.conv2d(h, self.params[name + ".weight"], self.params[name + ".bias"],
                                     padding=1))
            if name in TAPS:
                out[name] = h[0].reshape(h.shape[1], -1).double().numpy()
        return out

    def stats(self, key, img):
        if key not in self.cache:
            res = {}
            for name, f in self.features(img).items():
                m = f.mean(axis=1)
                d = f - m[:, None]
                res[name] = (m, d @ d.T / f.shape[1])
            self.cache[key] = res
        return self.cache[key]


def sqrtm_psd(k):
    w, v = np.linalg.eigh(k)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def w2_per_channel(a, b):
    """Squared W2 distance between Gaussians (m, K), divided by the channel count."""
    (ma, ka), (mb, kb) = a, b
    ra = sqrtm_psd(ka)
    cross = np.linalg.eigvalsh(ra @ kb @ ra)
    tr = np.trace(ka) + np.trace(kb) - 2.0 * np.sqrt(np.clip(cross, 0.0, None)).sum()
    return float((np.sum((ma - mb) ** 2) + max(tr, 0.0)) / ma.shape[0])


# ---------------------------------------------------------------------------

def evaluate(vgg, painting_path, photo_path, style_path):
    painting, photo, style = load_rgb(painting_path), load_rgb(photo_path), load_rgb(style_path)
    ssim, f1 = structure(painting, photo)
    st_s = vgg.stats(os.path.abspath(style_path), style)
    st_p = vgg.stats(os.path.abspath(painting_path), painting)
    st_c = vgg.stats(os.path.abspath(photo_path), photo)
    d = [w2_per_channel(st_p[t], st_s[t]) for t in TAPS]
    d0 = [w2_per_channel(st_c[t], st_s[t]) for t in TAPS]
    rel = float(np.mean([a / b if b > 0 else float("nan") for a, b in zip(d, d0)]))
    row = {"ssim": round(ssim, 4), "edge_f1": round(f1, 4), "style_rel": round(rel, 4)}
    row.update({f"d_{n}": float(f"{v:.6g}") for n, v in zip(TAP_NAMES, d)})
    row.update({f"d0_{n}": float(f"{v:.6g}") for n, v in zip(TAP_NAMES, d0)})
    return row


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description="structure kept and style distance of paintings "
                                 "(formulas: this script's docstring)")
    ap.add_argument("--painting")
    ap.add_argument("--photo")
    ap.add_argument("--style")
    ap.add_argument("--name", default="")
    ap.add_argument("--list", help="CSV with columns painting,photo,style and optionally name")
    ap.add_argument("--weights", default=os.path.join(here, "..", "weights", "vgg19.npz"))
    ap.add_argument("--size", type=int, default=512, help="long side for the VGG statistics")
    ap.add_argument("--json", action="store_true", help="JSON lines instead of CSV")
    args = ap.parse_args()

    jobs = []
    if args.list:
        base = os.path.dirname(os.path.abspath(args.list))
        with open(args.list, newline="") as f:
            for r in csv.DictReader(f):
                jobs.append({"name": r.get("name") or r.get("pair") or "",
                             **{k: os.path.join(base, r[k]) for k in ("painting", "photo", "style")}})
    elif args.painting and args.photo and args.style:
        jobs.append({"name": args.name, "painting": args.painting, "photo": args.photo,
                     "style": args.style})
    else:
        ap.error("give --painting, --photo and --style, or --list")

    torch.set_num_threads(1)
    vgg = VggStats(args.weights, args.size)
    writer = None
    for job in jobs:
        row = {**job, **evaluate(vgg, job["painting"], job["photo"], job["style"])}
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            if writer is None:
                writer = csv.DictWriter(sys.stdout, fieldnames=list(row), lineterminator="\n")
                writer.writeheader()
            writer.writerow(row)
            sys.stdout.flush()


if __name__ == "__main__":
    main()
