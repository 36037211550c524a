//! Softmax cross-entropy fused into one op.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, bail};

use super::common::{View, check_cpu_f32, layout_slice, tensor};

const OP: &str = "cross_entropy";

/// Mean over the batch of `logsumexp(z) − z[target]`, the same value as
/// `candle_nn::loss::cross_entropy`. `logits [B,K]` f32, `targets [B]` u8, u32 or i64 with
/// values below K; returns a scalar. Backward gives `dlogits = (softmax(z) − onehot) / B`
/// (times the upstream gradient) and nothing for the targets.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    check_cpu_f32(logits, OP)?;
    let &[bs, _] = logits.dims() else {
        bail!("{OP}: logits must be [B,K], got {:?}", logits.dims());
    };
    if targets.dims() != [bs] {
        bail!("{OP}: targets must be [{bs}], got {:?}", targets.dims());
    }
    if bs == 0 {
        bail!("{OP}: empty batch");
    }
    logits
        .contiguous()?
        .apply_op2(&targets.contiguous()?, CrossEntropy)
}

/// The targets as indices, checked against the class count.
fn class_indices(storage: &CpuStorage, layout: &Layout, k: usize) -> Result<Vec<usize>> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("{OP}: targets are not contiguous");
    };
    let idx: Vec<i64> = match storage {
        CpuStorage::U8(v) => v[start..end].iter().map(|&t| t as i64).collect(),
        CpuStorage::U32(v) => v[start..end].iter().map(|&t| t as i64).collect(),
        CpuStorage::I64(v) => v[start..end].to_vec(),
        other => bail!(
            "{OP}: targets must be u8, u32 or i64, got {:?}",
            other.dtype()
        ),
    };
    idx.into_iter()
        .map(|t| match usize::try_from(t) {
            Ok(t) if t < k => Ok(t),
            _ => bail!("{OP}: target {t} outside 0..{k}"),
        })
        .collect()
}

/// Calls `f(row, max, log Σ exp(z − max))` for every row of logits.
fn for_each_row(z: &[f32], k: usize, mut f: impl FnMut(usize, f32, f32)) {
    for (r, row) in z.chunks_exact(k).enumerate() {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
        f(r, max, sum.ln());
    }
}

struct CrossEntropy;

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "dcx-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let &[bs, k] = l1.dims() else {
            bail!("{OP}: logits must be [B,K], got {:?}", l1.dims());
        };
        let z = layout_slice(s1, l1, OP)?;
        let t = class_indices(s2, l2, k)?;
        let mut total = 0f64;
        for_each_row(z, k, |r, max, log_sum| {
            total += f64::from(max + log_sum - z[r * k + t[r]]);
        });
        let loss = (total / bs as f64) as f32;
        Ok((CpuStorage::F32(vec![loss]), Shape::from(())))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        if !logits.track_op() {
            return Ok((None, None));
        }
        let &[bs, k] = logits.dims() else {
            bail!("{OP}: logits must be [B,K], got {:?}", logits.dims());
        };
        let scale = grad.to_dtype(DType::F32)?.to_scalar::<f32>()? / bs as f32;
        let t: Vec<u32> = targets.to_dtype(DType::U32)?.to_vec1()?;
        let mut dz = vec![0.0f32; bs * k];
        {
            let zv = View::new(logits, OP)?;
            let z = zv.slice();
            for_each_row(z, k, |r, max, log_sum| {
                let shift = max + log_sum;
                let out = &mut dz[r * k..][..k];
                for (d, &v) in out.iter_mut().zip(&z[r * k..][..k]) {
                    *d = (v - shift).exp() * scale;
                }
                out[t[r] as usize] -= scale;
            });
        }
        Ok((Some(tensor(dz, &[bs, k])?), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::test_util::{assert_close, rand_var};
    use candle_core::Device;

    #[test]
    fn matches_candle_nn() -> Result<()> {
        for (seed, bs, k) in [(500, 1, 10), (501, 64, 10), (502, 7, 3), (503, 5, 1)] {
            let z = rand_var(seed, &[bs, k])?;
            // Large logits check the max-shift keeps exp finite.
            let z_big = (z.as_tensor() * 60.0)?;
            let t: Vec<u32> = (0..bs).map(|i| (i * 7 % k) as u32).collect();
            let t = Tensor::from_vec(t, bs, &Device::Cpu)?;
            for (name, zt) in [("plain", z.as_tensor().clone()), ("big", z_big)] {
                let ctx = format!("b{bs} k{k} {name}");
                let ours = cross_entropy(&zt, &t)?;
                let want = candle_nn::loss::cross_entropy(&zt, &t)?;
                assert_close(&ours, &want, &format!("{ctx} loss"))?;
                // A non-unit upstream gradient must scale the result.
                let a = (ours * 3.0)?.backward()?;
                let e = (want * 3.0)?.backward()?;
                assert_close(a.get(&z).unwrap(), e.get(&z).unwrap(), &format!("{ctx} dz"))?;
            }
        }
        Ok(())
    }

    #[test]
    fn accepts_other_target_types_and_rejects_bad_ones() -> Result<()> {
        let z = rand_var(510, &[3, 4])?;
        let t32 = Tensor::new(&[0u32, 3, 1], &Device::Cpu)?;
        let want = cross_entropy(&z, &t32)?.to_scalar::<f32>()?;
        for t in [t32.to_dtype(DType::U8)?, t32.to_dtype(DType::I64)?] {
            assert_eq!(cross_entropy(&z, &t)?.to_scalar::<f32>()?, want);
        }
        assert!(cross_entropy(&z, &Tensor::new(&[0u32, 4, 1], &Device::Cpu)?).is_err());
        assert!(cross_entropy(&z, &Tensor::new(&[0i64, -1, 1], &Device::Cpu)?).is_err());
        assert!(cross_entropy(&z, &Tensor::new(&[0u32, 1], &Device::Cpu)?).is_err());
        Ok(())
    }
}
