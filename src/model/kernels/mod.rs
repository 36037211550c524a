//! Fused CPU kernels for the layers dcx trains, as Candle custom ops with backward.
//!
//! Every op here is an ordinary Candle op from the caller's point of view: it takes and returns
//! `Tensor`s, records itself in the autograd graph (`CustomOp1/2/3`), and `loss.backward()`
//! produces the gradients Candle's own ops would (to float rounding; max pooling differs, see
//! below). Only `f32` tensors on the CPU device are supported. Inputs may have any layout
//! (non-contiguous ones are copied first) and any batch size, including 1.
//!
//! Why they exist: Candle 0.11's CPU `conv2d` backward (a `conv_transpose2d` for the input
//! gradient and a direct convolution for the kernel gradient) runs below 10 GFLOP/s, its
//! max-pool backward is five tensor passes, and every bias add, ReLU, loss and optimiser
//! update is its own allocation-heavy pass. These kernels do the heavy work with the `gemm`
//! crate (the one Candle itself uses) and fuse the cheap work around it.
//!
//! | op | computes | shapes | backward returns |
//! |---|---|---|---|
//! | [`conv2d`]`(x, w, b, padding, stride)` | cross-correlation plus bias, the kernel moving `stride` pixels at a time | x `[N,C,H,W]`, w `[O,C,KH,KW]`, b `[O]` → `[N,O,⌊(H+2p−KH)/s⌋+1,⌊(W+2p−KW)/s⌋+1]` | dx, dw, db; dx skipped when x needs no gradient (the images) |
//! | [`conv2d_relu`]`(x, w, b, padding, stride)` | `relu(conv2d(..))` in one op | as `conv2d` | as `conv2d`, through the ReLU mask |
//! | [`max_pool2x2`]`(x)` | 2x2 max, stride 2 (odd last row/column dropped) | `[N,C,H,W]` → `[N,C,⌊H/2⌋,⌊W/2⌋]` | dx: each window's gradient at its first maximum, 0 elsewhere |
//! | [`relu`]`(x)` | `max(x, 0)` | any | dx = dy where x > 0 |
//! | [`linear`]`(x, w, b, relu)` | `x·wᵀ + b`, then ReLU when `relu` | x `[B,I]`, w `[O,I]`, b `[O]` → `[B,O]` | dx, dw, db (through the ReLU mask); dx skipped as for conv |
//! | [`cross_entropy`]`(logits, targets)` | mean over the batch of `logsumexp(z) − z[target]` | logits `[B,K]` f32, targets `[B]` u8/u32/i64 → scalar | dlogits = (softmax − onehot)·g/B |
//!
//! Max pooling: Candle 0.11's `max_pool2d` backward gives a window's unique maximum a
//! quarter of the gradient (it scales by `avg_pool(mask)`); [`max_pool2x2`] gives it all of
//! it, as PyTorch does. So the stock and fast backends train differently under plain SGD
//! (Adam largely normalises the scale away); the tests compare against an exact reference.
//!
//! Besides the ops: [`tune_glibc_malloc`] stops glibc from returning freed memory to the
//! kernel between steps, and [`candle_elementwise_on_caller`] keeps Candle's own element-wise
//! ops (which autograd still runs to sum gradients) off its spin-waiting barrier pool. Both
//! matter as much as the kernels on these machines (the fused optimizer step is
//! `crate::model::optim`).
//!
//! Work is spread over rayon's global pool (`RAYON_NUM_THREADS`): the convolutions split the
//! batch (each thread reuses one scratch buffer for all its images) and let `gemm` split single
//! images when the batch is smaller than the pool; the fc layers let `gemm` split the product.
//!
//! Switching a model over: replace `x.conv2d(w, p, s, 1, 1)?.broadcast_add(&b.reshape(..))?`
//! by `conv2d(x, w, b, p, s)` (or `conv2d_relu` when a ReLU follows), `x.max_pool2d(2)` by
//! `max_pool2x2(x)`, `Linear::forward` (+ `relu`) by `linear(x, w, b, relu)`, and
//! `candle_nn::loss::cross_entropy` by `cross_entropy`. Weights stay plain `Var`s; a substitute
//! weight tensor (not a `Var`) works too and simply gets no gradient.

mod act_quant;
mod common;
mod conv;
mod linear;
mod loss;
mod norm;
mod pool;
mod relu;

pub use act_quant::fake_quantize;
pub(crate) use common::{copy_short, layout_slice, par_zeroed, with_scratch};
pub(crate) use conv::{Geom, im2col};
pub use conv::{conv2d, conv2d_relu};
pub use linear::linear;
pub use loss::cross_entropy;
pub use norm::batch_norm_train;
pub(crate) use pool::max_pool_planes;
pub use pool::max_pool2x2;
pub use relu::relu;

/// Makes glibc keep freed memory for reuse instead of handing it back to the kernel; returns
/// whether it did (always `false` off glibc). Call once, early; it affects the whole process.
///
/// Each training step allocates and frees tens to hundreds of MB of activations and gradients
/// (Candle allocates a fresh buffer per op). By default glibc serves big blocks with `mmap`
/// and trims the heap top on free, so the next step page-faults all of it in again. On the
/// 2-core machines that halves the course CNN's training speed (and LeNet-5's with
/// `candle_nn::AdamW`, which allocates a dozen parameter-sized temporaries per step). A fixed
/// 32 MiB mmap threshold (glibc's maximum) and no trimming keep the memory mapped; the price
/// is that the process keeps its peak heap size.
pub fn tune_glibc_malloc() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::ffi::c_int;
        unsafe extern "C" {
            fn mallopt(param: c_int, value: c_int) -> c_int;
        }
        // From glibc's <malloc.h>.
        const M_TRIM_THRESHOLD: c_int = -1;
        const M_MMAP_THRESHOLD: c_int = -3;
        // SAFETY: mallopt only adjusts allocator parameters (under glibc's own lock) and may be
        // called at any time; -1 for the trim threshold disables trimming, as documented.
        unsafe { mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, -1) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Sets `CANDLE_NUM_THREADS=1` unless the environment already sets it, so that Candle runs its
/// own element-wise ops on the calling thread; returns whether it set it.
///
/// With the fast kernels, Candle's own ops are left only in autograd's bookkeeping: each
/// gradient is added onto a fresh zero tensor. Candle 0.11 runs an add of 64k elements or more
/// (LeNet-300-100's first weight gradient) on a barrier pool whose caller and workers
/// spin-wait rather than sleep. On two cores shared with rayon's workers (and other
/// processes), the spinning caller holds a core while the worker it waits for cannot run:
/// profiling LeNet-300-100 training put a third of all CPU time in those spin loops, and
/// this setting doubled its training speed on a loaded machine (and halved its CPU time). The
/// add itself takes ~0.1 ms on one thread.
///
/// # Safety
/// It changes the process environment: call it at the start of `main`, before any other
/// thread exists (and before any Candle op, since Candle reads the variable once).
pub unsafe fn candle_elementwise_on_caller() -> bool {
    const VAR: &str = "CANDLE_NUM_THREADS";
    if std::env::var_os(VAR).is_some() {
        return false;
    }
    // SAFETY: the caller guarantees that no other thread reads or writes the environment.
    unsafe { std::env::set_var(VAR, "1") };
    true
}

#[cfg(test)]
pub(crate) mod test_util;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::test_util::{assert_close, rand_tensor, rand_var};
    use candle_core::{Device, Module, Result, Tensor, Var};

    /// Max pooling through reduce-max, whose backward is exact (Candle's `max_pool2d`
    /// backward is a quarter of the true gradient; see `pool.rs`).
    fn reference_pool(x: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let (oh, ow) = (h / 2, w / 2);
        x.narrow(2, 0, 2 * oh)?
            .narrow(3, 0, 2 * ow)?
            .reshape((n, c, oh, 2, ow, 2))?
            .max(5)?
            .max(3)
    }

    fn reference_conv(x: &Tensor, (w, b): &(Var, Var), pad: usize) -> Result<Tensor> {
        x.conv2d(w, pad, 1, 1, 1)?
            .broadcast_add(&b.reshape((1, (), 1, 1))?)
    }

    fn reference_linear(x: &Tensor, (w, b): &(Var, Var)) -> Result<Tensor> {
        candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone())).forward(x)
    }

    /// A small network built once from the kernels and once from Candle's ops: the logits, the
    /// loss and every parameter gradient must agree, so the ops compose (layouts, flatten,
    /// gradient accumulation) as well as they work alone. The 13x13 input makes the first
    /// pooling drop a row and a column.
    #[test]
    fn a_whole_network_matches_candle() -> Result<()> {
        let x = rand_tensor(800, &[3, 1, 13, 13])?;
        let y = Tensor::new(&[3u32, 0, 7], &Device::Cpu)?;
        let c1 = (rand_var(801, &[4, 1, 3, 3])?, rand_var(802, &[4])?);
        let c2 = (rand_var(803, &[6, 4, 3, 3])?, rand_var(804, &[6])?);
        let f1 = (rand_var(805, &[16, 54])?, rand_var(806, &[16])?);
        let f2 = (rand_var(807, &[10, 16])?, rand_var(808, &[10])?);

        // 13x13 -conv,relu-> 13x13 -pool-> 6x6 -conv-> 6x6 -relu,pool-> 3x3, 6 channels = 54.
        let h = max_pool2x2(&conv2d_relu(&x, &c1.0, &c1.1, 1, 1)?)?;
        let h = max_pool2x2(&relu(&conv2d(&h, &c2.0, &c2.1, 1, 1)?)?)?.flatten_from(1)?;
        let logits = linear(&linear(&h, &f1.0, &f1.1, true)?, &f2.0, &f2.1, false)?;
        let loss = cross_entropy(&logits, &y)?;

        let r = reference_pool(&reference_conv(&x, &c1, 1)?.relu()?)?;
        let r = reference_pool(&reference_conv(&r, &c2, 1)?.relu()?)?.flatten_from(1)?;
        let want_logits = reference_linear(&reference_linear(&r, &f1)?.relu()?, &f2)?;
        let want = candle_nn::loss::cross_entropy(&want_logits, &y)?;

        assert_close(&logits, &want_logits, "logits")?;
        assert_close(&loss, &want, "loss")?;
        let (ga, ge) = (loss.backward()?, want.backward()?);
        for (i, (w, b)) in [&c1, &c2, &f1, &f2].iter().enumerate() {
            assert_close(
                ga.get(w).unwrap(),
                ge.get(w).unwrap(),
                &format!("layer {i} dw"),
            )?;
            assert_close(
                ga.get(b).unwrap(),
                ge.get(b).unwrap(),
                &format!("layer {i} db"),
            )?;
        }
        Ok(())
    }
}
