//! Softmax cross-entropy on a CUDA GPU (`kernels/cross_entropy.cu`), f32, over device
//! views: per-row losses, the logit gradient and correct-prediction flags, then the
//! batch loss and the number correct reduced in one block (deterministic).

use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

use super::{cross_entropy_reduce_launch, cross_entropy_rows_launch, Reduction};
use crate::error::{check_len, Result};
use crate::ops::kernel_args::kernel_int;
use crate::Gpu;

/// The device buffers [`cross_entropy`] writes; all are overwritten.
pub struct CrossEntropyOut<'a, 'b> {
    /// Per-sample loss `[n]`.
    pub loss: &'a mut CudaViewMut<'b, f32>,
    /// Gradient of the reduced loss with respect to the logits `[n, classes]`.
    pub dlogits: &'a mut CudaViewMut<'b, f32>,
    /// 1 where the first largest logit is the label, else 0 `[n]`.
    pub correct: &'a mut CudaViewMut<'b, i32>,
    /// The reduced loss `[1]`: mean or sum over the batch.
    pub loss_total: &'a mut CudaViewMut<'b, f32>,
    /// The number of correct predictions `[1]`.
    pub correct_total: &'a mut CudaViewMut<'b, i32>,
}

/// Cross-entropy of `logits [n, classes]` against `labels` (each in `0..classes`; one
/// outside gives a NaN loss), reduced as `reduction` says, with the gradient of that
/// reduced loss and the accuracy count.
pub fn cross_entropy(
    gpu: &Gpu,
    n: usize,
    classes: usize,
    logits: &CudaView<'_, f32>,
    labels: &CudaView<'_, i32>,
    reduction: Reduction,
    out: CrossEntropyOut<'_, '_>,
) -> Result<()> {
    const OP: &str = "cross_entropy";
    check_len(OP, "logits", logits.len(), n * classes)?;
    check_len(OP, "labels", labels.len(), n)?;
    check_len(OP, "dlogits", out.dlogits.len(), n * classes)?;
    check_len(OP, "loss", out.loss.len(), n)?;
    check_len(OP, "correct", out.correct.len(), n)?;
    check_len(OP, "loss total", out.loss_total.len(), 1)?;
    check_len(OP, "correct total", out.correct_total.len(), 1)?;
    kernel_int(OP, "n·classes", n * classes)?;
    let (n_i, k_i) = (kernel_int(OP, "n", n)?, kernel_int(OP, "classes", classes)?);
    // as the CPU op forms it, in the working precision
    let scale = match reduction {
        Reduction::Mean => 1.0f32 / n.max(1) as f32,
        Reduction::Sum => 1.0f32,
    };
    let stream = gpu.stream();
    {
        let f = gpu.function("cross_entropy", "cross_entropy_rows_f32")?;
        let mut launch = stream.launch_builder(&f);
        launch.arg(logits).arg(labels);
        launch
            .arg(&mut *out.loss)
            .arg(&mut *out.dlogits)
            .arg(&mut *out.correct);
        launch.arg(&n_i).arg(&k_i).arg(&scale);
        // SAFETY: matches cross_entropy_rows_f32(logits, labels, loss, dlogits, correct, n, k,
        // grad_scale); lengths checked.
        unsafe { launch.launch(cross_entropy_rows_launch(n).into()) }?;
    }
    let (loss, correct) = (out.loss.as_view(), out.correct.as_view());
    let f = gpu.function("cross_entropy", "cross_entropy_reduce_f32")?;
    let mut launch = stream.launch_builder(&f);
    launch.arg(&loss).arg(&correct);
    launch.arg(out.loss_total).arg(out.correct_total);
    launch.arg(&n_i).arg(&scale);
    // SAFETY: matches cross_entropy_reduce_f32(loss, correct, loss_total, correct_total,
    // n, loss_scale); lengths checked.
    unsafe { launch.launch(cross_entropy_reduce_launch().into()) }?;
    Ok(())
}
