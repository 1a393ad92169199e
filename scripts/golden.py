#!/usr/bin/env python3
"""PyTorch reference values ("golden data") for the Rust engine's tests.

This script is the independent oracle for the Rust side: it re-implements the
VGG-19 feature network and the style-transfer objective of shared DESIGN.md in
PyTorch and lets *autograd* (not hand-written gradients) compute d J / d x.
The Rust tests load the files below with npyz and compare.

How to run
----------
    scripts/golden.sh [options]          # makes/uses its own venv, then runs this
    python3 scripts/golden.py [options]  # with any python that has torch + numpy

Options: --out-dir DIR (default tests/data), --weights FILE (default
weights/vgg19.npz, made by scripts/fetch-weights.sh), --skip-real,
--content-image/--style-image FILE (rebuild the real-weights inputs from images;
needs Pillow).  Without the image options, the inputs stored in an existing
golden_real.npz are reused, so a rerun only recomputes the reference values.

Everything is CPU-only and deterministic: random data comes from numpy's legacy
``RandomState`` (whose streams numpy keeps frozen), so reruns reproduce the
tiny files bit for bit up to torch's own float rounding.

Conventions (from DESIGN.md)
----------------------------
* Arrays are CHW without a batch dimension; images are RGB "net space"
  (0..255 minus the mean R 123.68, G 116.779, B 103.939; no std division).
* Weights npz ("project format"): ``convB_I.weight`` (OIHW float32) and
  ``convB_I.bias`` (float32) for conv1_1 .. conv5_4.
* VGG-19: 3x3 conv, stride 1, pad 1, bias, ReLU; 2x2 stride-2 pooling (floor
  mode; average or max) between blocks of 2, 2, 4, 4, 4 convs.  Taps are the
  post-ReLU outputs.  The net is run only up to the deepest layer needed.
* Objective, for activations a^l of shape C x H x W and F = a^l as C x (H W):
    J_c  = sum_l w_l      * 1/(4 C H W) * sum (a^l(x) - a^l(c))^2
    G    = F F^T / (H W)
    J_s  = sum_l lambda_l * 1/(4 C^2)   * sum (G^l(x) - T^l)^2,  T^l = sum_i b_i G^l(s_i)
    J_tv = 1/(C H W) * sum_{c,i,j} [(x[c,i+1,j]-x[c,i,j])^2 + (x[c,i,j+1]-x[c,i,j])^2]
           (valid index pairs only; C, H, W of the image x)
    J    = alpha J_c + beta J_s + gamma J_tv
  Reported: content = J_c, style = J_s, tv = J_tv (unweighted), total = J,
  grad = dJ/dx.  Targets a^l(c) and T^l are constants (no gradient).

Files written (np.savez, uncompressed; arrays C-contiguous little endian;
scalars are 0-d float64; strings are numpy unicode arrays)
----------------------------------------------------------------------------
tests/data/tiny_vgg.npz
    A tiny random VGG-19 in project format: all 16 layers, channel widths per
    block [8, 12, 16, 16, 16], conv1_1 has 3 input channels, float32.
    He-normal weights std sqrt(2 / (9 Cin)), bias N(0, 0.05^2); fixed seed.

tests/data/golden_tiny.npz   (uses tiny_vgg.npz)
    content (3x36x44), style0 (3x40x40), style1 (3x32x48), x (3x36x44): float32
        smooth random net-space-like images in [-110, 130].
    config.*: content_layers ['conv4_2'], content_weights [1.0],
        style_layers [conv1_1, conv2_1, conv3_1, conv4_1, conv5_1],
        style_weights [0.2]*5, style_blend [0.3, 0.7], alpha 10, beta 40,
        gamma 0.5, pools ['avg', 'max', 'l2'].  meta.torch_version: torch used.
    For pool in avg, max, l2 (l2: the root mean square of each 2x2 window),
    and for w2.avg, w2.max: the mean + covariance (Wasserstein-2) style loss
    of src/loss/meancov.rs in place of the Gram loss, style layers conv1_1 ..
    conv4_1 at 0.2 each (conv5_1 has 4 positions for 16 channels here), with
    avg or max pooling (computed in float64 from the f32 weights/inputs):
        {pool}.content, {pool}.style, {pool}.tv, {pool}.total   0-d float64
        {pool}.grad                                            3x36x44 float64
        {pool}.grad_content, .grad_style, .grad_tv  gradients of the unweighted
                                 J_c, J_s, J_tv alone (3x36x44 float64), so each
                                 term's gradient can be checked although J_s
                                 dominates J here
        {pool}.act.<layer>       x's post-ReLU activation at each tapped
                                 layer (float64), to debug the forward pass
        {pool}.gram_target.<layer>  blended style Gram target T (float64)
      and the same computed in float32 (for information only):
        {pool}.content_f32, .style_f32, .tv_f32, .total_f32 (0-d float64),
        {pool}.grad_f32 (3x36x44 float32)
    Single-op references (float64, random):
        op.conv_in 5x9x11, op.conv_w 7x5x3x3, op.conv_b 7,
        op.conv_out 7x9x11 (conv forward, no ReLU), op.conv_gout 7x9x11,
        op.conv_gin 5x9x11 = d sum(conv_out * conv_gout) / d conv_in;
        op.avgpool_in 4x9x11 (also the max-pool input), op.avgpool_out and
        op.maxpool_out 4x4x5, op.pool_gout 4x4x5, op.avgpool_gin and
        op.maxpool_gin 4x9x11.

tests/data/golden_real.npz   (uses the real weights/vgg19.npz)
    content, style, x: 3x128x160 float32 (H=128, W=160).  content/style are
        real photos in net space; x = 0.6 * U(-20, 20) + 0.4 * content.
    config.*: content conv4_2 (w 1.0); style conv1_1..conv5_1 (lambda 0.2
        each); style_blend [1.0]; alpha 10, beta 40, gamma 0.01; pool 'avg';
        plus config.content_source / config.style_source (image names).
    f32.content/.style/.tv/.total (0-d float64 holding the float32 result),
        f32.grad (float32): computed in torch float32.
    f64.content/.style/.tv/.total (0-d float64), f64.grad (float64): computed
        in torch float64 from the same (f32) weights and inputs.
"""

import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as Fn

# ---------------------------------------------------------------------------
# Network definition
# ---------------------------------------------------------------------------

BLOCK_SIZES = [2, 2, 4, 4, 4]
LAYERS = [f"conv{b + 1}_{i + 1}" for b, n in enumerate(BLOCK_SIZES) for i in range(n)]
NET_MEAN_RGB = (123.68, 116.779, 103.939)

SEED_STYLE_LAYERS = ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]


def vgg_features(x, params, layers, pool):
    """Post-ReLU activations of `x` (C x H x W tensor) at `layers`.

    `params` maps 'convB_I.weight'/'convB_I.bias' to tensors of x's dtype.
    Runs only up to the deepest requested layer.  Returns {layer: C x H x W}.
    """
    wanted = set(layers)
    deepest = max(LAYERS.index(name) for name in wanted)
    h = x.unsqueeze(0)
    out = {}
    prev_block = 1
    for name in LAYERS[: deepest + 1]:
        block = int(name[4])
        if block != prev_block:
            if pool == "avg":
                h = Fn.avg_pool2d(h, kernel_size=2, stride=2, ceil_mode=False)
            elif pool == "max":
                h = Fn.max_pool2d(h, kernel_size=2, stride=2, ceil_mode=False)
            elif pool == "l2":
                # Root mean square of each window; clamped at the smallest normal so that an
                # all-zero window (dead ReLUs) gets gradient 0, as in the engine, not NaN.
                ms = Fn.avg_pool2d(h * h, kernel_size=2, stride=2, ceil_mode=False)
                h = torch.sqrt(torch.clamp(ms, min=torch.finfo(h.dtype).tiny))
            else:
                raise ValueError(f"unknown pool {pool!r}")
            prev_block = block
        h = Fn.conv2d(h, params[name + ".weight"], params[name + ".bias"], stride=1, padding=1)
        h = torch.relu(h)
        if name in wanted:
            out[name] = h[0]
    return out


def gram(a):
    """G = F F^T / (H W), F = a reshaped to C x (H W)."""
    c, hgt, wid = a.shape
    f = a.reshape(c, hgt * wid)
    return f @ f.t() / (hgt * wid)


W2_RELATIVE_EPS = 1e-3  # src/loss/meancov.rs RELATIVE_EPS


def moments(a):
    """(F F^T / (H W), channel means) of a C x H x W activation."""
    c, hgt, wid = a.shape
    return gram(a), a.reshape(c, hgt * wid).mean(dim=1)


def w2_style_term(a, gram_t, mean_t):
    """Squared Wasserstein-2 distance between the Gaussians of a's features and of the
    target moments, per channel (src/loss/meancov.rs), by eigendecompositions that autograd
    differentiates."""
    g, m = moments(a)
    c = m.shape[0]
    eye = torch.eye(c, dtype=a.dtype)
    k_s_raw = gram_t - torch.outer(mean_t, mean_t)
    eps = W2_RELATIVE_EPS * max(float(torch.diagonal(k_s_raw).mean()), 1e-6)
    k_s = k_s_raw + eps * eye
    lam, vec = torch.linalg.eigh(k_s)
    root = vec @ torch.diag(torch.sqrt(torch.clamp(lam, min=eps * 1e-3))) @ vec.t()
    k = g - torch.outer(m, m) + eps * eye
    prod = root @ k @ root
    prod = 0.5 * (prod + prod.t())
    root_trace = torch.sqrt(torch.linalg.eigvalsh(prod)).sum()
    gap = ((m - mean_t) ** 2).sum()
    return (gap + torch.trace(k) + torch.trace(k_s) - 2.0 * root_trace) / c


def tv_loss(x):
    c, hgt, wid = x.shape
    dy = x[:, 1:, :] - x[:, :-1, :]
    dx = x[:, :, 1:] - x[:, :, :-1]
    return ((dy * dy).sum() + (dx * dx).sum()) / (c * hgt * wid)


def objective(x, content, styles, params, cfg, pool, per_term=False):
    """Value of every term and dJ/dx (by autograd), in x's dtype.

    Returns (dict of python floats, grad tensor, activations of x, gram targets).
    With per_term, the dict also holds 'grad_content', 'grad_style' and
    'grad_tv': the gradients of the unweighted J_c, J_s, J_tv (numpy arrays).
    """
    c_layers = list(cfg["content_layers"])
    s_layers = list(cfg["style_layers"])
    layers = sorted(set(c_layers) | set(s_layers), key=LAYERS.index)

    with torch.no_grad():
        c_acts = vgg_features(content, params, c_layers, pool)
        targets, mean_targets = {}, {}
        for b, s in zip(cfg["style_blend"], styles):
            s_acts = vgg_features(s, params, s_layers, pool)
            for name in s_layers:
                g, m = moments(s_acts[name])
                g, m = float(b) * g, float(b) * m
                targets[name] = g if name not in targets else targets[name] + g
                mean_targets[name] = m if name not in mean_targets else mean_targets[name] + m

    x = x.detach().clone().requires_grad_(True)
    acts = vgg_features(x, params, layers, pool)

    j_c = x.new_zeros(())
    for name, w in zip(c_layers, cfg["content_weights"]):
        a = acts[name]
        c, hgt, wid = a.shape
        d = a - c_acts[name]
        j_c = j_c + float(w) * (d * d).sum() / (4.0 * c * hgt * wid)

    j_s = x.new_zeros(())
    for name, lam in zip(s_layers, cfg["style_weights"]):
        a = acts[name]
        c = a.shape[0]
        if cfg.get("style_loss", "gram") == "w2":
            j_s = j_s + float(lam) * w2_style_term(a, targets[name], mean_targets[name])
            continue
        d = gram(a) - targets[name]
        j_s = j_s + float(lam) * (d * d).sum() / (4.0 * c * c)

    j_tv = tv_loss(x)
    total = float(cfg["alpha"]) * j_c + float(cfg["beta"]) * j_s + float(cfg["gamma"]) * j_tv
    vals = {"content": j_c.item(), "style": j_s.item(), "tv": j_tv.item(), "total": total.item()}
    if per_term:
        for k, term in (("content", j_c), ("style", j_s), ("tv", j_tv)):
            (g,) = torch.autograd.grad(term, x, retain_graph=True)
            vals["grad_" + k] = g.detach().numpy()
    (grad,) = torch.autograd.grad(total, x)
    acts = {k: v.detach() for k, v in acts.items()}
    return vals, grad.detach(), acts, targets


def total_only(x, content, styles, params, cfg, pool):
    """J(x) in x's dtype (for finite-difference checks)."""
    vals, _, _, _ = objective(x, content, styles, params, cfg, pool)
    return vals["total"]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def f32(a):
    return np.ascontiguousarray(np.asarray(a), dtype="<f4")


def f64(a):
    return np.ascontiguousarray(np.asarray(a), dtype="<f8")


def scalar(v):
    return np.array(float(v), dtype="<f8")


def strings(names):
    return np.array(list(names), dtype="<U16")


def to_torch(a, dtype):
    return torch.from_numpy(np.array(a, dtype=np.float64)).to(dtype)


def params_to_torch(weights, dtype):
    return {k: to_torch(v, dtype) for k, v in weights.items()}


def save_npz(path, arrays):
    for k, v in arrays.items():
        assert isinstance(v, np.ndarray), k
        assert v.dtype.kind == "U" or v.dtype.byteorder in ("<", "=", "|"), (k, v.dtype)
        assert v.flags["C_CONTIGUOUS"], k
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path, **arrays)
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.2f} MB, {len(arrays)} arrays)")


def rel(a, b):
    """Relative difference of a to reference b (norm-wise for arrays)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    den = np.linalg.norm(b.ravel())
    return float(np.linalg.norm((a - b).ravel()) / den) if den > 0 else float(np.abs(a - b).max())


def smooth_image(rng, c, hgt, wid, lo=-110.0, hi=130.0, cell=6, noise=6.0):
    """Smooth-ish random image: a coarse uniform grid upsampled bilinearly plus
    a little fine Gaussian noise, clipped to [lo, hi]."""
    gh = hgt // cell + 2
    gw = wid // cell + 2
    coarse = rng.uniform(lo, hi, size=(c, gh, gw))

    def interp_matrix(n_out, n_in):
        pos = np.linspace(0.0, n_in - 1.0, n_out)
        m = np.zeros((n_out, n_in))
        i0 = np.minimum(np.floor(pos).astype(int), n_in - 2)
        t = pos - i0
        m[np.arange(n_out), i0] = 1.0 - t
        m[np.arange(n_out), i0 + 1] = t
        return m

    ry = interp_matrix(hgt, gh)
    rx = interp_matrix(wid, gw)
    img = np.einsum("yi,cij,xj->cyx", ry, coarse, rx)
    img += rng.normal(0.0, noise, size=img.shape)
    return np.clip(img, lo, hi)


def positive_fractions(x, params, pool):
    acts = vgg_features(x, params, LAYERS, pool)
    return {k: float((v > 0).double().mean()) for k, v in acts.items()}


def fd_check(x, content, styles, params, cfg, pool, grad, seed, h=1e-3):
    """Central difference of J along a random unit direction vs <grad, d>."""
    rng = np.random.RandomState(seed)
    d = rng.normal(size=tuple(x.shape))
    d /= np.linalg.norm(d)
    dt = torch.from_numpy(d).to(x.dtype)
    jp = total_only(x + h * dt, content, styles, params, cfg, pool)
    jm = total_only(x - h * dt, content, styles, params, cfg, pool)
    fd = (jp - jm) / (2 * h)
    an = float((grad * dt).sum())
    return fd, an, abs(fd - an) / max(abs(an), 1e-300)


# ---------------------------------------------------------------------------
# Tiny VGG + golden_tiny
# ---------------------------------------------------------------------------

TINY_WIDTHS = [8, 12, 16, 16, 16]
TINY_WEIGHT_SEED = 20240501
TINY_INPUT_SEED = 7
TINY_OP_SEED = 11


def make_tiny_vgg():
    rng = np.random.RandomState(TINY_WEIGHT_SEED)
    weights = {}
    cin = 3
    for name in LAYERS:
        cout = TINY_WIDTHS[int(name[4]) - 1]
        std = np.sqrt(2.0 / (9.0 * cin))
        weights[name + ".weight"] = f32(rng.normal(0.0, std, size=(cout, cin, 3, 3)))
        weights[name + ".bias"] = f32(rng.normal(0.0, 0.05, size=(cout,)))
        cin = cout
    return weights


def op_references():
    rng = np.random.RandomState(TINY_OP_SEED)
    out = {}
    conv_in = rng.normal(size=(5, 9, 11))
    conv_w = rng.normal(0.0, np.sqrt(2.0 / 45.0), size=(7, 5, 3, 3))
    conv_b = rng.normal(0.0, 0.1, size=(7,))
    conv_gout = rng.normal(size=(7, 9, 11))
    xin = torch.from_numpy(conv_in).requires_grad_(True)
    y = Fn.conv2d(xin.unsqueeze(0), torch.from_numpy(conv_w), torch.from_numpy(conv_b), stride=1, padding=1)[0]
    (gin,) = torch.autograd.grad((y * torch.from_numpy(conv_gout)).sum(), xin)
    out["op.conv_in"] = f64(conv_in)
    out["op.conv_w"] = f64(conv_w)
    out["op.conv_b"] = f64(conv_b)
    out["op.conv_out"] = f64(y.detach().numpy())
    out["op.conv_gout"] = f64(conv_gout)
    out["op.conv_gin"] = f64(gin.numpy())

    pool_in = rng.normal(size=(4, 9, 11))
    pool_gout = rng.normal(size=(4, 4, 5))
    out["op.avgpool_in"] = f64(pool_in)
    out["op.pool_gout"] = f64(pool_gout)
    for kind, fn in (("avg", Fn.avg_pool2d), ("max", Fn.max_pool2d)):
        pin = torch.from_numpy(pool_in).requires_grad_(True)
        y = fn(pin.unsqueeze(0), kernel_size=2, stride=2, ceil_mode=False)[0]
        assert tuple(y.shape) == (4, 4, 5)
        (gin,) = torch.autograd.grad((y * torch.from_numpy(pool_gout)).sum(), pin)
        out[f"op.{kind}pool_out"] = f64(y.detach().numpy())
        out[f"op.{kind}pool_gin"] = f64(gin.numpy())
    return out


def run_tiny(out_dir):
    print("=== tiny VGG ===")
    weights = make_tiny_vgg()
    save_npz(os.path.join(out_dir, "tiny_vgg.npz"), weights)
    n_params = sum(v.size for v in weights.values())
    print(f"tiny VGG: {n_params} parameters")

    rng = np.random.RandomState(TINY_INPUT_SEED)
    images = {
        "content": f32(smooth_image(rng, 3, 36, 44)),
        "style0": f32(smooth_image(rng, 3, 40, 40)),
        "style1": f32(smooth_image(rng, 3, 32, 48)),
        "x": f32(smooth_image(rng, 3, 36, 44)),
    }
    cfg = {
        "content_layers": ["conv4_2"],
        "content_weights": [1.0],
        "style_layers": list(SEED_STYLE_LAYERS),
        "style_weights": [0.2] * 5,
        "style_blend": [0.3, 0.7],
        "alpha": 10.0,
        "beta": 40.0,
        "gamma": 0.5,
    }
    data = dict(images)
    data.update(config_arrays(cfg))
    data["config.pools"] = strings(["avg", "max", "l2"])
    data["meta.torch_version"] = strings([torch.__version__])

    for name, img in images.items():
        print(f"  {name:8s} shape {img.shape} range [{img.min():.1f}, {img.max():.1f}]")

    p64 = params_to_torch(weights, torch.float64)
    p32 = params_to_torch(weights, torch.float32)
    t64 = {k: to_torch(v, torch.float64) for k, v in images.items()}
    t32 = {k: to_torch(v, torch.float32) for k, v in images.items()}

    # The mean + covariance (W2) style loss on the same inputs; without conv5_1, where this
    # image has 4 positions for 16 channels (a rank-3 covariance).
    w2_cfg = dict(cfg, style_loss="w2", style_layers=SEED_STYLE_LAYERS[:4], style_weights=[0.2] * 4)
    runs = [(pool, pool, cfg) for pool in ("avg", "max", "l2")]
    runs += [(f"w2.{pool}", pool, w2_cfg) for pool in ("avg", "max")]
    for key, pool, cfg in runs:
        print(f"--- tiny, {key}: fraction of positive activations per tap ---")
        for name in ("content", "style0", "style1", "x"):
            fr = positive_fractions(t64[name], p64, pool)
            print(f"  {name:8s} " + " ".join(f"{k}:{v:.2f}" for k, v in fr.items()))
        worst = min(positive_fractions(t64["x"], p64, pool)[k] for k in SEED_STYLE_LAYERS + ["conv4_2"])
        assert worst > 0.15, f"tiny VGG too dead ({worst:.2f} positive at some tap)"

        v64, g64, acts, targets = objective(
            t64["x"], t64["content"], [t64["style0"], t64["style1"]], p64, cfg, pool, per_term=True
        )
        v32, g32, _, _ = objective(
            t32["x"], t32["content"], [t32["style0"], t32["style1"]], p32, cfg, pool
        )
        for k in ("content", "style", "tv", "total"):
            data[f"{key}.{k}"] = scalar(v64[k])
            data[f"{key}.{k}_f32"] = scalar(v32[k])
        data[f"{key}.grad"] = f64(g64.numpy())
        for k in ("content", "style", "tv"):
            data[f"{key}.grad_{k}"] = f64(v64["grad_" + k])
        recombined = (cfg["alpha"] * v64["grad_content"] + cfg["beta"] * v64["grad_style"]
                      + cfg["gamma"] * v64["grad_tv"])
        print(f"  alpha*g_c + beta*g_s + gamma*g_tv vs grad: rel diff {rel(recombined, g64.numpy()):.2e}; "
              f"|g| shares: content {np.linalg.norm(cfg['alpha'] * v64['grad_content']):.3e} "
              f"style {np.linalg.norm(cfg['beta'] * v64['grad_style']):.3e} "
              f"tv {np.linalg.norm(cfg['gamma'] * v64['grad_tv']):.3e}")
        data[f"{key}.grad_f32"] = f32(g32.numpy())
        for name, a in acts.items():
            data[f"{key}.act.{name}"] = f64(a.numpy())
        for name, t in targets.items():
            data[f"{key}.gram_target.{name}"] = f64(t.numpy())

        report_pair(f"tiny/{key}", v64, g64.numpy(), v32, g32.numpy())
        fd, an, err = fd_check(
            t64["x"], t64["content"], [t64["style0"], t64["style1"]], p64, cfg, pool, g64, seed=3
        )
        print(f"  f64 finite-difference check along a random direction: fd {fd:.10e} "
              f"autograd {an:.10e} rel err {err:.2e}")

    data.update(op_references())
    save_npz(os.path.join(out_dir, "golden_tiny.npz"), data)


def config_arrays(cfg):
    out = {}
    for k, v in cfg.items():
        if isinstance(v, str):
            out[f"config.{k}"] = np.array(v, dtype="<U16")
        elif isinstance(v, (list, tuple)) and v and isinstance(v[0], str):
            out[f"config.{k}"] = strings(v)
        elif isinstance(v, (list, tuple)):
            out[f"config.{k}"] = f64(v)
        else:
            out[f"config.{k}"] = scalar(v)
    return out


def report_pair(label, v64, g64, v32, g32):
    print(f"  {label}: values (f64 | f32 | rel diff)")
    for k in ("content", "style", "tv", "total"):
        print(f"    {k:8s} {v64[k]: .12e} | {v32[k]: .8e} | {rel(v32[k], v64[k]):.2e}")
    print(f"    grad     |g|_2 {np.linalg.norm(g64):.6e}  max|g| {np.abs(g64).max():.6e}  "
          f"f32 rel diff (L2) {rel(g32, g64):.2e}  "
          f"max abs diff / max|g| {np.abs(g32 - g64).max() / np.abs(g64).max():.2e}")
    worst = max([rel(v32[k], v64[k]) for k in ("content", "style", "tv", "total")] + [rel(g32, g64)])
    verdict = "OK" if worst < 1e-5 else "WARNING: above 1e-5"
    print(f"    torch f32 vs f64: worst relative difference {worst:.2e} ({verdict})")


# ---------------------------------------------------------------------------
# Real weights + golden_real
# ---------------------------------------------------------------------------

REAL_H, REAL_W = 128, 160
REAL_NOISE_SEED = 5


def load_image_net(path, hgt, wid):
    """Image file -> 3 x hgt x wid float32 RGB net space.  Centre-crops to the
    target aspect ratio, then resizes with PIL bicubic."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    w0, h0 = img.size
    target = wid / hgt
    if w0 / h0 > target:
        cw = int(round(h0 * target))
        left = (w0 - cw) // 2
        img = img.crop((left, 0, left + cw, h0))
    else:
        ch = int(round(w0 / target))
        top = (h0 - ch) // 2
        img = img.crop((0, top, w0, top + ch))
    img = img.resize((wid, hgt), Image.BICUBIC)
    arr = np.asarray(img, dtype=np.float64).transpose(2, 0, 1)
    arr = arr - np.array(NET_MEAN_RGB).reshape(3, 1, 1)
    return f32(arr)


def run_real(out_dir, weights_path, content_image, style_image):
    print("=== real VGG-19 ===")
    out_path = os.path.join(out_dir, "golden_real.npz")
    if not os.path.exists(weights_path):
        sys.exit(f"error: {weights_path} not found (run scripts/fetch-weights.sh, or pass --skip-real)")
    if content_image or style_image:
        if not (content_image and style_image):
            sys.exit("error: give both --content-image and --style-image")
        content = load_image_net(content_image, REAL_H, REAL_W)
        style = load_image_net(style_image, REAL_H, REAL_W)
        rng = np.random.RandomState(REAL_NOISE_SEED)
        noise = rng.uniform(-20.0, 20.0, size=content.shape)
        x = f32(0.6 * noise + 0.4 * content.astype(np.float64))
        sources = (os.path.basename(content_image), os.path.basename(style_image))
    elif os.path.exists(out_path):
        print(f"reusing the inputs stored in {out_path}")
        with np.load(out_path) as old:
            content, style, x = f32(old["content"]), f32(old["style"]), f32(old["x"])
            sources = (str(old["config.content_source"]), str(old["config.style_source"]))
    else:
        sys.exit("error: no stored inputs; pass --content-image and --style-image")

    with np.load(weights_path) as wz:
        weights = {k: np.asarray(wz[k]) for k in wz.files}
    missing = [n for n in LAYERS for s in (".weight", ".bias") if n + s not in weights]
    assert not missing, f"weights file lacks {missing}"
    print(f"weights: {weights_path}, {sum(v.size for v in weights.values())} parameters")

    cfg = {
        "content_layers": ["conv4_2"],
        "content_weights": [1.0],
        "style_layers": list(SEED_STYLE_LAYERS),
        "style_weights": [0.2] * 5,
        "style_blend": [1.0],
        "alpha": 10.0,
        "beta": 40.0,
        "gamma": 1e-2,
        "pool": "avg",
    }
    data = {"content": content, "style": style, "x": x}
    data.update(config_arrays(cfg))
    data["config.content_source"] = np.array(sources[0], dtype="<U64")
    data["config.style_source"] = np.array(sources[1], dtype="<U64")
    data["meta.torch_version"] = strings([torch.__version__])
    for name in ("content", "style", "x"):
        a = data[name]
        print(f"  {name:8s} shape {a.shape} range [{a.min():.1f}, {a.max():.1f}] mean {a.mean():.2f}")

    results = {}
    for dtype, tag in ((torch.float64, "f64"), (torch.float32, "f32")):
        params = params_to_torch(weights, dtype)
        xs = to_torch(x, dtype)
        vals, grad, _, _ = objective(
            xs, to_torch(content, dtype), [to_torch(style, dtype)], params, cfg, cfg["pool"]
        )
        g = grad.numpy()
        for k, v in vals.items():
            data[f"{tag}.{k}"] = scalar(v)
        data[f"{tag}.grad"] = f64(g) if tag == "f64" else f32(g)
        results[tag] = (vals, g)
        if tag == "f64":
            fr = positive_fractions(xs, params, cfg["pool"])
            print("  fraction of positive activations (x): "
                  + " ".join(f"{k}:{fr[k]:.2f}" for k in SEED_STYLE_LAYERS + ["conv4_2"]))
    report_pair("real/avg", results["f64"][0], results["f64"][1], results["f32"][0], results["f32"][1])
    save_npz(out_path, data)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", default=os.path.join(root, "tests", "data"))
    ap.add_argument("--weights", default=os.path.join(root, "weights", "vgg19.npz"))
    ap.add_argument("--skip-real", action="store_true", help="only write the tiny files")
    ap.add_argument("--content-image", help="rebuild golden_real inputs: content photo")
    ap.add_argument("--style-image", help="rebuild golden_real inputs: style photo")
    args = ap.parse_args()

    torch.set_grad_enabled(True)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, numpy {np.__version__}, threads {torch.get_num_threads()}")
    run_tiny(args.out_dir)
    if not args.skip_real:
        run_real(args.out_dir, args.weights, args.content_image, args.style_image)


if __name__ == "__main__":
    main()
