//! The GPU for the GPU halves of the CUDA-vs-CPU tests.
//!
//! Every test that needs a GPU is `#[ignore = "needs a GPU"]` and named `gpu_…`, so a
//! plain `cargo test` lists it as ignored (and counts it) instead of passing it without
//! running it. On a GPU machine `--ignored` runs exactly those (scripts/gpu-check.sh,
//! phase b); there a missing or broken GPU fails the test.

use std::sync::Arc;

use sparta::Gpu;

/// CUDA device 0; panics with the reason when there is none.
pub fn gpu() -> Arc<Gpu> {
    Gpu::new(0).unwrap_or_else(|e| panic!("this test needs a GPU: {e}"))
}
