//! Trained networks on disk: safetensors files with the training recipe in their metadata.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::net::{Net, RunningStats};
use super::spec::ModelRef;
use super::train::{EpochStats, Snapshot, TrainConfig};
use crate::fsutil::write_atomic;

const FORMAT: &str = "dcx-checkpoint-1";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a usable dcx checkpoint: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// The network: a built-in's name, or a defined network's stages.
    pub model: ModelRef,
    pub train: TrainConfig,
    pub data_fingerprint: String,
    pub history: Vec<EpochStats>,
    /// False when training was stopped early (Ctrl-C); such a file is never reused as a cache hit.
    pub complete: bool,
    /// The teacher and settings a distilled student learned from (`None`: the labels alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distilled: Option<String>,
}

impl CheckpointMeta {
    pub fn test_accuracy(&self) -> Option<f64> {
        self.history.last().map(|e| e.test_accuracy)
    }
}

pub fn save(path: &Path, net: &Net, meta: &CheckpointMeta) -> Result<(), CheckpointError> {
    save_with_snapshots(path, net, meta, &[])
}

/// The metadata key listing the epochs whose snapshots a checkpoint holds (a JSON list).
const SNAPSHOTS: &str = "dcx-snapshots";

/// [`save`], with the network's values at earlier epochs of its training beside the
/// trained ones (tensors `epochK.LAYER.weight` / `.bias`; epoch 0 is the initialisation),
/// so lottery-ticket rewinding goes back to them bit for bit. [`load`] reads such a file as
/// any other; [`load_snapshots`] reads the snapshots. Without snapshots the file is what
/// [`save`] always wrote.
pub fn save_with_snapshots(
    path: &Path,
    net: &Net,
    meta: &CheckpointMeta,
    snapshots: &[Snapshot],
) -> Result<(), CheckpointError> {
    let invalid = |reason: String| CheckpointError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let device = candle_core::Device::Cpu;
    let mut tensors = Vec::new();
    for (spec, p) in net.arch.layers.iter().zip(&net.params) {
        tensors.push((
            format!("{}.weight", spec.name),
            p.weight.as_tensor().clone(),
        ));
        tensors.push((format!("{}.bias", spec.name), p.bias.as_tensor().clone()));
    }
    for (spec, n) in net.arch.norms.iter().zip(&net.norms) {
        let stats = n.running();
        let vector = |v: Vec<f32>| {
            candle_core::Tensor::from_vec(v, spec.channels, &device)
                .map_err(|e| invalid(e.to_string()))
        };
        tensors.push((format!("{}.scale", spec.name), n.scale.as_tensor().clone()));
        tensors.push((format!("{}.shift", spec.name), n.shift.as_tensor().clone()));
        tensors.push((format!("{}.running_mean", spec.name), vector(stats.mean)?));
        tensors.push((format!("{}.running_var", spec.name), vector(stats.var)?));
    }
    for snap in snapshots {
        if snap.values.len() != net.arch.layers.len() {
            return Err(invalid(format!(
                "the epoch {} snapshot has {} layers, the network {}",
                snap.epoch,
                snap.values.len(),
                net.arch.layers.len()
            )));
        }
        for (spec, (w, b)) in net.arch.layers.iter().zip(&snap.values) {
            let tensor = |values: &[f32], shape: Vec<usize>| {
                candle_core::Tensor::from_slice(values, shape, &device)
                    .map_err(|e| invalid(e.to_string()))
            };
            tensors.push((
                format!("epoch{}.{}.weight", snap.epoch, spec.name),
                tensor(w, spec.weight_shape())?,
            ));
            tensors.push((
                format!("epoch{}.{}.bias", snap.epoch, spec.name),
                tensor(b, vec![spec.bias_count()])?,
            ));
        }
    }
    let mut info = HashMap::new();
    info.insert("format".to_string(), FORMAT.to_string());
    info.insert(
        "dcx".to_string(),
        serde_json::to_string(meta).map_err(|e| invalid(e.to_string()))?,
    );
    if !snapshots.is_empty() {
        let epochs: Vec<usize> = snapshots.iter().map(|s| s.epoch).collect();
        info.insert(
            SNAPSHOTS.to_string(),
            serde_json::to_string(&epochs).map_err(|e| invalid(e.to_string()))?,
        );
    }
    let bytes = safetensors::serialize(tensors, Some(info)).map_err(|e| invalid(e.to_string()))?;
    write_atomic(path, &bytes).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A checkpoint with the snapshots it holds (none for one saved by [`save`], or by a dcx
/// from before snapshots), in the order they were saved.
pub fn load_snapshots(
    path: &Path,
) -> Result<(Net, CheckpointMeta, Vec<Snapshot>), CheckpointError> {
    let bytes = crate::fsutil::read_bounded(path, 512 << 20, "a checkpoint").map_err(|source| {
        CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let invalid = |reason: String| CheckpointError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let (net, meta) = from_bytes(&bytes).map_err(invalid)?;
    let snapshots = snapshots_from(&bytes, &net).map_err(invalid)?;
    Ok((net, meta, snapshots))
}

fn snapshots_from(bytes: &[u8], net: &Net) -> Result<Vec<Snapshot>, String> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
    let Some(listed) = header.metadata().as_ref().and_then(|m| m.get(SNAPSHOTS)) else {
        return Ok(Vec::new());
    };
    let epochs: Vec<usize> =
        serde_json::from_str(listed).map_err(|e| format!("bad {SNAPSHOTS} metadata: {e}"))?;
    epochs
        .into_iter()
        .map(|epoch| {
            let values = net
                .arch
                .layers
                .iter()
                .map(|spec| {
                    Ok((
                        read_f32(
                            &st,
                            &format!("epoch{epoch}.{}.weight", spec.name),
                            &spec.weight_shape(),
                        )?,
                        read_f32(
                            &st,
                            &format!("epoch{epoch}.{}.bias", spec.name),
                            &[spec.bias_count()],
                        )?,
                    ))
                })
                .collect::<Result<_, String>>()?;
            Ok(Snapshot { epoch, values })
        })
        .collect()
}

/// Tensor `name`'s values, which must be f32 of `shape`.
fn read_f32(
    st: &safetensors::SafeTensors,
    name: &str,
    shape: &[usize],
) -> Result<Vec<f32>, String> {
    let t = st
        .tensor(name)
        .map_err(|_| format!("missing tensor {name}"))?;
    if t.dtype() != safetensors::Dtype::F32 || t.shape() != shape {
        return Err(format!(
            "tensor {name} is {:?} {:?}, expected F32 {shape:?}",
            t.dtype(),
            t.shape()
        ));
    }
    Ok(t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

pub fn load(path: &Path) -> Result<(Net, CheckpointMeta), CheckpointError> {
    load_with_bytes(path).map(|(net, meta, _)| (net, meta))
}

/// [`load`], also giving the file's bytes (for a caller that hashes what it read).
pub fn load_with_bytes(path: &Path) -> Result<(Net, CheckpointMeta, Vec<u8>), CheckpointError> {
    // The course CNN's checkpoint is about 26 MB.
    let bytes = crate::fsutil::read_bounded(path, 512 << 20, "a checkpoint").map_err(|source| {
        CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let (net, meta) = from_bytes(&bytes).map_err(|reason| CheckpointError::Invalid {
        path: path.to_path_buf(),
        reason,
    })?;
    Ok((net, meta, bytes))
}

fn from_bytes(bytes: &[u8]) -> Result<(Net, CheckpointMeta), String> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
    let info = header.metadata().as_ref().ok_or("no metadata")?;
    if info.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(format!("format is not {FORMAT}"));
    }
    let meta: CheckpointMeta = serde_json::from_str(info.get("dcx").ok_or("no dcx metadata")?)
        .map_err(|e| format!("bad metadata: {e}"))?;
    let arch = meta.model.to_arch()?;
    let read = |name: String, shape: Vec<usize>| -> Result<Vec<f32>, String> {
        let t = st
            .tensor(&name)
            .map_err(|_| format!("missing tensor {name}"))?;
        if t.dtype() != safetensors::Dtype::F32 || t.shape() != shape.as_slice() {
            return Err(format!(
                "tensor {name} is {:?} {:?}, expected F32 {shape:?}",
                t.dtype(),
                t.shape()
            ));
        }
        let values: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if values.iter().any(|v| !v.is_finite()) {
            return Err(format!("tensor {name} holds a NaN or an infinity"));
        }
        Ok(values)
    };
    let mut values = Vec::new();
    for spec in &arch.layers {
        values.push((
            read(format!("{}.weight", spec.name), spec.weight_shape())?,
            read(format!("{}.bias", spec.name), vec![spec.bias_count()])?,
        ));
    }
    let net = Net::from_arch(arch, values).map_err(|e| e.to_string())?;
    for (spec, n) in net.arch.norms.iter().zip(&net.norms) {
        let vector = |what: &str| read(format!("{}.{what}", spec.name), vec![spec.channels]);
        let device = candle_core::Device::Cpu;
        let var = |v: Vec<f32>| {
            candle_core::Tensor::from_vec(v, spec.channels, &device).map_err(|e| e.to_string())
        };
        n.scale
            .set(&var(vector("scale")?)?)
            .map_err(|e| e.to_string())?;
        n.shift
            .set(&var(vector("shift")?)?)
            .map_err(|e| e.to_string())?;
        let stats = RunningStats {
            mean: vector("running_mean")?,
            var: vector("running_var")?,
        };
        if stats.var.iter().any(|&v| v < 0.0) {
            return Err(format!(
                "tensor {}.running_var holds a negative variance",
                spec.name
            ));
        }
        n.set_running(stats);
    }
    Ok((net, meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelKind;
    use crate::model::train::{EpochStats, TrainConfig};

    fn meta() -> CheckpointMeta {
        CheckpointMeta {
            model: ModelKind::Lenet5.into(),
            train: TrainConfig::default(),
            data_fingerprint: "abc".into(),
            history: vec![EpochStats {
                epoch: 1,
                train_loss: 0.1,
                test_loss: 0.2,
                test_accuracy: 0.98,
                images_per_sec: 100.0,
                seconds: 1.0,
            }],
            complete: true,
            distilled: None,
        }
    }

    #[test]
    fn save_then_load_gives_identical_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.safetensors");
        let net = Net::new(&ModelKind::Lenet5.arch(), 7).unwrap();
        save(&path, &net, &meta()).unwrap();
        let (loaded, m) = load(&path).unwrap();
        assert_eq!(m, meta());
        let x = net
            .input((0..2 * 784).map(|i| (i % 17) as f32 / 17.0).collect(), 2)
            .unwrap();
        let a: Vec<Vec<f32>> = net.forward(&x).unwrap().to_vec2().unwrap();
        let b: Vec<Vec<f32>> = loaded.forward(&x).unwrap().to_vec2().unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn batch_norm_parameters_and_statistics_survive_a_save() {
        let mut spec = crate::model::NetworkSpec::builtin(ModelKind::Lenet300100);
        spec.name = "bn".into();
        spec.layers
            .insert(2, crate::model::spec::StageSpec::BatchNorm { name: None });
        let arch = spec.to_arch().unwrap();
        let net = Net::new(&arch, 2).unwrap();
        let x = net
            .input((0..8 * 784).map(|i| (i % 13) as f32 / 6.0).collect(), 8)
            .unwrap();
        net.set_training(true);
        net.forward(&x).unwrap();
        net.set_training(false);
        let shift = candle_core::Tensor::new(vec![0.25f32; 300], &candle_core::Device::Cpu);
        net.norms[0].shift.set(&shift.unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bn.safetensors");
        let meta = CheckpointMeta {
            model: ModelRef::of(&arch),
            ..meta()
        };
        save(&path, &net, &meta).unwrap();
        let (loaded, m) = load(&path).unwrap();
        assert_eq!(m, meta);
        assert_eq!(loaded.arch, arch);
        assert_eq!(loaded.norms[0].running(), net.norms[0].running());
        let a: Vec<Vec<f32>> = net.forward(&x).unwrap().to_vec2().unwrap();
        let b: Vec<Vec<f32>> = loaded.forward(&x).unwrap().to_vec2().unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn garbage_and_missing_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.safetensors");
        std::fs::write(&path, b"not a checkpoint at all").unwrap();
        let err = load(&path).err().unwrap().to_string();
        assert!(
            err.contains("junk.safetensors") && err.contains("not a usable"),
            "{err}"
        );
        let err = load(&dir.path().join("absent")).err().unwrap().to_string();
        assert!(err.contains("absent"), "{err}");
    }

    #[test]
    fn snapshots_round_trip_bit_for_bit_and_old_files_have_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.safetensors");
        let init = Net::new(&ModelKind::Lenet300100.arch(), 3).unwrap();
        let trained = Net::new(&ModelKind::Lenet300100.arch(), 4).unwrap();
        let snaps = vec![
            Snapshot::of(&init, 0).unwrap(),
            Snapshot::of(&Net::new(&ModelKind::Lenet300100.arch(), 5).unwrap(), 2).unwrap(),
        ];
        let meta = CheckpointMeta {
            model: ModelKind::Lenet300100.into(),
            ..meta()
        };
        save_with_snapshots(&path, &trained, &meta, &snaps).unwrap();
        let (net, m, got) = load_snapshots(&path).unwrap();
        assert_eq!(m, meta);
        assert_eq!(got, snaps);
        assert_eq!(
            net.weight_values(0).unwrap(),
            trained.weight_values(0).unwrap()
        );
        // The plain reader sees the trained network, as before.
        let (plain, _) = load(&path).unwrap();
        assert_eq!(
            plain.weight_values(2).unwrap(),
            trained.weight_values(2).unwrap()
        );
        save(&path, &trained, &meta).unwrap();
        assert!(load_snapshots(&path).unwrap().2.is_empty());
    }
}
