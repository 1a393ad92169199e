//! Peak f32 FMA throughput of this machine, measured with a register-resident kernel: the
//! ceiling that every GEMM in the engine runs under (tracker issue 11, "state the limit";
//! `docs/performance-limit.md` uses it).
//!
//! Each thread runs its own copy of the kernel: `CHAINS` independent accumulators, each updated
//! by one fused multiply-add per round (`acc = acc * a + b`), so that the FMA units never wait
//! on a result (latency 4 cycles x 2 units needs at least 8 chains in flight). Nothing touches
//! memory inside the loop. An FMA counts as 2 flops. The kernel is AVX-512F (`_mm512_fmadd_ps`,
//! 16 lanes) when the CPU has it, and AVX2 + FMA (`_mm256_fmadd_ps`, 8 lanes) always when
//! available too, for comparison: on a core with a single 512-bit FMA unit the two are equal.
//!
//! The clock is not known to the program; as a rough guide it also times a chain of dependent
//! 64-bit integer multiplies (3 cycles latency on Intel since Core 2 and AMD since Zen), whose
//! rate is a third of the scalar clock, and prints the flops per cycle that implies (AVX-512
//! code may run at a lower clock than that, so the figure is a lower bound on FMA units x lanes
//! x 2). A chain of `add reg, imm` would not do: Golden Cove and later cores fold immediate adds
//! at rename and run such a chain several times faster than one per cycle.
//!
//! `cargo run --release --example peak_fma -- --threads 2 [--ms 300] [--repeats 3]`

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::Instant;

/// Independent accumulator chains (vector registers) per kernel.
const CHAINS: usize = 12;
/// Rounds per call of a kernel (each round: `CHAINS` FMAs).
const ROUNDS: u64 = 1 << 16;

/// A vector instruction set the kernel can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    Avx512,
    Avx2,
}

impl Isa {
    fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "AVX-512F _mm512_fmadd_ps",
            Isa::Avx2 => "AVX2+FMA _mm256_fmadd_ps",
        }
    }

    fn lanes(self) -> u64 {
        match self {
            Isa::Avx512 => 16,
            Isa::Avx2 => 8,
        }
    }

    fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Isa::Avx512 => is_x86_feature_detected!("avx512f"),
                Isa::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Runs `calls * ROUNDS` rounds of the kernel; returns a value that depends on every
    /// accumulator, so that none of the work can be dropped.
    fn run(self, calls: u64) -> f32 {
        assert!(self.available());
        let mut sum = 0.0;
        for _ in 0..calls {
            // black_box on the inputs: the compiler cannot precompute the chains either.
            let (a, b) = (black_box(0.999_999_f32), black_box(1e-6_f32));
            #[cfg(target_arch = "x86_64")]
            {
                sum += match self {
                    // SAFETY: `available()` (asserted above) checked that the CPU has AVX-512F.
                    Isa::Avx512 => unsafe { x86::fma512(a, b, ROUNDS) },
                    // SAFETY: `available()` (asserted above) checked that the CPU has AVX2 and FMA.
                    Isa::Avx2 => unsafe { x86::fma256(a, b, ROUNDS) },
                };
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                let _ = (a, b);
            }
        }
        black_box(sum)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::CHAINS;
    use std::arch::x86_64::*;

    /// `CHAINS` registers of `acc = acc * a + b`, `rounds` times; the sum of all lanes.
    /// `a` just below 1 and `b` small keep the values near 1 (no overflow, no denormals).
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma512(a: f32, b: f32, rounds: u64) -> f32 {
        let (va, vb) = (_mm512_set1_ps(a), _mm512_set1_ps(b));
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        for (i, r) in acc.iter_mut().enumerate() {
            *r = _mm512_add_ps(*r, _mm512_set1_ps(i as f32 * 1e-3));
        }
        for _ in 0..rounds {
            // A fixed-length loop over an array of registers: fully unrolled, the
            // accumulators stay in zmm registers (checked: no loads or stores in the loop).
            for r in acc.iter_mut() {
                *r = _mm512_fmadd_ps(*r, va, vb);
            }
        }
        let mut total = _mm512_setzero_ps();
        for r in acc {
            total = _mm512_add_ps(total, r);
        }
        _mm512_reduce_add_ps(total)
    }

    /// `fma512` with 256-bit registers.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma256(a: f32, b: f32, rounds: u64) -> f32 {
        let (va, vb) = (_mm256_set1_ps(a), _mm256_set1_ps(b));
        let mut acc = [_mm256_set1_ps(1.0); CHAINS];
        for (i, r) in acc.iter_mut().enumerate() {
            *r = _mm256_add_ps(*r, _mm256_set1_ps(i as f32 * 1e-3));
        }
        for _ in 0..rounds {
            for r in acc.iter_mut() {
                *r = _mm256_fmadd_ps(*r, va, vb);
            }
        }
        let mut total = _mm256_setzero_ps();
        for r in acc {
            total = _mm256_add_ps(total, r);
        }
        let mut lanes = [0.0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), total);
        lanes.iter().sum()
    }

    /// Latency in cycles of the instruction `mul_chain` repeats.
    pub const MUL_LATENCY: f64 = 3.0;

    /// `n` blocks of 64 dependent 64-bit integer multiplies; returns the result.
    pub fn mul_chain(n: u64) -> u64 {
        let mut x: u64 = 3;
        for _ in 0..n {
            // SAFETY: the assembly only multiplies the register holding `x` (declared inout) by
            // itself and touches no memory or stack; the flags it changes are clobbered by
            // default (`preserves_flags` is not claimed).
            unsafe {
                std::arch::asm!(
                    ".rept 64",
                    "imul {x}, {x}",
                    ".endr",
                    x = inout(reg) x,
                    options(nomem, nostack),
                );
            }
        }
        x
    }
}

/// Seconds that `threads` threads, started together, take to each run `calls` kernel calls.
fn timed_run(isa: Isa, threads: usize, calls: u64) -> f64 {
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                black_box(isa.run(calls))
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        black_box(h.join().expect("kernel thread panicked"));
    }
    start.elapsed().as_secs_f64()
}

/// Best GFLOP/s of `repeats` runs of about `ms` milliseconds on `threads` threads.
fn measure(isa: Isa, threads: usize, ms: f64, repeats: usize) -> f64 {
    // Calibrate on one thread: calls per `ms`.
    let mut calls = 1;
    let mut secs = timed_run(isa, 1, calls);
    while secs < 0.02 {
        calls *= 2;
        secs = timed_run(isa, 1, calls);
    }
    let calls = ((calls as f64 * ms / 1e3 / secs).ceil() as u64).max(1);
    let flops = (threads as u64 * calls * ROUNDS * CHAINS as u64 * isa.lanes() * 2) as f64;
    (0..repeats)
        .map(|_| flops / timed_run(isa, threads, calls) / 1e9)
        .fold(0.0, f64::max)
}

/// Approximate scalar clock in GHz (best of `repeats`), from dependent integer multiplies.
fn clock_ghz(ms: f64, repeats: usize) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        let mut n = 1 << 12;
        loop {
            let t = Instant::now();
            black_box(x86::mul_chain(black_box(n)));
            if t.elapsed().as_secs_f64() > 0.02 {
                break;
            }
            n *= 2;
        }
        let n = (n as f64 * ms / 20.0) as u64;
        let best = (0..repeats)
            .map(|_| {
                let t = Instant::now();
                black_box(x86::mul_chain(black_box(n)));
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        Some(n as f64 * 64.0 * x86::MUL_LATENCY / best / 1e9)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (ms, repeats);
        None
    }
}

fn usage() -> ! {
    eprintln!("usage: peak_fma [--threads N] [--ms MILLISECONDS] [--repeats R]");
    std::process::exit(2)
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (mut threads, mut ms, mut repeats) = (cores, 300.0, 3);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--threads" => threads = value().parse().unwrap_or_else(|_| usage()),
            "--ms" => ms = value().parse().unwrap_or_else(|_| usage()),
            "--repeats" => repeats = value().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    if threads == 0 || repeats == 0 || ms <= 0.0 {
        usage();
    }
    println!(
        "peak f32 FMA throughput: {CHAINS} independent register chains per thread, \
         FMA = 2 flops, best of {repeats} runs of ~{ms:.0} ms; {cores} logical CPUs"
    );
    let clock = clock_ghz(ms, repeats);
    if let Some(ghz) = clock {
        println!("scalar clock (dependent imul r64, 3 cycles each): ~{ghz:.2} GHz");
    }
    let isas: Vec<Isa> = [Isa::Avx512, Isa::Avx2]
        .into_iter()
        .filter(|i| i.available())
        .collect();
    if isas.is_empty() {
        println!("no AVX2+FMA or AVX-512F on this CPU: nothing to measure");
        return;
    }
    let mut peak = None;
    for isa in isas {
        println!("\n{}", isa.name());
        println!(
            "{:>7} {:>10} {:>14} {:>16}",
            "threads", "GFLOP/s", "GFLOP/s/core", "flops/cycle/core"
        );
        for t in 1..=threads {
            let g = measure(isa, t, ms, repeats);
            let per = g / t.min(cores) as f64;
            let fpc = clock.map_or("-".to_string(), |c| format!("{:.1}", per / c));
            println!("{t:>7} {g:>10.1} {per:>14.1} {fpc:>16}");
            if t == threads && peak.is_none_or(|(_, pg): (Isa, f64)| g > pg) {
                peak = Some((isa, g));
            }
        }
    }
    if let Some((isa, g)) = peak {
        println!(
            "\npeak at {threads} threads: {g:.1} GFLOP/s ({}); flops/cycle assumes the scalar \
             clock above, so it is approximate (AVX-512 may run slower clocks)",
            isa.name()
        );
    }
}
