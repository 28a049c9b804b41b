//! No kernel slips past the CPU kernel harness: every `extern "C" __global__` entry point
//! in kernels/ must be one the harness can launch, and must be run against the CPU
//! reference by a `tests/harness_*.rs` file listed here.

use sparta_harness::kernels;

/// Kernel base name (entry point without its `_f32` / `_f16` / `_bf16` suffix) → the
/// test file that runs it in the harness. A new kernel fails this test until a harness
/// test runs it and it is added here.
const COVERED: &[(&str, &str)] = &[
    ("gate_forward", "harness_gate.rs"),
    ("gate_backward", "harness_gate.rs"),
    ("gate_backward_ds", "harness_gate.rs"),
    ("gate_forward_f32map", "harness_gate.rs"),
    ("gate_backward_f32map", "harness_gate.rs"),
    ("gate_unfused_sigmoid", "harness_gate.rs"),
    ("gate_unfused_mul", "harness_gate.rs"),
    ("relu_forward", "harness_gate.rs"),
    ("relu_backward", "harness_gate.rs"),
    ("pool_forward", "harness_dscanet.rs"),
    ("pool_backward", "harness_dscanet.rs"),
    ("conv1x1_forward", "harness_dscanet.rs"),
    ("conv1x1_backward_input", "harness_dscanet.rs"),
    ("conv1x1_backward_weight", "harness_dscanet.rs"),
    ("conv1x1_backward_bias", "harness_dscanet.rs"),
    ("relu_mask", "harness_dscanet.rs"),
    ("dynconv_forward", "harness_dscanet.rs"),
    ("dynconv_backward_input", "harness_dscanet.rs"),
    ("dynconv_backward_weight", "harness_dscanet.rs"),
    ("dynconv_backward_bias", "harness_dscanet.rs"),
    ("fc_forward", "harness_dscanet.rs"),
    ("fc_backward_input", "harness_dscanet.rs"),
    ("fc_backward_params", "harness_dscanet.rs"),
    ("sanet_pool", "harness_dscanet.rs"),
    ("sanet_conv5", "harness_dscanet.rs"),
    ("sanet_dw5", "harness_dscanet.rs"),
    ("sanet_dh", "harness_dscanet.rs"),
    ("conv2d_forward", "harness_conv2d.rs"),
    ("conv2d_backward_input", "harness_conv2d.rs"),
    ("conv2d_backward_weight", "harness_conv2d.rs"),
    ("conv2d_backward_weight_reduce", "harness_conv2d.rs"),
    ("batchnorm_stats", "harness_train_ops.rs"),
    ("batchnorm_forward", "harness_train_ops.rs"),
    ("batchnorm_grad_sums", "harness_train_ops.rs"),
    ("batchnorm_backward_input_train", "harness_train_ops.rs"),
    ("batchnorm_backward_input_eval", "harness_train_ops.rs"),
    ("cross_entropy_rows", "harness_train_ops.rs"),
    ("cross_entropy_reduce", "harness_train_ops.rs"),
    ("sgd_update", "harness_train_ops.rs"),
    ("pgd_step", "harness_train_ops.rs"),
    ("pgd_random_start", "harness_train_ops.rs"),
    ("augment_crop_flip", "harness_train_ops.rs"),
    ("normalize_forward", "harness_train_ops.rs"),
    ("normalize_backward", "harness_train_ops.rs"),
    ("add_forward", "harness_train_ops.rs"),
    ("pointwise_forward", "harness_train_ops.rs"),
    ("pointwise_backward", "harness_train_ops.rs"),
];

/// The harness test files, by name.
const TEST_FILES: &[(&str, &str)] = &[
    ("harness_gate.rs", include_str!("harness_gate.rs")),
    ("harness_dscanet.rs", include_str!("harness_dscanet.rs")),
    ("harness_conv2d.rs", include_str!("harness_conv2d.rs")),
    ("harness_train_ops.rs", include_str!("harness_train_ops.rs")),
];

fn base_name(kernel: &str) -> &str {
    ["_f32", "_f16", "_bf16"]
        .iter()
        .find_map(|sfx| kernel.strip_suffix(sfx))
        .unwrap_or(kernel)
}

/// Whether `text` names `<base>_` followed by a dtype suffix or a `{` format argument,
/// not as the tail of a longer identifier (`gate_backward_` in `gate_backward_ds_`).
fn launches(text: &str, base: &str) -> bool {
    let needle = format!("{base}_");
    text.match_indices(&needle).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = &text[at + needle.len()..];
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && ["{", "f32", "f16", "bf16"]
                .iter()
                .any(|s| after.starts_with(s))
    })
}

#[test]
fn every_kernel_in_kernels_dir_runs_in_the_harness() {
    let ours: Vec<_> = kernels()
        .into_iter()
        .filter(|k| k.dir == "kernels")
        .collect();
    assert!(!ours.is_empty(), "the harness found no kernels in kernels/");
    let mut problems = Vec::new();
    for k in &ours {
        if let Err(reason) = &k.params {
            problems.push(format!(
                "{} (kernels/{}.cu): the harness cannot pass its parameters: {reason}",
                k.name, k.module
            ));
            continue;
        }
        let base = base_name(&k.name);
        match COVERED.iter().find(|(b, _)| *b == base) {
            None => problems.push(format!(
                "{} (kernels/{}.cu) is run by no harness test: test it against the CPU \
                 reference in a tests/harness_*.rs and list it in COVERED",
                k.name, k.module
            )),
            Some((_, file)) => {
                let text = TEST_FILES
                    .iter()
                    .find(|(f, _)| f == file)
                    .map(|(_, t)| *t)
                    .unwrap_or("");
                if !launches(text, base) {
                    problems.push(format!("{}: {file} never launches `{base}_*`", k.name));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn covered_table_names_only_existing_kernels() {
    let all = kernels();
    for (base, _) in COVERED {
        assert!(
            all.iter()
                .any(|k| k.dir == "kernels" && base_name(&k.name) == *base),
            "COVERED lists `{base}`, which kernels/ no longer has"
        );
    }
}
