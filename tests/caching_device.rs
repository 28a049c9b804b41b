//! `CachingDevice` over the CPU kernel harness: dropped buffers come back for the next
//! request of the same element type, length and kind; a reused zeros buffer is zero
//! again and a reused upload holds the new data; the counts add up.

mod harness_support;

use harness_support::device::HarnessDevice;
use sparta::alloc::{CacheStats, CachingDevice};
use sparta::dry_run::DryRunDevice;
use sparta::KernelDevice;

#[test]
fn reused_buffers_are_zeroed_or_overwritten() {
    let dev = CachingDevice::new(HarnessDevice::new());
    let mut a = dev.alloc_zeros::<f32>("a", 5).unwrap();
    dev.write_host(&mut dev.view_mut(&mut a), &[1.0, 2.0, 3.0, 4.0, 5.0])
        .unwrap();
    drop(a);
    let again = dev.alloc_zeros::<f32>("a", 5).unwrap();
    assert_eq!(dev.download(&dev.view(&again)).unwrap(), vec![0.0; 5]);
    drop(again);
    let up = dev.upload("b", &[9.0f32, 8.0, 7.0, 6.0, 5.0]).unwrap();
    assert_eq!(
        dev.download(&dev.view(&up)).unwrap(),
        vec![9.0, 8.0, 7.0, 6.0, 5.0]
    );
    let s = dev.stats();
    assert_eq!((s.device_allocations, s.reuses), (1, 2), "{s:?}");
    assert_eq!((s.bytes_reserved, s.bytes_in_use), (20, 20), "{s:?}");
}

#[test]
fn buffers_are_kept_apart_by_type_length_and_kind() {
    let dev = CachingDevice::new(DryRunDevice);
    drop(dev.alloc_zeros::<f32>("f", 8).unwrap());
    drop(dev.alloc_zeros::<i32>("i", 8).unwrap());
    drop(dev.alloc_scratch::<f32>("s", 8).unwrap());
    drop(dev.alloc_zeros::<f32>("f9", 9).unwrap());
    assert_eq!(dev.stats().device_allocations, 4);
    // Each request finds its own kind only.
    let (f, i, s, f9) = (
        dev.alloc_zeros::<f32>("f", 8).unwrap(),
        dev.alloc_zeros::<i32>("i", 8).unwrap(),
        dev.alloc_scratch::<f32>("s", 8).unwrap(),
        dev.alloc_zeros::<f32>("f9", 9).unwrap(),
    );
    let st = dev.stats();
    assert_eq!((st.device_allocations, st.reuses), (4, 4), "{st:?}");
    // Two live at once need two buffers; the second is new.
    let f_b = dev.alloc_zeros::<f32>("f", 8).unwrap();
    assert_eq!(dev.stats().device_allocations, 5);
    drop((f, i, s, f9, f_b));
    let st = dev.stats();
    assert_eq!(
        st,
        CacheStats {
            device_allocations: 5,
            reuses: 4,
            bytes_reserved: 4 * (8 + 8 + 8 + 9 + 8),
            bytes_in_use: 0,
            peak_bytes_in_use: 4 * (8 + 8 + 8 + 9 + 8),
        }
    );
}

#[test]
fn a_launch_through_the_cache_runs_on_the_wrapped_device() {
    let dev = CachingDevice::new(HarnessDevice::new());
    let a = dev.upload("a", &[1.0f32, -2.0, 3.0]).unwrap();
    let b = dev.upload("b", &[0.5f32, 0.5, 0.5]).unwrap();
    let mut y = dev.alloc_scratch::<f32>("y", 3).unwrap();
    sparta::backend::add::add_forward(
        &dev,
        &dev.view(&a),
        &dev.view(&b),
        &mut dev.view_mut(&mut y),
    )
    .unwrap();
    assert_eq!(dev.download(&dev.view(&y)).unwrap(), vec![1.5, -1.5, 3.5]);
    assert_eq!(dev.inner().take_launched(), ["add_forward_f32"]);
}
