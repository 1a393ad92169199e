//! Scratch memory that parallel kernels reuse from call to call, so a steady run of the network
//! allocates nothing.
//!
//! One buffer per rayon worker, taken by the task running on that worker. A task never yields to
//! another task while it holds its buffer (the kernels make no rayon calls inside a task), so the
//! lock is always free; should it not be (a pool other than the one the scratch was sized for), the
//! task falls back to a buffer of its own rather than wait.

use super::winograd::WinogradKernel;
use crate::gemm::Real;
use std::sync::Mutex;

/// Per-worker buffers; each grows to the largest size asked of it and then stays.
#[derive(Debug)]
pub struct Scratch<T> {
    slots: Vec<Mutex<Vec<T>>>,
}

impl<T: Real> Default for Scratch<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// What a convolution reuses from call to call: the workers' scratch, and the buffer that holds
/// a Winograd kernel transform while it runs.
#[derive(Debug)]
pub struct ConvScratch<T> {
    /// Per-worker buffers of the tasks.
    pub tasks: Scratch<T>,
    /// The transformed kernel of the last call, whose buffer the next one reuses.
    pub kernel: Option<WinogradKernel<T>>,
    /// The rotated kernel of an input gradient computed by im2col.
    pub rotated: Vec<T>,
}

impl<T: Real> Default for ConvScratch<T> {
    fn default() -> Self {
        ConvScratch {
            tasks: Scratch::new(),
            kernel: None,
            rotated: Vec::new(),
        }
    }
}

impl<T: Real> Scratch<T> {
    /// Empty buffers, one per worker of the current rayon pool.
    pub fn new() -> Self {
        Scratch {
            slots: (0..rayon::current_num_threads())
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
        }
    }

    /// Calls `f` with `len` elements of the calling worker's buffer. The contents are whatever
    /// the last user left: callers write before they read.
    pub fn with<R>(&self, len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
        let slot = rayon::current_thread_index()
            .and_then(|i| self.slots.get(i))
            .and_then(|m| m.try_lock().ok());
        match slot {
            Some(mut buf) => {
                if buf.len() < len {
                    buf.resize(len, T::zero());
                }
                f(&mut buf[..len])
            }
            None => f(&mut vec![T::zero(); len]),
        }
    }

    /// Elements held, over all workers.
    pub fn len(&self) -> usize {
        self.slots
            .iter()
            .map(|m| m.lock().map_or(0, |b| b.len()))
            .sum()
    }

    /// Whether nothing is held yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Splits `buf` into consecutive parts of the given lengths, each starting on a 64-byte boundary
/// relative to `buf` (the kernels stream through them with vector loads).
pub fn split<T, const N: usize>(mut buf: &mut [T], lens: [usize; N]) -> [&mut [T]; N] {
    let align = (64 / std::mem::size_of::<T>().max(1)).max(1);
    lens.map(|len| {
        let (part, rest) = std::mem::take(&mut buf).split_at_mut(len);
        let skip = (len.next_multiple_of(align) - len).min(rest.len());
        buf = &mut rest[skip..];
        part
    })
}

/// Total length `split` needs for parts of these lengths.
pub fn split_len(lens: &[usize]) -> usize {
    lens.iter().map(|&len| len.next_multiple_of(64)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_grow_and_are_reused() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            let s = Scratch::<f32>::new();
            s.with(10, |b| b.fill(1.0));
            let held = s.len();
            assert!(held >= 10);
            s.with(5, |b| assert_eq!(b.len(), 5));
            assert_eq!(s.len(), held);
        });
        // Outside any worker, it still works (on a buffer of its own).
        let s = Scratch::<f32>::new();
        s.with(3, |b| assert_eq!(b.len(), 3));
    }

    #[test]
    fn split_parts_are_disjoint_and_sized() {
        let mut buf = vec![0u8; split_len(&[3, 70, 1])];
        let [a, b, c] = split(&mut buf, [3, 70, 1]);
        assert_eq!((a.len(), b.len(), c.len()), (3, 70, 1));
        a.fill(1);
        b.fill(2);
        c.fill(3);
        assert_eq!(buf.iter().filter(|&&v| v == 2).count(), 70);
    }
}
