//! Host memory for training loops: freed activation-sized buffers stay in the process.
//!
//! glibc serves every allocation above its mmap threshold (which it never raises past
//! 32 MiB on 64-bit) with a fresh `mmap` and returns it with `munmap` on free. A CPU
//! training step allocates and frees dozens of activation tensors larger than that
//! (ResNet-18 at batch 128: 128×64×32×32 f32 = 33.5 MB each), so every step faults all
//! of their pages in again: a fifth of a ResNet-18 CPU training step, measured with
//! `cargo bench --bench resnet_train -- relu` (BENCHMARKS.md, "Moved from code
//! comments").

/// Tells glibc to serve large allocations from the heap and never to hand freed heap
/// memory back to the system, so a training loop reuses its buffers without page
/// faults. The process keeps its peak heap size for its lifetime: call it at the start
/// of a training or attack program, not in a library that shares the process with
/// others. Returns whether the allocator took the settings (false on non-glibc
/// targets, where it does nothing).
pub fn keep_freed_host_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; both are documented
        // options with in-range values, and glibc applies them under its own lock.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn glibc_takes_the_settings_and_large_buffers_still_work() {
        let taken = super::keep_freed_host_memory();
        assert_eq!(taken, cfg!(all(target_os = "linux", target_env = "gnu")));
        // An allocation above the old mmap threshold now comes from the heap; it must
        // still be usable and freed without trouble, twice.
        for round in 0..2 {
            let mut v = vec![0f32; 16 << 20];
            v[(16 << 20) - 1] = round as f32;
            assert_eq!(v.iter().sum::<f32>(), round as f32);
        }
    }
}
