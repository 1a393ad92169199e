//! Runtime choice of the vector width for the plain loops of the ops (transforms, ReLU,
//! pooling), which the compiler vectorises: the portable x86-64 baseline has only 4-wide SSE,
//! so each loop is compiled again for AVX2 and AVX-512 and the widest the CPU has runs. Only the
//! vector width changes, not the operations or their order (Rust never reassociates floating
//! point), so the results are bitwise the same on every path. Also the cache prefetch hint.

/// Runs `f` compiled for the widest vectors this CPU has. `f` must be inlined into this call
/// to get the wider code: pass a closure marked `#[inline(always)]` that calls functions
/// marked the same. Unmarked, the Winograd transforms' closures (too large for the inliner)
/// were compiled as functions of their own, for the baseline, and ran SSE code.
#[inline(always)]
pub(crate) fn widest<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            #[target_feature(enable = "avx512f")]
            fn avx512<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // SAFETY: the CPU supports AVX-512F (checked just above).
            return unsafe { avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            #[target_feature(enable = "avx2")]
            fn avx2<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// Whether `T` is `f32` and this CPU has AVX-512F: the condition of the hand-written `f32`
/// kernels (the Winograd transforms' groups, the Gram blocks).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn avx512_f32<T: 'static>() -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
        && std::arch::is_x86_feature_detected!("avx512f")
}

/// Asks the CPU to start loading the cache lines of `len` elements from `p` (a hint: no
/// memory is read or written, and an address outside any allocation is harmless). The
/// Winograd transforms call it for the next channel's rows: each row they touch is a run of a
/// kilobyte or so in a different plane, too short for the hardware prefetcher to pick up, and
/// waiting on those misses cost half the transforms' time at conv1_2 (512 px).
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let line = (64 / std::mem::size_of::<T>().max(1)).max(1);
        let mut i = 0;
        while i < len {
            // SAFETY: a prefetch never faults or changes memory; wrapping_add keeps the
            // address arithmetic defined whatever the range.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(i) as *const i8) };
            i += line;
        }
        if len > 0 {
            // SAFETY: as above (the last line, when `p` is not line-aligned).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(len - 1) as *const i8) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}
