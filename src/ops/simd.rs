//! Runtime choice of the vector width for the plain loops of the ops (transforms, ReLU,
//! pooling), which the compiler vectorises: the portable x86-64 baseline has only 4-wide SSE,
//! so each loop is compiled again for AVX2 and AVX-512 and the widest the CPU has runs. Only the
//! vector width changes, not the operations or their order (Rust never reassociates floating
//! point), so the results are bitwise the same on every path.

/// Runs `f` compiled for the widest vectors this CPU has. `f` must be inlined into this call
/// (closures are; mark the functions it calls `#[inline(always)]`) to get the wider code.
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
