//! Progress bars for the command line.

use indicatif::{ProgressBar, ProgressStyle};

use super::Reporter;

/// A [`Reporter`] that draws a progress bar on stderr per task, and prints notices
/// above it.
#[derive(Debug, Default)]
pub struct ProgressBars(Option<ProgressBar>);

impl Reporter for ProgressBars {
    fn note(&mut self, line: &str) {
        match &self.0 {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn start(&mut self, label: &str, total: usize, done: usize) {
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{elapsed_precise} < {eta_precise}] {wide_bar} {human_pos}/{human_len} img, {per_sec} {msg}",
            )
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        bar.set_position(done as u64);
        bar.reset_eta();
        self.0 = Some(bar);
    }

    fn advance(&mut self, images: usize, status: Option<&str>) {
        if let Some(bar) = &self.0 {
            bar.inc(images as u64);
            if let Some(s) = status {
                bar.set_message(s.to_string());
            }
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish();
        }
    }
}
