//! `sparta info`: a model configuration's layers and parameter count.

use crate::error::Result;
use crate::nn::resnet::{ResNet, ResNetConfig};

/// The layer table of `config`'s model as markdown, with every tensor when `tensors`,
/// and its parameter totals.
pub fn summary(config: &ResNetConfig, tensors: bool) -> Result<String> {
    let model = ResNet::<f32>::new(config.clone(), 0)?;
    let mut text = format!(
        "ResNet ({:?}, widths {:?}), {} input channels, {} classes, activation {:?}\n",
        config.depth, config.widths, config.in_channels, config.classes, config.activation
    );
    let rows = model.summary();
    if tensors {
        text += "| tensor | shape | parameters |\n|---|---|---:|\n";
        for r in &rows {
            text += &format!("| {} | {:?} | {} |\n", r.name, r.shape, r.params);
        }
    } else {
        // Tensors grouped by layer: the name without its last component.
        let mut layers: Vec<(String, usize, usize)> = Vec::new();
        for r in &rows {
            let layer = r.name.rsplit_once('.').map_or(r.name.as_str(), |(l, _)| l);
            match layers.iter_mut().find(|(name, _, _)| name == layer) {
                Some((_, params, count)) => {
                    *params += r.params;
                    *count += 1;
                }
                None => layers.push((layer.to_string(), r.params, 1)),
            }
        }
        text += "| layer | tensors | parameters |\n|---|---:|---:|\n";
        for (name, params, count) in &layers {
            text += &format!("| {name} | {count} | {params} |\n");
        }
    }
    text += &format!("\ntotal parameters: {}\n", model.param_count());
    if model.trainable_count() != model.param_count() {
        text += &format!(
            "trained (frozen SPARTA excluded): {}\n",
            model.trainable_count()
        );
    }
    Ok(text)
}
