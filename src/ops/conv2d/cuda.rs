//! 2-D convolution on a [`KernelDevice`], f32, over device views: [`conv2d`] with the
//! device's convolution library when it has one (cuDNN on a GPU), and the handwritten
//! implicit-GEMM kernels (`kernels/conv2d.cu`) that run where it is missing and on the
//! CPU kernel harness. Every launch is queued on the device. Each function overwrites its output, as [`super::cpu::forward`] and
//! [`super::cpu::backward`] return fresh tensors: a caller that accumulates gradients
//! adds the result itself.

use super::{
    conv2d_forward_launch, conv2d_input_launch, conv2d_weight_launch, conv2d_weight_reduce_launch,
    conv2d_weight_scratch_len, conv2d_weight_split, ConvGeom, ConvPass,
};
use crate::alloc::CachingDevice;
use crate::backend::{Buf, OnDevice, View};
use crate::error::{check_len, Error, Result};
use crate::launch::{Determinism, KernelArg, KernelDevice, ViewLen};
use crate::ops::kernel_args::{check_grid_z, kernel_int};

/// The geometry as the kernels' `int` arguments `(N, C, H, W, K, R, stride, pad, P, Q)`,
/// after checking that the kernels accept it: every size ≥ 1, the kernel fits the padded
/// input, and x, w and y index with an `int`. Checked before any size arithmetic, so an
/// absurd geometry is an error, not an overflow.
fn kernel_geom(op: &'static str, g: &ConvGeom) -> Result<[i32; 10]> {
    let named = [
        ("n", g.n),
        ("c_in", g.c_in),
        ("h", g.h),
        ("w", g.w),
        ("c_out", g.c_out),
        ("k", g.k),
        ("stride", g.stride),
        ("pad", g.pad),
    ];
    let mut ints = [0i32; 10];
    for (slot, (what, v)) in ints.iter_mut().zip(named) {
        *slot = kernel_int(op, what, v)?;
    }
    // Each value is below 2^31 now: h + 2·pad cannot overflow.
    if ints[..7].contains(&0) || g.h + 2 * g.pad < g.k || g.w + 2 * g.pad < g.k {
        return Err(Error::shape(
            op,
            "geometry",
            "sizes and stride ≥ 1, kernel no larger than the padded input",
            format!("{g:?}"),
        ));
    }
    ints[8] = kernel_int(op, "h_out", g.h_out())?;
    ints[9] = kernel_int(op, "w_out", g.w_out())?;
    let elements = |what: &str, dims: [usize; 4]| -> Result<()> {
        let len = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        match len {
            Some(len) => kernel_int(op, what, len).map(drop),
            None => Err(Error::shape(
                op,
                what,
                "a value below 2^31",
                format!("{dims:?}"),
            )),
        }
    };
    elements("x length", [g.n, g.c_in, g.h, g.w])?;
    elements("w length", [g.c_out, g.c_in, g.k, g.k])?;
    elements("y length", [g.n, g.c_out, g.h_out(), g.w_out()])?;
    Ok(ints)
}

/// The geometry's ten `int`s as kernel arguments.
fn geom_args<B>(dims: &[i32; 10]) -> [KernelArg<B>; 10] {
    dims.map(KernelArg::I32)
}

/// One convolution product, `out` overwritten: [`ConvPass::Forward`] `(x, w) → y`,
/// [`ConvPass::BackwardData`] `(dy, w) → dx`, [`ConvPass::BackwardFilter`] `(x, dy) → dw`.
/// Runs on the device's library ([`KernelDevice::library_conv2d`]: cuDNN on a GPU) when
/// it has one, else on the implicit-GEMM kernels below.
pub fn conv2d<D: KernelDevice>(
    dev: &D,
    pass: ConvPass,
    g: &ConvGeom,
    a: &D::View<'_, f32>,
    b: &D::View<'_, f32>,
    out: &mut D::ViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "conv2d";
    kernel_geom(OP, g)?;
    let (x_len, w_len, y_len) = g.lens();
    let (a_len, b_len, out_len) = match pass {
        ConvPass::Forward => (x_len, w_len, y_len),
        ConvPass::BackwardData => (y_len, w_len, x_len),
        ConvPass::BackwardFilter => (x_len, y_len, w_len),
    };
    check_len(OP, "first operand", a.len(), a_len)?;
    check_len(OP, "second operand", b.len(), b_len)?;
    check_len(OP, "output", out.len(), out_len)?;
    if dev.library_conv2d(pass, g, a, b, out)? {
        return Ok(());
    }
    match pass {
        ConvPass::Forward => conv2d_forward(dev, g, a, b, out),
        ConvPass::BackwardData => conv2d_backward_input(dev, g, a, b, out),
        ConvPass::BackwardFilter => conv2d_backward_weight(dev, g, a, b, out),
    }
}

/// `y = conv(x, w)`: x `[n, c_in, h, w]`, w `[c_out, c_in, k, k]`, y `[n, c_out, h_out,
/// w_out]` overwritten (kernel `conv2d_forward_f32`).
pub fn conv2d_forward<D: KernelDevice>(
    dev: &D,
    g: &ConvGeom,
    x: &D::View<'_, f32>,
    w: &D::View<'_, f32>,
    y: &mut D::ViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "conv2d_forward";
    let dims = kernel_geom(OP, g)?;
    let (x_len, w_len, y_len) = g.lens();
    check_len(OP, "x", x.len(), x_len)?;
    check_len(OP, "w", w.len(), w_len)?;
    check_len(OP, "y", y.len(), y_len)?;
    let mut args = vec![dev.read(x), dev.read(w), dev.write(y)];
    args.extend(geom_args(&dims));
    // SAFETY: matches conv2d_forward_f32(x, w, y, N, C, H, W, K, R, stride, pad, P, Q);
    // lengths checked against the geometry.
    unsafe {
        dev.launch(
            "conv2d",
            "conv2d_forward_f32",
            conv2d_forward_launch(g),
            Determinism::BitExact,
            &args,
        )
    }
}

/// Input gradient of [`conv2d_forward`]: `dx` `[n, c_in, h, w]` is overwritten (not
/// accumulated) with the transposed convolution of `dy` by `w` (kernel
/// `conv2d_backward_input_f32`).
pub fn conv2d_backward_input<D: KernelDevice>(
    dev: &D,
    g: &ConvGeom,
    dy: &D::View<'_, f32>,
    w: &D::View<'_, f32>,
    dx: &mut D::ViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "conv2d_backward_input";
    let dims = kernel_geom(OP, g)?;
    check_grid_z(OP, "stride² (residue classes)", g.stride * g.stride)?;
    let (x_len, w_len, y_len) = g.lens();
    check_len(OP, "dy", dy.len(), y_len)?;
    check_len(OP, "w", w.len(), w_len)?;
    check_len(OP, "dx", dx.len(), x_len)?;
    let mut args = vec![dev.read(dy), dev.read(w), dev.write(dx)];
    args.extend(geom_args(&dims));
    // SAFETY: matches conv2d_backward_input_f32(dy, w, dx, N, C, H, W, K, R, stride, pad,
    // P, Q); lengths checked against the geometry.
    unsafe {
        dev.launch(
            "conv2d",
            "conv2d_backward_input_f32",
            conv2d_input_launch(g),
            Determinism::BitExact,
            &args,
        )
    }
}

/// Weight gradient of [`conv2d_forward`]: `dw` `[c_out, c_in, k, k]` is overwritten (not
/// accumulated). Kernel `conv2d_backward_weight_f32` over the chunks of
/// [`conv2d_weight_split`]; with more than one chunk it writes partial sums to a scratch
/// of [`conv2d_weight_scratch_len`] f32 allocated on the device, which
/// `conv2d_backward_weight_reduce_f32` sums in a fixed order, so the result does not
/// depend on scheduling.
pub fn conv2d_backward_weight<D: KernelDevice>(
    dev: &D,
    g: &ConvGeom,
    x: &D::View<'_, f32>,
    dy: &D::View<'_, f32>,
    dw: &mut D::ViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "conv2d_backward_weight";
    let dims = kernel_geom(OP, g)?;
    let (x_len, w_len, y_len) = g.lens();
    check_len(OP, "x", x.len(), x_len)?;
    check_len(OP, "dy", dy.len(), y_len)?;
    check_len(OP, "dw", dw.len(), w_len)?;
    let split = conv2d_weight_split(g);
    let chunk = kernel_int(OP, "chunk", split.chunk)?;
    let splits = kernel_int(OP, "splits", split.splits)?;
    let len = kernel_int(OP, "dw length", w_len)?;
    let launch_weight = |partial: &mut D::ViewMut<'_, f32>| -> Result<()> {
        let mut args = vec![dev.read(x), dev.read(dy), dev.write(partial)];
        args.extend(geom_args(&dims));
        args.push(KernelArg::I32(chunk));
        // SAFETY: matches conv2d_backward_weight_f32(x, dy, partial, N, C, H, W, K, R,
        // stride, pad, P, Q, chunk); x and dy checked, partial holds splits · dw length.
        unsafe {
            dev.launch(
                "conv2d",
                "conv2d_backward_weight_f32",
                conv2d_weight_launch(g),
                Determinism::BitExact,
                &args,
            )
        }
    };
    if split.splits == 1 {
        return launch_weight(dw);
    }
    let mut scratch = dev.alloc_scratch::<f32>("dw_partial", conv2d_weight_scratch_len(g))?;
    launch_weight(&mut dev.view_mut(&mut scratch))?;
    let partial = dev.view(&scratch);
    let args = [
        dev.read(&partial),
        dev.write(dw),
        KernelArg::I32(len),
        KernelArg::I32(splits),
    ];
    // SAFETY: matches conv2d_backward_weight_reduce_f32(partial, dw, len, splits); scratch
    // holds splits · len elements, dw len.
    unsafe {
        dev.launch(
            "conv2d",
            "conv2d_backward_weight_reduce_f32",
            conv2d_weight_reduce_launch(g),
            Determinism::BitExact,
            &args,
        )
    }
}

impl<D: KernelDevice + 'static> super::Conv2dKernels for OnDevice<D> {
    fn conv2d_forward(
        dev: &CachingDevice<D>,
        g: &ConvGeom,
        x: &View<'_, Self>,
        weight: &View<'_, Self>,
    ) -> Result<Buf<Self>> {
        let mut y = dev.alloc_scratch::<f32>("conv2d.y", g.lens().2)?;
        conv2d(
            dev,
            ConvPass::Forward,
            g,
            x,
            weight,
            &mut dev.view_mut(&mut y),
        )?;
        Ok(y)
    }

    fn conv2d_backward(
        dev: &CachingDevice<D>,
        g: &ConvGeom,
        x: &View<'_, Self>,
        weight: &View<'_, Self>,
        dy: &View<'_, Self>,
        input: bool,
        filter: bool,
    ) -> Result<(Option<Buf<Self>>, Option<Buf<Self>>)> {
        let (x_len, w_len, _) = g.lens();
        let dx = match input {
            true => {
                let mut dx = dev.alloc_scratch::<f32>("conv2d.dx", x_len)?;
                conv2d(
                    dev,
                    ConvPass::BackwardData,
                    g,
                    dy,
                    weight,
                    &mut dev.view_mut(&mut dx),
                )?;
                Some(dx)
            }
            false => None,
        };
        let dw = match filter {
            true => {
                let mut dw = dev.alloc_scratch::<f32>("conv2d.dw", w_len)?;
                conv2d(
                    dev,
                    ConvPass::BackwardFilter,
                    g,
                    x,
                    dy,
                    &mut dev.view_mut(&mut dw),
                )?;
                Some(dw)
            }
            false => None,
        };
        Ok((dx, dw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: ConvGeom = ConvGeom {
        n: 2,
        c_in: 3,
        h: 5,
        w: 7,
        c_out: 4,
        k: 3,
        stride: 2,
        pad: 1,
    };

    fn rejected(g: ConvGeom) -> String {
        match kernel_geom("test", &g) {
            Err(Error::Shape { what, .. }) => what,
            other => panic!("{g:?}: {other:?}"),
        }
    }

    #[test]
    fn kernel_geom_passes_the_output_size() {
        assert_eq!(
            kernel_geom("test", &G).unwrap(),
            [2, 3, 5, 7, 4, 3, 2, 1, 3, 4]
        );
    }

    #[test]
    fn kernel_geom_rejects_what_the_kernels_cannot_run() {
        assert_eq!(rejected(ConvGeom { stride: 0, ..G }), "geometry");
        assert_eq!(rejected(ConvGeom { c_in: 0, ..G }), "geometry");
        assert_eq!(rejected(ConvGeom { k: 8, ..G }), "geometry");
        assert_eq!(
            rejected(ConvGeom {
                pad: usize::MAX,
                ..G
            }),
            "pad"
        );
        assert_eq!(
            rejected(ConvGeom {
                n: 1 << 20,
                c_in: 1 << 11,
                ..G
            }),
            "x length"
        );
        assert_eq!(
            rejected(ConvGeom {
                n: 1 << 30,
                c_in: 1 << 30,
                h: 1 << 30,
                w: 1 << 30,
                ..G
            }),
            "x length"
        );
    }
}
