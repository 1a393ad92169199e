//! VGG-19's 16 convolution layers: the layer table, weight loading with validation, the forward
//! pass that keeps every post-ReLU output (the taps, and what the backward pass needs), and the
//! backward pass from tap gradients to the input pixels. The network is frozen: no weight
//! gradients are ever computed.

use crate::error::{Error, Result};
use crate::gemm::Real;
use crate::loss::LossConfig;
use crate::npz::Npz;
use crate::ops::{
    conv3x3, conv3x3_input_grad, pool2x2, pool2x2_backward, relu, relu_backward, ConvScratch, Pool,
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
        self.forward_into(x, h, w, depth, pool, &mut ws, &mut None);
        ws
    }

    /// `forward` into the buffers of `ws` (reused when the shapes repeat, so a steady run
    /// allocates nothing), charging each layer's time to `timings` when given.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_into(
        &self,
        x: &[T],
        h: usize,
        w: usize,
        depth: usize,
        pool: Pool,
        ws: &mut Workspace<T>,
        timings: &mut Option<Timings>,
    ) {
        ws.lay_out(&self.layers[..depth], h, w);
        let Workspace {
            arena,
            slots,
            pooled,
            conv,
            ..
        } = ws;
        for (i, layer) in self.layers[..depth].iter().enumerate() {
            let out = slots[i];
            let (done, rest) = arena.split_at_mut(out.offset);
            let input: &[T] = match i.checked_sub(1).map(|p| slots[p]) {
                None => x,
                Some(prev) => {
                    let prev_data = &done[prev.offset..][..prev.len()];
                    if block_of(i) != block_of(i - 1) {
                        resize(pooled, prev.c * out.h * out.w);
                        timed(timings, "pool fwd", || {
                            pool2x2(pool, prev_data, prev.c, prev.h, prev.w, pooled)
                        });
                        pooled
                    } else {
                        prev_data
                    }
                }
            };
            let data = &mut rest[..out.len()];
            timed(timings, format_args!("{} fwd", LAYER_NAMES[i]), || {
                let bias = Some(layer.bias.as_slice());
                let (cin, cout) = (layer.cin, layer.cout);
                conv3x3(
                    input,
                    cin,
                    out.h,
                    out.w,
                    &layer.weight,
                    cout,
                    bias,
                    data,
                    conv,
                );
                relu(data);
            });
        }
    }

    /// Gradient with respect to the input pixels, written to `grad_in` (`3 x h x w`), after
    /// `forward_into` ran on `ws`. Walking down from the deepest layer, it calls
    /// `tap_grad(i, output, grad, timings)`, which adds the objective's gradient with respect to
    /// layer `i`'s output to `grad`.
    ///
    /// The pass reuses the forward pass's memory: once layer i is done, its output's place
    /// takes the gradient with respect to its input, and the gradient below a pooling goes to
    /// the places of layers two or more above it (all done by then), so the only extra buffer
    /// is one deep-layer-sized `spare`. Afterwards `ws` holds gradients, not activations.
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
            slots,
            spare,
            conv,
            ..
        } = ws;
        let depth = slots.len();
        for i in (0..depth).rev() {
            let out = slots[i];
            let len = out.len();
            let (below, above) = arena.split_at_mut(out.offset + len);
            let out_data = &mut below[out.offset..];
            // d J / d out_i, before the ReLU: where layer i + 1 left the gradient with respect
            // to its input, or (below a pooling, and at the top) in a free place.
            let g: &mut [T] = if i + 1 == depth {
                resize(spare, len);
                spare.fill(T::zero());
                spare
            } else if block_of(i + 1) != block_of(i) {
                let next = slots[i + 1];
                let (from_above, free) = above.split_at_mut(next.len());
                let from_above = &from_above[..out.c * (out.h / 2) * (out.w / 2)];
                let g = if free.len() >= len {
                    &mut free[..len]
                } else {
                    resize(spare, len);
                    &mut spare[..]
                };
                timed(timings, "pool bwd", || {
                    pool2x2_backward(pool, out_data, out.c, out.h, out.w, from_above, g)
                });
                g
            } else {
                &mut above[..len]
            };
            let view = LayerOutput {
                c: out.c,
                h: out.h,
                w: out.w,
                data: out_data,
            };
            tap_grad(i, view, g, timings);
            let layer = &self.layers[i];
            let (cin, h, w) = (layer.cin, out.h, out.w);
            timed(timings, format_args!("{} bwd", LAYER_NAMES[i]), || {
                relu_backward(out_data, g);
                // Layer i's output is no longer needed: its place takes the input gradient.
                let gin: &mut [T] = if i == 0 {
                    assert_eq!(grad_in.len(), cin * h * w, "pixel gradient");
                    &mut *grad_in
                } else {
                    &mut out_data[..cin * h * w]
                };
                conv3x3_input_grad(g, out.c, h, w, &layer.weight, cin, gin, conv);
            });
        }
    }
}

/// Shape and place of one layer's output in a workspace's arena.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    c: usize,
    h: usize,
    w: usize,
    offset: usize,
}

impl Slot {
    fn len(&self) -> usize {
        self.c * self.h * self.w
    }
}

/// Buffers of one forward and backward pass, kept from pass to pass: the layers' outputs one
/// after another in one arena (so the backward pass can reuse the places of several finished
/// layers as one buffer), and the pooled input, spare gradient and convolution scratch.
pub struct Workspace<T: Real> {
    arena: Vec<T>,
    slots: Vec<Slot>,
    pooled: Vec<T>,
    spare: Vec<T>,
    conv: ConvScratch<T>,
}

impl<T: Real> Workspace<T> {
    /// Empty buffers; the first pass sizes them.
    pub fn new() -> Self {
        Workspace {
            arena: Vec::new(),
            slots: Vec::new(),
            pooled: Vec::new(),
            spare: Vec::new(),
            conv: ConvScratch::default(),
        }
    }

    /// Places the outputs of `layers` on an `h x w` input.
    fn lay_out(&mut self, layers: &[ConvLayer<T>], h: usize, w: usize) {
        self.slots.clear();
        let (mut h, mut w, mut offset) = (h, w, 0);
        for (i, layer) in layers.iter().enumerate() {
            if i > 0 && block_of(i) != block_of(i - 1) {
                (h, w) = (h / 2, w / 2);
            }
            let slot = Slot {
                c: layer.cout,
                h,
                w,
                offset,
            };
            offset += slot.len();
            self.slots.push(slot);
        }
        resize(&mut self.arena, offset);
    }

    /// Layers held (run by the last forward pass).
    pub fn depth(&self) -> usize {
        self.slots.len()
    }

    /// Output of layer `i` from the last `forward_into` (until a `backward_into` reuses it).
    pub fn layer(&self, i: usize) -> LayerOutput<'_, T> {
        let s = self.slots[i];
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
