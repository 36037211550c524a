//! `dcx bench infer FILE.dcz`: test-set inference speed and accuracy of one file's network on
//! each way dcx can run it, timed alternately in one process so they see the same machine load.
//!
//! The rows are [`Path`]s: dcx's f32 kernels (the `dcx eval` path, "dense"), the same weights
//! as CSR matrices run by the sparse kernels (only the nonzero weights are multiplied), and
//! the int8 engine. The JSON line per batch size compares the dense path with the plan's
//! (`plan`: int8) and with the sparse path (`sparse_*`).

use std::path::{Path as FsPath, PathBuf};

use clap::Args;

use crate::data::Mnist;
use crate::format::dcz;
use crate::model::Net;
use crate::model::int8::{Calibration, Int8Net, Kernel};
use crate::model::latency::{self, Measured, Path};
use crate::model::sparse::SparseNet;
use crate::pipeline::cost::CostReport;

#[derive(Debug, Args)]
pub struct InferBenchArgs {
    /// The `.dcz` file whose network is run.
    pub file: PathBuf,
    /// Batch sizes, each timed over the whole test set.
    #[arg(long, value_delimiter = ',', default_value = "1,256")]
    pub batches: Vec<usize>,
    /// Threads (default: rayon's, which `RAYON_NUM_THREADS` sets, else one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Passes over the test set per path and batch size, alternating the paths.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Training images the int8 activation ranges are calibrated on (the first N).
    #[arg(long, default_value_t = 500)]
    pub calibration_images: usize,
    /// `minmax`, or a percentile such as `99.99` (the range then clips the rarest values).
    #[arg(long, default_value = "minmax")]
    pub calibration: Calibration,
    /// The int8 kernel: avx512-vnni, avx2 or scalar (default: the fastest this CPU runs).
    #[arg(long)]
    pub kernel: Option<Kernel>,
    /// One JSON object per batch size and line instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the decoded f32 weights as safetensors (`<layer>.weight`, `<layer>.bias`),
    /// for running the same network elsewhere (`benches/infer_torch.py`).
    #[arg(long, value_name = "FILE")]
    pub weights_out: Option<PathBuf>,
}

pub fn run(data_dir: Option<&FsPath>, args: &InferBenchArgs) -> anyhow::Result<()> {
    if let Some(&bad) = args.batches.iter().find(|&&b| b == 0) {
        anyhow::bail!("--batches: a batch size must be at least 1, got {bad}");
    }
    if args.batches.is_empty() {
        anyhow::bail!("--batches: give at least one batch size");
    }
    if args.repeats == 0 {
        anyhow::bail!("--repeats must be at least 1");
    }
    if args.calibration_images == 0 {
        anyhow::bail!("--calibration-images must be at least 1");
    }
    if args.threads == Some(0) {
        anyhow::bail!("--threads must be at least 1");
    }
    let file = dcz::load(&args.file)?;
    let net = file.model.to_net()?;
    let cost = CostReport::of(&file.model);
    let thinned = file.model.thinned_net()?;
    if let Some(out) = &args.weights_out {
        write_weights(&net, out)?;
    }
    let data = super::data::load(data_dir)?;
    let threads = args.threads.unwrap_or_else(rayon::current_num_threads);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    pool.install(|| {
        measure(
            args,
            &file.model.arch.name,
            net,
            thinned,
            &cost,
            &data,
            threads,
        )
    })
}

fn measure(
    args: &InferBenchArgs,
    model: &str,
    net: Net,
    thinned: Option<Net>,
    cost: &CostReport,
    data: &Mnist,
    threads: usize,
) -> anyhow::Result<()> {
    let calib = args.calibration_images.min(data.train.len);
    let int8 = Int8Net::calibrate(
        &net,
        &data.train.images[..calib * 784],
        calib,
        args.calibration,
    )?;
    let int8 = match args.kernel {
        Some(k) => int8.with_kernel(k),
        None => int8,
    };
    let kernel = int8.kernel().name();
    let sparse = SparseNet::new(&net)?;
    let (weights_nz, weights) = sparse.weights();
    let (params_nz, params) = sparse.params();
    let (macs_dense, macs_nz) = sparse.macs_per_image();
    // The share of weights each path holds as nonzero: the f32 paths hold the file's; int8
    // rounds the smallest weights of a channel to code 0.
    let share = |(nz, all): (usize, usize)| nz as f64 / all.max(1) as f64;
    let mut nonzero = vec![
        share((weights_nz, weights)),
        share((weights_nz, weights)),
        share(int8.nonzero_weights()),
    ];
    const DENSE: usize = 0;
    const INT8: usize = 2;
    let mut paths = vec![Path::Dense(net), Path::Sparse(sparse), Path::Int8(int8)];
    if let Some(thin) = thinned {
        let thin_sparse = SparseNet::new(&thin)?;
        let s = share(thin_sparse.weights());
        nonzero.extend([s, s]);
        paths.extend([Path::Thinned(thin), Path::ThinnedSparse(thin_sparse)]);
    }
    let test = &data.test;
    if !args.json {
        println!(
            "{model} from {}: {} test images, {threads} threads, {} passes per row \
             (paths alternating, the median batch reported); int8: {kernel} kernel, activations \
             calibrated by {} on {calib} training images",
            args.file.display(),
            test.len,
            args.repeats,
            args.calibration.name(),
        );
        println!(
            "parameters: {params_nz} nonzero of {params} ({:.1}%); multiply-adds per image: \
             {macs_dense} dense, {macs_nz} on nonzero weights ({:.1}%)",
            100.0 * share((params_nz, params)),
            100.0 * macs_nz as f64 / macs_dense.max(1) as f64,
        );
        if cost.thinned() {
            println!(
                "thinned by structured pruning: {} parameters, {} multiply-adds per image \
                 ({:.1}% of dense)",
                cost.params_thinned(),
                cost.macs_thinned(),
                100.0 * cost.macs_thinned() as f64 / cost.macs_dense().max(1) as f64,
            );
        }
        println!(
            "{:>6} {:<16} {:>12} {:>12} {:>10} {:>9} {:>9}",
            "batch", "path", "ms/batch", "img/s", "accuracy", "speedup", "nonzero"
        );
    }
    for &batch in &args.batches {
        let rows = latency::measure(&paths, &test.images, &test.labels, batch, args.repeats)?;
        let dense = &rows[DENSE];
        let total = test.len.max(1) as f64;
        let acc = |m: &Measured| m.correct as f64 / total;
        if args.json {
            // The plan's figure is its fastest way to run, named in "plan".
            let best = (1..paths.len())
                .min_by(|&a, &b| rows[a].batch_ms().total_cmp(&rows[b].batch_ms()))
                .unwrap_or(DENSE);
            let plan = &rows[best];
            let mut line = serde_json::json!({
                "model": model,
                "batch": batch,
                "threads": threads,
                "images": test.len,
                "repeats": args.repeats,
                "plan": paths[best].key(),
                "kernel": kernel,
                "dense_ms": dense.batch_ms(),
                "plan_ms": plan.batch_ms(),
                "speedup": dense.batch_ms() / plan.batch_ms(),
                "dense_img_s": dense.images_per_sec(test.len),
                "plan_img_s": plan.images_per_sec(test.len),
                "plan_accuracy": acc(plan),
                "f32_accuracy": acc(dense),
                "accuracy_diff": acc(&rows[INT8]) - acc(dense),
                "params": params,
                "params_nonzero": params_nz,
                "params_thinned": cost.params_thinned(),
                "weights": weights,
                "weights_nonzero": weights_nz,
                "int8_weights_nonzero_share": nonzero[INT8],
                "macs_per_image": macs_dense,
                "macs_per_image_nonzero": macs_nz,
                "macs_per_image_thinned": cost.macs_thinned(),
            });
            for (path, m) in paths.iter().zip(&rows).skip(1) {
                let k = path.key();
                line[format!("{k}_ms")] = m.batch_ms().into();
                line[format!("{k}_speedup")] = (dense.batch_ms() / m.batch_ms()).into();
                line[format!("{k}_img_s")] = m.images_per_sec(test.len).into();
                line[format!("{k}_accuracy")] = acc(m).into();
            }
            println!("{line}");
            continue;
        }
        for ((path, m), nz) in paths.iter().zip(&rows).zip(&nonzero) {
            println!(
                "{:>6} {:<16} {:>12.4} {:>12.0} {:>9.2}% {:>8.2}x {:>8.1}%",
                batch,
                path.name(),
                m.batch_ms(),
                m.images_per_sec(test.len),
                acc(m) * 100.0,
                dense.batch_ms() / m.batch_ms(),
                *nz * 100.0,
            );
        }
        println!(
            "{:>6} int8 - f32 accuracy: {:+.2} points ({} vs {} correct)",
            "",
            (acc(&rows[INT8]) - acc(dense)) * 100.0,
            rows[INT8].correct,
            dense.correct
        );
    }
    Ok(())
}

fn write_weights(net: &Net, out: &FsPath) -> anyhow::Result<()> {
    let mut tensors = Vec::new();
    for (spec, p) in net.arch.layers.iter().zip(&net.params) {
        tensors.push((
            format!("{}.weight", spec.name),
            p.weight.as_tensor().clone(),
        ));
        tensors.push((format!("{}.bias", spec.name), p.bias.as_tensor().clone()));
    }
    let mut info = std::collections::HashMap::new();
    info.insert("model".to_string(), net.arch.name.clone());
    let bytes = safetensors::serialize(tensors, Some(info))?;
    crate::fsutil::write_atomic(out, &bytes).map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))
}
