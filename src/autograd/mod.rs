//! A small, explicit reverse-mode tape.
//!
//! Every op evaluates its forward pass eagerly, pushes the result as a node and, when
//! any input needs a gradient, a backward closure. [`Tape::backward`] walks the nodes in
//! reverse, hands each closure the gradient of its output, and adds what it returns
//! into its inputs' gradients. Closures capture input handles ([`Var`]) and read the
//! input values from the tape, so nothing is copied twice.
//!
//! Leaves are created with or without `requires_grad`. Nodes none of whose inputs need
//! a gradient get no closure, and ops skip the gradients of inputs that do not need
//! one: asking only for the input's gradient (PGD) never computes weight gradients.
//!
//! ```
//! use sparta::autograd::Tape;
//! use sparta::tensor::Tensor;
//!
//! let mut tape = Tape::<f64>::new();
//! let x = tape.leaf(Tensor::new(&[3], vec![1.0, -2.0, 3.0])?, true);
//! let y = sparta::ops::relu::relu(&mut tape, x)?;
//! let s = sparta::ops::add::sum(&mut tape, y)?;
//! tape.backward(s)?;
//! assert_eq!(tape.grad(x).unwrap(), &[1.0, 0.0, 1.0]);
//! # Ok::<(), sparta::Error>(())
//! ```

pub mod device;
#[cfg(test)]
pub(crate) mod gradcheck;

use crate::error::{Error, Result};
use crate::real::Real;
use crate::tensor::Tensor;

/// Handle of one node on a [`Tape`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var(usize);

/// What a backward closure sees: the values of every node and which need gradients.
pub struct Nodes<'a, T> {
    values: &'a [Tensor<T>],
    requires_grad: &'a [bool],
}

impl<T> Nodes<'_, T> {
    /// The forward value of `v`.
    pub fn value(&self, v: Var) -> &Tensor<T> {
        &self.values[v.0]
    }

    /// Whether `v` needs a gradient (closures skip the work for inputs that do not).
    pub fn requires_grad(&self, v: Var) -> bool {
        self.requires_grad[v.0]
    }
}

/// Gradients a backward closure returns: one per input that needs one.
pub type InputGrads<T> = Vec<(Var, Vec<T>)>;

/// A node's backward: given the tape and the gradient of the node's output, the
/// gradients of its inputs.
pub type BackwardFn<T> = Box<dyn FnOnce(&Nodes<'_, T>, &[T]) -> Result<InputGrads<T>>>;

/// The tape: node values, which need gradients, backward closures and gradients.
pub struct Tape<T> {
    values: Vec<Tensor<T>>,
    requires_grad: Vec<bool>,
    backward: Vec<Option<BackwardFn<T>>>,
    grads: Vec<Option<Vec<T>>>,
}

impl<T: Real> Default for Tape<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Real> Tape<T> {
    /// An empty tape.
    pub fn new() -> Self {
        Tape {
            values: Vec::new(),
            requires_grad: Vec::new(),
            backward: Vec::new(),
            grads: Vec::new(),
        }
    }

    /// Pushes an input or parameter.
    pub fn leaf(&mut self, value: Tensor<T>, requires_grad: bool) -> Var {
        self.push(value, requires_grad, None)
    }

    /// Pushes the result of an op. The closure is kept only if some input needs a
    /// gradient; it is built lazily so ops pay nothing for it otherwise.
    pub fn push_op(
        &mut self,
        value: Tensor<T>,
        inputs: &[Var],
        backward: impl FnOnce() -> BackwardFn<T>,
    ) -> Var {
        let needs = inputs.iter().any(|v| self.requires_grad[v.0]);
        let closure = needs.then(backward);
        self.push(value, needs, closure)
    }

    fn push(&mut self, value: Tensor<T>, requires_grad: bool, f: Option<BackwardFn<T>>) -> Var {
        self.values.push(value);
        self.requires_grad.push(requires_grad);
        self.backward.push(f);
        self.grads.push(None);
        Var(self.values.len() - 1)
    }

    /// The forward value of `v`.
    pub fn value(&self, v: Var) -> &Tensor<T> {
        &self.values[v.0]
    }

    /// The shape of `v`.
    pub fn shape(&self, v: Var) -> &[usize] {
        self.values[v.0].shape()
    }

    /// Whether `v` needs a gradient.
    pub fn requires_grad(&self, v: Var) -> bool {
        self.requires_grad[v.0]
    }

    /// Back-propagates from the scalar `root` (seed 1).
    pub fn backward(&mut self, root: Var) -> Result<()> {
        if self.values[root.0].len() != 1 {
            return Err(Error::shape(
                "backward",
                "root",
                "one element",
                format!("{:?}", self.values[root.0].shape()),
            ));
        }
        self.backward_with(root, vec![T::one()])
    }

    /// Back-propagates from `root` with the given output gradient.
    pub fn backward_with(&mut self, root: Var, seed: Vec<T>) -> Result<()> {
        crate::error::check_len("backward", "seed", seed.len(), self.values[root.0].len())?;
        self.grads[root.0] = Some(seed);
        for i in (0..=root.0).rev() {
            let Some(f) = self.backward[i].take() else {
                continue;
            };
            // Intermediate gradients are dropped once used; leaves keep theirs.
            let Some(dy) = self.grads[i].take() else {
                continue;
            };
            let nodes = Nodes {
                values: &self.values,
                requires_grad: &self.requires_grad,
            };
            for (input, g) in f(&nodes, &dy)? {
                debug_assert!(input.0 < i, "backward returned a gradient for a later node");
                crate::error::check_len(
                    "backward",
                    "input gradient",
                    g.len(),
                    self.values[input.0].len(),
                )?;
                match &mut self.grads[input.0] {
                    Some(acc) => acc.iter_mut().zip(&g).for_each(|(a, b)| *a += *b),
                    slot => *slot = Some(g),
                }
            }
        }
        Ok(())
    }

    /// The gradient accumulated in leaf `v` by [`Tape::backward`], if any reached it.
    pub fn grad(&self, v: Var) -> Option<&[T]> {
        self.grads[v.0].as_deref()
    }

    /// Takes the gradient of leaf `v` out of the tape.
    pub fn take_grad(&mut self, v: Var) -> Option<Vec<T>> {
        self.grads[v.0].take()
    }
}
