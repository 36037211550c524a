//! `dcx bench`: speed figures printed as tables (benchmarks, not timed tests).

use std::path::Path;
use std::time::Instant;

use clap::{Args, Subcommand};

use crate::data::Split;
use crate::model::train::{self, TrainConfig};
use crate::model::{Backend, ModelKind, Net};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Training and test-set inference images/s for each network.
    Train(TrainBenchArgs),
    /// 1-D k-means time and SSE per init on Laplace data of 30k and 400k points, k = 32, 256
    /// (the data `benches/kmeans_sklearn.py` feeds scikit-learn, for comparison).
    Kmeans {
        /// Timed repetitions per cell (the best is printed).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Include the exact dynamic-programming optimum (seconds at 400k x 256).
        #[arg(long)]
        optimal: bool,
    },
    /// Explorer latency: random single-layer changes from the paper's plan to the first
    /// estimate and the full test-set accuracy, and dense evaluation GFLOP/s against peak.
    Explore(ExploreBenchArgs),
    /// Explorer screen: frame draw time per terminal size, and scrub key -> exact accuracy.
    Tui(super::bench_tui::TuiBenchArgs),
    /// Test-set inference of a .dcz: latency per batch and images/s of dcx's f32 kernels and
    /// of int8 inference, timed alternately, with the accuracy of each.
    Infer(super::bench_infer::InferBenchArgs),
}

#[derive(Debug, Args)]
pub struct ExploreBenchArgs {
    /// Networks to measure (their cached `dcx train` checkpoints must exist).
    #[arg(long, value_delimiter = ',', default_value = "lenet-5,lenet-300-100")]
    pub models: Vec<ModelKind>,
    /// Random changes per row.
    #[arg(long, default_value_t = 40)]
    pub changes: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct TrainBenchArgs {
    /// Networks to measure (default: all three).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<ModelKind>,
    /// Training steps (batch 64) to time, after one warm-up step.
    #[arg(long, default_value_t = 30)]
    pub steps: usize,
    /// Images for the inference measurement (batches of 1000).
    #[arg(long, default_value_t = 10_000)]
    pub images: usize,
    /// Measure Candle's stock ops, dcx's fast kernels, or both.
    #[arg(long, default_value = "both")]
    pub backend: BackendChoice,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    Stock,
    Fast,
    Both,
}

pub fn run(data_dir: Option<&Path>, cmd: &BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Train(args) => bench_train(data_dir, args),
        BenchCommand::Kmeans { repeats, optimal } => {
            bench_kmeans(*repeats, *optimal);
            Ok(())
        }
        BenchCommand::Explore(args) => bench_explore(data_dir, args),
        BenchCommand::Tui(args) => super::bench_tui::run(data_dir, args),
        BenchCommand::Infer(args) => super::bench_infer::run(data_dir, args),
    }
}

/// Real MNIST when it can be found (so timings see real sparsity patterns of activations),
/// otherwise deterministic synthetic images: speed does not depend on the pixel values much.
fn bench_split(data_dir: Option<&Path>, n: usize) -> Split {
    if let Ok(dir) = crate::data::locate(data_dir)
        && let Ok(m) = crate::data::Mnist::load(&dir)
    {
        return m.subset(n, n).test;
    }
    let images = (0..n * 784)
        .map(|i| ((i * 2_654_435_761usize) % 1000) as f32 / 1000.0)
        .collect();
    Split {
        images,
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
        len: n,
    }
}

fn bench_train(data_dir: Option<&Path>, args: &TrainBenchArgs) -> anyhow::Result<()> {
    let models = if args.models.is_empty() {
        ModelKind::ALL.to_vec()
    } else {
        args.models.clone()
    };
    let backends: Vec<Backend> = match args.backend {
        BackendChoice::Stock => vec![Backend::Stock],
        BackendChoice::Fast => vec![Backend::Fast],
        BackendChoice::Both => vec![Backend::Stock, Backend::Fast],
    };
    let split = bench_split(data_dir, args.images.max(64));
    let threads = candle_core::utils::get_num_threads();
    // dcx's main sets CANDLE_NUM_THREADS=1 unless given (see kernels::candle_elementwise_on_caller).
    let candle_threads = std::env::var("CANDLE_NUM_THREADS").unwrap_or_else(|_| "unset".into());
    println!(
        "threads: {threads} (set RAYON_NUM_THREADS to change); Candle's own element-wise ops: \
         CANDLE_NUM_THREADS={candle_threads}"
    );
    println!(
        "{:<14} {:<6} {:>14} {:>16} {:>10}",
        "model", "ops", "train img/s", "infer img/s", "GFLOP/s"
    );
    for model in models {
        for &backend in &backends {
            let mut net = Net::new(&model.arch(), 1)?;
            net.backend = backend;
            let train_rate = time_training(&net, &split, args.steps)?;
            let (infer_rate, gflops) = time_inference(&net, &split)?;
            println!(
                "{:<14} {:<6} {:>14.0} {:>16.0} {:>10.2}",
                model.name(),
                format!("{backend:?}").to_lowercase(),
                train_rate,
                infer_rate,
                gflops
            );
        }
    }
    Ok(())
}

fn time_training(net: &Net, split: &Split, steps: usize) -> anyhow::Result<f64> {
    let batch = 64;
    let make = |steps: usize| -> crate::data::Mnist {
        let n = (steps * batch).min(split.len);
        crate::data::Mnist {
            train: Split {
                images: split.images[..n * 784].to_vec(),
                labels: split.labels[..n].to_vec(),
                len: n,
            },
            test: Split {
                images: Vec::new(),
                labels: Vec::new(),
                len: 0,
            },
            fingerprint: String::new(),
        }
    };
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: batch,
        ..TrainConfig::default()
    };
    // Warm-up: first-touch allocations and thread-pool start.
    train::train(net, &make(1), &cfg, &[], &mut train::Silent)?;
    let data = make(steps);
    let t = Instant::now();
    train::train(net, &data, &cfg, &[], &mut train::Silent)?;
    Ok(data.train.len as f64 / t.elapsed().as_secs_f64())
}

fn time_inference(net: &Net, split: &Split) -> anyhow::Result<(f64, f64)> {
    train::evaluate(net, split)?;
    let t = Instant::now();
    train::evaluate(net, split)?;
    let rate = split.len as f64 / t.elapsed().as_secs_f64();
    let gflops = rate * 2.0 * net.arch.macs_per_image() as f64 / 1e9;
    Ok((rate, gflops))
}

fn bench_kmeans(repeats: usize, optimal: bool) {
    use crate::compress::kmeans::{self, Init, KMeansConfig, Stop};
    let mut inits = vec![Init::Linear, Init::KMeansPlusPlus];
    if optimal {
        inits.push(Init::Optimal);
    }
    println!(
        "1-D k-means, Laplace(0, 0.05) data seeded 2016, max 300 iterations, best of {repeats}"
    );
    println!(
        "{:>8} {:>5} {:<9} {:<10} {:>12} {:>14} {:>6} {:>6}",
        "n", "k", "init", "stop", "time", "SSE", "iters", "empty"
    );
    for n in [30_000usize, 400_000] {
        let data = kmeans::laplace_sample(n, 0.05, 2016);
        for k in [32usize, 256] {
            for &init in &inits {
                let stops: &[Stop] = if init == Init::Optimal {
                    &[Stop::Converged]
                } else {
                    &[Stop::Converged, Stop::Tolerance]
                };
                for &stop in stops {
                    let cfg = KMeansConfig {
                        k,
                        init,
                        seed: 0,
                        max_iter: 300,
                        stop,
                        ..KMeansConfig::default()
                    };
                    let mut best = f64::INFINITY;
                    let mut result = None;
                    let reps = if init == Init::Optimal {
                        1
                    } else {
                        repeats.max(1)
                    };
                    for _ in 0..reps {
                        let t = Instant::now();
                        let r = kmeans::kmeans_1d(&data, &cfg);
                        best = best.min(t.elapsed().as_secs_f64());
                        result = Some(r);
                    }
                    let r = result.expect("at least one repetition");
                    println!(
                        "{:>8} {:>5} {:<9} {:<10} {:>9.2} ms {:>14.6} {:>6} {:>6}",
                        n,
                        k,
                        init.name(),
                        format!("{stop:?}").to_lowercase(),
                        best * 1e3,
                        r.sse,
                        r.iterations,
                        r.empty_clusters
                    );
                }
            }
        }
    }
}

// ----- dcx bench explore ----------------------------------------------------------------------

const PAPER_LENET_5: &str = include_str!("../../experiments/paper-lenet-5.toml");
const PAPER_LENET_300_100: &str = include_str!("../../experiments/paper-lenet-300-100.toml");

/// Latencies of one change, in milliseconds from the edit.
struct Sample {
    layers: f64,
    estimate: f64,
    full: f64,
}

fn bench_explore(data_dir: Option<&Path>, args: &ExploreBenchArgs) -> anyhow::Result<()> {
    use rand::{Rng, SeedableRng, rngs::StdRng};

    let data = std::sync::Arc::new(super::data::load(data_dir)?);
    let threads = rayon::current_num_threads();
    let (ghz, peak) = peak_gflops(threads);
    let measured = crate::explore::kernels::fma_peak_gflops(100_000_000);
    println!(
        "{threads} threads; nominal peak {peak:.0} GFLOP/s = {threads} cores x 32 flop/cycle (AVX2 \
         FMA) x {ghz:.3} GHz (/proc/cpuinfo); a register-only FMA loop reaches {} now",
        measured.map_or("-".into(), |g| format!(
            "{g:.0} GFLOP/s ({:.2} GHz effective)",
            g / (threads as f64 * 32.0)
        ))
    );
    for &model in &args.models {
        let text = match model {
            ModelKind::Lenet5 => PAPER_LENET_5,
            ModelKind::Lenet300100 => PAPER_LENET_300_100,
            ModelKind::CourseCnn => anyhow::bail!("course-cnn has no paper plan to start from"),
        };
        let exp = crate::experiment::Experiment::parse(text, "paper experiment")?;
        let path = crate::model::cache::cached_path(
            &crate::model::cache::cache_dir(),
            &model.arch(),
            &exp.train,
            &data.fingerprint,
        );
        if !path.exists() {
            anyhow::bail!(
                "{model}: no cached checkpoint at {}; run `dcx train --model {model}` first",
                path.display()
            );
        }
        let (net, meta) = crate::model::checkpoint::load(&path)?;
        let mut session = crate::explore::Session::new(&net, exp)?.with_checkpoint(&path);
        let worker = crate::explore::Worker::spawn(
            std::sync::Arc::clone(&data),
            crate::explore::WorkerOptions::default(),
        )?;
        let base = session.plan().to_vec();
        let described: Vec<String> = session
            .arch()
            .layers
            .iter()
            .zip(&base)
            .map(|(l, s)| format!("{} {:?} {}b", l.name, s.plan.prune, s.plan.bits))
            .collect();
        println!();
        println!(
            "{model}: checkpoint {:.2}%, {} test images; base plan (paper, no retraining): {}",
            meta.test_accuracy().unwrap_or(0.0) * 100.0,
            data.test.len,
            described.join(", ")
        );
        // The first evaluation, then the worker's idle-time warm-up of its buffers (as after
        // opening a session in the UI).
        measure(&worker, &mut session, |_| Ok(true))?;
        let warming = Instant::now();
        while !worker.cache_stats().warm && warming.elapsed().as_secs() < 30 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        println!(
            "first evaluation, then {:.0} ms of idle-time warm-up",
            warming.elapsed().as_secs_f64() * 1e3
        );
        println!(
            "{:<27} {:>4} {:>14} {:>24} {:>24}",
            "change", "n", "coded p50", "first estimate p50/p95", "full test set p50/p95"
        );
        let mut rng = StdRng::seed_from_u64(args.seed);
        let mut seen = Vec::new();
        let n_layers = session.layer_count();
        let mut rows: Vec<(String, Vec<Sample>)> = Vec::new();
        for l in 0..n_layers {
            let name = session.arch().layers[l].name.clone();
            let mut samples = Vec::with_capacity(args.changes);
            for _ in 0..args.changes {
                session.set_plan(base.clone())?;
                let keep = rng.random_range(0.02..=1.0);
                let t = session.threshold_for_sparsity(l, 1.0 - keep)?;
                samples.push(measure(&worker, &mut session, |s| s.set_threshold(l, t))?);
                seen.push(session.plan().to_vec());
            }
            rows.push((format!("threshold {name}"), samples));
        }
        // Bits and init have few values: each (layer, value) is timed once, in random order,
        // since a repeat is answered from the session's results without any computing.
        for what in ["bits", "init"] {
            let mut changes: Vec<(usize, u8, crate::compress::kmeans::Init)> = Vec::new();
            for (l, s) in base.iter().enumerate() {
                if what == "bits" {
                    changes.extend(
                        (1..=8)
                            .filter(|&b| b != s.plan.bits)
                            .map(|b| (l, b, s.plan.init)),
                    );
                } else {
                    changes.extend(
                        crate::compress::kmeans::Init::ALL
                            .into_iter()
                            .filter(|&i| i != s.plan.init)
                            .map(|i| (l, s.plan.bits, i)),
                    );
                }
            }
            for i in (1..changes.len()).rev() {
                changes.swap(i, rng.random_range(0..=i));
            }
            changes.truncate(args.changes);
            let mut samples = Vec::with_capacity(changes.len());
            for (l, bits, init) in changes {
                session.set_plan(base.clone())?;
                samples.push(if what == "bits" {
                    measure(&worker, &mut session, |s| s.set_bits(l, bits))?
                } else {
                    measure(&worker, &mut session, |s| s.set_init(l, init))?
                });
                seen.push(session.plan().to_vec());
            }
            rows.push((format!("{what} (each layer x value)"), samples));
        }
        let mut samples = Vec::with_capacity(args.changes);
        for _ in 0..args.changes {
            let plan = seen[rng.random_range(0..seen.len())].clone();
            session.set_plan(base.clone())?;
            samples.push(measure(&worker, &mut session, |s| s.set_plan(plan))?);
        }
        rows.push(("revisit (undo, seen plan)".into(), samples));
        for (name, samples) in &rows {
            let pct = |f: fn(&Sample) -> f64, q: f64| {
                let mut v: Vec<f64> = samples.iter().map(f).collect();
                v.sort_by(f64::total_cmp);
                v[((v.len() - 1) as f64 * q).round() as usize]
            };
            println!(
                "{:<27} {:>4} {:>11.1} ms {:>15.1} / {:>5.1} ms {:>15.1} / {:>5.1} ms",
                name,
                samples.len(),
                pct(|s| s.layers, 0.5),
                pct(|s| s.estimate, 0.5),
                pct(|s| s.estimate, 0.95),
                pct(|s| s.full, 0.5),
                pct(|s| s.full, 0.95),
            );
        }
        println!(
            "(threshold: keeps a uniform random 2..100% of the layer; one layer changed from the \
             base plan each time; times from the edit on the UI thread to each event; coded = \
             layer results with exact file sizes, sent after the estimate)"
        );
        let stats = worker.cache_stats();
        drop(worker);
        let mib = |b: usize| b as f64 / (1 << 20) as f64;
        println!(
            "caches: test images {:.0} MiB, activations {:.0} MiB in {} entries, reusable buffers \
             {:.0} MiB (peak of all three {:.0} MiB); session layer results {:.1} MiB; process \
             peak RSS {}",
            mib(stats.input_bytes),
            mib(stats.entry_bytes),
            stats.entries,
            mib(stats.pool_bytes),
            mib(stats.peak_bytes),
            mib(session.result_bytes()),
            peak_rss().unwrap_or_else(|| "unknown".into())
        );
        dense_throughput(&net, &data.test, peak, measured)?;
    }
    Ok(())
}

/// Edits the session, submits its evaluation, and times the worker's answers.
fn measure(
    worker: &crate::explore::Worker,
    session: &mut crate::explore::Session,
    change: impl FnOnce(&mut crate::explore::Session) -> Result<bool, crate::explore::ExploreError>,
) -> anyhow::Result<Sample> {
    use crate::explore::Event;
    let t = Instant::now();
    change(session)?;
    if !session.needs_evaluation() {
        // A plan seen before: the session answers at once, as the UI would show it.
        let at = t.elapsed().as_secs_f64() * 1e3;
        return Ok(Sample {
            layers: at,
            estimate: at,
            full: at,
        });
    }
    let id = worker.submit(session.eval_job());
    let (mut layers, mut estimate) = (None, None);
    loop {
        let Some(ev) = worker.recv_timeout(std::time::Duration::from_secs(600)) else {
            anyhow::bail!("the explore worker stopped answering");
        };
        let at = t.elapsed().as_secs_f64() * 1e3;
        session.absorb(&ev);
        match ev {
            Event::Layers { id: i, .. } if i == id => layers = Some(at),
            Event::Estimate { id: i, .. } if i == id => estimate = Some(at),
            Event::Evaluated { id: i, .. } if i == id => {
                return Ok(Sample {
                    layers: layers.unwrap_or(at),
                    estimate: estimate.unwrap_or(at),
                    full: at,
                });
            }
            Event::Failed { id: i, message, .. } if i == id => anyhow::bail!(message),
            _ => {}
        }
    }
}

/// The explorer's dense forward pass over the whole test set, against peak and Candle.
fn dense_throughput(
    net: &Net,
    test: &Split,
    peak: f64,
    measured: Option<f64>,
) -> anyhow::Result<()> {
    use crate::explore::eval::{EvalMode, EvalOptions, Evaluator, PreparedLayer, fingerprint};
    let mut ev = Evaluator::new(&net.arch, test, EvalOptions::default())?;
    let geoms = ev.geometry().to_vec();
    let layers = (0..geoms.len())
        .map(|l| {
            let (w, b) = (net.weight_values(l)?, net.bias_values(l)?);
            let fp = fingerprint::dense(l, &w, &b);
            Ok(std::sync::Arc::new(PreparedLayer::from_dense(
                &geoms[l], l, &w, &b, fp,
            )?))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut times = Vec::new();
    let mut correct = 0;
    for _ in 0..4 {
        let t = Instant::now();
        let e = ev
            .evaluate(&layers, EvalMode::ONE_OFF, &mut |_| {}, &|| false)?
            .ok_or_else(|| anyhow::anyhow!("evaluation stopped"))?;
        times.push(t.elapsed().as_secs_f64());
        correct = e.correct;
    }
    // The first run pays first-touch page faults; the median of the rest is the figure.
    times.remove(0);
    times.sort_by(f64::total_cmp);
    let secs = times[times.len() / 2];
    let flops = 2.0 * net.arch.macs_per_image() as f64 * test.len as f64;
    let t = Instant::now();
    let candle = train::evaluate(net, test)?;
    let candle_secs = t.elapsed().as_secs_f64();
    let gflops = flops / secs / 1e9;
    println!(
        "dense evaluation of {} images: {:.1} ms, {:.1} GFLOP/s = {:.0}% of nominal peak {:.0}{} \
         ({} correct); Candle: {:.0} ms ({} correct)",
        test.len,
        secs * 1e3,
        gflops,
        100.0 * gflops / peak,
        peak,
        measured.map_or(String::new(), |m| format!(
            ", {:.0}% of the FMA loop's {m:.0}",
            100.0 * gflops / m
        )),
        correct,
        candle_secs * 1e3,
        candle.correct
    );
    Ok(())
}

/// The clock from /proc/cpuinfo and the AVX2-FMA peak of `cores` cores
/// (2 FMA units x 8 lanes x 2 flops = 32 flop/cycle).
fn peak_gflops(cores: usize) -> (f64, f64) {
    let mhz = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .filter(|l| l.starts_with("cpu MHz"))
                .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
                .reduce(f64::max)
        })
        .unwrap_or(0.0);
    let ghz = mhz / 1000.0;
    (ghz, cores as f64 * 32.0 * ghz)
}

/// The process's peak resident set (VmHWM), as Linux reports it.
fn peak_rss() -> Option<String> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmHWM"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(format!("{:.0} MiB", kb / 1024.0))
}
