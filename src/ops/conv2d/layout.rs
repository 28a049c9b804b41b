//! The layout in which the direct convolution loops (`direct.rs`, `weight_grad.rs`)
//! read a sample: per input channel, `stride²` phase planes of the zero-padded image,
//! with output pixels numbered so that every tap of a run of consecutive pixels reads
//! consecutive elements.

use super::cpu::{copy_row, copy_strided};
use super::ConvGeom;

/// Where the kernel finds each input element: per input channel, `stride²` phase
/// planes (phase `(ry, rx)` holds the padded image's rows `r·stride + ry` and columns
/// `c·stride + rx`), each `rows × wq`, so that output pixel `q = oy·wq + ox` reads tap
/// `(ky, kx)` at `taps[ky·k + kx] + q` of its channel, for every `ox < w_out`.
pub(super) struct Layout {
    stride: usize,
    /// Pixels per output row, the padding columns included.
    pub(super) wq: usize,
    /// Rows per phase plane.
    rows: usize,
    /// Elements per input channel.
    pub(super) channel: usize,
    /// Each tap's offset in its channel.
    pub(super) taps: Vec<usize>,
}

impl Layout {
    /// The layout of `g`'s input; `None` where the stride is not 1 or 2 or the kernel
    /// does not fit the padded image.
    pub(super) fn new(g: &ConvGeom) -> Option<Layout> {
        let (s, k) = (g.stride, g.k);
        let fits = (s == 1 || s == 2) && g.c_in > 0 && k > 0;
        if !fits || g.h + 2 * g.pad < k || g.w + 2 * g.pad < k {
            return None;
        }
        let (ho, wo) = (g.h_out(), g.w_out());
        let reach = (k - 1) / s;
        let wq = (wo..=wo + reach).find(|&wq| wraps_into_padding(g, wq))?;
        // The taps reach `reach` rows down, and the padding columns' pixels one row more.
        let rows = ho + reach + 1;
        let phase = rows * wq;
        let taps = (0..k * k)
            .map(|t| {
                let (ky, kx) = (t / k, t % k);
                ((ky % s) * s + kx % s) * phase + (ky / s) * wq + kx / s
            })
            .collect();
        Some(Layout {
            stride: s,
            wq,
            rows,
            channel: s * s * phase,
            taps,
        })
    }

    /// Elements of one sample's laid-out input: the reads of the padding columns' pixels
    /// run up to `(k − 1) / stride` elements past the last plane.
    pub(super) fn sample_len(&self, g: &ConvGeom) -> usize {
        g.c_in * self.channel + g.k
    }

    /// Writes one sample `x` (`c_in × h × w`) in this layout into `xp`, zeros where
    /// the padded image is padding.
    pub(super) fn lay_out(&self, g: &ConvGeom, x: &[f32], xp: &mut [f32]) {
        if self.stride == 1 {
            return self.lay_out_rows(g, x, xp);
        }
        // Each image row lands in the two planes of one row phase, one per column
        // phase: the planes are zeroed first, then each image row is read once and
        // dealt out, rather than each plane's rows visited for their few elements.
        assert_eq!(x.len(), g.c_in * g.h * g.w, "lay_out: one sample of {g:?}");
        let wq = self.wq;
        xp.fill(0.0);
        let phase = self.rows * wq;
        // Per column phase rx: the plane columns `lo..hi` inside the image, which
        // start at image column `lo·2 + rx − pad`.
        let spans: [(usize, usize, usize); 2] = std::array::from_fn(|rx| {
            let lo = g.pad.saturating_sub(rx).div_ceil(2).min(wq);
            let hi = if g.w + g.pad > rx {
                ((g.w + g.pad - rx - 1) / 2 + 1).clamp(lo, wq)
            } else {
                lo
            };
            (lo, hi, (lo * 2 + rx).saturating_sub(g.pad))
        });
        let images = x.chunks_exact(g.h * g.w).take(g.c_in);
        for (image, planes) in images.zip(xp.chunks_exact_mut(self.channel)) {
            for (iy, src) in image.chunks_exact(g.w).enumerate() {
                let (ry, r) = ((iy + g.pad) % 2, (iy + g.pad) / 2);
                if r >= self.rows {
                    break;
                }
                for (rx, &(lo, hi, start)) in spans.iter().enumerate() {
                    if lo == hi {
                        continue;
                    }
                    let row = &mut planes[(ry * 2 + rx) * phase + r * wq..][..wq];
                    let src = &src[start..start + (hi - lo - 1) * 2 + 1];
                    copy_strided(&mut row[lo..hi], src, 2);
                }
            }
        }
    }

    /// [`Self::lay_out`] at stride 1: each plane row written once, its padding
    /// columns zeroed and its image columns copied.
    fn lay_out_rows(&self, g: &ConvGeom, x: &[f32], xp: &mut [f32]) {
        let wq = self.wq;
        let (planes, slack) = xp.split_at_mut(g.c_in * self.channel);
        slack.fill(0.0);
        // Columns c with c − pad inside the image.
        let lo = g.pad.min(wq);
        let hi = (g.w + g.pad).clamp(lo, wq);
        for (ci, plane) in planes.chunks_exact_mut(self.channel).enumerate() {
            let image = &x[ci * g.h * g.w..][..g.h * g.w];
            for (r, row) in plane.chunks_exact_mut(wq).enumerate() {
                let iy = r.checked_sub(g.pad).filter(|&iy| iy < g.h);
                let Some(iy) = iy else {
                    row.fill(0.0);
                    continue;
                };
                row[..lo].fill(0.0);
                row[hi..].fill(0.0);
                if lo < hi {
                    copy_row(&mut row[lo..hi], &image[iy * g.w..][..hi - lo]);
                }
            }
        }
    }
}

/// Whether rows of `wq` pixels give every output pixel (`ox < w_out`) its taps: a tap
/// that runs past the row's end reads the next row's first columns, which must then be
/// padding, as the element it stands for.
fn wraps_into_padding(g: &ConvGeom, wq: usize) -> bool {
    let s = g.stride;
    let outside = |col: isize| col < 0 || col >= g.w as isize;
    (0..g.w_out()).all(|ox| {
        (0..g.k).all(|kx| {
            let col = ox + kx / s;
            col < wq
                || (outside((ox * s + kx) as isize - g.pad as isize)
                    && outside(((col - wq) * s + kx % s) as isize - g.pad as isize))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom(h: usize, w: usize, stride: usize, pad: usize) -> ConvGeom {
        ConvGeom {
            n: 1,
            c_in: 1,
            h,
            w,
            c_out: 16,
            k: 3,
            stride,
            pad,
        }
    }

    /// Where a tap past the row's end would read an image column, the row is widened:
    /// at stride 1 the left padding column serves as the right one; at stride 2 an even
    /// width's last output reads the image's last column, an odd width's reads padding.
    #[test]
    fn rows_widen_where_a_wrapped_tap_would_read_the_image() {
        let wq = |g| Layout::new(&g).unwrap().wq;
        assert_eq!(wq(geom(28, 28, 1, 1)), 29);
        assert_eq!(wq(geom(28, 28, 2, 1)), 15);
        assert_eq!(wq(geom(7, 7, 2, 1)), 4);
        assert_eq!(wq(geom(9, 9, 1, 0)), 9);
    }

    /// Every element of the layout is the padded image's, or zero.
    #[test]
    fn lays_out_the_padded_image() {
        // Rows shorter and longer than copy_row's 16-element step, odd widths at
        // stride 2.
        let shapes = [
            (5, 6, 1, 1),
            (5, 6, 2, 1),
            (7, 4, 2, 0),
            (3, 3, 1, 2),
            (4, 15, 1, 1),
            (6, 33, 1, 1),
            (5, 35, 2, 1),
            (7, 7, 2, 1),
            (14, 14, 2, 1),
            (6, 7, 2, 0),
        ];
        for (h, w, stride, pad) in shapes {
            let g = ConvGeom {
                k: if pad == 2 { 5 } else { 3 },
                ..geom(h, w, stride, pad)
            };
            let layout = Layout::new(&g).unwrap();
            let x: Vec<f32> = (0..h * w).map(|i| i as f32 + 1.0).collect();
            let mut xp = vec![f32::NAN; layout.sample_len(&g)];
            layout.lay_out(&g, &x, &mut xp);
            let phase = layout.rows * layout.wq;
            for (i, &v) in xp.iter().enumerate() {
                let want = if i >= layout.channel {
                    0.0
                } else {
                    let (ph, at) = (i / phase, i % phase);
                    let (ry, rx) = (ph / stride, ph % stride);
                    let (r, c) = (at / layout.wq, at % layout.wq);
                    let (iy, ix) = (
                        (r * stride + ry) as isize - pad as isize,
                        (c * stride + rx) as isize - pad as isize,
                    );
                    let inside = (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix);
                    if inside {
                        x[iy as usize * w + ix as usize]
                    } else {
                        0.0
                    }
                };
                assert_eq!(v, want, "{g:?} element {i}");
            }
        }
    }
}
