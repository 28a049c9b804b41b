//! `sparta::smoke`, the GPU probe's one launch per kernel module, on the CPU kernel
//! harness: every launch is valid (the harness checks argument lists, bounds and that
//! outputs are written), each entry launches only kernels of the module it names, and
//! the entries cover every embedded module once.

mod harness_support;

use harness_support::device::HarnessDevice;
use sparta::{kernels, smoke};

#[test]
fn one_valid_launch_of_every_module() {
    let module_of = |kernel: &str| {
        sparta_harness::kernels()
            .into_iter()
            .find(|k| k.dir == "kernels" && k.name == kernel)
            .map(|k| k.module)
    };
    let dev = HarnessDevice::new();
    let launches = smoke::module_launches::<HarnessDevice>();
    for launch in &launches {
        launch
            .run(&dev)
            .unwrap_or_else(|e| panic!("{} ({}): {e}", launch.module, launch.what));
        let launched = dev.take_launched();
        assert!(!launched.is_empty(), "{}: nothing launched", launch.module);
        for kernel in launched {
            assert_eq!(
                module_of(&kernel).as_deref(),
                Some(launch.module),
                "{}: launched {kernel}",
                launch.module
            );
        }
    }
    let covered: Vec<&str> = launches.iter().map(|l| l.module).collect();
    let embedded: Vec<&str> = kernels::modules().collect();
    assert_eq!(covered, embedded);
}
