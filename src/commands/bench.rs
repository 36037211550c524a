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
    println!("threads: {threads} (set RAYON_NUM_THREADS to change)");
    println!(
        "{:<14} {:<6} {:>14} {:>16} {:>10}",
        "model", "ops", "train img/s", "infer img/s", "GFLOP/s"
    );
    for model in models {
        for &backend in &backends {
            let mut net = Net::new(model, 1)?;
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
