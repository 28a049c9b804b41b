//! Writes a SPARTA layer's weights, an input, an output gradient and sparta's forward and
//! backward results (f64) into a folder, for `scripts/torch_cross_check.py` to compare
//! with an independent PyTorch implementation of docs/design.md#dscanet.
//!
//! ```sh
//! cargo run --release --example torch_cross_check -- /tmp/xc
//! python3 scripts/torch_cross_check.py /tmp/xc     # needs torch and safetensors
//! ```

use std::path::PathBuf;

use rand::SeedableRng;
use sparta::nn::sparta::{SpartaConfig, SpartaLayer};

fn main() -> sparta::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "xc".into()));
    std::fs::create_dir_all(&dir).map_err(|e| sparta::Error::io(&dir, e))?;
    // C = 300 > 256 so that Co = 256 < C is exercised too.
    for (tag, n, c, h, w) in [("small", 3, 5, 6, 7), ("wide", 2, 300, 3, 2)] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let layer = SpartaLayer::<f64>::new(SpartaConfig::new(c), &mut rng);
        let len = n * c * h * w;
        let x: Vec<f64> = (0..len).map(|i| (i as f64 * 0.731).sin() * 1.5).collect();
        let dy: Vec<f64> = (0..len).map(|i| (i as f64 * 0.377 + 1.0).cos()).collect();
        let (y, cache) = layer.forward(&x, n, h, w)?;
        let grads = layer.backward(&x, &cache, &dy)?;
        layer.save(&dir.join(format!("{tag}.weights.safetensors")))?;
        let mut lines = vec![format!("shape {n} {c} {h} {w}")];
        let mut dump = |name: &str, v: &[f64]| {
            let values: Vec<String> = v.iter().map(|f| format!("{f:e}")).collect();
            lines.push(format!("{name} {}", values.join(" ")));
        };
        dump("x", &x);
        dump("dy", &dy);
        dump("y", &y);
        dump("dx", &grads.dx);
        for ((name, _, _), g) in layer.params().iter().zip(&grads.params) {
            dump(&format!("d.{name}"), g);
        }
        let path = dir.join(format!("{tag}.values.txt"));
        std::fs::write(&path, lines.join("\n") + "\n").map_err(|e| sparta::Error::io(&path, e))?;
    }
    println!("wrote {}", dir.display());
    Ok(())
}
