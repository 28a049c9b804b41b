//! Ops: each in its own folder with its CPU kernel, CUDA wrapper and backward side by side.
