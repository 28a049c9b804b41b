//! The figures, as PNG: line charts of the PGD loss per iteration (mean ± std band per
//! series) and grids of feature-map heatmaps.
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
    write_png(path, &rgb, SIZE)
}

/// One panel of [`heatmaps_png`]: a row-major `height × width` map.
#[derive(Clone, Debug, PartialEq)]
pub struct Heatmap {
    /// Caption above the map.
    pub title: String,
    /// Rows of the map.
    pub height: usize,
    /// Columns of the map.
    pub width: usize,
    /// `height · width` values, row by row.
    pub values: Vec<f32>,
    /// The values drawn at the two ends of the colour scale (dark blue to yellow);
    /// values beyond are drawn at the ends, NaN in grey.
    pub range: (f32, f32),
}

/// Side in pixels of a panel's square for maps up to that many pixels a side; larger
/// maps get a larger square, one pixel per value.
const MAP_SIDE: u32 = 136;
/// What a panel adds to its square: a margin to the right, the caption above.
const PANEL_MARGIN: (u32, u32) = (14, 36);
/// Width of the row labels' column, height of the title.
const LABEL_WIDTH: u32 = 190;
const TITLE_HEIGHT: u32 = 44;

/// Draws `rows` of heatmaps, each row headed by its label (lines split at `\n`; all
/// rows with as many panels), under `title`, and writes a PNG.
pub fn heatmaps_png(path: &Path, title: &str, rows: &[(String, Vec<Heatmap>)]) -> Result<()> {
    let cols = rows.first().map_or(0, |(_, r)| r.len());
    let bad = rows
        .iter()
        .flat_map(|(_, r)| r)
        .find(|m| m.height == 0 || m.width == 0 || m.values.len() != m.height * m.width);
    if cols == 0 || rows.iter().any(|(_, r)| r.len() != cols) || bad.is_some() {
        return Err(Error::Config(format!(
            "a heatmap grid needs rows of equally many non-empty maps with height × width values{}",
            bad.map_or(String::new(), |m| format!(
                ": {:?} has {} values for {}×{}",
                m.title,
                m.values.len(),
                m.height,
                m.width
            ))
        )));
    }
    register_font();
    let largest = rows
        .iter()
        .flat_map(|(_, r)| r)
        .map(|m| m.height.max(m.width));
    let side = largest.max().unwrap_or(0).max(MAP_SIDE as usize) as u32;
    let panel = (side + PANEL_MARGIN.0, side + PANEL_MARGIN.1);
    let size = (
        LABEL_WIDTH + cols as u32 * panel.0 + 10,
        TITLE_HEIGHT + rows.len() as u32 * panel.1 + 10,
    );
    let mut rgb = vec![0u8; (size.0 * size.1 * 3) as usize];
    let draw_error = |e: String| Error::format(path, format!("drawing the heatmaps failed: {e}"));
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_error(e.to_string()))?;
        let text = |size: u32| ("sans-serif", size).into_font().color(&BLACK);
        root.draw_text(title, &text(22), (10, 10))
            .map_err(|e| draw_error(e.to_string()))?;
        let side = side as i32;
        for (r, (label, maps)) in rows.iter().enumerate() {
            let top = (TITLE_HEIGHT + r as u32 * panel.1) as i32;
            for (k, line) in label.lines().enumerate() {
                root.draw_text(line, &text(16), (10, top + 10 + side / 2 + 20 * k as i32))
                    .map_err(|e| draw_error(e.to_string()))?;
            }
            for (k, m) in maps.iter().enumerate() {
                let left = (LABEL_WIDTH + k as u32 * panel.0) as i32;
                root.draw_text(&m.title, &text(13), (left, top + 2))
                    .map_err(|e| draw_error(e.to_string()))?;
                let (y0, cell_h, cell_w) =
                    (top + 22, side / m.height as i32, side / m.width as i32);
                for (i, &v) in m.values.iter().enumerate() {
                    let (y, x) = ((i / m.width) as i32, (i % m.width) as i32);
                    let corner = (left + x * cell_w, y0 + y * cell_h);
                    let far = (corner.0 + cell_w, corner.1 + cell_h);
                    root.draw(&Rectangle::new(
                        [corner, far],
                        colour_of(v, m.range).filled(),
                    ))
                    .map_err(|e| draw_error(e.to_string()))?;
                }
            }
        }
        root.present().map_err(|e| draw_error(e.to_string()))?;
    }
    write_png(path, &rgb, size)
}

/// Dark blue → teal → green → yellow (viridis, five stops) at `v` within `range`.
fn colour_of(v: f32, (lo, hi): (f32, f32)) -> RGBColor {
    const STOPS: [(f32, f32, f32); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    if v.is_nan() {
        return RGBColor(150, 150, 150);
    }
    let t = if hi > lo {
        ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
    } else {
        0.5
    };
    let at = t * (STOPS.len() - 1) as f32;
    let k = (at as usize).min(STOPS.len() - 2);
    let f = at - k as f32;
    let (a, b) = (STOPS[k], STOPS[k + 1]);
    let mix = |p: f32, q: f32| (p + f * (q - p)).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Encodes an RGB buffer of `size` pixels and writes it atomically.
fn write_png(path: &Path, rgb: &[u8], (w, h): (u32, u32)) -> Result<()> {
    let mut png_bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png_bytes, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|e| Error::format(path, format!("PNG encoding failed: {e}")))?;
        writer
            .write_image_data(rgb)
            .map_err(|e| Error::format(path, format!("PNG encoding failed: {e}")))?;
    }
    crate::storage::write_atomically(path, &png_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_with_lines_bands_and_text() {
        let (_tmp, dir) = crate::temp_folder::temp_dir("plot");
        let path = dir.join("plot.png");
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

    #[test]
    fn writes_a_grid_of_heatmaps() {
        let (_tmp, dir) = crate::temp_folder::temp_dir("maps");
        let path = dir.join("maps.png");
        let ramp = |h: usize, w: usize| Heatmap {
            title: format!("{h}×{w}"),
            height: h,
            width: w,
            values: (0..h * w).map(|i| i as f32).collect(),
            range: (0.0, (h * w - 1) as f32),
        };
        let rows = vec![
            (
                "clean".to_string(),
                vec![ramp(4, 4), ramp(2, 2), ramp(1, 1)],
            ),
            (
                "adversarial".to_string(),
                vec![ramp(7, 7), ramp(3, 5), ramp(2, 1)],
            ),
        ];
        heatmaps_png(&path, "feature maps", &rows).unwrap();
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let panel = (MAP_SIDE + PANEL_MARGIN.0, MAP_SIDE + PANEL_MARGIN.1);
        let expected = (
            LABEL_WIDTH + 3 * panel.0 + 10,
            TITLE_HEIGHT + 2 * panel.1 + 10,
        );
        assert_eq!((info.width, info.height), expected);
        let pixels: Vec<&[u8]> = buf.chunks_exact(3).collect();
        let count = |c: RGBColor| pixels.iter().filter(|p| **p == [c.0, c.1, c.2]).count();
        let (low, high) = (colour_of(0.0, (0.0, 1.0)), colour_of(1.0, (0.0, 1.0)));
        assert_eq!((low, high), (RGBColor(68, 1, 84), RGBColor(253, 231, 37)));
        // Each ramp starts and ends its range (the 1×1 map, with an empty range, is mid-scale).
        assert!(
            count(low) > 1000 && count(high) > 1000,
            "{} {}",
            count(low),
            count(high)
        );
        let dark = pixels.iter().filter(|p| p.iter().all(|&v| v < 60)).count();
        assert!(dark > 300, "text drawn ({dark} dark pixels)");
        assert_eq!(colour_of(f32::NAN, (0.0, 1.0)), RGBColor(150, 150, 150));

        let ragged = vec![rows[0].clone(), ("short".to_string(), vec![ramp(2, 2)])];
        assert!(heatmaps_png(&path, "t", &ragged).is_err());
        let mut wrong = ramp(2, 2);
        wrong.values.pop();
        let err = heatmaps_png(&path, "t", &[("r".into(), vec![wrong])]).unwrap_err();
        assert!(err.to_string().contains("3 values for 2×2"), "{err}");
        assert!(heatmaps_png(&path, "t", &[]).is_err());

        // A map wider than the square widens every panel: one pixel per value.
        let wide = vec![("wide".to_string(), vec![ramp(3, 300), ramp(2, 2)])];
        heatmaps_png(&path, "t", &wide).unwrap();
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let info = decoder.read_info().unwrap().info().clone();
        assert_eq!(info.width, LABEL_WIDTH + 2 * (300 + PANEL_MARGIN.0) + 10);
    }
}
