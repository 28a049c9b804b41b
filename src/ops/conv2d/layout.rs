//! The layout in which the direct convolution loops (`direct.rs`, `weight_grad.rs`)
//! read a sample: per input channel, `stride²` phase planes of the zero-padded image,
//! with output pixels numbered so that every tap of a run of consecutive pixels reads
//! consecutive elements.

use super::cpu::copy_strided;
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

    /// Output pixels of one sample in the kernel's numbering (`h_out · wq`).
    pub(super) fn pixels(&self, g: &ConvGeom) -> usize {
        g.h_out() * self.wq
    }

    /// Elements of one sample's laid-out input: the reads of the padding columns' pixels
    /// run up to `(k − 1) / stride` elements past the last plane.
    pub(super) fn sample_len(&self, g: &ConvGeom) -> usize {
        g.c_in * self.channel + g.k
    }

    /// Writes one sample `x` (`c_in × h × w`) in this layout into `xp`, zeros where
    /// the padded image is padding.
    pub(super) fn lay_out(&self, g: &ConvGeom, x: &[f32], xp: &mut [f32]) {
        let (s, wq) = (self.stride, self.wq);
        let (planes, slack) = xp.split_at_mut(g.c_in * self.channel);
        slack.fill(0.0);
        let phases = planes.chunks_exact_mut(self.rows * wq).enumerate();
        for (i, phase) in phases {
            let (ci, ry, rx) = (i / (s * s), i / s % s, i % s);
            let image = &x[ci * g.h * g.w..][..g.h * g.w];
            // Columns c with c·s + rx − pad inside the image.
            let lo = g.pad.saturating_sub(rx).div_ceil(s).min(wq);
            let hi = if g.w + g.pad > rx {
                ((g.w + g.pad - rx - 1) / s + 1).clamp(lo, wq)
            } else {
                lo
            };
            for (r, row) in phase.chunks_exact_mut(wq).enumerate() {
                let iy = (r * s + ry).checked_sub(g.pad).filter(|&iy| iy < g.h);
                let Some(iy) = iy else {
                    row.fill(0.0);
                    continue;
                };
                let src = &image[iy * g.w..][..g.w];
                row[..lo].fill(0.0);
                row[hi..].fill(0.0);
                if lo == hi {
                    continue;
                }
                let start = lo * s + rx - g.pad;
                let src = &src[start..start + (hi - lo - 1) * s + 1];
                copy_strided(&mut row[lo..hi], src, s);
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
