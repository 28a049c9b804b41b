//! ptxas' report of the embedded sm_90 machine code (build.rs): no kernel spills
//! registers or uses local memory, every module is in it, and docs/gpu.md shows this
//! very report. Needs a build with nvcc (the docs comparison: the pinned one); without,
//! these tests are ignored, and say so.
//!
//! After a kernel change, `SPARTA_UPDATE_DOCS=1 cargo test --test ptxas_report` writes
//! the new table into docs/gpu.md (and still fails, so the change is looked at).

use sparta::kernels::{self, KernelResources};

const DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/gpu.md");
const BEGIN: &str = "<!-- ptxas report: written by tests/ptxas_report.rs, do not edit -->";
const END: &str = "<!-- end of ptxas report -->";

#[test]
#[cfg_attr(not(sparta_fatbin), ignore = "built without nvcc: no ptxas report")]
fn no_kernel_spills_or_uses_local_memory() {
    let offenders: Vec<String> = kernels::ptxas_report()
        .iter()
        .filter(|k| k.uses_local_memory())
        .map(|k| format!("{k:?}"))
        .collect();
    assert!(
        offenders.is_empty(),
        "kernels that spill registers or use local memory on sm_90:\n{}",
        offenders.join("\n")
    );
}

#[test]
#[cfg_attr(not(sparta_fatbin), ignore = "built without nvcc: no ptxas report")]
fn every_module_is_in_the_report() {
    let report = kernels::ptxas_report();
    for module in kernels::modules() {
        assert!(
            report.iter().any(|k| k.module == module),
            "{module}.cu has no kernel in the ptxas report"
        );
    }
    assert!(kernels::has_fatbins());
}

#[test]
#[cfg_attr(
    not(sparta_pinned_nvcc),
    ignore = "needs the nvcc scripts/nvcc-env.sh pins: docs/gpu.md holds its report"
)]
fn docs_gpu_md_holds_this_report() {
    let docs = std::fs::read_to_string(DOCS).unwrap();
    let table = table(kernels::ptxas_report());
    let (Some(begin), Some(end)) = (docs.find(BEGIN), docs.find(END)) else {
        panic!("{DOCS}: no `{BEGIN}` … `{END}` section");
    };
    let current = &docs[begin + BEGIN.len()..end];
    if current == table {
        return;
    }
    if std::env::var("SPARTA_UPDATE_DOCS").is_ok_and(|v| v == "1") {
        let updated = format!("{}{table}{}", &docs[..begin + BEGIN.len()], &docs[end..]);
        std::fs::write(DOCS, updated).unwrap();
        panic!("{DOCS}: ptxas report rewritten; check the change and commit it");
    }
    panic!(
        "{DOCS}: the ptxas report differs from this build's (kernels changed?); \
         SPARTA_UPDATE_DOCS=1 cargo test --test ptxas_report rewrites it. This build's:\n{table}"
    );
}

/// The report as the Markdown table docs/gpu.md holds.
fn table(report: &[KernelResources]) -> String {
    let mut t = format!(
        "\nnvcc {}, `{}` machine code; bytes are per thread except shared memory (per block).\n\n\
         | module | kernel | registers | barriers | shared memory | stack frame | spill stores | spill loads |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
        kernels::nvcc_release().unwrap_or("?"),
        kernels::fatbin_targets().0
    );
    for k in report {
        t.push_str(&format!(
            "| {} | `{}` | {} | {} | {} | {} | {} | {} |\n",
            k.module,
            k.kernel,
            k.registers,
            k.barriers,
            k.shared_bytes,
            k.stack_frame_bytes,
            k.spill_store_bytes,
            k.spill_load_bytes
        ));
    }
    t
}
