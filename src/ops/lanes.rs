//! Groups of values that the Winograd transforms compute side by side. Each 1-D transform is
//! written once, generic over [`Arith`]: on a single value, and on [`Lanes`], where every
//! operation is a fixed-length loop over the lanes that the compiler turns into one vector
//! instruction. Where a transform's results are stored interleaved (the output columns of a
//! tile row), calling it value by value left its arithmetic scalar.

use crate::gemm::Real;
use std::array::from_fn;
use std::ops::{Add, Mul, Neg, Sub};

/// Values per group.
pub(crate) const LANES: usize = 8;

/// The arithmetic of the 1-D transforms: sums, differences and products by constants.
pub(crate) trait Arith<T>:
    Copy + Add<Output = Self> + Sub<Output = Self> + Neg<Output = Self> + Mul<T, Output = Self>
{
}

impl<T: Real> Arith<T> for T {}

/// `N` values (`LANES` unless said), each operation applied lane by lane (so a group gives
/// bitwise the values of its lanes computed one at a time).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lanes<T, const N: usize = LANES>(pub [T; N]);

impl<T: Real, const N: usize> Arith<T> for Lanes<T, N> {}

impl<T: Real, const N: usize> Lanes<T, N> {
    /// The group `src[0..N]`.
    #[inline(always)]
    pub fn load(src: &[T]) -> Self {
        Lanes(src[..N].try_into().unwrap())
    }
}

impl<T: Real, const N: usize> Add for Lanes<T, N> {
    type Output = Self;
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        Lanes(from_fn(|l| self.0[l] + o.0[l]))
    }
}

impl<T: Real, const N: usize> Sub for Lanes<T, N> {
    type Output = Self;
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        Lanes(from_fn(|l| self.0[l] - o.0[l]))
    }
}

impl<T: Real, const N: usize> Neg for Lanes<T, N> {
    type Output = Self;
    #[inline(always)]
    fn neg(self) -> Self {
        Lanes(self.0.map(|v| -v))
    }
}

impl<T: Real, const N: usize> Mul<T> for Lanes<T, N> {
    type Output = Self;
    #[inline(always)]
    fn mul(self, k: T) -> Self {
        Lanes(self.0.map(|v| v * k))
    }
}

/// Sixteen `f32` lanes, the width of an AVX-512 register.
#[cfg(target_arch = "x86_64")]
pub(crate) type Zmm = Lanes<f32, 16>;

/// The lanes of an AVX-512 register.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn to_lanes(v: std::arch::x86_64::__m512) -> Zmm {
    // SAFETY: both are 16 f32 values, 64 bytes, every bit pattern valid.
    unsafe { std::mem::transmute::<std::arch::x86_64::__m512, Zmm>(v) }
}

/// The AVX-512 register of sixteen lanes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn to_zmm(v: Zmm) -> std::arch::x86_64::__m512 {
    // SAFETY: as in `to_lanes`.
    unsafe { std::mem::transmute::<Zmm, std::arch::x86_64::__m512>(v) }
}
