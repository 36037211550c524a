//! The comparisons of the training-time methods (`dcx study`), each variant side by side on
//! the same baselines, over several seeds: lottery tickets against their random
//! reinitialisation, one aggressive prune against several gentle ones at the same final
//! sparsity, training with and without an L1 penalty, and dense-sparse-dense against the
//! same training without pruning. Every variant runs through the pipeline's own pieces
//! (cached baselines, [`step::prepare`] / [`step::conclude`] for a recipe's steps, the
//! lottery rounds of [`lottery`]); this module only arranges them and keeps the numbers,
//! as plain serde data that `study.json` and the figures are made from.

use std::collections::BTreeSet;
use std::path::Path;
use std::str::FromStr;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::data::Mnist;
use crate::experiment::{
    DsdPlan, Experiment, LayerOverrides, LotteryPlan, PruneRule, PruneSchedule, RetrainPlan,
    Rewind, Step, StepKind,
};
use crate::explore::Session;
use crate::model::cache;
use crate::model::spec::StageSpec;
use crate::model::train::{self, Schedule, TrainConfig};
use crate::model::{Arch, ModelKind, Net};
use crate::pipeline::PipelineObserver;
use crate::pipeline::layer::{LayerState, ShareParams};
use crate::pipeline::{lottery, step};

/// Which comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StudyKind {
    LotteryTicket,
    PruneSchedule,
    L1,
    Dsd,
    Distill,
}

impl StudyKind {
    pub const ALL: [StudyKind; 5] = [
        StudyKind::LotteryTicket,
        StudyKind::PruneSchedule,
        StudyKind::L1,
        StudyKind::Dsd,
        StudyKind::Distill,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StudyKind::LotteryTicket => "lottery-ticket",
            StudyKind::PruneSchedule => "prune-schedule",
            StudyKind::L1 => "l1",
            StudyKind::Dsd => "dsd",
            StudyKind::Distill => "distill",
        }
    }

    /// The kept fractions the study runs at unless told (`--keep`).
    fn default_keep(self) -> Vec<f32> {
        match self {
            StudyKind::LotteryTicket | StudyKind::Distill => Vec::new(),
            StudyKind::PruneSchedule => vec![0.7, 0.05],
            StudyKind::L1 => vec![0.05],
            StudyKind::Dsd => vec![0.5],
        }
    }

    /// Rounds unless told (`--rounds`): the lottery's pruning rounds (18 reach the paper's
    /// 1.8% on LeNet-300-100), the iterative schedule's prunes.
    fn default_rounds(self) -> usize {
        match self {
            StudyKind::LotteryTicket => 18,
            _ => 3,
        }
    }
}

impl FromStr for StudyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        StudyKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = StudyKind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown study '{s}' (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

impl std::fmt::Display for StudyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a study runs. `None` fields take the study's default.
#[derive(Clone, Debug, PartialEq)]
pub struct StudyOptions {
    pub kind: StudyKind,
    pub model: ModelKind,
    /// Seeds 1..=seeds: each its own baseline (initialisation and data order).
    pub seeds: usize,
    /// Epochs of every baseline, and of every lottery round (the same training again).
    pub epochs: usize,
    /// Epochs of each masked retraining (prune-schedule, l1) and of each DSD phase.
    pub retrain_epochs: usize,
    pub rounds: Option<usize>,
    /// Lottery rounds at which the random-reinit control trains too.
    pub control_rounds: Vec<usize>,
    /// Kept fractions: the schedules' targets, the L1 study's pruning, DSD's sparse phase.
    pub keep: Option<Vec<f32>>,
    /// The L1 study's penalty.
    pub l1: f64,
    pub rewind: Rewind,
    /// Train on only the first N training images (quick runs).
    pub train_limit: Option<usize>,
    /// The distillation study's temperatures, and the soft targets' share of the loss.
    pub temperatures: Vec<f64>,
    pub alpha: f64,
}

impl StudyOptions {
    pub fn new(kind: StudyKind, model: ModelKind) -> StudyOptions {
        StudyOptions {
            kind,
            model,
            seeds: 3,
            epochs: 5,
            retrain_epochs: 2,
            rounds: None,
            control_rounds: vec![3, 7, 12, 15, 18],
            keep: None,
            l1: 1e-4,
            rewind: Rewind::Init,
            train_limit: None,
            temperatures: vec![4.0, 8.0, 20.0],
            alpha: 0.9,
        }
    }

    pub fn rounds(&self) -> usize {
        self.rounds.unwrap_or(self.kind.default_rounds())
    }

    pub fn keep(&self) -> Vec<f32> {
        self.keep.clone().unwrap_or(self.kind.default_keep())
    }

    /// The lottery rounds whose control trains: the asked ones up to the last round, or the
    /// last round when none of them is reached.
    pub fn controls(&self) -> BTreeSet<usize> {
        let rounds = self.rounds();
        let mut c: BTreeSet<usize> = self
            .control_rounds
            .iter()
            .copied()
            .filter(|&r| (1..=rounds).contains(&r))
            .collect();
        if c.is_empty() {
            c.insert(rounds);
        }
        c
    }

    /// `Err` names the option (`--seeds`, `--keep`, ...) and what is wrong with it.
    pub fn validate(&self) -> Result<(), String> {
        if self.seeds == 0 {
            return Err("--seeds: at least 1".into());
        }
        if self.epochs == 0 {
            return Err("--epochs: at least 1".into());
        }
        if self.retrain_epochs == 0 {
            return Err("--retrain-epochs: at least 1".into());
        }
        if self.rounds == Some(0) {
            return Err("--rounds: at least 1".into());
        }
        if let Some(k) = self.keep().iter().find(|k| !(**k > 0.0 && **k < 1.0)) {
            return Err(format!(
                "--keep: {k} is out of range (0, 1): the fraction of the weights kept"
            ));
        }
        if self.kind == StudyKind::Distill {
            if self.temperatures.is_empty() {
                return Err("--temperature: at least one".into());
            }
            for &t in &self.temperatures {
                let c = crate::model::distill::DistillConfig {
                    temperature: t,
                    alpha: self.alpha,
                };
                c.validate().map_err(|e| format!("--{e}"))?;
            }
        }
        if self.keep().is_empty()
            && !matches!(self.kind, StudyKind::LotteryTicket | StudyKind::Distill)
        {
            return Err("--keep: at least one fraction".into());
        }
        if !(self.l1 > 0.0 && self.l1.is_finite()) {
            return Err(format!(
                "--l1: {} must be a finite number greater than 0",
                self.l1
            ));
        }
        if let Rewind::Epoch(k) = self.rewind
            && k > self.epochs
        {
            return Err(format!(
                "--rewind: epoch {k} is beyond the baseline's {} epochs (--epochs)",
                self.epochs
            ));
        }
        if self.train_limit == Some(0) {
            return Err("--limit: at least 1 image".into());
        }
        Ok(())
    }

    /// The baseline recipe of seed `seed`: dcx's default training for `epochs` epochs.
    fn baseline(&self, seed: u64) -> TrainConfig {
        TrainConfig {
            epochs: self.epochs,
            seed,
            train_limit: self.train_limit,
            ..TrainConfig::default()
        }
    }
}

/// Everything a study measured: `study.json`, and what its table and figures show.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StudyData {
    pub study: StudyKind,
    pub model: String,
    pub seeds: Vec<u64>,
    /// What ran, in words (epochs, rates, rounds).
    pub settings: String,
    /// One row per variant and setting, every metric with one value per seed.
    pub rows: Vec<StudyRow>,
    /// The L1 study's weight histograms (of seed 1), without and with the penalty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub histograms: Vec<WeightHistogram>,
    pub seconds: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StudyRow {
    /// The setting the row's variants share (a round, a target sparsity).
    pub group: String,
    pub variant: String,
    /// Fraction of the weights kept.
    pub kept: f64,
    pub metrics: Vec<Metric>,
}

impl StudyRow {
    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }
}

/// One measured quantity of a row, one value per seed (in the seeds' order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub values: Vec<f64>,
}

impl Metric {
    pub fn mean(&self) -> f64 {
        self.values.iter().sum::<f64>() / self.values.len().max(1) as f64
    }

    /// The sample standard deviation over the seeds (0 for one seed).
    pub fn spread(&self) -> f64 {
        let n = self.values.len();
        if n < 2 {
            return 0.0;
        }
        let mean = self.mean();
        let ss: f64 = self.values.iter().map(|v| (v - mean).powi(2)).sum();
        (ss / (n - 1) as f64).sqrt()
    }
}

/// A layer's weights as counts per bin, and the magnitude that prunes them to the study's
/// sparsity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightHistogram {
    pub variant: String,
    pub layer: String,
    pub lo: f32,
    pub hi: f32,
    pub counts: Vec<u64>,
    /// |w| below this is cut at the study's (first) kept fraction.
    pub threshold: f32,
    pub keep: f32,
}

/// Metric names the studies record (`study.json` keys, table columns).
pub const ACCURACY: &str = "test accuracy";
pub const FIRST_EPOCH: &str = "after epoch 1";
pub const PRUNED: &str = "pruned, not retrained";

/// The rows being filled, seed after seed.
#[derive(Default)]
struct Table {
    rows: Vec<StudyRow>,
}

impl Table {
    fn record(&mut self, group: &str, variant: &str, kept: f64, metric: &str, value: f64) {
        let at = match self
            .rows
            .iter()
            .position(|r| r.group == group && r.variant == variant)
        {
            Some(at) => at,
            None => {
                self.rows.push(StudyRow {
                    group: group.to_string(),
                    variant: variant.to_string(),
                    kept,
                    metrics: Vec::new(),
                });
                self.rows.len() - 1
            }
        };
        let row = &mut self.rows[at];
        match row.metrics.iter_mut().find(|m| m.name == metric) {
            Some(m) => m.values.push(value),
            None => row.metrics.push(Metric {
                name: metric.to_string(),
                values: vec![value],
            }),
        }
    }
}

/// Runs the study `opts` on `data`, baselines from (or trained into) `cache_dir`. `None`:
/// the observer stopped it.
pub fn run(
    opts: &StudyOptions,
    data: &Mnist,
    cache_dir: &Path,
    obs: &mut dyn PipelineObserver,
) -> anyhow::Result<Option<StudyData>> {
    opts.validate().map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let mut table = Table::default();
    let mut histograms = Vec::new();
    let seeds: Vec<u64> = (1..=opts.seeds as u64).collect();
    for &seed in &seeds {
        let ran = match opts.kind {
            StudyKind::LotteryTicket => lottery_seed(opts, seed, data, cache_dir, &mut table, obs)?,
            StudyKind::PruneSchedule => {
                schedule_seed(opts, seed, data, cache_dir, &mut table, obs)?
            }
            StudyKind::L1 => {
                let first = seed == seeds[0];
                l1_seed(
                    opts,
                    seed,
                    data,
                    cache_dir,
                    &mut table,
                    first.then_some(&mut histograms),
                    obs,
                )?
            }
            StudyKind::Dsd => dsd_seed(opts, seed, data, cache_dir, &mut table, obs)?,
            StudyKind::Distill => distill_seed(opts, seed, data, cache_dir, &mut table, obs)?,
        };
        if ran.is_none() || obs.should_stop() {
            return Ok(None);
        }
    }
    Ok(Some(StudyData {
        study: opts.kind,
        model: opts.model.name().to_string(),
        seeds,
        settings: settings(opts),
        rows: table.rows,
        histograms,
        seconds: started.elapsed().as_secs_f64(),
    }))
}

/// The study's settings in words.
fn settings(opts: &StudyOptions) -> String {
    let base = TrainConfig::default();
    let baseline = format!(
        "baselines: {} epochs, {:?} lr {} {:?}, batch {}{}",
        opts.epochs,
        base.optimizer,
        base.lr,
        base.schedule,
        base.batch_size,
        opts.train_limit
            .map(|n| format!(", first {n} training images"))
            .unwrap_or_default()
    )
    .to_lowercase();
    let keep = opts
        .keep()
        .iter()
        .map(|k| format!("{:.1}%", k * 100.0))
        .collect::<Vec<_>>()
        .join(", ");
    let what = match opts.kind {
        StudyKind::LotteryTicket => format!(
            "{} rounds cutting 20% of each layer's remaining weights (the output layer 10%), survivors rewound to {} and trained {} epochs as the baseline was (same data order); random-reinit control at rounds {}",
            opts.rounds(),
            match opts.rewind {
                Rewind::Init => "their initial values".to_string(),
                Rewind::Epoch(k) => format!("their values after epoch {k}"),
            },
            opts.epochs,
            opts.controls()
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        StudyKind::PruneSchedule => format!(
            "to {keep} kept: one prune then {} epochs of masked retraining, or {} prunes (geometric: each cuts the same share of what is left) each followed by {} epochs; lr {} cosine",
            opts.rounds() * opts.retrain_epochs,
            opts.rounds(),
            opts.retrain_epochs,
            base.lr
        ),
        StudyKind::L1 => format!(
            "baselines without and with an L1 penalty of {} on every layer's weights (also during retraining); pruned to {keep} kept, then {} epochs of masked retraining, lr {} cosine",
            opts.l1, opts.retrain_epochs, base.lr
        ),
        StudyKind::Distill => {
            let teacher = opts.model.arch();
            let student = quarter(&teacher);
            format!(
                "teacher: the seed-1 baseline of {} ({} weights); students: {} ({} weights: each layer but the last at a quarter of the units), trained as the baselines, alone or distilled with alpha {} at T = {}",
                teacher.name,
                teacher.weight_count(),
                student.name,
                student.weight_count(),
                opts.alpha,
                opts.temperatures
                    .iter()
                    .map(f64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        StudyKind::Dsd => format!(
            "sparse phase: keep {keep}, {} epochs at lr {}; dense phase: {} epochs at lr {}; control: the same two phases without pruning; cosine",
            opts.retrain_epochs,
            base.lr,
            opts.retrain_epochs,
            base.lr / 10.0
        ),
    };
    format!("{baseline}; {what}")
}

/// The cached baseline of `cfg` with the snapshots `keep` asks for; `None` when stopped.
fn baseline(
    opts: &StudyOptions,
    cfg: &TrainConfig,
    keep: &[usize],
    data: &Mnist,
    cache_dir: &Path,
    obs: &mut dyn PipelineObserver,
) -> anyhow::Result<Option<(cache::Obtained, Vec<train::Snapshot>)>> {
    obs.stage(&format!(
        "seed {}: baseline {} ({} epochs{}): loading or training",
        cfg.seed,
        opts.model,
        cfg.epochs,
        if cfg.has_penalty() {
            format!(", L1 {}", cfg.l1)
        } else {
            String::new()
        }
    ));
    let (got, snaps) = cache::obtain_keeping(
        &opts.model.arch(),
        cfg,
        None,
        data,
        false,
        cache_dir,
        keep,
        obs,
    )?;
    Ok(got.meta.complete.then_some((got, snaps)))
}

fn dense_states(net: &Net) -> candle_core::Result<Vec<LayerState>> {
    (0..net.params.len())
        .map(|l| {
            Ok(LayerState::dense(
                net.weight_values(l)?,
                net.bias_values(l)?,
            ))
        })
        .collect()
}

fn last_accuracy(out: &train::TrainOutcome) -> f64 {
    out.history.last().map_or(0.0, |e| e.test_accuracy)
}

fn first_accuracy(out: &train::TrainOutcome) -> f64 {
    out.history.first().map_or(0.0, |e| e.test_accuracy)
}

/// One seed of the lottery study: every round's winning ticket, and the control at the
/// chosen rounds.
fn lottery_seed(
    opts: &StudyOptions,
    seed: u64,
    data: &Mnist,
    cache_dir: &Path,
    table: &mut Table,
    obs: &mut dyn PipelineObserver,
) -> anyhow::Result<Option<()>> {
    let plan = LotteryPlan {
        rounds: opts.rounds(),
        prune: 0.2,
        prune_output: None,
        rewind: opts.rewind,
        control: crate::experiment::Control::Winning,
        epochs: Some(opts.epochs),
    };
    let cfg = opts.baseline(seed);
    let Some((base, snaps)) = baseline(opts, &cfg, &[plan.rewind_epoch()], data, cache_dir, obs)?
    else {
        return Ok(None);
    };
    let history = &base.meta.history;
    let dense = "dense";
    table.record(
        dense,
        "baseline",
        1.0,
        ACCURACY,
        history.last().map_or(0.0, |e| e.test_accuracy),
    );
    table.record(
        dense,
        "baseline",
        1.0,
        FIRST_EPOCH,
        history.first().map_or(0.0, |e| e.test_accuracy),
    );
    let rates = lottery::rates(&plan, base.net.params.len());
    let controls = opts.controls();
    let rewind_to = &snaps[0].values;
    let mut states = dense_states(&base.net)?;
    for round in 1..=plan.rounds {
        let masks = lottery::prune_round(&states, &rates);
        let kept = lottery::kept_fraction(&masks);
        let group = format!("round {round}");
        let mut starts = vec![("winning ticket", lottery::masked_start(rewind_to, &masks))];
        if controls.contains(&round) {
            let fresh = lottery::reinit_values(&opts.model.arch(), seed, round)?;
            starts.push(("random reinit", lottery::masked_start(&fresh, &masks)));
        }
        let mut winner = None;
        for (variant, start) in starts {
            if obs.should_stop() {
                return Ok(None);
            }
            obs.stage(&format!(
                "seed {seed}: round {round} of {}, {:.1}% kept: {variant}",
                plan.rounds,
                kept * 100.0
            ));
            let (net, out) =
                lottery::train_masked(&opts.model.arch(), start, &masks, &cfg, data, None, obs)?;
            if out.cancelled {
                return Ok(None);
            }
            table.record(&group, variant, kept, ACCURACY, last_accuracy(&out));
            table.record(&group, variant, kept, FIRST_EPOCH, first_accuracy(&out));
            if winner.is_none() {
                winner = Some(net);
            }
        }
        let winner = winner.expect("the winning ticket trains first");
        states = lottery::states_after(&winner, masks, &states)?;
    }
    Ok(Some(()))
}

/// What one step of a recipe did: test accuracy before and after its training.
struct StepResult {
    before: f64,
    after: f64,
    kept: f64,
}

/// Runs `exp`'s recipe from `base` through the pipeline's steps (no file is made): what
/// each step did, and the network the last one left. `None` when stopped.
fn run_recipe(
    exp: &Experiment,
    base: &Net,
    data: &Mnist,
    obs: &mut dyn PipelineObserver,
) -> anyhow::Result<Option<(Vec<StepResult>, Net)>> {
    let arch = exp.arch();
    let share = ShareParams::of(exp);
    let no_units = vec![None; arch.layers.len()];
    let mut states = dense_states(base)?;
    let mut results = Vec::new();
    let mut last = None;
    for step in exp.recipe() {
        if obs.should_stop() {
            return Ok(None);
        }
        let refs: Vec<&LayerState> = states.iter().collect();
        let prepared = step::prepare(step.kind, &arch, &refs, &step.plans, share, &no_units)?;
        let before = train::evaluate(&prepared.net, &data.test)?.accuracy;
        let outcome = if step.epochs > 0 {
            let out = train::train(
                &prepared.net,
                data,
                &step.train_config(&exp.train),
                &prepared.constraints,
                obs,
            )?;
            if out.cancelled {
                return Ok(None);
            }
            Some(out)
        } else {
            None
        };
        let after = match &outcome {
            Some(out) => last_accuracy(out),
            None => before,
        };
        let masks: Vec<_> = prepared.layers.iter().map(|p| p.mask.clone()).collect();
        results.push(StepResult {
            before,
            after,
            kept: lottery::kept_fraction(&masks),
        });
        states = step::conclude(&prepared, outcome.as_ref())?;
        last = Some(prepared.net);
    }
    match last {
        Some(net) => Ok(Some((results, net))),
        None => anyhow::bail!("the recipe has no step"),
    }
}

/// An experiment of `cfg`'s baseline for the study's recipes (nothing else set).
fn experiment(opts: &StudyOptions, name: &str, cfg: &TrainConfig) -> Experiment {
    Experiment {
        name: name.to_string(),
        ..Session::default_experiment(&opts.model.arch(), cfg.clone())
    }
}

/// Every layer pruned to `keep`, then masked retraining in `rounds` rounds of `epochs`.
fn pruned(
    opts: &StudyOptions,
    cfg: &TrainConfig,
    keep: f32,
    rounds: usize,
    epochs: usize,
) -> Experiment {
    let mut exp = experiment(opts, "study", cfg);
    exp.defaults = LayerOverrides {
        prune: Some(PruneRule::Keep(keep)),
        ..LayerOverrides::default()
    };
    exp.retrain = Some(RetrainPlan {
        rounds,
        schedule: PruneSchedule::Geometric,
        epochs,
        lr: cfg.lr,
        lr_schedule: Schedule::Cosine,
        batch_size: cfg.batch_size,
    });
    exp
}

fn keep_group(keep: f32) -> String {
    format!("{:.1}% kept", keep * 100.0)
}

/// One seed of the schedule study: per target, one prune (retrained as long as the
/// iterative schedule retrains in all) against `rounds` gentle prunes.
fn schedule_seed(
    opts: &StudyOptions,
    seed: u64,
    data: &Mnist,
    cache_dir: &Path,
    table: &mut Table,
    obs: &mut dyn PipelineObserver,
) -> anyhow::Result<Option<()>> {
    let cfg = opts.baseline(seed);
    let Some((base, _)) = baseline(opts, &cfg, &[], data, cache_dir, obs)? else {
        return Ok(None);
    };
    let rounds = opts.rounds();
    let e = opts.retrain_epochs;
    for keep in opts.keep() {
        let group = keep_group(keep);
        let once = format!("aggressive: 1 prune, {} epochs", rounds * e);
        let gentle = format!("iterative: {rounds} prunes x {e} epochs");
        for (variant, exp) in [
            (once, pruned(opts, &cfg, keep, 1, rounds * e)),
            (gentle, pruned(opts, &cfg, keep, rounds, e)),
        ] {
            obs.stage(&format!("seed {seed}: {group}, {variant}"));
            let Some((steps, _)) = run_recipe(&exp, &base.net, data, obs)? else {
                return Ok(None);
            };
            let last = steps.last().expect("one step at least");
            table.record(&group, &variant, last.kept, ACCURACY, last.after);
            if steps.len() == 1 {
                table.record(&group, &variant, last.kept, PRUNED, last.before);
            }
        }
    }
    Ok(Some(()))
}

/// Bins of the L1 study's histograms.
const BINS: usize = 120;

/// One seed of the L1 study: baselines without and with the penalty, each pruned to the
/// targets, before and after retraining; for the first seed, the histograms.
fn l1_seed(
    opts: &StudyOptions,
    seed: u64,
    data: &Mnist,
    cache_dir: &Path,
    table: &mut Table,
    histograms: Option<&mut Vec<WeightHistogram>>,
    obs: &mut dyn PipelineObserver,
) -> anyhow::Result<Option<()>> {
    let plain = opts.baseline(seed);
    let penalized = TrainConfig {
        l1: opts.l1,
        ..plain.clone()
    };
    let mut layers = Vec::new();
    for (variant, cfg) in [
        ("no penalty".to_string(), plain),
        (format!("L1 {}", opts.l1), penalized),
    ] {
        let Some((base, _)) = baseline(opts, &cfg, &[], data, cache_dir, obs)? else {
            return Ok(None);
        };
        let acc = base.meta.test_accuracy().unwrap_or(0.0);
        table.record("dense", &variant, 1.0, ACCURACY, acc);
        for keep in opts.keep() {
            let group = keep_group(keep);
            obs.stage(&format!("seed {seed}: {variant}, pruned to {group}"));
            let exp = pruned(opts, &cfg, keep, 1, opts.retrain_epochs);
            let Some((steps, _)) = run_recipe(&exp, &base.net, data, obs)? else {
                return Ok(None);
            };
            let s = &steps[0];
            table.record(&group, &variant, s.kept, PRUNED, s.before);
            table.record(&group, &variant, s.kept, ACCURACY, s.after);
        }
        let arch = base.net.arch.clone();
        let largest = (0..arch.layers.len())
            .max_by_key(|&l| arch.layers[l].weight_count())
            .expect("a layer");
        layers.push((
            variant,
            arch.layers[largest].name.to_string(),
            base.net.weight_values(largest)?,
        ));
    }
    if let Some(out) = histograms {
        let keep = opts.keep()[0];
        *out = weight_histograms(&layers, keep);
    }
    Ok(Some(()))
}

/// Histograms of each variant's weights on common bins (the range of all of them), with the
/// magnitude a `keep` rule cuts at.
fn weight_histograms(layers: &[(String, String, Vec<f32>)], keep: f32) -> Vec<WeightHistogram> {
    let (lo, hi) = layers
        .iter()
        .flat_map(|(_, _, w)| w.iter().copied())
        .fold((0.0f32, 0.0f32), |(lo, hi), w| (lo.min(w), hi.max(w)));
    let span = (hi - lo).max(1e-6);
    layers
        .iter()
        .map(|(variant, layer, w)| {
            let mut counts = vec![0u64; BINS];
            for &v in w {
                let b = (((v - lo) / span) * BINS as f32) as usize;
                counts[b.min(BINS - 1)] += 1;
            }
            WeightHistogram {
                variant: variant.clone(),
                layer: layer.clone(),
                lo,
                hi: lo + span,
                counts,
                threshold: crate::compress::prune::keep_threshold(w, keep),
                keep,
            }
        })
        .collect()
}

/// One seed of the DSD study: per sparse-phase `keep`, the sparse phase and the dense one;
/// and the control, the same two trainings without pruning.
fn dsd_seed(
    opts: &StudyOptions,
    seed: u64,
    data: &Mnist,
    cache_dir: &Path,
    table: &mut Table,
    obs: &mut dyn PipelineObserver,
) -> anyhow::Result<Option<()>> {
    let cfg = opts.baseline(seed);
    let Some((base, _)) = baseline(opts, &cfg, &[], data, cache_dir, obs)? else {
        return Ok(None);
    };
    let e = opts.retrain_epochs;
    table.record(
        "dense",
        "baseline",
        1.0,
        ACCURACY,
        base.meta.test_accuracy().unwrap_or(0.0),
    );
    let phase = |lr: f64| Step {
        kind: StepKind::Dense,
        epochs: e,
        lr,
        lr_schedule: Schedule::Cosine,
        batch_size: cfg.batch_size,
        layers: Default::default(),
    };
    let mut control = experiment(opts, "study", &cfg);
    control.steps = vec![phase(cfg.lr), phase(cfg.lr / 10.0)];
    obs.stage(&format!("seed {seed}: control, trained on without pruning"));
    let Some((steps, _)) = run_recipe(&control, &base.net, data, obs)? else {
        return Ok(None);
    };
    let variant = format!("dense, {e} + {e} more epochs");
    table.record("dense", &variant, 1.0, ACCURACY, steps[1].after);
    for keep in opts.keep() {
        let group = keep_group(keep);
        let mut exp = experiment(opts, "study", &cfg);
        exp.dsd = Some(DsdPlan {
            keep,
            epochs: e,
            lr: cfg.lr,
            dense_epochs: Some(e),
            dense_lr: Some(cfg.lr / 10.0),
            lr_schedule: Schedule::Cosine,
            batch_size: cfg.batch_size,
        });
        obs.stage(&format!(
            "seed {seed}: dense-sparse-dense, sparse phase {group}"
        ));
        let Some((steps, _)) = run_recipe(&exp, &base.net, data, obs)? else {
            return Ok(None);
        };
        table.record(
            &group,
            "sparse phase",
            steps[0].kept,
            PRUNED,
            steps[0].before,
        );
        table.record(
            &group,
            "sparse phase",
            steps[0].kept,
            ACCURACY,
            steps[0].after,
        );
        table.record(&group, "dense-sparse-dense", 1.0, ACCURACY, steps[1].after);
    }
    Ok(Some(()))
}

/// `arch` with every layer but the last at a quarter of its units (at least one): the
/// distillation study's student.
pub fn quarter(arch: &Arch) -> Arch {
    let mut spec = arch.spec();
    spec.name = format!("{}-quarter", arch.name);
    let last = spec.layers.len() - 1;
    for (i, stage) in spec.layers.iter_mut().enumerate() {
        if let StageSpec::Conv { outputs, .. } | StageSpec::Fc { outputs, .. } = stage
            && i != last
        {
            *outputs = (*outputs).div_ceil(4);
        }
    }
    spec.to_arch()
        .expect("a narrower network fits wherever the wider one did")
}

/// The distillation study for one seed: the student trained alone, then distilled from the
/// seed-1 teacher at each temperature (all cached: a student of one teacher, temperature
/// and alpha is trained once).
fn distill_seed(
    opts: &StudyOptions,
    seed: u64,
    data: &Mnist,
    cache_dir: &Path,
    table: &mut Table,
    obs: &mut dyn PipelineObserver,
) -> anyhow::Result<Option<()>> {
    let Some((teacher, _)) = baseline(opts, &opts.baseline(1), &[], data, cache_dir, obs)? else {
        return Ok(None);
    };
    let teacher_accuracy = teacher.meta.test_accuracy().unwrap_or(0.0);
    table.record(
        "teacher",
        "teacher (seed 1)",
        1.0,
        ACCURACY,
        teacher_accuracy,
    );
    let student = quarter(&opts.model.arch());
    let cfg = opts.baseline(seed);
    obs.stage(&format!("seed {seed}: student {} alone", student.name));
    let (alone, _) = cache::obtain_keeping(&student, &cfg, None, data, false, cache_dir, &[], obs)?;
    if !alone.meta.complete {
        return Ok(None);
    }
    let group = "student";
    table.record(
        group,
        "alone",
        1.0,
        ACCURACY,
        alone.meta.test_accuracy().unwrap_or(0.0),
    );
    let id = teacher
        .path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let folded = teacher.net.folded()?;
    for &temperature in &opts.temperatures {
        let config = crate::model::distill::DistillConfig {
            temperature,
            alpha: opts.alpha,
        };
        let soft =
            crate::pipeline::baseline::soft_targets_of(&folded, &id, config, data, cache_dir)?;
        obs.stage(&format!(
            "seed {seed}: student distilled at T = {temperature}"
        ));
        let (taught, _) = cache::obtain_keeping(
            &student,
            &cfg,
            Some(&soft),
            data,
            false,
            cache_dir,
            &[],
            obs,
        )?;
        if !taught.meta.complete {
            return Ok(None);
        }
        table.record(
            group,
            &format!("distilled, T = {temperature}"),
            1.0,
            ACCURACY,
            taught.meta.test_accuracy().unwrap_or(0.0),
        );
    }
    Ok(Some(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_give_the_mean_and_the_sample_spread() {
        let m = Metric {
            name: ACCURACY.into(),
            values: vec![0.9, 0.92, 0.94],
        };
        assert!((m.mean() - 0.92).abs() < 1e-12);
        assert!((m.spread() - 0.02).abs() < 1e-12);
        let one = Metric {
            name: ACCURACY.into(),
            values: vec![0.5],
        };
        assert_eq!(one.spread(), 0.0);
    }

    #[test]
    fn bad_options_name_the_flag() {
        let ok = StudyOptions::new(StudyKind::PruneSchedule, ModelKind::Lenet300100);
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.keep(), vec![0.7, 0.05]);
        let bad = |f: &dyn Fn(&mut StudyOptions)| {
            let mut o = ok.clone();
            f(&mut o);
            o.validate().unwrap_err()
        };
        assert!(bad(&|o| o.seeds = 0).starts_with("--seeds"));
        assert!(bad(&|o| o.keep = Some(vec![0.5, 1.5])).starts_with("--keep: 1.5"));
        assert!(bad(&|o| o.keep = Some(vec![])).starts_with("--keep"));
        assert!(bad(&|o| o.l1 = -1.0).starts_with("--l1"));
        assert!(bad(&|o| o.rewind = Rewind::Epoch(9)).starts_with("--rewind"));
        assert!(bad(&|o| o.rounds = Some(0)).starts_with("--rounds"));
        assert!(
            "lottery"
                .parse::<StudyKind>()
                .unwrap_err()
                .contains("lottery-ticket")
        );
    }

    #[test]
    fn controls_train_at_the_asked_rounds_or_at_the_last() {
        let mut o = StudyOptions::new(StudyKind::LotteryTicket, ModelKind::Lenet300100);
        assert_eq!(
            o.controls().into_iter().collect::<Vec<_>>(),
            vec![3, 7, 12, 15, 18]
        );
        o.rounds = Some(2);
        assert_eq!(o.controls().into_iter().collect::<Vec<_>>(), vec![2]);
    }
}
