//! A ResNet's checkpoint: parameters, running statistics, SGD velocity
//! (`optim.velocity.<name>`) and the configuration (JSON metadata `config`), in a
//! safetensors file, from any backend (through the host).

use std::collections::HashMap;
use std::path::Path;

use super::arch::ResNetBackend;
use super::{ResNet, ResNetConfig};
use crate::checkpoint::TensorMap;
use crate::error::{Error, Result};
use crate::real::Real;

impl<T: Real> ResNet<T> {
    /// Builds the model a checkpoint holds, on the host: see [`ResNet::from_checkpoint_on`].
    pub fn from_checkpoint(path: &Path) -> Result<Self> {
        Self::from_checkpoint_on((), path)
    }
}

impl<B: ResNetBackend> ResNet<B> {
    /// Writes parameters, buffers, SGD velocity and the configuration to `path`,
    /// atomically; a model holding a non-finite value is refused
    /// ([`Error::NonFinite`]).
    #[allow(clippy::type_complexity)]
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        let read = |b: &B::Buf| B::download(&self.ctx, &B::view(&self.ctx, b));
        let n = self.param_info.len();
        let params = self.params[..n]
            .iter()
            .map(read)
            .collect::<Result<Vec<_>>>()?;
        let buffers = self.buffers.iter().map(read).collect::<Result<Vec<_>>>()?;
        let velocity = self.velocity.iter().map(read).collect::<Result<Vec<_>>>()?;
        let mut tensors: Vec<(String, Vec<usize>, &[B::Real])> = Vec::new();
        for (p, v) in self.param_info.iter().zip(&params) {
            tensors.push((p.name.clone(), p.shape.clone(), v));
        }
        for (p, v) in self.buffer_info.iter().zip(&buffers) {
            tensors.push((p.name.clone(), p.shape.clone(), v));
        }
        for (p, v) in self.param_info.iter().zip(&velocity) {
            tensors.push((format!("optim.velocity.{}", p.name), p.shape.clone(), v));
        }
        let config =
            serde_json::to_string(&self.config).map_err(|e| Error::format(path, e.to_string()))?;
        let meta = HashMap::from([("config".to_string(), config)]);
        crate::checkpoint::save(path, &tensors, meta)
    }

    /// Restores what [`ResNet::save_checkpoint`] wrote. Every tensor must be present
    /// with its shape, and nothing else; every value must be finite and every running
    /// variance non-negative; the model is unchanged on error.
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<()> {
        let (file, _) = crate::checkpoint::load::<B::Real>(path)?;
        self.assign(path, file)
    }

    /// Builds the model a checkpoint holds, on the backend of `ctx`: its configuration
    /// (metadata `config`), then its tensors. The configuration is untrusted: the
    /// values it implies ([`ResNetConfig::value_counts`], plus one SGD velocity per
    /// parameter) must be the values the file holds before anything is allocated for
    /// the model.
    pub fn from_checkpoint_on(ctx: B::Ctx, path: &Path) -> Result<Self> {
        let (file, meta) = crate::checkpoint::load::<B::Real>(path)?;
        let config = config_of(path, &meta)?;
        let counts = config
            .value_counts()
            .map_err(|e| Error::format(path, format!("config: {e}")))?;
        let implied = counts
            .parameters
            .checked_mul(2)
            .and_then(|v| v.checked_add(counts.buffers));
        let stored: usize = file.values().map(|(_, v)| v.len()).sum();
        if implied != Some(stored) {
            return Err(Error::format(
                path,
                format!(
                    "its config describes a model of {} parameters and {} buffer values \
                     (with SGD velocity, {} values) but the file holds {stored}",
                    counts.parameters,
                    counts.buffers,
                    implied.map_or("more than can be counted".into(), |v| v.to_string())
                ),
            ));
        }
        let mut model = ResNet::new_on(ctx, config, 0)?;
        model.assign(path, file)?;
        Ok(model)
    }

    /// Moves the tensors of `file` (read from `path`) into the model: see
    /// [`ResNet::load_checkpoint`].
    fn assign(&mut self, path: &Path, mut file: TensorMap<B::Real>) -> Result<()> {
        let mut take = |name: &str, shape: &[usize]| -> Result<Vec<B::Real>> {
            let (s, v) = file
                .remove(name)
                .ok_or_else(|| Error::format(path, format!("missing tensor {name}")))?;
            if s != shape {
                return Err(Error::format(
                    path,
                    format!("tensor {name} has shape {s:?}, expected {shape:?}"),
                ));
            }
            Ok(v)
        };
        let params = self
            .param_info
            .iter()
            .map(|p| take(&p.name, &p.shape))
            .collect::<Result<Vec<_>>>()?;
        let buffers = self
            .buffer_info
            .iter()
            .map(|p| take(&p.name, &p.shape))
            .collect::<Result<Vec<_>>>()?;
        let velocity = self
            .param_info
            .iter()
            .map(|p| take(&format!("optim.velocity.{}", p.name), &p.shape))
            .collect::<Result<Vec<_>>>()?;
        if let Some(extra) = file.keys().min() {
            return Err(Error::format(path, format!("unexpected tensor {extra}")));
        }
        for (b, v) in self.buffer_info.iter().zip(&buffers) {
            let negative = v.iter().position(|x| x.as_f64() < 0.0);
            if let (true, Some(i)) = (b.name.ends_with(".running_var"), negative) {
                return Err(Error::format(
                    path,
                    format!(
                        "tensor {} holds the negative variance {} at index {i}",
                        b.name,
                        v[i].as_f64()
                    ),
                ));
            }
        }
        let ctx = &self.ctx;
        for (dst, v) in self.params.iter_mut().zip(&params) {
            B::overwrite(ctx, dst, v)?;
        }
        for (dst, v) in self.buffers.iter_mut().zip(&buffers) {
            B::overwrite(ctx, dst, v)?;
        }
        for (dst, v) in self.velocity.iter_mut().zip(&velocity) {
            B::overwrite(ctx, dst, v)?;
        }
        Ok(())
    }
}

/// The configuration in a checkpoint's metadata.
fn config_of(path: &Path, meta: &HashMap<String, String>) -> Result<ResNetConfig> {
    let json = meta
        .get("config")
        .ok_or_else(|| Error::format(path, "no config in metadata"))?;
    serde_json::from_str(json).map_err(|e| Error::format(path, format!("config: {e}")))
}
