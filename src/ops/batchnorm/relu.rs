//! A batch norm and the ReLU after it as one tape op (a ResNet's `bn → relu`): the
//! ReLU's output is the one tensor the pair keeps, and a backend may run each direction
//! as one pass over memory instead of two (the CPU does: the forward in both modes, the
//! backward where the batch norm is an affine map per channel, in evaluation mode with
//! only the input's gradient asked for: an attack's passes). The values are
//! those of [`batch_norm`](super::batch_norm) then [`relu`](crate::ops::relu::relu),
//! bit for bit: the forward rounds `x·scale + shift` and clamps it as the two ops do,
//! and the backward zeroes `dy` where the output is not positive (where the ReLU's
//! input is not) before the batch norm's rule.
//!
//! ```
//! use sparta::autograd::Tape;
//! use sparta::ops::batchnorm::{relu::batch_norm_relu, BnStats};
//!
//! let mut tape = Tape::<f64>::new();
//! let x = tape.leaf(&[2, 1, 1, 1], vec![1.0, 3.0], true)?;
//! let g = tape.leaf(&[1], vec![1.0], false)?;
//! let b = tape.leaf(&[1], vec![0.0], false)?;
//! let (mean, var) = (vec![2.0], vec![1.0]);
//! let y = batch_norm_relu(&mut tape, x, g, b, BnStats::Running { mean: &mean, var: &var }, 0.0)?;
//! assert_eq!(tape.value(y), &[0.0, 1.0]);
//! tape.backward_with(y, vec![5.0, 7.0])?;
//! assert_eq!(tape.grad(x).unwrap(), &[0.0, 7.0]);
//! # Ok::<(), sparta::Error>(())
//! ```

use super::{push, BatchNormKernels, BnGrad, BnGrads, BnShape, BnStats, Rule};
use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::ops::pointwise::tape::PointwiseKernels;
use crate::ops::pointwise::Pointwise;

/// What the fused op needs from a backend. Both methods have defaults that run the batch
/// norm's and the ReLU's own kernels one after the other; a backend overrides them
/// where one pass does both.
pub trait BatchNormReluKernels: BatchNormKernels + PointwiseKernels {
    /// The ReLU (NaN propagated) of `y` of [`BatchNormKernels::bn_forward`] with the same
    /// arguments.
    #[allow(clippy::too_many_arguments)]
    fn bn_relu_forward(
        ctx: &Self::Ctx,
        shape: &BnShape,
        x: &Self::View<'_>,
        mean: &Self::View<'_>,
        var: &Self::View<'_>,
        gamma: &Self::View<'_>,
        beta: &Self::View<'_>,
        eps: f64,
    ) -> Result<Self::Buf> {
        let y = Self::bn_forward(ctx, shape, x, mean, var, gamma, beta, eps)?;
        // Bound to a name so that the view of `y` is dropped before `y`.
        let z = Self::pointwise_forward(ctx, Pointwise::Relu, &Self::view(ctx, &y));
        z
    }

    /// The gradients given `grad.y`, the op's output, and `grad.dy`, its gradient.
    fn bn_relu_backward(ctx: &Self::Ctx, grad: BnGrad<'_, '_, Self>) -> Result<BnGrads<Self>> {
        relu_then_batch_norm_backward(ctx, grad)
    }
}

/// The ReLU's backward, then the batch norm's: the default of
/// [`BatchNormReluKernels::bn_relu_backward`], and what a backend's own version runs in
/// the cases it does not fuse.
pub(crate) fn relu_then_batch_norm_backward<B: BatchNormKernels + PointwiseKernels>(
    ctx: &B::Ctx,
    grad: BnGrad<'_, '_, B>,
) -> Result<BnGrads<B>> {
    // The ReLU's input is positive exactly where its output is, so the output serves
    // as the mask.
    let dy = B::pointwise_backward(ctx, Pointwise::Relu, &grad.y, &grad.dy)?;
    // Bound to a name so that the view of `dy` is dropped before `dy`.
    let grads = grad.batch_norm_backward(ctx, &B::view(ctx, &dy));
    grads
}

/// `max(γ·(x − μ)/√(σ² + eps) + β, 0)` per channel of `x [N,C,H,W]` (or `[N,C]`), NaN
/// propagated: the values of [`batch_norm`](super::batch_norm) then a ReLU, as one node.
///
/// ```
/// use sparta::autograd::Tape;
/// use sparta::ops::batchnorm::{relu::batch_norm_relu, BnStats};
///
/// let mut tape = Tape::<f32>::new();
/// let x = tape.leaf(&[4, 1, 1, 1], vec![1.0, 2.0, 3.0, 6.0], true)?;
/// let g = tape.leaf(&[1], vec![1.0], true)?;
/// let b = tape.leaf(&[1], vec![0.0], true)?;
/// let (mut mean, mut var) = (vec![0.0], vec![1.0]);
/// let stats = BnStats::Batch { running_mean: &mut mean, running_var: &mut var, momentum: 0.1 };
/// let y = batch_norm_relu(&mut tape, x, g, b, stats, 0.0)?;
/// // Batch mean 3: the inputs below and at it give 0.
/// assert_eq!(tape.value(y)[..3], [0.0, 0.0, 0.0]);
/// assert!(tape.value(y)[3] > 0.0);
/// assert!((mean[0] - 0.3).abs() < 1e-6);
/// # Ok::<(), sparta::Error>(())
/// ```
pub fn batch_norm_relu<B: BatchNormReluKernels>(
    tape: &mut Tape<'_, B>,
    x: Var,
    gamma: Var,
    beta: Var,
    stats: BnStats<'_, B>,
    eps: f64,
) -> Result<Var> {
    let rule = Rule {
        forward: B::bn_relu_forward,
        backward: B::bn_relu_backward,
    };
    push(tape, x, gamma, beta, stats, eps, rule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::batchnorm::batch_norm;
    use crate::ops::relu::relu;
    use crate::real::Real;

    /// The gradients the tape leaves in x, γ and β (where asked for), and the output.
    type Run<T> = (Vec<T>, [Option<Vec<T>>; 3]);

    /// `batch_norm` then `relu` (`fused` false) or `batch_norm_relu`, forward and
    /// backward from `dy`, in training or evaluation mode, with gradients asked for x
    /// and for the parameters as given.
    fn run<T: Real>(
        fused: bool,
        train: bool,
        grads: (bool, bool),
        shape: [usize; 4],
        x: &[T],
        dy: &[T],
    ) -> Run<T> {
        let c = shape[1];
        let gamma: Vec<T> = (0..c).map(|i| T::of_f64(0.5 + 0.25 * i as f64)).collect();
        // β = −0 on channel 0 (whose running mean is 0) and 0 on channel 2.
        let beta: Vec<T> = (0..c)
            .map(|i| T::of_f64(if i == 0 { -0.0 } else { 0.1 * i as f64 - 0.2 }))
            .collect();
        let mut mean: Vec<T> = (0..c).map(|i| T::of_f64(0.05 * i as f64)).collect();
        let mut var: Vec<T> = (0..c).map(|i| T::of_f64(0.8 + 0.1 * i as f64)).collect();
        let mut tape = Tape::<T>::new();
        let xv = tape.leaf(&shape, x.to_vec(), grads.0).unwrap();
        let g = tape.leaf(&[c], gamma, grads.1).unwrap();
        let b = tape.leaf(&[c], beta, grads.1).unwrap();
        let stats = match train {
            true => BnStats::Batch {
                running_mean: &mut mean,
                running_var: &mut var,
                momentum: 0.1,
            },
            false => BnStats::Running {
                mean: &mean,
                var: &var,
            },
        };
        let y = if fused {
            batch_norm_relu(&mut tape, xv, g, b, stats, 1e-5).unwrap()
        } else {
            let h = batch_norm(&mut tape, xv, g, b, stats, 1e-5).unwrap();
            relu(&mut tape, h).unwrap()
        };
        let out = tape.value(y).to_vec();
        tape.backward_with(y, dy.to_vec()).unwrap();
        let grad = |v| tape.grad(v).map(|g| g.to_vec());
        (out, [grad(xv), grad(g), grad(b)])
    }

    /// Same bits as the two ops, in every mode and for every choice of gradients, with
    /// outputs of exactly −0 (x = −0 on channel 0) and 0 (x at channel 2's mean) in
    /// evaluation mode, a −0 in dy, and a NaN.
    fn same_bits_as_the_pair<T: Real>(shape: [usize; 4]) {
        let len: usize = shape.iter().product();
        let hw = shape[2] * shape[3];
        let mut x: Vec<T> = (0..len)
            .map(|i| T::of_f64(((i * 37 % 101) as f64 - 50.0) / 17.0))
            .collect();
        x[0] = T::of_f64(-0.0);
        x[2 * hw] = T::of_f64(0.1);
        x[len - 1] = T::nan();
        let mut dy: Vec<T> = (0..len)
            .map(|i| T::of_f64(((i * 13 % 29) as f64 - 14.0) / 7.0))
            .collect();
        dy[1] = T::of_f64(-0.0);
        for train in [false, true] {
            for grads in [(true, false), (true, true), (false, true)] {
                let pair = run(false, train, grads, shape, &x, &dy);
                let fused = run(true, train, grads, shape, &x, &dy);
                let bits = |v: &[T]| v.iter().map(|t| t.as_f64().to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fused.0), bits(&pair.0), "forward, train {train}");
                for (k, (f, p)) in fused.1.iter().zip(&pair.1).enumerate() {
                    assert_eq!(
                        f.is_some(),
                        p.is_some(),
                        "gradient {k}, train {train} {grads:?}"
                    );
                    if let (Some(f), Some(p)) = (f, p) {
                        assert_eq!(bits(f), bits(p), "gradient {k}, train {train} {grads:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn same_bits_as_batch_norm_then_relu_f64() {
        same_bits_as_the_pair::<f64>([2, 3, 3, 5]);
    }

    /// A tensor of several rayon tasks, as in training.
    #[test]
    fn same_bits_as_batch_norm_then_relu_f32_in_parallel() {
        same_bits_as_the_pair::<f32>([8, 16, 28, 28]);
    }

    #[test]
    fn fused_evaluation_backward_checks_lengths() {
        let shape = BnShape::new(1, 2, 3).unwrap();
        let (y, dy, var, gamma) = (vec![1.0f64; 6], vec![1.0; 5], vec![1.0; 2], vec![1.0; 2]);
        let grad = BnGrad::<f64> {
            shape,
            x: &y,
            y: &y,
            dy: &dy,
            mean: &var,
            var: &var,
            gamma: &gamma,
            train: false,
            input: true,
            params: false,
            eps: 1e-5,
        };
        assert!(f64::bn_relu_backward(&(), grad).is_err());
    }
}
