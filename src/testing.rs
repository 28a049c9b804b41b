//! A small model for the attack and trainer tests: multinomial logistic regression with
//! SGD + momentum, its gradients written out by hand.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::attack::pgd::{argmax_rows, cross_entropy};
use crate::backend::{Backend, Buf, Ctx};
use crate::classifier::{BatchShape, Classifier, LossGrad, StepStats, Trainable};
use crate::error::{Error, Result};

/// `logits = W·x + b`, trained with SGD (momentum 0.9).
#[derive(Clone, Debug, PartialEq)]
pub struct SoftmaxRegression {
    pub classes: usize,
    pub inputs: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub velocity: Vec<f32>,
}

impl SoftmaxRegression {
    pub fn new(inputs: usize, classes: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let weight = (0..inputs * classes)
            .map(|_| rng.random_range(-0.1..0.1))
            .collect();
        SoftmaxRegression {
            classes,
            inputs,
            weight,
            bias: vec![0.0; classes],
            velocity: vec![0.0; (inputs + 1) * classes],
        }
    }

    /// Weights ten times [`Self::new`]'s (of size ~1), so that attack steps of a few
    /// hundredths move the logits visibly: the attack tests' model.
    pub fn sharp(inputs: usize, classes: usize, seed: u64) -> Self {
        let mut m = Self::new(inputs, classes, seed);
        m.weight.iter_mut().for_each(|w| *w *= 10.0);
        m
    }

    /// Softmax probabilities minus one-hot labels: dLoss/dlogits per sample.
    fn dlogits(&self, logits: &[f32], labels: &[usize]) -> Vec<f32> {
        let mut d = logits.to_vec();
        for (row, &l) in d.chunks_exact_mut(self.classes).zip(labels) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = row.iter().map(|z| (z - max).exp()).sum();
            for z in row.iter_mut() {
                *z = (*z - max).exp() / sum;
            }
            row[l] -= 1.0;
        }
        d
    }
}

/// `n` images of `features` values uniform in [0, 1) and `n` labels below `classes`,
/// drawn from ChaCha8 seeded with `seed` (images first).
pub fn random_batch(
    n: usize,
    features: usize,
    classes: usize,
    seed: u64,
) -> (Vec<f32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = (0..n * features)
        .map(|_| rng.random_range(0.0..1.0))
        .collect();
    let labels = (0..n).map(|_| rng.random_range(0..classes)).collect();
    (x, labels)
}

impl SoftmaxRegression {
    /// `dlogits` back to the input: `dx[n] = Wᵀ·dlogits[n]`.
    fn input_grad(&self, d: &[f32], n: usize) -> Vec<f32> {
        let mut grad = vec![0.0; n * self.inputs];
        for (gi, di) in grad
            .chunks_exact_mut(self.inputs)
            .zip(d.chunks_exact(self.classes))
        {
            for (wk, &dk) in self.weight.chunks_exact(self.inputs).zip(di) {
                for (g, w) in gi.iter_mut().zip(wk) {
                    *g += dk * w;
                }
            }
        }
        grad
    }
}

impl Classifier for SoftmaxRegression {
    type Backend = f32;

    fn ctx(&self) -> &() {
        &()
    }

    fn num_classes(&self) -> usize {
        self.classes
    }

    fn logits_on(&mut self, x: &Vec<f32>, shape: BatchShape) -> Result<Vec<f32>> {
        let n = shape[0];
        crate::error::check_len("softmax", "x", x.len(), n * self.inputs)?;
        let mut out = Vec::with_capacity(n * self.classes);
        for xi in x.chunks_exact(self.inputs) {
            for (k, wk) in self.weight.chunks_exact(self.inputs).enumerate() {
                out.push(self.bias[k] + wk.iter().zip(xi).map(|(a, b)| a * b).sum::<f32>());
            }
        }
        Ok(out)
    }

    fn input_vjp(
        &mut self,
        x: &Vec<f32>,
        shape: BatchShape,
        loss_grad: &mut LossGrad<'_, f32>,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let logits = self.logits_on(x, shape)?;
        let d = loss_grad(&(), &&logits[..])?;
        crate::error::check_len("softmax", "dlogits", d.len(), logits.len())?;
        let grad = self.input_grad(&d, shape[0]);
        Ok((logits, grad))
    }
}

impl Trainable for SoftmaxRegression {
    fn train_step_on(
        &mut self,
        x: &Vec<f32>,
        shape: BatchShape,
        labels: &Vec<usize>,
        lr: f32,
    ) -> Result<StepStats> {
        let n = shape[0];
        let logits = self.logits_on(x, shape)?;
        let loss = cross_entropy(&logits, self.classes, labels)
            .iter()
            .sum::<f32>()
            / n as f32;
        let correct = argmax_rows(&logits, self.classes)
            .iter()
            .zip(labels)
            .filter(|(p, l)| p == l)
            .count();
        let d = self.dlogits(&logits, labels);
        let mut grad = vec![0.0; self.velocity.len()];
        let (gw, gb) = grad.split_at_mut(self.inputs * self.classes);
        for (xi, di) in x
            .chunks_exact(self.inputs)
            .zip(d.chunks_exact(self.classes))
        {
            for (k, &dk) in di.iter().enumerate() {
                gb[k] += dk / n as f32;
                for (g, &xv) in gw[k * self.inputs..(k + 1) * self.inputs]
                    .iter_mut()
                    .zip(xi)
                {
                    *g += dk * xv / n as f32;
                }
            }
        }
        for (v, g) in self.velocity.iter_mut().zip(&grad) {
            *v = 0.9 * *v + g;
        }
        let (vw, vb) = self.velocity.split_at(self.inputs * self.classes);
        for (w, v) in self.weight.iter_mut().zip(vw) {
            *w -= lr * v;
        }
        for (b, v) in self.bias.iter_mut().zip(vb) {
            *b -= lr * v;
        }
        Ok(StepStats { loss, correct })
    }

    /// Weight, bias and velocity through [`crate::checkpoint`], as the real models
    /// save: atomically, and never with a non-finite value.
    fn save(&self, path: &Path) -> Result<()> {
        let tensors = [
            (
                "weight".to_string(),
                vec![self.weight.len()],
                &self.weight[..],
            ),
            ("bias".to_string(), vec![self.bias.len()], &self.bias[..]),
            (
                "velocity".to_string(),
                vec![self.velocity.len()],
                &self.velocity[..],
            ),
        ];
        crate::checkpoint::save(path, &tensors, Default::default())
    }

    fn load(&mut self, path: &Path) -> Result<()> {
        let (mut file, _) = crate::checkpoint::load::<f32>(path)?;
        let mut take = |name: &str, len: usize| match file.remove(name) {
            Some((_, v)) if v.len() == len => Ok(v),
            _ => Err(Error::format(path, format!("no {len}-value tensor {name}"))),
        };
        let weight = take("weight", self.weight.len())?;
        let bias = take("bias", self.bias.len())?;
        self.velocity = take("velocity", self.velocity.len())?;
        (self.weight, self.bias) = (weight, bias);
        Ok(())
    }
}

/// A [`Classifier`] that answers only [`Classifier::logits`], counting the calls and
/// the images evaluated; its gradient methods are errors: what a black-box attack may
/// use.
pub struct LogitsOnly<M> {
    pub inner: M,
    pub calls: usize,
    pub images: usize,
}

impl<M: Classifier> LogitsOnly<M> {
    pub fn new(inner: M) -> Self {
        LogitsOnly {
            inner,
            calls: 0,
            images: 0,
        }
    }
}

impl<M: Classifier> Classifier for LogitsOnly<M> {
    type Backend = M::Backend;

    fn ctx(&self) -> &Ctx<M::Backend> {
        self.inner.ctx()
    }

    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }

    fn logits_on(&mut self, x: &Buf<M::Backend>, shape: BatchShape) -> Result<Buf<M::Backend>> {
        self.calls += 1;
        self.images += shape[0];
        self.inner.logits_on(x, shape)
    }

    fn input_vjp(
        &mut self,
        _: &Buf<M::Backend>,
        _: BatchShape,
        _: &mut LossGrad<'_, M::Backend>,
    ) -> Result<(Buf<M::Backend>, Buf<M::Backend>)> {
        Err(Error::Config("LogitsOnly gives no gradients".into()))
    }
}

/// What [`MaskedGradients`] returns in place of the input gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mask {
    /// Zeros: a model whose gradient vanishes (saturation, a non-differentiable step).
    Zero,
    /// Uniform noise in [−1, 1], a fresh draw per call: shattered gradients.
    Noise,
}

/// A model built to mask its gradients: the logits of `inner`, but input gradients
/// that carry no information about them.
pub struct MaskedGradients<M> {
    pub inner: M,
    pub mask: Mask,
    rng: ChaCha8Rng,
}

impl<M: Classifier> MaskedGradients<M> {
    pub fn new(inner: M, mask: Mask) -> Self {
        MaskedGradients {
            inner,
            mask,
            rng: ChaCha8Rng::seed_from_u64(17),
        }
    }

    fn gradient(&mut self, len: usize) -> Vec<f32> {
        match self.mask {
            Mask::Zero => vec![0.0; len],
            Mask::Noise => (0..len).map(|_| self.rng.random_range(-1.0..1.0)).collect(),
        }
    }
}

impl<M: Classifier> Classifier for MaskedGradients<M> {
    type Backend = M::Backend;

    fn ctx(&self) -> &Ctx<M::Backend> {
        self.inner.ctx()
    }

    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }

    fn logits_on(&mut self, x: &Buf<M::Backend>, shape: BatchShape) -> Result<Buf<M::Backend>> {
        self.inner.logits_on(x, shape)
    }

    /// The logits and the loss evaluation of `inner` (so the caller's loss is computed
    /// as usual), with the masked gradient in place of the input gradient.
    fn input_vjp(
        &mut self,
        x: &Buf<M::Backend>,
        shape: BatchShape,
        loss_grad: &mut LossGrad<'_, M::Backend>,
    ) -> Result<(Buf<M::Backend>, Buf<M::Backend>)> {
        let (logits, _) = self.inner.input_vjp(x, shape, loss_grad)?;
        let grad = self.gradient(shape.iter().product());
        let grad = M::Backend::upload(self.inner.ctx(), "masked gradient", &grad)?;
        Ok((logits, grad))
    }
}
