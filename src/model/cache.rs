//! Trained networks on demand: reuse a cached checkpoint when one matches the recipe, train and
//! store one otherwise. The cache key covers everything that determines the weights.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::arch::Arch;
use super::checkpoint::{self, CheckpointMeta};
use super::distill::SoftTargets;
use super::net::Net;
use super::spec::ModelRef;
use super::train::{self, Observer, Snapshot, TrainConfig};
use crate::data::Mnist;

/// Bumped whenever a change to the training code would change the weights a recipe produces,
/// so stale cached checkpoints are not reused.
const RECIPE_VERSION: u32 = 1;

/// Where cached checkpoints live: `DCX_CACHE` if set, else the platform cache directory.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DCX_CACHE") {
        return PathBuf::from(dir);
    }
    directories::ProjectDirs::from("org", "dcx", "dcx")
        .map(|d| d.cache_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".dcx-cache"))
        .join("checkpoints")
}

/// A short stable key of everything that determines the trained weights: for a network an
/// experiment defines, its stages too (a built-in's key is its name, as it always was).
pub(crate) fn cache_key(arch: &Arch, cfg: &TrainConfig, data_fingerprint: &str) -> String {
    cache_key_taught(arch, cfg, data_fingerprint, None)
}

/// [`cache_key`] of a student: what it learned from (`SoftTargets::key`) is part of it.
fn cache_key_taught(
    arch: &Arch,
    cfg: &TrainConfig,
    data_fingerprint: &str,
    teacher: Option<&str>,
) -> String {
    let recipe = serde_json::to_string(cfg).expect("TrainConfig serialises");
    let model = match ModelRef::of(arch) {
        ModelRef::Builtin(kind) => kind.name().to_string(),
        ModelRef::Defined(spec) => format!(
            "{}|{}",
            spec.name,
            serde_json::to_string(&spec.layers).expect("stages serialise")
        ),
    };
    let mut h = Sha256::new();
    h.update(format!(
        "{RECIPE_VERSION}|{model}|{recipe}|{data_fingerprint}"
    ));
    if let Some(teacher) = teacher {
        h.update(format!("|distilled from {teacher}"));
    }
    let digest = hex::encode(h.finalize());
    format!("{}-e{}-{}", arch.name, cfg.epochs, &digest[..12])
}

pub(crate) fn cached_path(
    dir: &Path,
    model: &Arch,
    cfg: &TrainConfig,
    data_fingerprint: &str,
) -> PathBuf {
    dir.join(format!(
        "{}.safetensors",
        cache_key(model, cfg, data_fingerprint)
    ))
}

/// The result of [`obtain`].
pub struct Obtained {
    pub net: Net,
    pub meta: CheckpointMeta,
    pub path: PathBuf,
    /// True when an existing checkpoint was loaded instead of training.
    pub reused: bool,
}

/// Where a cancelled run of the recipe whose checkpoint is `complete` keeps its weights.
fn partial_path(complete: &Path) -> PathBuf {
    complete.with_extension("partial.safetensors")
}

/// Loads the cached checkpoint for this recipe, or trains one (reporting to `observer`) and
/// saves it. A run the observer cancels is saved beside the cache entry as `.partial` and is
/// never picked up as a cache hit; once the recipe has a complete checkpoint, its `.partial`
/// says nothing more and is removed. So are the temporary files of saves that were killed.
pub fn obtain(
    model: &Arch,
    cfg: &TrainConfig,
    data: &Mnist,
    retrain: bool,
    cache_dir: &Path,
    observer: &mut dyn Observer,
) -> anyhow::Result<Obtained> {
    obtain_keeping(model, cfg, None, data, retrain, cache_dir, &[], observer).map(|(got, _)| got)
}

/// [`obtain`], for a student that learns from a teacher's soft targets as well (`soft`;
/// its checkpoint is cached under a key that names the teacher), and with the network's
/// values after each epoch in `keep` (0: its initialisation) saved in the checkpoint beside
/// the trained ones. Keeping snapshots does not change the weights, so the cache key is the
/// recipe's as always: a cached checkpoint without the snapshots asked for (saved by
/// `obtain`, or by a dcx from before snapshots) is trained again, with them, rather than
/// rewound to values it does not hold.
#[allow(clippy::too_many_arguments)]
pub fn obtain_keeping(
    model: &Arch,
    cfg: &TrainConfig,
    soft: Option<&SoftTargets>,
    data: &Mnist,
    retrain: bool,
    cache_dir: &Path,
    keep: &[usize],
    observer: &mut dyn Observer,
) -> anyhow::Result<(Obtained, Vec<Snapshot>)> {
    if let Some(&late) = keep.iter().find(|&&e| e > cfg.epochs) {
        anyhow::bail!(
            "no weights after epoch {late}: the baseline trains {} epochs",
            cfg.epochs
        );
    }
    // The cache folder is dcx's own: every `.NAME.tmp-PID` in it is a checkpoint save's.
    crate::fsutil::remove_stale(cache_dir, |entry| {
        entry
            .strip_prefix('.')?
            .rsplit_once(".tmp-")?
            .1
            .parse()
            .ok()
    });
    let teacher = soft.map(|s| s.key.as_str());
    let path = cache_dir.join(format!(
        "{}.safetensors",
        cache_key_taught(model, cfg, &data.fingerprint, teacher)
    ));
    if !retrain && path.exists() {
        match checkpoint::load_snapshots(&path) {
            // A checkpoint of another network under this key (a hand-copied file) is not
            // this recipe's, whatever its name says.
            Ok((net, meta, snapshots))
                if meta.complete
                    && meta.model == ModelRef::of(model)
                    && meta.distilled.as_deref() == teacher
                    && keep.iter().all(|e| snapshots.iter().any(|s| s.epoch == *e)) =>
            {
                let _ = std::fs::remove_file(partial_path(&path));
                let snapshots = keep
                    .iter()
                    .filter_map(|e| snapshots.iter().find(|s| s.epoch == *e).cloned())
                    .collect();
                return Ok((
                    Obtained {
                        net,
                        meta,
                        path,
                        reused: true,
                    },
                    snapshots,
                ));
            }
            // A corrupt or partial cache entry is simply replaced.
            _ => {}
        }
    }
    let net = Net::new(model, cfg.seed)?;
    let (outcome, snapshots) = train::train_taught(&net, data, cfg, &[], soft, observer, keep)?;
    let meta = CheckpointMeta {
        model: ModelRef::of(model),
        train: cfg.clone(),
        data_fingerprint: data.fingerprint.clone(),
        history: outcome.history,
        complete: !outcome.cancelled,
        distilled: teacher.map(str::to_string),
    };
    let path = if outcome.cancelled {
        partial_path(&path)
    } else {
        path
    };
    checkpoint::save_with_snapshots(&path, &net, &meta, &snapshots)?;
    if meta.complete {
        let _ = std::fs::remove_file(partial_path(&path));
    }
    Ok((
        Obtained {
            net,
            meta,
            path,
            reused: false,
        },
        snapshots,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelKind;

    #[test]
    fn cache_key_changes_with_the_recipe() {
        let cfg = TrainConfig::default();
        let other = TrainConfig {
            seed: 2,
            ..TrainConfig::default()
        };
        let lenet5 = ModelKind::Lenet5.arch();
        let a = cache_key(&lenet5, &cfg, "fp");
        assert_eq!(a, cache_key(&lenet5, &cfg, "fp"));
        assert_ne!(a, cache_key(&lenet5, &other, "fp"));
        assert_ne!(a, cache_key(&lenet5, &cfg, "fp2"));
        assert_ne!(a, cache_key(&ModelKind::Lenet300100.arch(), &cfg, "fp"));
        // A network an experiment defines is keyed by its stages, not only its name.
        let mut spec = lenet5.spec();
        spec.name = "mine".into();
        let mine = spec.to_arch().unwrap();
        let b = cache_key(&mine, &cfg, "fp");
        assert!(b.starts_with("mine-e10-"), "{b}");
        if let crate::model::spec::StageSpec::Fc { outputs, .. } = &mut spec.layers[5] {
            *outputs = 400;
        }
        assert_ne!(b, cache_key(&spec.to_arch().unwrap(), &cfg, "fp"));
        // A penalty is part of the recipe; no penalty writes nothing, so the keys of
        // recipes from before penalties existed are what they were.
        let l1 = TrainConfig {
            l1: 1e-5,
            ..TrainConfig::default()
        };
        assert_ne!(a, cache_key(&lenet5, &l1, "fp"));
        let mut fc1 = TrainConfig::default();
        fc1.penalty.insert(
            "fc1".into(),
            crate::model::train::LayerPenalty {
                l1: None,
                l2: Some(1e-4),
            },
        );
        assert_ne!(a, cache_key(&lenet5, &fc1, "fp"));
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(!json.contains("l1") && !json.contains("penalty"), "{json}");
    }
}
