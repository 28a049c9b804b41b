//! A dense, row-major tensor on the CPU: a shape and its elements.
//!
//! The tape ([`crate::autograd`]) stores one of these per node. CUDA tensors are not
//! part of the tape yet; when they come, the storage becomes an enum over devices and
//! each op dispatches on it, while the tape keeps handling only shapes and handles.

use crate::error::{Error, Result};

/// A shape and `shape.iter().product()` elements, row-major (NCHW for images).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<T> {
    shape: Vec<usize>,
    data: Vec<T>,
}

impl<T: Copy + Default> Tensor<T> {
    /// Wraps `data`; errors if its length is not the product of `shape`.
    pub fn new(shape: &[usize], data: Vec<T>) -> Result<Self> {
        let want: usize = shape.iter().product();
        if data.len() != want {
            return Err(Error::shape(
                "tensor",
                "data",
                format!("{want} elements for shape {shape:?}"),
                format!("{} elements", data.len()),
            ));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            data,
        })
    }

    /// All zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Tensor {
            shape: shape.to_vec(),
            data: vec![T::default(); shape.iter().product()],
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements, row-major.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// The elements, mutable.
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// The elements, by value.
    pub fn into_data(self) -> Vec<T> {
        self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}
