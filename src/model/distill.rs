//! Knowledge distillation (Hinton, Vinyals & Dean 2015): a student trains on a teacher's
//! softened outputs as well as the labels. The teacher's logits on the training set are
//! computed once and kept on disk beside its checkpoint, so every student of it (each seed,
//! each temperature) reads them instead of running the teacher again.

use std::path::{Path, PathBuf};

use candle_core::{D, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::net::Net;
use crate::data::Split;

/// How a student learns from its teacher: `alpha` of the loss is the soft cross-entropy at
/// `temperature` (scaled by T² so its gradients keep their size as T grows), the rest the
/// usual cross-entropy with the labels.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    pub temperature: f64,
    pub alpha: f64,
}

impl DistillConfig {
    /// `Err` names the setting no distillation can run with (`key: why`).
    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature > 0.0 && self.temperature <= 1000.0) {
            return Err(format!(
                "temperature: must be above 0 and at most 1000, got {}",
                self.temperature
            ));
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(format!(
                "alpha: must be in [0, 1] (the soft targets' share of the loss), got {}",
                self.alpha
            ));
        }
        Ok(())
    }
}

/// The teacher's logits for every training image, `[images × classes]` row-major, and how
/// to use them.
#[derive(Clone, Debug, PartialEq)]
pub struct SoftTargets {
    pub logits: Vec<f32>,
    pub classes: usize,
    pub config: DistillConfig,
    /// What the student's checkpoint key adds: the teacher's identity and the settings.
    pub key: String,
}

impl SoftTargets {
    /// The teacher's logits of the training images at `indices`, as a `[n × classes]` tensor.
    pub(crate) fn rows(&self, indices: &[usize], net: &Net) -> candle_core::Result<Tensor> {
        let mut rows = Vec::with_capacity(indices.len() * self.classes);
        for &i in indices {
            rows.extend_from_slice(&self.logits[i * self.classes..(i + 1) * self.classes]);
        }
        Tensor::from_vec(rows, (indices.len(), self.classes), net.device())
    }
}

/// `alpha · T² · mean(−Σ softmax(t/T) · log softmax(s/T)) + (1 − alpha) · hard`, where
/// `hard` is the cross-entropy with the labels.
pub fn loss(
    student: &Tensor,
    teacher: &Tensor,
    hard: &Tensor,
    config: DistillConfig,
) -> candle_core::Result<Tensor> {
    let t = config.temperature;
    let soft_teacher = candle_nn::ops::softmax(&(teacher / t)?, D::Minus1)?;
    let log_student = candle_nn::ops::log_softmax(&(student / t)?, D::Minus1)?;
    let soft = (soft_teacher * log_student)?
        .sum(D::Minus1)?
        .mean_all()?
        .neg()?;
    (soft * (config.alpha * t * t))? + (hard * (1.0 - config.alpha))?
}

/// The teacher's logits on `split`, read from `dir` when this teacher's were stored for this
/// data, else computed (in chunks) and stored. `teacher_key` names the teacher uniquely (its
/// checkpoint's cache key or content hash).
pub fn teacher_logits(
    teacher: &Net,
    teacher_key: &str,
    split: &Split,
    data_fingerprint: &str,
    dir: &Path,
) -> anyhow::Result<Vec<f32>> {
    let path = logits_path(dir, teacher_key, data_fingerprint);
    let classes = teacher.arch.layers.last().map_or(0, |l| l.outputs);
    let expected = split.len * classes;
    if let Ok(bytes) = std::fs::read(&path)
        && bytes.len() == 4 * expected
    {
        let logits: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if logits.iter().all(|v| v.is_finite()) {
            return Ok(logits);
        }
    }
    const CHUNK: usize = 1000;
    let mut logits = Vec::with_capacity(expected);
    for start in (0..split.len).step_by(CHUNK) {
        let n = CHUNK.min(split.len - start);
        let images = &split.images[start * crate::data::PIXELS..(start + n) * crate::data::PIXELS];
        logits.extend(teacher.logits(images, n)?);
    }
    if let Some(bad) = logits.iter().find(|v| !v.is_finite()) {
        anyhow::bail!("the teacher's logits hold {bad}: it cannot teach");
    }
    let bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::create_dir_all(dir)?;
    crate::fsutil::write_atomic(&path, &bytes)?;
    Ok(logits)
}

fn logits_path(dir: &Path, teacher_key: &str, data_fingerprint: &str) -> PathBuf {
    let digest = hex::encode(Sha256::digest(format!("{teacher_key}|{data_fingerprint}")));
    dir.join(format!("teacher-{}.logits", &digest[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn hand(student: &[[f32; 3]], teacher: &[[f32; 3]], labels: &[usize], t: f64, a: f64) -> f64 {
        let softmax = |z: &[f32; 3], t: f64| {
            let m = z.iter().fold(f32::MIN, |m, &v| m.max(v)) as f64;
            let e: Vec<f64> = z.iter().map(|&v| ((v as f64 - m) / t).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(|v| v / s).collect::<Vec<f64>>()
        };
        let n = student.len() as f64;
        let mut soft = 0.0;
        let mut hard = 0.0;
        for ((s, te), &y) in student.iter().zip(teacher).zip(labels) {
            let p = softmax(te, t);
            let q = softmax(s, t);
            soft -= p.iter().zip(&q).map(|(p, q)| p * q.ln()).sum::<f64>();
            hard -= softmax(s, 1.0)[y].ln();
        }
        a * t * t * soft / n + (1.0 - a) * hard / n
    }

    #[test]
    fn the_loss_is_the_hand_computed_mixture() {
        let student = [[1.0f32, -0.5, 2.0], [0.3, 0.2, -1.0]];
        let teacher = [[3.0f32, 0.0, 1.0], [-2.0, 4.0, 0.5]];
        let labels = [2usize, 1];
        let tensor = |v: &[[f32; 3]; 2]| Tensor::new(v, &Device::Cpu).unwrap();
        let y = Tensor::new(&[2u32, 1], &Device::Cpu).unwrap();
        for (t, a) in [(1.0, 0.0), (4.0, 0.9), (20.0, 0.5), (2.0, 1.0)] {
            let hard = crate::model::kernels::cross_entropy(&tensor(&student), &y).unwrap();
            let got = loss(
                &tensor(&student),
                &tensor(&teacher),
                &hard,
                DistillConfig {
                    temperature: t,
                    alpha: a,
                },
            )
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
            let want = hand(&student, &teacher, &labels, t, a);
            assert!(
                (got as f64 - want).abs() <= 1e-5 * want.abs().max(1.0),
                "T {t} alpha {a}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn bad_settings_are_named() {
        let c = |temperature, alpha| DistillConfig { temperature, alpha }.validate();
        assert!(c(4.0, 0.9).is_ok());
        assert!(c(0.0, 0.5).unwrap_err().starts_with("temperature"));
        assert!(c(f64::NAN, 0.5).unwrap_err().starts_with("temperature"));
        assert!(c(4.0, 1.5).unwrap_err().starts_with("alpha"));
    }
}
