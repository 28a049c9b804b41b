//! The vector tiers of the gate's CPU loops: which one runs ([`vector_tier`],
//! `SPARTA_CPU_VECTORS`), and per tier one sample's forward, σ map and backward: the
//! reference loops compiled for the baseline target, for AVX2 + FMA, or for AVX-512, the
//! wide ones taking the f32 product loops (`product.rs`, `avx512.rs` in intrinsics)
//! where [`product_loops`] allows.

#[cfg(target_arch = "x86_64")]
use super::avx512;
use super::product;
use super::reference::{backward_sample, forward_sample, gate_map_sample};
use super::sigmoid::Sigmoid;
use crate::real::{f32s, f32s_mut, is_f32};
use crate::Real;

/// The vector instructions the per-sample loops are compiled for: the x86-64 baseline
/// the crate is built for (SSE2, 4 lanes), AVX2 + FMA (8 lanes), or AVX-512 (16 lanes,
/// and the f32 product loops in intrinsics: `avx512.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Vectors {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// The [`Vectors`] the loops run with, chosen once: the widest this CPU has, or a
/// narrower one named by `SPARTA_CPU_VECTORS` (`baseline`, `avx2`, `avx512`), so that
/// tests and benches can run every tier on one machine. A tier the CPU lacks, or a name
/// it does not know, gets a one-line notice and the widest tier.
pub(super) fn vectors() -> Vectors {
    static CHOSEN: std::sync::OnceLock<Vectors> = std::sync::OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let widest = widest_vectors();
        let Ok(name) = std::env::var("SPARTA_CPU_VECTORS") else {
            return widest;
        };
        match parse_vectors(&name) {
            Some(asked) if asked <= widest => asked,
            asked => {
                let why = match asked {
                    Some(_) => "this CPU lacks it".to_string(),
                    None => {
                        let names: Vec<_> = Vectors::ALL.iter().map(|t| t.name()).collect();
                        format!("not one of {}", names.join(", "))
                    }
                };
                eprintln!(
                    "sparta: SPARTA_CPU_VECTORS={name}: {why}; using {}",
                    widest.name()
                );
                widest
            }
        }
    })
}

/// Which vector instructions the gate's CPU loops run with: `"baseline"` (SSE2 on
/// x86-64, the target's own elsewhere), `"avx2"` (with FMA) or `"avx512"`; the widest
/// the CPU has unless `SPARTA_CPU_VECTORS` names a narrower one. Benchmarks print it.
///
/// ```
/// let tier = sparta::ops::gate::cpu::vector_tier();
/// assert!(["baseline", "avx2", "avx512"].contains(&tier));
/// ```
pub fn vector_tier() -> &'static str {
    vectors().name()
}

impl Vectors {
    /// Every tier this target can have, narrowest first.
    const ALL: &[Vectors] = &[
        Vectors::Baseline,
        #[cfg(target_arch = "x86_64")]
        Vectors::Avx2,
        #[cfg(target_arch = "x86_64")]
        Vectors::Avx512,
    ];

    /// Its name in `SPARTA_CPU_VECTORS` and [`vector_tier`].
    fn name(self) -> &'static str {
        match self {
            Vectors::Baseline => "baseline",
            #[cfg(target_arch = "x86_64")]
            Vectors::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Vectors::Avx512 => "avx512",
        }
    }
}

/// The tier `SPARTA_CPU_VECTORS` names (`avx2` and `avx512` only exist on x86-64).
fn parse_vectors(name: &str) -> Option<Vectors> {
    Vectors::ALL
        .iter()
        .copied()
        .find(|tier| tier.name() == name)
}

/// The widest [`Vectors`] this CPU has.
fn widest_vectors() -> Vectors {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        let avx512 = is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512dq")
            && is_x86_feature_detected!("avx512bw");
        if avx2 && avx512 {
            return Vectors::Avx512;
        }
        if avx2 {
            return Vectors::Avx2;
        }
    }
    Vectors::Baseline
}

/// Whether a sample takes the product loops (`product.rs`, `avx512.rs`): f32 with FMA
/// (`S::PRODUCT_LOOPS`) and every |s·c| of the sample in their range; else the generic
/// loops run.
#[inline(always)]
fn product_loops<T: Real, S: Sigmoid<T>>(s: &[T], c: &[T]) -> bool {
    S::PRODUCT_LOOPS && is_f32::<T>() && product::in_range(f32s(s), f32s(c))
}

/// Copies of the per-sample loops compiled with `$features` enabled, taking the f32
/// product loops of module `$product` (`product.rs`, or `avx512.rs` in intrinsics) where
/// [`product_loops`] allows; callers check the features with [`vectors`] first.
#[cfg(target_arch = "x86_64")]
macro_rules! wide_loops {
    ($features:literal, $product:ident, $fwd:ident, $map:ident, $bwd:ident) => {
        #[target_feature(enable = $features)]
        unsafe fn $fwd<T: Real, S: Sigmoid<T>>(x: &[T], s: &[T], c: &[T], y: &mut [T]) {
            if product_loops::<T, S>(s, c) {
                $product::forward_sample(f32s(x), f32s(s), f32s(c), f32s_mut(y));
            } else {
                forward_sample::<T, S>(x, s, c, y);
            }
        }

        #[target_feature(enable = $features)]
        unsafe fn $map<T: Real, S: Sigmoid<T>>(s: &[T], c: &[T], gate: &mut [T]) {
            if product_loops::<T, S>(s, c) {
                $product::gate_map_sample(f32s(s), f32s(c), f32s_mut(gate));
            } else {
                gate_map_sample::<T, S>(s, c, gate);
            }
        }

        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $features)]
        unsafe fn $bwd<T: Real, S: Sigmoid<T>>(
            x: &[T],
            s: &[T],
            c: &[T],
            dy: &[T],
            dx: &mut [T],
            ds: &mut [T],
            dc: &mut [T],
        ) {
            if product_loops::<T, S>(s, c) {
                $product::backward_sample(
                    f32s(x),
                    f32s(s),
                    f32s(c),
                    f32s(dy),
                    f32s_mut(dx),
                    f32s_mut(ds),
                    f32s_mut(dc),
                );
            } else {
                backward_sample::<T, S>(x, s, c, dy, dx, ds, dc);
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
wide_loops!(
    "avx2,fma",
    product,
    forward_avx2,
    gate_map_avx2,
    backward_avx2
);
#[cfg(target_arch = "x86_64")]
wide_loops!(
    "avx2,fma,avx512f,avx512vl,avx512dq,avx512bw",
    avx512,
    forward_avx512,
    gate_map_avx512,
    backward_avx512
);

/// One sample's forward on `tier`'s loops.
#[inline(always)]
pub(super) fn forward<T: Real, S: Sigmoid<T>>(
    tier: Vectors,
    x: &[T],
    s: &[T],
    c: &[T],
    y: &mut [T],
) {
    match tier {
        // SAFETY: a wide tier comes from vectors(), which checked the CPU's features.
        #[cfg(target_arch = "x86_64")]
        Vectors::Avx2 => unsafe { forward_avx2::<T, S::Wide>(x, s, c, y) },
        #[cfg(target_arch = "x86_64")]
        Vectors::Avx512 => unsafe { forward_avx512::<T, S::Wide>(x, s, c, y) },
        Vectors::Baseline => forward_sample::<T, S>(x, s, c, y),
    }
}

/// One sample's σ(s ⊗ c) map on `tier`'s loops.
#[inline(always)]
pub(super) fn gate_map<T: Real, S: Sigmoid<T>>(tier: Vectors, s: &[T], c: &[T], gate: &mut [T]) {
    match tier {
        // SAFETY: a wide tier comes from vectors(), which checked the CPU's features.
        #[cfg(target_arch = "x86_64")]
        Vectors::Avx2 => unsafe { gate_map_avx2::<T, S::Wide>(s, c, gate) },
        #[cfg(target_arch = "x86_64")]
        Vectors::Avx512 => unsafe { gate_map_avx512::<T, S::Wide>(s, c, gate) },
        Vectors::Baseline => gate_map_sample::<T, S>(s, c, gate),
    }
}

/// One sample's backward on `tier`'s loops: dx, per-pixel ds and dc.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn backward<T: Real, S: Sigmoid<T>>(
    tier: Vectors,
    x: &[T],
    s: &[T],
    c: &[T],
    dy: &[T],
    dx: &mut [T],
    ds: &mut [T],
    dc: &mut [T],
) {
    match tier {
        // SAFETY: a wide tier comes from vectors(), which checked the CPU's features.
        #[cfg(target_arch = "x86_64")]
        Vectors::Avx2 => unsafe { backward_avx2::<T, S::Wide>(x, s, c, dy, dx, ds, dc) },
        #[cfg(target_arch = "x86_64")]
        Vectors::Avx512 => unsafe { backward_avx512::<T, S::Wide>(x, s, c, dy, dx, ds, dc) },
        Vectors::Baseline => backward_sample::<T, S>(x, s, c, dy, dx, ds, dc),
    }
}

#[cfg(test)]
mod tests {
    use super::super::sigmoid::FastF32;
    use super::*;

    /// Every tier's name parses back to it, and nothing else parses.
    #[test]
    fn tier_names_round_trip() {
        for &tier in Vectors::ALL {
            assert_eq!(parse_vectors(tier.name()), Some(tier), "{}", tier.name());
        }
        assert!(Vectors::ALL.windows(2).all(|pair| pair[0] < pair[1]));
        for name in ["", "AVX2", "sse2", "avx512f", "avx"] {
            assert_eq!(parse_vectors(name), None, "{name:?}");
        }
        assert!(vectors() <= widest_vectors());
        assert_eq!(parse_vectors(vector_tier()), Some(vectors()));
    }

    /// The per-sample loops compiled for the baseline target agree with the AVX2/FMA
    /// and AVX-512 ones this CPU has (tests/gate.rs exercises the widest one), both
    /// where the wide ones take `product`'s loops (|s·c| ≤ 12) and where a sample's
    /// |s·c| reaches 720 and they fall back to the clamping ones; planes of 37 pixels
    /// (two vectors and a tail) and of 16 (one vector, `product`'s own loops for it).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn baseline_and_wide_loops_agree() {
        for s_scale in [1.5, 90.0] {
            for hw in [37, 16] {
                baseline_and_wide_loops_agree_at(s_scale, hw);
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn baseline_and_wide_loops_agree_at(s_scale: f32, hw: usize) {
        let tiers: &[Vectors] = match widest_vectors() {
            Vectors::Baseline => {
                eprintln!("baseline_and_wide_loops_agree: skipped, no AVX2/FMA");
                return;
            }
            Vectors::Avx2 => &[Vectors::Avx2],
            Vectors::Avx512 => &[Vectors::Avx2, Vectors::Avx512],
        };
        let c = 5;
        let wave = |k: usize, scale: f32| ((k * 7919 % 1000) as f32 / 250.0 - 2.0) * scale;
        let x: Vec<f32> = (0..c * hw).map(|k| wave(k, 1.0)).collect();
        let dy: Vec<f32> = (0..c * hw).map(|k| wave(k + 3, 0.5)).collect();
        let s: Vec<f32> = (0..hw).map(|k| wave(k + 11, s_scale)).collect();
        let cv: Vec<f32> = (0..c).map(|k| wave(k + 17, 2.0)).collect();
        let product = product_loops::<f32, FastF32<true>>(&s, &cv);
        assert_eq!(product, s_scale < 10.0, "which loops the wide tiers take");
        let run = |tier: Vectors| {
            let (mut y, mut dx, mut g) = (vec![0.0; c * hw], vec![0.0; c * hw], vec![0.0; c * hw]);
            let (mut ds, mut dc) = (vec![0.0; hw], vec![0.0; c]);
            type Wide = FastF32<true>;
            // SAFETY: vectors() reported the tiers' features above.
            unsafe {
                match tier {
                    Vectors::Avx2 => {
                        forward_avx2::<f32, Wide>(&x, &s, &cv, &mut y);
                        gate_map_avx2::<f32, Wide>(&s, &cv, &mut g);
                        let (dx, ds, dc) = (&mut dx, &mut ds, &mut dc);
                        backward_avx2::<f32, Wide>(&x, &s, &cv, &dy, dx, ds, dc);
                    }
                    Vectors::Avx512 => {
                        forward_avx512::<f32, Wide>(&x, &s, &cv, &mut y);
                        gate_map_avx512::<f32, Wide>(&s, &cv, &mut g);
                        let (dx, ds, dc) = (&mut dx, &mut ds, &mut dc);
                        backward_avx512::<f32, Wide>(&x, &s, &cv, &dy, dx, ds, dc);
                    }
                    Vectors::Baseline => {
                        forward_sample::<f32, FastF32>(&x, &s, &cv, &mut y);
                        gate_map_sample::<f32, FastF32>(&s, &cv, &mut g);
                        backward_sample::<f32, FastF32>(
                            &x, &s, &cv, &dy, &mut dx, &mut ds, &mut dc,
                        );
                    }
                }
            }
            [y, g, dx, ds, dc]
        };
        let baseline = run(Vectors::Baseline);
        for &tier in tiers {
            let wide = run(tier);
            for (name, (a, b)) in ["y", "gate", "dx", "ds", "dc"]
                .iter()
                .zip(baseline.iter().zip(&wide))
            {
                let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                for (k, (p, q)) in a.iter().zip(b).enumerate() {
                    let within = (p - q).abs() <= 1e-5 * q.abs().max(0.1 * scale);
                    assert!(
                        within,
                        "{tier:?} {name}[{k}] (s scale {s_scale}, {hw} px): baseline {p:e}, wide {q:e}"
                    );
                }
            }
        }
    }
}
