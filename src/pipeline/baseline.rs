//! An experiment's trained baseline, the one way every command gets it: from the checkpoint
//! cache, or trained there, and, with `[distill]`, trained as a student of its teacher.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::data::Mnist;
use crate::experiment::{DistillPlan, Experiment};
use crate::model::cache::{self, Obtained};
use crate::model::checkpoint;
use crate::model::distill::{self, DistillConfig, SoftTargets};
use crate::model::train::Observer;
use crate::model::train::{Snapshot, TrainConfig};
use crate::model::{Arch, Net};

/// The experiment's baseline (see [`cache::obtain_keeping`]).
pub fn obtain(
    exp: &Experiment,
    data: &Mnist,
    retrain: bool,
    cache_dir: &Path,
    obs: &mut dyn Observer,
) -> anyhow::Result<Obtained> {
    obtain_keeping(exp, data, retrain, cache_dir, &[], obs).map(|(got, _)| got)
}

/// [`obtain`], with the baseline's values after each epoch in `keep` (see
/// [`cache::obtain_keeping`]): what lottery-ticket rounds rewind to.
pub fn obtain_keeping(
    exp: &Experiment,
    data: &Mnist,
    retrain: bool,
    cache_dir: &Path,
    keep: &[usize],
    obs: &mut dyn Observer,
) -> anyhow::Result<(Obtained, Vec<Snapshot>)> {
    let soft = soft_of(exp.distill.as_ref(), data, cache_dir, obs)?;
    cache::obtain_keeping(
        &exp.arch(),
        &exp.train,
        soft.as_ref(),
        data,
        retrain,
        cache_dir,
        keep,
        obs,
    )
}

/// [`obtain`] from the parts of an experiment it reads.
pub fn obtain_for(
    arch: &Arch,
    train: &TrainConfig,
    distill: Option<&DistillPlan>,
    data: &Mnist,
    retrain: bool,
    cache_dir: &Path,
    obs: &mut dyn Observer,
) -> anyhow::Result<Obtained> {
    let soft = soft_of(distill, data, cache_dir, obs)?;
    cache::obtain_keeping(
        arch,
        train,
        soft.as_ref(),
        data,
        retrain,
        cache_dir,
        &[],
        obs,
    )
    .map(|(got, _)| got)
}

/// The soft targets of `distill`'s teacher, when the baseline has one.
fn soft_of(
    distill: Option<&DistillPlan>,
    data: &Mnist,
    cache_dir: &Path,
    obs: &mut dyn Observer,
) -> anyhow::Result<Option<SoftTargets>> {
    distill
        .map(|plan| soft_targets(plan, data, cache_dir, obs))
        .transpose()
}

/// The teacher's logits on the training set, with the settings and the teacher's identity
/// (its checkpoint's cache key, or a checkpoint file's content hash).
pub fn soft_targets(
    plan: &DistillPlan,
    data: &Mnist,
    cache_dir: &Path,
    obs: &mut dyn Observer,
) -> anyhow::Result<SoftTargets> {
    let path = Path::new(&plan.teacher);
    let (teacher, id): (Net, String) = if plan.teacher.ends_with(".toml") {
        let exp = Experiment::load(path).map_err(|e| anyhow::anyhow!("distill.teacher: {e}"))?;
        if exp.distill.is_some() {
            anyhow::bail!(
                "distill.teacher: {} is itself distilled; teach from a network trained on the labels",
                plan.teacher
            );
        }
        let got = cache::obtain(&exp.arch(), &exp.train, data, false, cache_dir, obs)?;
        if !got.meta.complete {
            anyhow::bail!("the teacher's training was stopped; nothing to distil from");
        }
        let id = got
            .path
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        (got.net, id)
    } else {
        let (net, _, bytes) = checkpoint::load_with_bytes(path)
            .map_err(|e| anyhow::anyhow!("distill.teacher: {e}"))?;
        (net, hex::encode(&Sha256::digest(&bytes)[..8]))
    };
    soft_targets_of(&teacher.folded()?, &id, plan.config(), data, cache_dir)
}

/// The soft targets of `teacher` (folded), named `id`, under `config`.
pub fn soft_targets_of(
    teacher: &Net,
    id: &str,
    config: DistillConfig,
    data: &Mnist,
    cache_dir: &Path,
) -> anyhow::Result<SoftTargets> {
    let logits = distill::teacher_logits(teacher, id, &data.train, &data.fingerprint, cache_dir)?;
    Ok(SoftTargets {
        logits,
        classes: teacher.arch.layers.last().map_or(0, |l| l.outputs),
        config,
        key: format!("{id}, T {}, alpha {}", config.temperature, config.alpha),
    })
}
