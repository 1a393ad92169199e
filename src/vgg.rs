//! VGG-19's 16 convolution layers: the layer table, weight loading with validation, the forward
//! pass that keeps the post-ReLU outputs the losses read (the taps) and only the ReLU masks of
//! the others (all the backward pass needs: no weight gradients), and the backward pass from
//! tap gradients to the input pixels. The network is frozen: no weight
//! gradients are ever computed.

use crate::error::{Error, Result};
use crate::gemm::Real;
use crate::loss::LossConfig;
use crate::npz::Npz;
use crate::ops::{
    conv3x3_input_grad, conv3x3_input_grad_kept, conv3x3_then, conv3x3_then_kept,
    kept_kernel_bytes, pool2x2, pool2x2_backward, relu_backward, relu_backward_masked, relu_mask,
    ConvScratch, Pool, WinogradKernel,
};
use crate::profile::Timings;
use std::path::Path;

/// Layer names in network order.
pub const LAYER_NAMES: [&str; 16] = [
    "conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv3_4",
    "conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1", "conv5_2", "conv5_3", "conv5_4",
];

/// Output channels of each block in the real VGG-19.
pub const VGG19_WIDTHS: [usize; 5] = [64, 128, 256, 512, 512];

/// Block (0-based) of each layer.
pub(crate) fn block_of(layer: usize) -> usize {
    [0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4][layer]
}

/// Index of a layer given as `convB_I` or its synonym `reluB_I` (the taps are post-ReLU).
pub fn layer_index(name: &str) -> Option<usize> {
    let conv = name.strip_prefix("relu").map(|rest| format!("conv{rest}"));
    let name = conv.as_deref().unwrap_or(name);
    LAYER_NAMES.iter().position(|&n| n == name)
}

/// Smallest image side that survives the poolings before `layer`.
pub fn min_side(layer: usize) -> usize {
    1 << block_of(layer)
}

/// Feeds `key` and `data` into `hasher`, in blocks (per-value updates would be slow).
fn hash_values<T: Real>(hasher: &mut blake3::Hasher, key: &str, data: &[T]) {
    hasher.update(key.as_bytes());
    hasher.update(&(data.len() as u64).to_le_bytes());
    let mut block = Vec::with_capacity(8 * 4096);
    for chunk in data.chunks(4096) {
        block.clear();
        for v in chunk {
            block.extend_from_slice(&v.as_f64().to_le_bytes());
        }
        hasher.update(&block);
    }
}

struct ConvLayer<T> {
    cin: usize,
    cout: usize,
    weight: Vec<T>,
    bias: Vec<T>,
}

/// A VGG-19 convolution stack holding its first `depth()` layers.
pub struct Vgg<T: Real = f32> {
    layers: Vec<ConvLayer<T>>,
    fingerprint: [u8; 32],
}

/// The engine's network type: f32 weights.
pub type Vgg19 = Vgg<f32>;

/// One layer's post-ReLU output, `c x h x w`, row-major.
#[derive(Clone, Copy, Debug)]
pub struct LayerOutput<'a, T> {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub data: &'a [T],
}

/// Everything a forward pass leaves behind: one output per layer run (`Workspace::layer`).
pub type Activations<T> = Workspace<T>;

impl<T: Real> Vgg<T> {
    /// Loads all 16 layers of the real VGG-19 from the project's `.npz` format.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::load_layers(path, Some(&VGG19_WIDTHS), LAYER_NAMES.len())
    }

    /// Loads the real VGG-19, validating every layer but keeping only those `config` needs.
    /// The block widths are read from the file (so a reduced-width VGG-19, such as the tiny test
    /// network, loads too); every shape is still checked for consistency.
    pub fn load_for(path: impl AsRef<Path>, config: &LossConfig) -> Result<Self> {
        Self::load_layers(path, None, config.depth()?)
    }

    /// Validates all 16 layers of `path` against the block `widths` (read from the file's
    /// `convB_1.weight` shapes when `None`), but keeps only the first `depth` in memory (the
    /// ones the losses need).
    pub fn load_layers(
        path: impl AsRef<Path>,
        widths: Option<&[usize; 5]>,
        depth: usize,
    ) -> Result<Self> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(Error::WeightsMissing(path.into()));
        }
        if depth == 0 || depth > LAYER_NAMES.len() {
            return Err(Error::Config(format!(
                "network depth {depth} not in 1..=16"
            )));
        }
        let mut npz = Npz::open(path)?;
        let bad = |key: &str, detail: String| Error::Weights {
            path: path.into(),
            detail: format!("{key}: {detail}"),
        };
        let widths = match widths {
            Some(w) => *w,
            None => {
                let mut w = [0; 5];
                for (b, width) in w.iter_mut().enumerate() {
                    let key = format!("conv{}_1.weight", b + 1);
                    *width = *npz
                        .shape(&key)?
                        .first()
                        .ok_or_else(|| bad(&key, "is a scalar".into()))?;
                }
                w
            }
        };
        let mut layers = Vec::with_capacity(depth);
        let mut hasher = blake3::Hasher::new();
        let mut cin = 3;
        for (i, name) in LAYER_NAMES.iter().enumerate() {
            let cout = widths[block_of(i)];
            let wkey = format!("{name}.weight");
            let bkey = format!("{name}.bias");
            let weight = npz.array::<T>(&wkey)?;
            if weight.shape != [cout, cin, 3, 3] {
                return Err(bad(
                    &wkey,
                    format!("shape {:?}, expected [{cout}, {cin}, 3, 3]", weight.shape),
                ));
            }
            let bias = npz.array::<T>(&bkey)?;
            if bias.shape != [cout] {
                return Err(bad(
                    &bkey,
                    format!("shape {:?}, expected [{cout}]", bias.shape),
                ));
            }
            for (key, data) in [(&wkey, &weight.data), (&bkey, &bias.data)] {
                if let Some(v) = data.iter().find(|v| !v.is_finite()) {
                    return Err(bad(key, format!("non-finite value {v:?}")));
                }
                hash_values(&mut hasher, key, data);
            }
            if i < depth {
                layers.push(ConvLayer {
                    cin,
                    cout,
                    weight: weight.data,
                    bias: bias.data,
                });
            }
            cin = cout;
        }
        Ok(Vgg {
            layers,
            fingerprint: *hasher.finalize().as_bytes(),
        })
    }

    /// BLAKE3 of every layer's name, shape and values (as f64, so f32 and f64 loads of one
    /// file agree), over all 16 layers whatever `depth()` kept: it names the network in cache
    /// keys and checkpoints.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// Number of layers held (and the deepest that can be run).
    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    /// Checks that a `3 x h x w` input can be run through the first `depth` layers.
    pub fn check_input(&self, shape: &[usize], depth: usize) -> Result<()> {
        if depth == 0 || depth > self.depth() {
            return Err(Error::Config(format!(
                "needs layer {}, but only {} layers are loaded",
                LAYER_NAMES[depth.clamp(1, 16) - 1],
                self.depth()
            )));
        }
        let [c, h, w] = shape else {
            return Err(Error::Shape(format!(
                "expected a 3-d CHW array, got {shape:?}"
            )));
        };
        if *c != 3 {
            return Err(Error::Shape(format!("expected 3 channels, got {c}")));
        }
        let need = min_side(depth - 1);
        if *h < need || *w < need {
            return Err(Error::Shape(format!(
                "image {w}x{h} is too small for {}: each side needs at least {need} pixels",
                LAYER_NAMES[depth - 1]
            )));
        }
        Ok(())
    }

    /// Runs the first `depth` layers on `x` (`3 x h x w`), keeping every post-ReLU output.
    /// The caller checks the shape first (`check_input`).
    pub fn forward(&self, x: &[T], h: usize, w: usize, depth: usize, pool: Pool) -> Activations<T> {
        let mut ws = Workspace::new();
        self.forward_into(x, h, w, depth, pool, Keep::ALL, &mut ws, &mut None);
        ws
    }

    /// `forward` into the buffers of `ws` (reused when the shapes repeat, so a steady run
    /// allocates nothing), keeping the outputs of the layers in `keep` and only the ReLU
    /// masks, as bits, of the others (all the backward pass needs of them). Charges each
    /// layer's time to `timings` when given.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_into(
        &self,
        x: &[T],
        h: usize,
        w: usize,
        depth: usize,
        pool: Pool,
        keep: Keep,
        ws: &mut Workspace<T>,
        timings: &mut Option<Timings>,
    ) {
        let shapes = self.layers[..depth].iter().map(|l| (l.cin, l.cout));
        let layout = Layout::new(shapes, h, w, keep, pool, &mut ws.slots);
        ws.lay_out(&layout);
        ws.kept.prepare(self, &ws.slots, h, w);
        let Workspace {
            arena,
            masks,
            buffers,
            slots,
            conv,
            kept,
        } = ws;
        let mut at = Place::Pixels;
        for (i, layer) in self.layers[..depth].iter().enumerate() {
            let out = slots[i];
            if i > 0 && block_of(i) != block_of(i - 1) {
                let prev = slots[i - 1];
                let to = at.other_buffer();
                let (input, pooled) = places(x, arena, buffers, slots, at, to);
                timed(timings, "pool fwd", || {
                    pool2x2(
                        pool,
                        &input[..prev.len()],
                        prev.c,
                        prev.h,
                        prev.w,
                        &mut pooled[..prev.c * out.h * out.w],
                    )
                });
                at = to;
            }
            let to = if out.kept {
                Place::Kept(i)
            } else {
                at.other_buffer()
            };
            let (input, data) = places(x, arena, buffers, slots, at, to);
            let (cin, cout) = (layer.cin, layer.cout);
            let input = &input[..cin * out.h * out.w];
            let data = &mut data[..out.len()];
            timed(timings, format_args!("{} fwd", LAYER_NAMES[i]), || {
                let (bias, weight) = (Some(layer.bias.as_slice()), &layer.weight);
                let (h, w) = (out.h, out.w);
                match kept.slot(i, 0) {
                    Some(k) => {
                        conv3x3_then_kept(input, cin, h, w, weight, cout, bias, true, data, conv, k)
                    }
                    None => conv3x3_then(input, cin, h, w, weight, cout, bias, true, data, conv),
                }
                if !out.kept {
                    relu_mask(data, &mut masks[out.offset..][..out.mask_words()]);
                }
            });
            at = to;
        }
    }

    /// Gradient with respect to the input pixels, written to `grad_in` (`3 x h x w`), after
    /// `forward_into` ran on `ws`. Walking down from the deepest layer, it calls
    /// `tap_grad(i, output, grad, timings)` for every kept layer `i`, which adds the
    /// objective's gradient with respect to layer `i`'s output to `grad`.
    ///
    /// The gradient flows through two buffers of the widest layer's size: each layer reads
    /// one and writes the other (pooling writes back into the first).
    pub fn backward_into<F>(
        &self,
        ws: &mut Workspace<T>,
        pool: Pool,
        grad_in: &mut [T],
        timings: &mut Option<Timings>,
        mut tap_grad: F,
    ) where
        F: FnMut(usize, LayerOutput<'_, T>, &mut [T], &mut Option<Timings>),
    {
        let Workspace {
            arena,
            masks,
            buffers,
            slots,
            conv,
            kept: kernels,
        } = ws;
        let depth = slots.len();
        // Which buffer holds d J / d (layer i's output).
        let mut at = 0;
        buffers[at][..slots[depth - 1].len()].fill(T::zero());
        for i in (0..depth).rev() {
            let out = slots[i];
            let [first, second] = &mut *buffers;
            let (g, free) = if at == 0 {
                (first, second)
            } else {
                (second, first)
            };
            let g = &mut g[..out.len()];
            let kept = out.kept.then(|| &arena[out.offset..][..out.len()]);
            if let Some(data) = kept {
                let view = LayerOutput {
                    c: out.c,
                    h: out.h,
                    w: out.w,
                    data,
                };
                tap_grad(i, view, g, timings);
            }
            let layer = &self.layers[i];
            let (cin, h, w) = (layer.cin, out.h, out.w);
            timed(timings, format_args!("{} bwd", LAYER_NAMES[i]), || {
                match kept {
                    Some(data) => relu_backward(data, g),
                    None => relu_backward_masked(&masks[out.offset..][..out.mask_words()], g),
                }
                let gin: &mut [T] = if i == 0 {
                    assert_eq!(grad_in.len(), cin * h * w, "pixel gradient");
                    &mut *grad_in
                } else {
                    &mut free[..cin * h * w]
                };
                let weight = &layer.weight;
                match kernels.slot(i, 1) {
                    Some(k) => conv3x3_input_grad_kept(g, out.c, h, w, weight, cin, gin, conv, k),
                    None => conv3x3_input_grad(g, out.c, h, w, weight, cin, gin, conv),
                }
            });
            if i == 0 {
                break;
            }
            if block_of(i) == block_of(i - 1) {
                at = 1 - at;
                continue;
            }
            // Below a pooling: back through it into the buffer this layer read.
            let prev = slots[i - 1];
            let input: &[T] = match pool {
                Pool::Max | Pool::L2 => &arena[prev.offset..][..prev.len()],
                Pool::Avg => &[],
            };
            let [first, second] = &mut *buffers;
            let (g, from_above) = if at == 0 {
                (first, second)
            } else {
                (second, first)
            };
            timed(timings, "pool bwd", || {
                pool2x2_backward(
                    pool,
                    input,
                    prev.c,
                    prev.h,
                    prev.w,
                    &from_above[..prev.c * h * w],
                    &mut g[..prev.len()],
                )
            });
        }
    }
}

/// Which layers' outputs a forward pass keeps (bit `i`: layer `i`); the others leave only
/// their ReLU masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keep(u16);

impl Keep {
    /// Every layer's output (tests, and callers that read arbitrary layers).
    pub const ALL: Keep = Keep(u16::MAX);

    /// The outputs of `layers`.
    pub fn layers(layers: impl IntoIterator<Item = usize>) -> Keep {
        Keep(layers.into_iter().fold(0, |bits, i| bits | 1 << i))
    }

    /// Whether layer `i`'s output is kept.
    pub fn contains(self, i: usize) -> bool {
        self.0 >> i & 1 == 1
    }

    /// `self` and what the backward pass of `pool` reads: max and L2 pooling recompute each
    /// window's maximum or norm from the output of the layer before it.
    fn with_pool(self, pool: Pool) -> Keep {
        match pool {
            Pool::Avg => self,
            Pool::Max | Pool::L2 => {
                let n = LAYER_NAMES.len();
                let before_pools = (1..n).filter(|&i| block_of(i) != block_of(i - 1));
                Keep(self.0 | Keep::layers(before_pools.map(|i| i - 1)).0)
            }
        }
    }
}

/// Shape and place of one layer's output: its offset in the arena when kept, else the offset
/// (in words) of its ReLU mask.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Slot {
    c: usize,
    h: usize,
    w: usize,
    kept: bool,
    offset: usize,
}

impl Slot {
    fn len(&self) -> usize {
        self.c * self.h * self.w
    }

    fn mask_words(&self) -> usize {
        self.len().div_ceil(64)
    }
}

/// How large a forward pass's buffers are (and, in the slots it fills, where each layer's
/// output goes): the same arithmetic serves the workspace and the memory guard.
pub(crate) struct Layout {
    /// Values of the kept outputs.
    pub arena: usize,
    /// 64-bit words of the other layers' ReLU masks.
    pub mask_words: usize,
    /// Values of each of the two gradient (and forward scratch) buffers.
    pub buffer: usize,
}

impl Layout {
    /// The layout of layers of `(cin, cout)` `shapes` on an `h x w` input, keeping `keep` and
    /// what the backward pass of `pool` reads; one slot per layer goes to `slots`.
    pub(crate) fn new(
        shapes: impl Iterator<Item = (usize, usize)>,
        h: usize,
        w: usize,
        keep: Keep,
        pool: Pool,
        slots: &mut Vec<Slot>,
    ) -> Self {
        let keep = keep.with_pool(pool);
        slots.clear();
        let mut layout = Layout {
            arena: 0,
            mask_words: 0,
            buffer: 0,
        };
        let (mut h, mut w) = (h, w);
        for (i, (cin, cout)) in shapes.enumerate() {
            if i > 0 && block_of(i) != block_of(i - 1) {
                (h, w) = (h / 2, w / 2);
            }
            let kept = keep.contains(i);
            let mut slot = Slot {
                c: cout,
                h,
                w,
                kept,
                offset: 0,
            };
            if kept {
                slot.offset = layout.arena;
                layout.arena += slot.len();
            } else {
                slot.offset = layout.mask_words;
                layout.mask_words += slot.mask_words();
            }
            // A layer's output, or its input gradient (the pixels' is the caller's).
            let input = if i == 0 { 0 } else { cin * h * w };
            layout.buffer = layout.buffer.max(slot.len()).max(input);
            slots.push(slot);
        }
        layout
    }
}

/// Where a layer's input or output lives during the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Pixels,
    Kept(usize),
    Buffer(usize),
}

impl Place {
    /// A buffer that is not this place.
    fn other_buffer(self) -> Place {
        match self {
            Place::Buffer(k) => Place::Buffer(1 - k),
            _ => Place::Buffer(0),
        }
    }
}

/// The input at `from` (whole place) and the output at `to` (whole place), which differ.
fn places<'a, T: Real>(
    x: &'a [T],
    arena: &'a mut [T],
    buffers: &'a mut [Vec<T>; 2],
    slots: &[Slot],
    from: Place,
    to: Place,
) -> (&'a [T], &'a mut [T]) {
    let kept = |arena: &'a [T], i: usize| &arena[slots[i].offset..][..slots[i].len()];
    let [first, second] = buffers;
    match (from, to) {
        (Place::Kept(j), Place::Kept(i)) => {
            // Outputs lie in network order, so the earlier layer's is below the split.
            let (below, above) = arena.split_at_mut(slots[i].offset);
            (kept(below, j), &mut above[..slots[i].len()])
        }
        (Place::Buffer(0), Place::Buffer(1)) => (first, second),
        (Place::Buffer(1), Place::Buffer(0)) => (second, first),
        (from, Place::Kept(i)) => {
            let input: &[T] = match from {
                Place::Pixels => x,
                Place::Buffer(0) => first,
                _ => second,
            };
            (input, &mut arena[slots[i].offset..][..slots[i].len()])
        }
        (from, Place::Buffer(k)) => {
            let input: &[T] = match from {
                Place::Pixels => x,
                Place::Kept(j) => kept(arena, j),
                _ => unreachable!("a buffer is not copied into itself"),
            };
            (input, if k == 0 { first } else { second })
        }
        (_, Place::Pixels) => unreachable!("the pixels are never written"),
    }
}

/// Buffers of one forward and backward pass, kept from pass to pass: the kept outputs one
/// after another in one arena, the other layers' ReLU masks as bits, two buffers through
/// which the forward pass's other outputs and the backward pass's gradients flow, and the
/// convolution scratch.
pub struct Workspace<T: Real> {
    arena: Vec<T>,
    masks: Vec<u64>,
    buffers: [Vec<T>; 2],
    slots: Vec<Slot>,
    conv: ConvScratch<T>,
    kept: KeptKernels<T>,
}

/// The Winograd kernels a workspace keeps from pass to pass within a byte budget
/// (`Workspace::keep_kernels`), deepest layers first: their banks cost the most to transform
/// per pixel of work. Bitwise the same results as transforming them on every call.
struct KeptKernels<T> {
    budget: usize,
    /// The network they came from (`Vgg::fingerprint`) and the `(h, w, depth)` of the plan.
    planned: Option<([u8; 32], usize, usize, usize)>,
    /// Per layer, forward and input gradient: kept or not, and the kernel once built.
    plan: Vec<[bool; 2]>,
    kernels: Vec<[Option<WinogradKernel<T>>; 2]>,
}

impl<T: Real> KeptKernels<T> {
    fn new() -> Self {
        KeptKernels {
            budget: 0,
            planned: None,
            plan: Vec::new(),
            kernels: Vec::new(),
        }
    }

    /// Chooses what to keep for a pass of `vgg` over `slots`, dropping what no longer fits.
    fn prepare(&mut self, vgg: &Vgg<T>, slots: &[Slot], h: usize, w: usize) {
        let key = Some((vgg.fingerprint, h, w, slots.len()));
        if self.planned == key {
            return;
        }
        if self.planned.map(|p| p.0) != key.map(|k| k.0) {
            self.kernels.clear();
        }
        self.planned = key;
        self.plan = vec![[false; 2]; slots.len()];
        self.kernels.resize_with(slots.len(), Default::default);
        let mut left = self.budget;
        for (i, slot) in slots.iter().enumerate().rev() {
            let layer = &vgg.layers[i];
            for (dir, keep) in self.plan[i].iter_mut().enumerate() {
                let bytes = kept_kernel_bytes::<T>(layer.cin, layer.cout, slot.h, slot.w, dir == 1);
                if bytes > 0 && bytes <= left {
                    left -= bytes;
                    *keep = true;
                } else {
                    self.kernels[i][dir] = None;
                }
            }
        }
    }

    /// The kept kernel of layer `i` (`dir` 0 forward, 1 input gradient), when it is kept.
    fn slot(&mut self, i: usize, dir: usize) -> Option<&mut Option<WinogradKernel<T>>> {
        self.plan[i][dir].then(|| &mut self.kernels[i][dir])
    }
}

impl<T: Real> Workspace<T> {
    /// Empty buffers; the first pass sizes them.
    pub fn new() -> Self {
        Workspace {
            arena: Vec::new(),
            masks: Vec::new(),
            buffers: [Vec::new(), Vec::new()],
            slots: Vec::new(),
            conv: ConvScratch::default(),
            kept: KeptKernels::new(),
        }
    }

    /// Keeps the network's Winograd kernels between passes, up to `bytes` of them (0, the
    /// default: transform each on every call, into one reused buffer). Each kept kernel
    /// saves its transform on every pass: about 1 ms for a 512-channel F(2x2) bank (16.8 MB),
    /// 2.3 ms for an F(4x4) one (37.7 MB), on two cores of an AVX-512 server.
    pub fn keep_kernels(&mut self, bytes: usize) {
        if bytes != self.kept.budget {
            self.kept.budget = bytes;
            self.kept.planned = None;
        }
    }

    /// Sizes the buffers for `layout` (allocating only to grow).
    fn lay_out(&mut self, layout: &Layout) {
        resize(&mut self.arena, layout.arena);
        self.masks.resize(layout.mask_words, 0);
        for b in &mut self.buffers {
            resize(b, layout.buffer);
        }
    }

    /// Layers held (run by the last forward pass).
    pub fn depth(&self) -> usize {
        self.slots.len()
    }

    /// Output of layer `i` from the last `forward_into`, which must have kept it.
    pub fn layer(&self, i: usize) -> LayerOutput<'_, T> {
        let s = self.slots[i];
        assert!(s.kept, "{} was not kept", LAYER_NAMES[i]);
        LayerOutput {
            c: s.c,
            h: s.h,
            w: s.w,
            data: &self.arena[s.offset..][..s.len()],
        }
    }
}

impl<T: Real> Default for Workspace<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Sets `v`'s length to `len`, allocating only when it must grow past its capacity.
fn resize<T: Real>(v: &mut Vec<T>, len: usize) {
    v.resize(len, T::zero());
}

/// Runs `f`, timing it when profiling is on.
pub(crate) fn timed<R>(
    timings: &mut Option<Timings>,
    label: impl std::fmt::Display,
    f: impl FnOnce() -> R,
) -> R {
    match timings {
        Some(t) => t.time(label, f),
        None => f(),
    }
}
