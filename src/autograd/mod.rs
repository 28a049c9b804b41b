//! A small, explicit reverse-mode tape over any [`Backend`].
//!
//! Every op evaluates its forward pass eagerly (on a device: queued), pushes the result
//! as a node and, when any input needs a gradient, a backward closure. [`Tape::backward`]
//! walks the nodes in reverse, hands each closure the gradient of its output (the
//! closure owns it, so it may pass it on as an input's gradient without a copy), and
//! sums what it returns into its inputs' gradients on the backend. Closures capture
//! input handles ([`Var`]) and read the input values from the tape, so nothing is
//! copied twice.
//!
//! Leaves are created with or without `requires_grad`. Nodes none of whose inputs need
//! a gradient get no closure, and ops skip the gradients of inputs that do not need
//! one: asking only for the input's gradient (PGD) never computes weight gradients.
//! A model's parameters are leaves that refer to its own buffers ([`Tape::param`]), so
//! a forward pass copies no parameter.
//!
//! The same tape runs on the host in f64 (the finite-difference checks) and f32, and on
//! any device:
//!
//! ```
//! use sparta::autograd::Tape;
//!
//! let mut tape = Tape::<f64>::new();
//! let x = tape.leaf(&[3], vec![1.0, -2.0, 3.0], true)?;
//! let y = sparta::ops::relu::relu(&mut tape, x)?;
//! let s = sparta::ops::add::sum(&mut tape, y)?;
//! tape.backward(s)?;
//! assert_eq!(tape.grad(x).unwrap(), &[1.0, 0.0, 1.0]);
//! # Ok::<(), sparta::Error>(())
//! ```

#[cfg(test)]
pub(crate) mod gradcheck;

use num_traits::One;

use crate::backend::Backend;
use crate::error::{check_len, Error, Result};

/// Handle of one node on a [`Tape`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var(usize);

/// Where a node's value is.
enum Value<'t, Buf> {
    /// A buffer the tape owns (an input, or an op's output).
    Owned(Buf),
    /// A buffer the caller owns (a batch of images), read where it is.
    Borrowed(&'t Buf),
    /// `params[i]` of the model the tape runs over.
    Param(usize),
}

/// Gradients a backward closure returns: one per input that needs one.
pub type Grads<B> = Vec<(Var, <B as Backend>::Buf)>;

/// A node's backward: given the nodes and the gradient of the node's output (owned by
/// the closure), the gradients of its inputs (buffers the tape then owns and sums).
pub type BackwardFn<B> = Box<dyn FnOnce(&Nodes<'_, B>, <B as Backend>::Buf) -> Result<Grads<B>>>;

struct Node<'t, B: Backend> {
    shape: Vec<usize>,
    value: Value<'t, B::Buf>,
    requires_grad: bool,
    backward: Option<BackwardFn<B>>,
    grad: Option<B::Buf>,
}

/// What a backward closure sees: the backend's context and the nodes' values.
pub struct Nodes<'a, B: Backend> {
    ctx: &'a B::Ctx,
    params: &'a [B::Buf],
    nodes: &'a [Node<'a, B>],
    /// The node whose backward runs.
    running: usize,
}

impl<'a, B: Backend> Nodes<'a, B> {
    /// The backend's context.
    pub fn ctx(&self) -> &'a B::Ctx {
        self.ctx
    }

    /// The forward value of `v`.
    pub fn value(&self, v: Var) -> B::View<'a> {
        view_of::<B>(self.ctx, self.params, &self.nodes[v.0])
    }

    /// The shape of `v`.
    pub fn shape(&self, v: Var) -> &'a [usize] {
        &self.nodes[v.0].shape
    }

    /// The forward value of the node whose backward runs: the op's own output, for
    /// rules that read it (a ReLU's mask) without keeping a copy.
    pub fn output(&self) -> B::View<'a> {
        view_of::<B>(self.ctx, self.params, &self.nodes[self.running])
    }

    /// Whether `v` needs a gradient (closures skip the work for inputs that do not).
    pub fn requires_grad(&self, v: Var) -> bool {
        self.nodes[v.0].requires_grad
    }
}

fn view_of<'a, B: Backend>(
    ctx: &B::Ctx,
    params: &'a [B::Buf],
    node: &'a Node<'_, B>,
) -> B::View<'a> {
    match &node.value {
        Value::Owned(b) => B::view(ctx, b),
        Value::Borrowed(b) => B::view(ctx, b),
        Value::Param(i) => B::view(ctx, &params[*i]),
    }
}

/// The tape: nodes with their values, shapes, backward closures and gradients, over
/// the backend context `ctx` and the parameters of the model that runs on it.
pub struct Tape<'t, B: Backend> {
    ctx: &'t B::Ctx,
    params: &'t [B::Buf],
    nodes: Vec<Node<'t, B>>,
}

impl<B: Backend<Ctx = ()>> Default for Tape<'static, B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Backend<Ctx = ()>> Tape<'static, B> {
    /// An empty tape on the host, with no model parameters.
    pub fn new() -> Self {
        Tape::on(&(), &[])
    }
}

impl<'t, B: Backend> Tape<'t, B> {
    /// An empty tape on the backend of `ctx`, whose parameter leaves refer to `params`.
    pub fn on(ctx: &'t B::Ctx, params: &'t [B::Buf]) -> Self {
        Tape {
            ctx,
            params,
            nodes: Vec::new(),
        }
    }

    /// The backend's context.
    pub fn ctx(&self) -> &'t B::Ctx {
        self.ctx
    }

    /// Pushes an input the tape owns; errors if its length is not the product of
    /// `shape`.
    pub fn leaf(&mut self, shape: &[usize], value: B::Buf, requires_grad: bool) -> Result<Var> {
        check_len(
            "tape",
            "leaf",
            B::len(self.ctx, &value),
            shape.iter().product(),
        )?;
        Ok(self.push(Value::Owned(value), shape, requires_grad, None))
    }

    /// Pushes a buffer the caller owns as a leaf, without copying it (a batch of images
    /// that outlives the pass); errors if its length is not the product of `shape`.
    pub fn input(
        &mut self,
        shape: &[usize],
        value: &'t B::Buf,
        requires_grad: bool,
    ) -> Result<Var> {
        check_len(
            "tape",
            "input",
            B::len(self.ctx, value),
            shape.iter().product(),
        )?;
        Ok(self.push(Value::Borrowed(value), shape, requires_grad, None))
    }

    /// Pushes model parameter `params[index]` as a leaf, without copying it; errors if
    /// there is no such parameter or its length is not the product of `shape`.
    pub fn param(&mut self, index: usize, shape: &[usize], requires_grad: bool) -> Result<Var> {
        let param = self.params.get(index).ok_or_else(|| {
            Error::shape(
                "tape",
                "parameter index",
                format!("< {}", self.params.len()),
                index,
            )
        })?;
        check_len(
            "tape",
            "parameter",
            B::len(self.ctx, param),
            shape.iter().product(),
        )?;
        Ok(self.push(Value::Param(index), shape, requires_grad, None))
    }

    /// Pushes the result of an op. The closure is kept only if some input needs a
    /// gradient; it is built lazily so ops pay nothing for it otherwise.
    pub fn push_op(
        &mut self,
        value: B::Buf,
        shape: &[usize],
        inputs: &[Var],
        backward: impl FnOnce() -> BackwardFn<B>,
    ) -> Result<Var> {
        check_len(
            "tape",
            "op output",
            B::len(self.ctx, &value),
            shape.iter().product(),
        )?;
        let needs = inputs.iter().any(|v| self.nodes[v.0].requires_grad);
        let closure = needs.then(backward);
        Ok(self.push(Value::Owned(value), shape, needs, closure))
    }

    fn push(
        &mut self,
        value: Value<'t, B::Buf>,
        shape: &[usize],
        requires_grad: bool,
        backward: Option<BackwardFn<B>>,
    ) -> Var {
        self.nodes.push(Node {
            shape: shape.to_vec(),
            value,
            requires_grad,
            backward,
            grad: None,
        });
        Var(self.nodes.len() - 1)
    }

    /// The forward value of `v`.
    pub fn value(&self, v: Var) -> B::View<'_> {
        view_of::<B>(self.ctx, self.params, &self.nodes[v.0])
    }

    /// The shape of `v`.
    pub fn shape(&self, v: Var) -> &[usize] {
        &self.nodes[v.0].shape
    }

    /// Whether `v` needs a gradient.
    pub fn requires_grad(&self, v: Var) -> bool {
        self.nodes[v.0].requires_grad
    }

    /// Back-propagates from the scalar `root` (seed 1).
    pub fn backward(&mut self, root: Var) -> Result<()> {
        if self.nodes[root.0].shape.iter().product::<usize>() != 1 {
            return Err(Error::shape(
                "backward",
                "root",
                "one element",
                format!("{:?}", self.nodes[root.0].shape),
            ));
        }
        let seed = B::upload(self.ctx, "seed", &[B::Real::one()])?;
        self.backward_with(root, seed)
    }

    /// Back-propagates from `root` with the output gradient `seed` (a buffer of the
    /// root's length).
    pub fn backward_with(&mut self, root: Var, seed: B::Buf) -> Result<()> {
        let ctx = self.ctx;
        check_len(
            "backward",
            "seed",
            B::len(ctx, &seed),
            self.nodes[root.0].shape.iter().product(),
        )?;
        self.nodes[root.0].grad = Some(seed);
        for i in (0..=root.0).rev() {
            let Some(f) = self.nodes[i].backward.take() else {
                continue;
            };
            // Intermediate gradients are dropped once used; leaves keep theirs.
            let Some(dy) = self.nodes[i].grad.take() else {
                continue;
            };
            let grads = {
                let nodes = Nodes {
                    ctx,
                    params: self.params,
                    nodes: &self.nodes,
                    running: i,
                };
                f(&nodes, dy)?
            };
            for (input, g) in grads {
                if input.0 >= i {
                    return Err(Error::Config(format!(
                        "the backward of node {i} returned a gradient for node {}",
                        input.0
                    )));
                }
                let node = &mut self.nodes[input.0];
                check_len(
                    "backward",
                    "input gradient",
                    B::len(ctx, &g),
                    node.shape.iter().product(),
                )?;
                node.grad = Some(match node.grad.take() {
                    Some(mut acc) => {
                        B::add_assign(ctx, &mut acc, &B::view(ctx, &g))?;
                        acc
                    }
                    None => g,
                });
            }
        }
        Ok(())
    }

    /// The gradient accumulated in leaf `v` by [`Tape::backward`], if any reached it.
    pub fn grad(&self, v: Var) -> Option<B::View<'_>> {
        self.nodes[v.0].grad.as_ref().map(|g| B::view(self.ctx, g))
    }

    /// Takes the gradient of leaf `v` out of the tape.
    pub fn take_grad(&mut self, v: Var) -> Option<B::Buf> {
        self.nodes[v.0].grad.take()
    }
}
