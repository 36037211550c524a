//! Plumbing shared by the kernels: reading Candle storage, scratch buffers, a checked `gemm`.

use std::cell::Cell;
use std::mem::MaybeUninit;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Device, Layout, Result, Storage, StorageRef, Tensor, bail};
use rayon::prelude::*;

/// The `f32` elements a contiguous layout addresses (after its start offset).
pub(crate) fn layout_slice<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a [f32]> {
    let data = match storage {
        CpuStorage::F32(data) => data.as_slice(),
        other => bail!("{op}: only f32 is supported, got {:?}", other.dtype()),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        // The public wrappers make their inputs contiguous, so this is a caller bug.
        None => bail!("{op}: input is not contiguous"),
    }
}

/// A read lock on a contiguous CPU `f32` tensor's storage, for the backward passes.
pub(crate) struct View<'a> {
    guard: StorageRef<'a>,
    start: usize,
    end: usize,
}

impl<'a> View<'a> {
    /// `t` must already be contiguous (callers hold the `.contiguous()` result alive).
    pub(crate) fn new(t: &'a Tensor, op: &str) -> Result<View<'a>> {
        if t.dtype() != DType::F32 {
            bail!("{op}: only f32 is supported, got {:?}", t.dtype());
        }
        let (guard, layout) = t.storage_and_layout();
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("{op}: tensor is not contiguous");
        };
        if !matches!(&*guard, Storage::Cpu(_)) {
            bail!("{op}: only the CPU device is supported");
        }
        Ok(View { guard, start, end })
    }

    pub(crate) fn slice(&self) -> &[f32] {
        match &*self.guard {
            Storage::Cpu(CpuStorage::F32(data)) => &data[self.start..self.end],
            // `new` checked both the device and the dtype.
            _ => unreachable!(),
        }
    }
}

pub(crate) fn check_cpu_f32(t: &Tensor, op: &str) -> Result<()> {
    if !t.device().is_cpu() {
        bail!("{op}: only the CPU device is supported");
    }
    if t.dtype() != DType::F32 {
        bail!("{op}: only f32 is supported, got {:?}", t.dtype());
    }
    Ok(())
}

pub(crate) fn tensor(data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
    Tensor::from_vec(data, shape, &Device::Cpu)
}

thread_local! {
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on this thread's scratch buffer, grown to `len`. Its contents are whatever the
/// previous user left: `f` must write before it reads.
///
/// The buffer is taken out of the cell for the duration, so a nested call (rayon can run
/// another task on this thread while `f` waits inside a parallel gemm) just gets a fresh one
/// instead of aliasing it.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = SCRATCH.take();
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    SCRATCH.set(buf);
    r
}

/// A vector of `len` floats built in parallel: each `chunk`-element piece (the last may be
/// shorter) is zeroed by the task that then hands it to `f(piece_index, piece)`. Zeroing there
/// rather than with `vec![0.0; len]` spreads it (or the page faults of fresh memory) over the
/// pool and leaves each piece in cache for `f`. `min_pieces` is the fewest pieces per task.
pub(crate) fn par_zeroed(
    len: usize,
    chunk: usize,
    min_pieces: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    assert!(chunk > 0, "par_zeroed needs a positive chunk");
    let mut v: Vec<f32> = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk)
        .with_min_len(min_pieces.max(1))
        .enumerate()
        .for_each(|(i, piece)| {
            piece.fill(MaybeUninit::new(0.0));
            // SAFETY: every element of `piece` was just initialised, and `MaybeUninit<f32>`
            // has the layout of `f32`.
            let piece = unsafe { &mut *(piece as *mut [MaybeUninit<f32>] as *mut [f32]) };
            f(i, piece);
        });
    // SAFETY: the pieces cover `0..len` and each was initialised above (a panic in `f`
    // propagates before this line, leaving the vector empty).
    unsafe { v.set_len(len) };
    v
}

/// A strided read-only matrix: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// Row-major storage with `cols` columns.
    pub(crate) fn rows(data: &'a [f32], cols: usize) -> Mat<'a> {
        Mat {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub(crate) fn transposed(data: &'a [f32], cols: usize) -> Mat<'a> {
        Mat {
            data,
            rs: 1,
            cs: cols,
        }
    }

    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// Who may split a product across threads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Par {
    /// The caller is already running one product per thread.
    Serial,
    /// `gemm` may use the rayon pool (it keeps small products on one thread).
    Pool,
}

/// `dst[m×n] (+)= lhs[m×k] · rhs[k×n]`, with `dst` row-major and contiguous.
/// `accumulate` adds to what `dst` holds; otherwise `dst` is overwritten.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    dst: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    lhs: Mat,
    rhs: Mat,
    accumulate: bool,
    par: Par,
) {
    assert!(dst.len() >= m * n, "gemm destination too small");
    // SAFETY: `dst` holds m×n floats and is borrowed mutably, so it cannot alias the operands.
    unsafe { gemm_into(dst.as_mut_ptr(), m, n, k, lhs, rhs, accumulate, par) }
}

/// A new row-major `lhs[m×k] · rhs[k×n]`. The product is written straight into fresh memory,
/// skipping the zero-fill (for the course CNN's fc weight gradient that is a 25 MB memset per
/// step).
pub(crate) fn matmul_new(m: usize, n: usize, k: usize, lhs: Mat, rhs: Mat, par: Par) -> Vec<f32> {
    let len = m * n;
    let mut dst: Vec<f32> = Vec::with_capacity(len);
    // SAFETY: the capacity holds m×n floats and is not shared. With `read_dst` false, gemm
    // writes every destination element without reading it first (its small-size paths zero
    // the destination before accumulating), so all `len` elements are initialised after the
    // call, which makes `set_len` sound.
    unsafe {
        gemm_into(dst.as_mut_ptr(), m, n, k, lhs, rhs, false, par);
        dst.set_len(len);
    }
    dst
}

/// # Safety
/// `dst` must be valid for writes (and, when `accumulate`, reads) of `m·n` floats and must not
/// overlap the operands.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_into(
    dst: *mut f32,
    m: usize,
    n: usize,
    k: usize,
    lhs: Mat,
    rhs: Mat,
    accumulate: bool,
    par: Par,
) {
    // These checks keep gemm's reads of the operands inside their slices.
    assert!(lhs.fits(m, k), "gemm lhs out of bounds");
    assert!(rhs.fits(k, n), "gemm rhs out of bounds");
    if m == 0 || n == 0 {
        return;
    }
    let parallelism = match par {
        Par::Serial => gemm::Parallelism::None,
        Par::Pool => gemm::Parallelism::Rayon(rayon::current_num_threads()),
    };
    // SAFETY: the asserts bound every operand index gemm computes from (m, n, k) and the
    // strides; the caller vouches for `dst`. gemm handles k = 0 (zeroing or keeping `dst`).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `dst.copy_from_slice(&src[..dst.len()])` for the short rows of im2col (a few to a few dozen
/// values: f32 here, int8 codes in the INT8 engine), where a `memcpy` call per row costs more
/// than the copy. Fixed-size 8-element moves compile inline; the last one may overlap the
/// previous.
#[inline(always)]
pub(crate) fn copy_short<T: Copy>(dst: &mut [T], src: &[T]) {
    let n = dst.len();
    let src = &src[..n];
    if n >= 8 {
        let mut i = 0;
        while i + 8 <= n {
            dst[i..i + 8].copy_from_slice(&src[i..i + 8]);
            i += 8;
        }
        if i < n {
            dst[n - 8..].copy_from_slice(&src[n - 8..]);
        }
    } else if n >= 4 {
        dst[..4].copy_from_slice(&src[..4]);
        dst[n - 4..].copy_from_slice(&src[n - 4..]);
    } else {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s;
        }
    }
}

/// `x.iter().sum()` with eight running sums: a single f32 accumulator is a chain of dependent
/// adds that the compiler may not reorder, and so cannot vectorise.
pub(crate) fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Elementwise `acc += x` (partial sums from different threads).
pub(crate) fn add_into(acc: &mut [f32], x: &[f32]) {
    for (a, b) in acc.iter_mut().zip(x) {
        *a += b;
    }
}
