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
fn block_of(layer: usize) -> usize {
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

struct ConvLayer<T> {
    cin: usize,
    cout: usize,
    weight: Vec<T>,
    bias: Vec<T>,
}

/// A VGG-19 convolution stack holding its first `depth()` layers.
pub struct Vgg<T: Real = f32> {
    layers: Vec<ConvLayer<T>>,
}

/// The engine's network type: f32 weights.
pub type Vgg19 = Vgg<f32>;

/// One layer's post-ReLU output, `c x h x w`.
pub struct LayerOutput<T> {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub data: Vec<T>,
}

impl<T> LayerOutput<T> {
    fn empty() -> Self {
        LayerOutput {
            c: 0,
            h: 0,
            w: 0,
            data: Vec::new(),
        }
    }
}

/// Everything a forward pass leaves behind: one output per layer run.
pub struct Activations<T> {
    pub outputs: Vec<LayerOutput<T>>,
}

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
        Ok(Vgg { layers })
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
        Activations {
            outputs: ws.outputs,
        }
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
        let Workspace {
            outputs,
            pooled,
            conv,
            ..
        } = ws;
        outputs.resize_with(depth, LayerOutput::empty);
        let (mut h, mut w) = (h, w);
        for (i, layer) in self.layers[..depth].iter().enumerate() {
            let (done, rest) = outputs.split_at_mut(i);
            let input: &[T] = match done.last() {
                None => x,
                Some(prev) if block_of(i) != block_of(i - 1) => {
                    (h, w) = (prev.h / 2, prev.w / 2);
                    resize(pooled, prev.c * h * w);
                    timed(timings, "pool fwd", || {
                        pool2x2(pool, &prev.data, prev.c, prev.h, prev.w, pooled)
                    });
                    pooled
                }
                Some(prev) => &prev.data,
            };
            let out = &mut rest[0];
            (out.c, out.h, out.w) = (layer.cout, h, w);
            resize(&mut out.data, layer.cout * h * w);
            timed(timings, format_args!("{} fwd", LAYER_NAMES[i]), || {
                let bias = Some(layer.bias.as_slice());
                let (cin, cout) = (layer.cin, layer.cout);
                conv3x3(
                    input,
                    cin,
                    h,
                    w,
                    &layer.weight,
                    cout,
                    bias,
                    &mut out.data,
                    conv,
                );
                relu(&mut out.data);
            });
        }
    }

    /// Gradient with respect to the input pixels, written to `grad_in` (`3 x h x w`), after
    /// `forward_into` ran on `ws`. Walking down from the deepest layer, it calls
    /// `tap_grad(i, output, grad, timings)`, which adds the objective's gradient with respect to
    /// layer `i`'s output to `grad`. The activations' buffers double as the gradients' (each is
    /// free once its layer is done), so the pass needs only one buffer more than the forward
    /// one; they hold gradients afterwards, not activations.
    pub fn backward_into<F>(
        &self,
        ws: &mut Workspace<T>,
        pool: Pool,
        grad_in: &mut [T],
        timings: &mut Option<Timings>,
        mut tap_grad: F,
    ) where
        F: FnMut(usize, &LayerOutput<T>, &mut [T], &mut Option<Timings>),
    {
        let Workspace {
            outputs,
            spare,
            conv,
            ..
        } = ws;
        for i in (0..outputs.len()).rev() {
            let (below, above) = outputs.split_at_mut(i + 1);
            let out = &mut below[i];
            let (c, h, w) = (out.c, out.h, out.w);
            let len = c * h * w;
            // d J / d out_i, before the ReLU: in `spare`, or where layer i + 1 left the
            // gradient with respect to its input.
            let g: &mut [T] = match above.first_mut() {
                None => {
                    resize(spare, len);
                    spare.fill(T::zero());
                    spare
                }
                Some(next) if block_of(i + 1) != block_of(i) => {
                    let from_above = &next.data[..c * (h / 2) * (w / 2)];
                    resize(spare, len);
                    timed(timings, "pool bwd", || {
                        pool2x2_backward(pool, &out.data, c, h, w, from_above, spare)
                    });
                    spare
                }
                Some(next) => &mut next.data[..len],
            };
            tap_grad(i, out, g, timings);
            let layer = &self.layers[i];
            let cin = layer.cin;
            timed(timings, format_args!("{} bwd", LAYER_NAMES[i]), || {
                relu_backward(&out.data, g);
                // Layer i's output is no longer needed: its buffer takes the input gradient.
                let gin: &mut [T] = if i == 0 {
                    assert_eq!(grad_in.len(), cin * h * w, "pixel gradient");
                    &mut *grad_in
                } else {
                    &mut out.data[..cin * h * w]
                };
                conv3x3_input_grad(g, c, h, w, &layer.weight, cin, gin, conv);
            });
        }
    }
}

/// Buffers of one forward and backward pass, kept from pass to pass.
pub struct Workspace<T: Real> {
    outputs: Vec<LayerOutput<T>>,
    pooled: Vec<T>,
    spare: Vec<T>,
    conv: ConvScratch<T>,
}

impl<T: Real> Workspace<T> {
    /// Empty buffers; the first pass sizes them.
    pub fn new() -> Self {
        Workspace {
            outputs: Vec::new(),
            pooled: Vec::new(),
            spare: Vec::new(),
            conv: ConvScratch::default(),
        }
    }

    /// The layer outputs of the last `forward_into` (until a `backward_into` reuses them).
    pub fn outputs(&self) -> &[LayerOutput<T>] {
        &self.outputs
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
