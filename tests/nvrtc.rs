//! The NVRTC fallback, without a GPU: every embedded kernel module compiles through
//! `sparta::nvrtc::compile` — the options and include folders a `Gpu` uses at run time —
//! to PTX for compute capability 9.0, with every kernel the module defines.
//!
//! Needs libnvrtc 13.0 on the library path, so it is ignored in a plain `cargo test`;
//! CI runs it (`source scripts/nvcc-env.sh; cargo test --test nvrtc -- --ignored`).

use sparta::kernels;

#[test]
#[ignore = "needs libnvrtc 13.0: source scripts/nvcc-env.sh, then --ignored (CI runs it)"]
fn every_module_compiles_with_nvrtc_for_sm_90() {
    let library = sparta::nvrtc::library().expect("libnvrtc loads");
    eprintln!("libnvrtc: {library:?}");
    eprintln!(
        "NVRTC options: {:?}",
        sparta::nvrtc::options((9, 0)).unwrap()
    );
    let mut failures = Vec::new();
    let mut compiled = 0;
    for module in kernels::modules() {
        let ptx = match sparta::nvrtc::compile(module, (9, 0)) {
            Ok(ptx) => ptx,
            Err(e) => {
                failures.push(e.to_string());
                continue;
            }
        };
        assert!(
            ptx.lines().any(|l| l.trim() == ".target sm_90"),
            "{module}.cu: NVRTC's PTX is not for sm_90"
        );
        let entries: Vec<&str> = ptx
            .lines()
            .filter_map(|l| l.trim().strip_prefix(".visible .entry "))
            .map(|l| l.split('(').next().unwrap_or(l).trim())
            .collect();
        assert!(!entries.is_empty(), "{module}.cu: no kernel in NVRTC's PTX");
        // With nvcc's report at hand, NVRTC must define exactly the kernels nvcc did.
        let mut from_nvcc: Vec<&str> = kernels::ptxas_report()
            .iter()
            .filter(|k| k.module == module)
            .map(|k| k.kernel)
            .collect();
        if !from_nvcc.is_empty() {
            let mut from_nvrtc = entries.clone();
            from_nvrtc.sort_unstable();
            from_nvcc.sort_unstable();
            assert_eq!(
                from_nvrtc, from_nvcc,
                "{module}.cu: kernels of NVRTC vs nvcc"
            );
        }
        compiled += 1;
    }
    assert!(
        failures.is_empty(),
        "{} of {} modules failed under NVRTC:\n{}",
        failures.len(),
        kernels::modules().count(),
        failures.join("\n")
    );
    assert_eq!(compiled, kernels::modules().count());
}
