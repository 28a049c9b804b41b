//! Line charts of the PGD loss per iteration, mean ± std band per series, as PNG.
//!
//! Drawn by plotters into an RGB buffer; text uses DejaVu Sans compiled into the binary
//! (the `dejavu` crate), so no system font is needed; the buffer is encoded with `png`.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::{Error, Result};

/// One line of the chart.
#[derive(Clone, Debug, PartialEq)]
pub struct CurveSeries {
    /// Legend text.
    pub label: String,
    /// Mean value after `k` iterations, `k = 0, 1, …`.
    pub mean: Vec<f64>,
    /// Standard deviation at each `k` (the band is mean ± std).
    pub std: Vec<f64>,
}

/// Chart size in pixels.
const SIZE: (u32, u32) = (900, 600);

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // DejaVu Sans is a valid TrueType font; a failure here would be a broken crate.
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .unwrap_or_else(|_| panic!("the embedded DejaVu Sans font does not parse"));
    });
}

/// Draws `series` against the iteration number and writes a PNG to `path`.
pub fn loss_curves_png(
    path: &Path,
    title: &str,
    y_label: &str,
    series: &[CurveSeries],
) -> Result<()> {
    if series.is_empty()
        || series
            .iter()
            .any(|s| s.mean.is_empty() || s.mean.len() != s.std.len())
    {
        return Err(Error::Config(
            "a loss chart needs at least one series with as many std values as means".into(),
        ));
    }
    register_font();
    let finite = |v: f64| if v.is_finite() { Some(v) } else { None };
    let lows = series
        .iter()
        .flat_map(|s| s.mean.iter().zip(&s.std).filter_map(|(m, d)| finite(m - d)));
    let highs = series
        .iter()
        .flat_map(|s| s.mean.iter().zip(&s.std).filter_map(|(m, d)| finite(m + d)));
    let lo = lows.fold(f64::INFINITY, f64::min);
    let hi = highs.fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo < hi {
        (lo, hi)
    } else {
        (lo - 1.0, lo + 1.0)
    };
    let pad = 0.05 * (hi - lo);
    let last = series
        .iter()
        .map(|s| s.mean.len() - 1)
        .max()
        .unwrap_or(0)
        .max(1) as f64;

    let (w, h) = SIZE;
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    let draw_error = |e: String| Error::format(path, format!("drawing the chart failed: {e}"));
    {
        let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_error(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 24))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..last, (lo - pad)..(hi + pad))
            .map_err(|e| draw_error(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc("PGD iteration")
            .x_label_formatter(&|k| format!("{k:.0}"))
            .y_desc(y_label)
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 18))
            .draw()
            .map_err(|e| draw_error(e.to_string()))?;
        for (i, s) in series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let upper = s
                .mean
                .iter()
                .zip(&s.std)
                .enumerate()
                .map(|(k, (m, d))| (k as f64, m + d));
            let lower = s
                .mean
                .iter()
                .zip(&s.std)
                .enumerate()
                .map(|(k, (m, d))| (k as f64, m - d));
            let band: Vec<(f64, f64)> = upper.chain(lower.rev()).collect();
            chart
                .draw_series(std::iter::once(Polygon::new(
                    band,
                    colour.mix(0.18).filled(),
                )))
                .map_err(|e| draw_error(e.to_string()))?;
            let line = s.mean.iter().enumerate().map(|(k, &m)| (k as f64, m));
            chart
                .draw_series(LineSeries::new(line, colour.stroke_width(3)))
                .map_err(|e| draw_error(e.to_string()))?
                .label(s.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 18))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| draw_error(e.to_string()))?;
        root.present().map_err(|e| draw_error(e.to_string()))?;
    }
    let mut png_bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png_bytes, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|e| Error::format(path, format!("PNG encoding failed: {e}")))?;
        writer
            .write_image_data(&rgb)
            .map_err(|e| Error::format(path, format!("PNG encoding failed: {e}")))?;
    }
    crate::train::checkpoint::write_atomically(path, &png_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_with_lines_bands_and_text() {
        let path = std::env::temp_dir().join(format!("sparta-plot-{}.png", std::process::id()));
        let series = vec![
            CurveSeries {
                label: "ReLU".into(),
                mean: (0..11).map(|k| 3.0 - 0.25 * k as f64).collect(),
                std: vec![0.3; 11],
            },
            CurveSeries {
                label: "SPARTA".into(),
                mean: (0..11).map(|k| 3.0 - 0.1 * k as f64).collect(),
                std: vec![0.2; 11],
            },
        ];
        loss_curves_png(&path, "targeted PGD-10", "cross-entropy to target", &series).unwrap();
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), SIZE);
        let pixels: Vec<&[u8]> = buf.chunks_exact(3).collect();
        let count = |c: RGBColor| pixels.iter().filter(|p| **p == [c.0, c.1, c.2]).count();
        assert!(
            count(COLOURS[0]) > 500 && count(COLOURS[1]) > 500,
            "both lines drawn"
        );
        let dark = pixels.iter().filter(|p| p.iter().all(|&v| v < 60)).count();
        assert!(dark > 2000, "axes and text drawn ({dark} dark pixels)");
        assert!(loss_curves_png(&path, "t", "y", &[]).is_err());
    }
}
