//! The tape for tensors that live on a [`KernelDevice`] (a GPU, or the CPU kernel
//! harness in tests): [`DeviceTape`], the twin of [`super::Tape`].
//!
//! Same rules as the CPU tape: ops run their forward eagerly (queued on the device),
//! push a node and, only when an input needs a gradient, a backward closure; the
//! backward walks the nodes in reverse and sums what reaches each node. Values and
//! gradients are device buffers, so nothing crosses to the host: gradients that meet at
//! one node are summed on the device by `add_forward_f32`.
//!
//! Parameters are not copied onto the tape: [`DeviceTape::param`] makes a leaf that
//! refers to the model's own buffer (`params[i]`), so a forward pass costs no parameter
//! traffic.
//!
//! ```
//! use sparta::autograd::device::DeviceTape;
//! use sparta::KernelDevice;
//! # fn demo<D: KernelDevice>(dev: &D) -> sparta::Result<()> {
//! let params = vec![dev.upload("w", &[1.0f32, -2.0, 3.0])?];
//! let mut tape = DeviceTape::new(dev, &params);
//! let w = tape.param(0, &[3], true);
//! let y = tape.relu(w)?;
//! tape.backward_with(y, dev.upload("dy", &[1.0f32; 3])?)?;
//! assert_eq!(dev.download(&dev.view(&tape.take_grad(w).unwrap()))?, [1.0, 0.0, 1.0]);
//! # Ok(()) }
//! ```

use super::Var;
use crate::error::{check_len, Error, Result};
use crate::launch::{KernelDevice, ViewLen};
use crate::ops::add::cuda::add_forward;
use crate::ops::pointwise::cuda::{pointwise_backward, pointwise_forward};
use crate::ops::pointwise::Pointwise;

/// Where a node's value is.
enum Value<B> {
    /// A buffer the tape owns (an op's output).
    Owned(B),
    /// `params[i]` of the model.
    Param(usize),
}

/// Gradients a device backward closure returns: one per input that needs one.
pub type DeviceGrads<D> = Vec<(Var, <D as KernelDevice>::Buffer<f32>)>;

/// A node's backward on the device: given the nodes and the gradient of the node's
/// output (the closure owns it, so it may pass it on as an input's gradient instead of
/// copying it), the gradients of its inputs (buffers the tape then owns and sums).
pub type DeviceBackwardFn<D> = Box<
    dyn FnOnce(&DeviceNodes<'_, D>, <D as KernelDevice>::Buffer<f32>) -> Result<DeviceGrads<D>>,
>;

struct Node<D: KernelDevice> {
    shape: Vec<usize>,
    value: Value<D::Buffer<f32>>,
    requires_grad: bool,
    backward: Option<DeviceBackwardFn<D>>,
    grad: Option<D::Buffer<f32>>,
}

/// What a backward closure sees: the device and the nodes' values.
pub struct DeviceNodes<'t, D: KernelDevice> {
    dev: &'t D,
    params: &'t [D::Buffer<f32>],
    nodes: &'t [Node<D>],
}

impl<'t, D: KernelDevice> DeviceNodes<'t, D> {
    /// The device.
    pub fn dev(&self) -> &'t D {
        self.dev
    }

    /// The forward value of `v`.
    pub fn value(&self, v: Var) -> D::View<'t, f32> {
        view_of(self.dev, self.params, &self.nodes[v.0])
    }

    /// The shape of `v`.
    pub fn shape(&self, v: Var) -> &'t [usize] {
        &self.nodes[v.0].shape
    }

    /// Whether `v` needs a gradient.
    pub fn requires_grad(&self, v: Var) -> bool {
        self.nodes[v.0].requires_grad
    }
}

fn view_of<'t, D: KernelDevice>(
    dev: &D,
    params: &'t [D::Buffer<f32>],
    node: &'t Node<D>,
) -> D::View<'t, f32> {
    match &node.value {
        Value::Owned(b) => dev.view(b),
        Value::Param(i) => dev.view(&params[*i]),
    }
}

/// A reverse-mode tape over device buffers (see the module docs).
pub struct DeviceTape<'t, D: KernelDevice> {
    dev: &'t D,
    params: &'t [D::Buffer<f32>],
    nodes: Vec<Node<D>>,
}

impl<'t, D: KernelDevice> DeviceTape<'t, D> {
    /// An empty tape whose parameter leaves refer to `params`.
    pub fn new(dev: &'t D, params: &'t [D::Buffer<f32>]) -> Self {
        Self {
            dev,
            params,
            nodes: Vec::new(),
        }
    }

    /// The device.
    pub fn dev(&self) -> &'t D {
        self.dev
    }

    /// Pushes an input the tape owns; errors if its length is not the product of `shape`.
    pub fn leaf(
        &mut self,
        value: D::Buffer<f32>,
        shape: &[usize],
        requires_grad: bool,
    ) -> Result<Var> {
        let len = self.dev.view(&value).len();
        check_len("device_tape", "leaf", len, shape.iter().product())?;
        Ok(self.push(Value::Owned(value), shape, requires_grad, None))
    }

    /// Pushes parameter `params[index]` as a leaf, without copying it.
    ///
    /// # Panics
    ///
    /// If `index` is out of range or `shape` does not match the buffer: the model that
    /// owns the parameters lays them out, so a mismatch is a bug there.
    pub fn param(&mut self, index: usize, shape: &[usize], requires_grad: bool) -> Var {
        let len = self.dev.view(&self.params[index]).len();
        assert_eq!(len, shape.iter().product::<usize>(), "parameter {index}");
        self.push(Value::Param(index), shape, requires_grad, None)
    }

    /// Pushes the result of an op. The closure is kept only if some input needs a
    /// gradient; it is built lazily so ops pay nothing for it otherwise.
    pub fn push_op(
        &mut self,
        value: D::Buffer<f32>,
        shape: &[usize],
        inputs: &[Var],
        backward: impl FnOnce() -> DeviceBackwardFn<D>,
    ) -> Result<Var> {
        let len = self.dev.view(&value).len();
        check_len("device_tape", "op output", len, shape.iter().product())?;
        let needs = inputs.iter().any(|v| self.nodes[v.0].requires_grad);
        let closure = needs.then(backward);
        Ok(self.push(Value::Owned(value), shape, needs, closure))
    }

    fn push(
        &mut self,
        value: Value<D::Buffer<f32>>,
        shape: &[usize],
        requires_grad: bool,
        backward: Option<DeviceBackwardFn<D>>,
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
    pub fn value(&self, v: Var) -> D::View<'_, f32> {
        view_of(self.dev, self.params, &self.nodes[v.0])
    }

    /// The shape of `v`.
    pub fn shape(&self, v: Var) -> &[usize] {
        &self.nodes[v.0].shape
    }

    /// Whether `v` needs a gradient.
    pub fn requires_grad(&self, v: Var) -> bool {
        self.nodes[v.0].requires_grad
    }

    /// Back-propagates from `root` with the output gradient `seed` (a buffer of the
    /// root's length).
    pub fn backward_with(&mut self, root: Var, seed: D::Buffer<f32>) -> Result<()> {
        let dev = self.dev;
        check_len(
            "backward",
            "seed",
            dev.view(&seed).len(),
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
                let nodes = DeviceNodes {
                    dev,
                    params: self.params,
                    nodes: &self.nodes,
                };
                f(&nodes, dy)?
            };
            for (input, g) in grads {
                if input.0 >= i {
                    return Err(Error::Config(format!(
                        "device backward of node {i} returned a gradient for node {}",
                        input.0
                    )));
                }
                let node = &mut self.nodes[input.0];
                check_len(
                    "backward",
                    "input gradient",
                    dev.view(&g).len(),
                    node.shape.iter().product(),
                )?;
                node.grad = Some(match node.grad.take() {
                    // Out of place: the same traffic as adding in place, and every
                    // output stays a fresh buffer that one kernel writes whole.
                    Some(acc) => {
                        let mut sum = dev.alloc_scratch::<f32>("grad.sum", dev.view(&acc).len())?;
                        add_forward(
                            dev,
                            &dev.view(&acc),
                            &dev.view(&g),
                            &mut dev.view_mut(&mut sum),
                        )?;
                        sum
                    }
                    None => g,
                });
            }
        }
        Ok(())
    }

    /// The gradient accumulated in leaf `v`, if any reached it.
    pub fn grad(&self, v: Var) -> Option<D::View<'_, f32>> {
        self.nodes[v.0].grad.as_ref().map(|g| self.dev.view(g))
    }

    /// Takes the gradient of leaf `v` out of the tape.
    pub fn take_grad(&mut self, v: Var) -> Option<D::Buffer<f32>> {
        self.nodes[v.0].grad.take()
    }

    /// Ends the tape and gives back the buffer of leaf `v` (one pushed with
    /// [`Self::leaf`]; `None` for a parameter), so a caller's input outlives the pass
    /// without a copy.
    pub fn into_leaf(mut self, v: Var) -> Option<D::Buffer<f32>> {
        match self.nodes.swap_remove(v.0).value {
            Value::Owned(b) => Some(b),
            Value::Param(_) => None,
        }
    }

    /// `max(x, 0)`, on the device.
    pub fn relu(&mut self, x: Var) -> Result<Var> {
        self.pointwise(x, Pointwise::Relu)
    }

    /// `kind(x)` (ReLU or a smooth baseline activation), on the device.
    pub fn pointwise(&mut self, x: Var, kind: Pointwise) -> Result<Var> {
        let dev = self.dev;
        let shape = self.shape(x).to_vec();
        let len: usize = shape.iter().product();
        let mut y = dev.alloc_scratch::<f32>("act.y", len)?;
        pointwise_forward(dev, kind, &self.value(x), &mut dev.view_mut(&mut y))?;
        self.push_op(y, &shape, &[x], || {
            Box::new(move |nodes: &DeviceNodes<'_, D>, dy: D::Buffer<f32>| {
                let dev = nodes.dev();
                let dy = &dev.view(&dy);
                let mut dx = dev.alloc_scratch::<f32>("act.dx", len)?;
                pointwise_backward(dev, kind, &nodes.value(x), dy, &mut dev.view_mut(&mut dx))?;
                Ok(vec![(x, dx)])
            })
        })
    }
}
