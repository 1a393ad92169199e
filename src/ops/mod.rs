//! Network operations on CHW tensors stored as flat row-major slices, forward and backward side by
//! side. Shapes are internal invariants here (checked with asserts); user-facing shape errors are
//! caught earlier, in `vgg` and `loss`.

pub mod col2im;
pub mod conv;
mod lanes;
pub mod panel;
pub mod pool;
pub mod relu;
pub mod scratch;
pub(crate) mod simd;
pub mod winograd;

pub use conv::{
    conv3x3, conv3x3_input_grad, conv3x3_input_grad_kept, conv3x3_then, conv3x3_then_kept,
    kept_kernel_bytes, kept_kernel_tile, rotate_kernel, Conv3x3,
};
pub use pool::{pool2x2, pool2x2_backward, Pool};
pub use relu::{relu, relu_backward, relu_backward_masked, relu_mask};
pub use scratch::{ConvScratch, Scratch};
pub use winograd::{conv3x3_winograd, conv3x3_winograd_then, Tile, WinogradKernel};

/// Raw pointer that rayon tasks may share to write disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut<T>(pub *mut T);

impl<T> SharedMut<T> {
    /// The pointer. A method, so closures capture the whole `Sync` wrapper rather than the
    /// bare pointer field.
    pub fn ptr(self) -> *mut T {
        self.0
    }
}
// SAFETY: only used to hand disjoint regions of one exclusively borrowed buffer to parallel tasks;
// every user documents why its regions do not overlap.
unsafe impl<T: Send> Send for SharedMut<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SharedMut<T> {}

#[cfg(test)]
pub(crate) mod testutil {
    /// Deterministic pseudo-random values in [-1, 1) (xorshift), so tests need no rand crate.
    pub fn noise(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
            })
            .collect()
    }

    /// Central finite difference of `f` at every coordinate of `x`.
    pub fn numeric_grad(x: &[f64], h: f64, f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
        let mut xp = x.to_vec();
        (0..x.len())
            .map(|i| {
                xp[i] = x[i] + h;
                let fp = f(&xp);
                xp[i] = x[i] - h;
                let fm = f(&xp);
                xp[i] = x[i];
                (fp - fm) / (2.0 * h)
            })
            .collect()
    }

    /// max |a - b| / max(1, max |b|): relative to the gradient's scale.
    pub fn max_rel_err(a: &[f64], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(1e-300f64, |m, v| m.max(v.abs()));
        a.iter()
            .zip(b)
            .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
            / scale
    }
}
