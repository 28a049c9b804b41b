//! Softmax cross-entropy on a [`KernelDevice`] (`kernels/cross_entropy.cu`), f32, over
//! device views: per-row losses, the logit gradient and correct-prediction flags, then
//! the batch loss and the number correct reduced in one block (deterministic).

use super::CrossEntropy;
use super::{cross_entropy_reduce_launch, cross_entropy_rows_launch, Reduction};
use crate::alloc::CachingDevice;
use crate::backend::{OnDevice, View};
use crate::error::{check_len, Error, Result};
use crate::launch::{Determinism, KernelArg, KernelDevice, ViewLen};
use crate::ops::kernel_args::{element_count, kernel_int};

/// The device buffers [`cross_entropy`] writes; all are overwritten.
pub struct CrossEntropyOut<'a, 'b, D: KernelDevice> {
    /// Per-sample loss `[n]`.
    pub loss: &'a mut D::ViewMut<'b, f32>,
    /// Gradient of the reduced loss with respect to the logits `[n, classes]`.
    pub dlogits: &'a mut D::ViewMut<'b, f32>,
    /// 1 where the first largest logit is the label, else 0 `[n]`.
    pub correct: &'a mut D::ViewMut<'b, i32>,
    /// The reduced loss `[1]`: mean or sum over the batch.
    pub loss_total: &'a mut D::ViewMut<'b, f32>,
    /// The number of correct predictions `[1]`.
    pub correct_total: &'a mut D::ViewMut<'b, i32>,
}

/// Cross-entropy of `logits [n, classes]` against `labels` (each in `0..classes`; one
/// outside gives a NaN loss), reduced as `reduction` says, with the gradient of that
/// reduced loss and the accuracy count (kernels `cross_entropy_rows_f32` then
/// `cross_entropy_reduce_f32`).
pub fn cross_entropy<D: KernelDevice>(
    dev: &D,
    n: usize,
    classes: usize,
    logits: &D::View<'_, f32>,
    labels: &D::View<'_, i32>,
    reduction: Reduction,
    out: CrossEntropyOut<'_, '_, D>,
) -> Result<()> {
    const OP: &str = "cross_entropy";
    let len = element_count(OP, "n·classes", &[n, classes])?;
    check_len(OP, "logits", logits.len(), len)?;
    check_len(OP, "labels", labels.len(), n)?;
    check_len(OP, "dlogits", out.dlogits.len(), len)?;
    check_len(OP, "loss", out.loss.len(), n)?;
    check_len(OP, "correct", out.correct.len(), n)?;
    check_len(OP, "loss total", out.loss_total.len(), 1)?;
    check_len(OP, "correct total", out.correct_total.len(), 1)?;
    kernel_int(OP, "n·classes", len)?;
    let (n_arg, classes_arg) = (kernel_int(OP, "n", n)?, kernel_int(OP, "classes", classes)?);
    // as the CPU op forms it, in the working precision
    let scale = match reduction {
        Reduction::Mean => 1.0f32 / n.max(1) as f32,
        Reduction::Sum => 1.0f32,
    };
    {
        let args = [
            dev.read(logits),
            dev.read(labels),
            dev.write(out.loss),
            dev.write(out.dlogits),
            dev.write(out.correct),
            KernelArg::I32(n_arg),
            KernelArg::I32(classes_arg),
            KernelArg::F32(scale),
        ];
        // SAFETY: matches cross_entropy_rows_f32(const float* logits, const int* labels,
        // float* loss, float* dlogits, int* correct, int n, int k, float grad_scale);
        // logits and dlogits hold n·classes elements, labels, loss and correct n
        // (checked above); warps past row n - 1 return, and a label outside [0, k) is
        // never used as an index.
        unsafe {
            dev.launch(
                "cross_entropy",
                "cross_entropy_rows_f32",
                cross_entropy_rows_launch(n),
                Determinism::BitExact,
                &args,
            )
        }?;
    }
    let (loss, correct) = (dev.as_view(out.loss), dev.as_view(out.correct));
    let args = [
        dev.read(&loss),
        dev.read(&correct),
        dev.write(out.loss_total),
        dev.write(out.correct_total),
        KernelArg::I32(n_arg),
        KernelArg::F32(scale),
    ];
    // SAFETY: matches cross_entropy_reduce_f32(const float* loss, const int* correct,
    // float* loss_total, int* correct_total, int n, float loss_scale); loss and correct
    // hold n elements, the totals one (checked above).
    unsafe {
        dev.launch(
            "cross_entropy",
            "cross_entropy_reduce_f32",
            cross_entropy_reduce_launch(),
            Determinism::BitExact,
            &args,
        )
    }
}

impl<D: KernelDevice + 'static> super::LossKernels for OnDevice<D> {
    type Labels = <CachingDevice<D> as KernelDevice>::Buffer<i32>;
    type Count = <CachingDevice<D> as KernelDevice>::Buffer<i32>;

    fn upload_labels(
        dev: &CachingDevice<D>,
        labels: &[usize],
        classes: usize,
    ) -> Result<Self::Labels> {
        let as_i32 = labels
            .iter()
            .map(|&l| {
                i32::try_from(l)
                    .ok()
                    .filter(|_| l < classes)
                    .ok_or_else(|| {
                        Error::Config(format!("cross_entropy: label {l} with {classes} classes"))
                    })
            })
            .collect::<Result<Vec<i32>>>()?;
        dev.upload("labels", &as_i32)
    }

    fn cross_entropy(
        dev: &CachingDevice<D>,
        n: usize,
        classes: usize,
        logits: &View<'_, Self>,
        labels: &Self::Labels,
        reduction: Reduction,
    ) -> Result<CrossEntropy<Self>> {
        let mut rows = dev.alloc_scratch::<f32>("loss", n)?;
        let mut dlogits = dev.alloc_scratch::<f32>("dlogits", n * classes)?;
        let mut correct_rows = dev.alloc_scratch::<i32>("correct", n)?;
        let mut total = dev.alloc_scratch::<f32>("loss_total", 1)?;
        let mut correct = dev.alloc_scratch::<i32>("correct_total", 1)?;
        cross_entropy(
            dev,
            n,
            classes,
            logits,
            &dev.view(labels),
            reduction,
            CrossEntropyOut {
                loss: &mut dev.view_mut(&mut rows),
                dlogits: &mut dev.view_mut(&mut dlogits),
                correct: &mut dev.view_mut(&mut correct_rows),
                loss_total: &mut dev.view_mut(&mut total),
                correct_total: &mut dev.view_mut(&mut correct),
            },
        )?;
        Ok(CrossEntropy {
            rows,
            dlogits,
            total,
            correct,
        })
    }

    fn read_count(dev: &CachingDevice<D>, count: &Self::Count) -> Result<usize> {
        Ok(dev.download(&dev.view(count))?[0].max(0) as usize)
    }
}
