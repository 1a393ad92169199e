#!/usr/bin/env python3
"""jcjohnson/neural-style's objective and optimiser, in PyTorch, as its neural_style.lua runs them.

    jcjohnson_port.py --content C.png --style S.png --output OUT.png [--iterations 1000]
                      [--weights weights/vgg19.npz] [--seed 0] [--threads 2]

The reference that `--preset jcjohnson` is checked against (scripts/jcjohnson-check.sh): its
published pictures cannot be fetched from this machine, so we run its code's definitions
instead. The images are used at their own size (the check script resizes both beforehand, so
this port and the engine see the same pixels). What is ported, from neural_style.lua with its
default options:

* Net: VGG-19 with max pooling (its `-pooling max`), Caffe net space (BGR there, RGB-ordered
  weights here: the same network), our weights/vgg19.npz, layers up to relu5_1.
* Content: 5 * MSE(relu4_2, target) (nn.MSECriterion: mean over elements).
* Style at relu1_1, relu2_1, relu3_1, relu4_1, relu5_1: 100 * MSE(G, T) with
  G = F F^T / (C H W) (its `input:nElement()`), mean over the C^2 entries.
* TV: its nn.TVLoss back-propagates 1e-3 * the gradient of (1/2) sum(dx^2 + dy^2), the
  differences taken on the top-left (H-1) x (W-1) block; here that loss, by autograd.
* Start: N(0, 0.001^2) in net space (`-init random`).
* Optimiser: optim.lbfgs with maxIter 1000, tolX = tolFun = -1 (never stops early), the
  default 100 correction pairs, learning rate 1 and no line search (unit steps after the
  first, min(1, 1/|g|_1)). torch.optim.LBFGS is a port of optim.lbfgs; with
  line_search_fn=None, max_eval = 1.25 max_iter and negative tolerances it takes the same
  steps.
* Output: deprocessed and clamped to 0..255 (its image.minmax with min 0, max 1).
"""

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as Fn
from PIL import Image

NET_MEAN_RGB = (123.68, 116.779, 103.939)
BLOCK_SIZES = [2, 2, 4, 4, 4]
LAYERS = [f"conv{b + 1}_{i + 1}" for b, n in enumerate(BLOCK_SIZES) for i in range(n)]
CONTENT = "conv4_2"
STYLE = ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]
CONTENT_WEIGHT, STYLE_WEIGHT, TV_WEIGHT = 5.0, 100.0, 1e-3


def load(path):
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    x = torch.from_numpy(a - np.asarray(NET_MEAN_RGB, dtype=np.float32)).permute(2, 0, 1)
    return x.unsqueeze(0).contiguous()


class Vgg:
    def __init__(self, weights):
        npz = np.load(weights)
        last = LAYERS.index("conv5_1")
        self.params = [(name, torch.from_numpy(np.ascontiguousarray(npz[name + ".weight"])),
                        torch.from_numpy(np.ascontiguousarray(npz[name + ".bias"])))
                       for name in LAYERS[:last + 1]]

    def taps(self, x):
        out, block = {}, 1
        for name, w, b in self.params:
            if int(name[4]) != block:
                x = Fn.max_pool2d(x, kernel_size=2, stride=2)
                block = int(name[4])
            x = torch.relu(Fn.conv2d(x, w, b, padding=1))
            if name == CONTENT or name in STYLE:
                out[name] = x
        return out


def gram(f):
    _, c, h, w = f.shape
    m = f.reshape(c, h * w)
    return m @ m.t() / (c * h * w)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--content", required=True)
    ap.add_argument("--style", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--weights", default="weights/vgg19.npz")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    vgg = Vgg(args.weights)
    content, style = load(args.content), load(args.style)
    with torch.no_grad():
        content_target = vgg.taps(content)[CONTENT]
        style_targets = {k: gram(v) for k, v in vgg.taps(style).items() if k in STYLE}

    img = (torch.randn(content.shape) * 0.001).requires_grad_(True)
    opt = torch.optim.LBFGS([img], lr=1.0, max_iter=args.iterations,
                            max_eval=args.iterations * 5 // 4, tolerance_grad=-1.0,
                            tolerance_change=-1.0, history_size=100, line_search_fn=None)
    calls = [0]

    def closure():
        opt.zero_grad()
        taps = vgg.taps(img)
        loss = CONTENT_WEIGHT * Fn.mse_loss(taps[CONTENT], content_target)
        for name in STYLE:
            loss = loss + STYLE_WEIGHT * Fn.mse_loss(gram(taps[name]), style_targets[name])
        dx = img[:, :, :-1, :-1] - img[:, :, :-1, 1:]
        dy = img[:, :, :-1, :-1] - img[:, :, 1:, :-1]
        loss = loss + TV_WEIGHT * 0.5 * (dx.square().sum() + dy.square().sum())
        loss.backward()
        calls[0] += 1
        if calls[0] % 100 == 0:
            print(f"evaluation {calls[0]}: loss {loss.item():.6g}", flush=True)
        return loss

    start = time.time()
    opt.step(closure)
    print(f"{calls[0]} evaluations in {time.time() - start:.1f} s", flush=True)
    with torch.no_grad():
        rgb = img[0].permute(1, 2, 0).numpy() + np.asarray(NET_MEAN_RGB, dtype=np.float32)
    Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8)).save(args.output)


if __name__ == "__main__":
    main()
