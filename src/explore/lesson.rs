//! Lessons: a sequence of explorer steps in a TOML file (`docs/lessons.md`), each with a text
//! for students, the edits and jobs the explorer would do, and checks of what it measures.
//!
//! Parsing is strict and reports the file, the step (number and title) and the key at fault;
//! running a lesson is `dcx lesson` (`commands/lesson.rs`), which drives the explorer itself.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::Session;
use crate::compress::kmeans::Init;
use crate::compress::prune::UnitRank;
use crate::experiment::Quantizer;

/// A lesson file's whole content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lesson {
    pub title: String,
    /// A built-in network (`lenet-5`), trained with its shipped recipe as the explorer does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// An experiment file, relative to the lesson file: its plan and recipe are the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(rename = "step")]
    pub steps: Vec<Step>,
}

/// The fields of a lesson other than its steps, parsed first so errors can name the key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Head {
    title: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    experiment: Option<PathBuf>,
    #[serde(default)]
    description: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub title: String,
    /// A few sentences; `*word*` is emphasis, a line starting `- ` a list item.
    pub text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepHead {
    title: String,
    text: String,
}

/// One thing the explorer does, as one inline table. Exactly one of: a layer edit (`layer`
/// with one or more settings), `do` (a job), `select` (the highlighted row) or `show` (the
/// chart).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// A layer name, or `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// Share of the layer's weights kept (the largest by magnitude), in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<f32>,
    /// Prune weights with |w| below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_bits: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<Init>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantizer: Option<Quantizer>,
    /// Structured pruning: share (0, 1] of the layer's output units (filters, neurons) kept;
    /// 1 cuts none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<f32>,
    /// Which units a structured cut removes first (default `l1`); only with `units`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<UnitRank>,
    /// Compress the weights of the last retraining or fine-tuning (true) or the checkpoint's
    /// (false): the explorer's undo past a training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trained: Option<bool>,
    #[serde(rename = "do", default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Job>,
    /// Epochs of a `retrain` or `finetune` (default: the recipe's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show: Option<Chart>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Job {
    /// Masked retraining (the explorer's `p`).
    Retrain,
    /// Centroid fine-tuning (`f`).
    Finetune,
    /// The sensitivity sweep (`s`).
    Sweep,
    /// Lottery-ticket rewinding: every layer keeps its mask, its survivors go back to the
    /// values training began from.
    Rewind,
    /// The lottery ticket's control: the same masks over a fresh random initialisation.
    Reinit,
}

/// The chart the slide shows (the explorer's `c`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Chart {
    Sensitivity,
    History,
    Training,
}

/// One measured condition. Exactly one of `accuracy`, `ratio` and the bytes at a stage of the
/// size waterfall (`pruned_bytes`, `shared_bytes`, `file_bytes`: of the whole plan, or of
/// `layer`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// Test accuracy, e.g. `">= 99%"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// After pruning: kept weights at 32 bits plus their relative indices, e.g. `"> 1600 KB"`
    /// (1 KB = 1000 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned_bytes: Option<Condition>,
    /// After weight sharing: codebook indices plus relative indices, the codebook, biases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_bytes: Option<Condition>,
    /// After Huffman coding: the `.dcz` file (or the layer's section of it), e.g. `"< 45 KB"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_bytes: Option<Condition>,
    /// Compression ratio (dense f32 over file), e.g. `">= 30x"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<Condition>,
}

/// A comparison with a number and its unit, written `">= 99%"`, `"< 45 KB"`, `">= 30x"`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Condition {
    pub cmp: Cmp,
    pub value: f64,
    pub unit: Unit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Percent,
    Times,
    Bytes,
    Kilobytes,
    Megabytes,
}

impl Cmp {
    fn symbol(self) -> &'static str {
        match self {
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        }
    }

    fn holds(self, measured: f64, bound: f64) -> bool {
        match self {
            Cmp::Lt => measured < bound,
            Cmp::Le => measured <= bound,
            Cmp::Gt => measured > bound,
            Cmp::Ge => measured >= bound,
        }
    }
}

impl Unit {
    fn symbol(self) -> &'static str {
        match self {
            Unit::Percent => "%",
            Unit::Times => "x",
            Unit::Bytes => "B",
            Unit::Kilobytes => "KB",
            Unit::Megabytes => "MB",
        }
    }

    /// The factor to the base quantity (a fraction for %, bytes for sizes).
    fn scale(self) -> f64 {
        match self {
            Unit::Percent => 0.01,
            Unit::Times | Unit::Bytes => 1.0,
            Unit::Kilobytes => 1e3,
            Unit::Megabytes => 1e6,
        }
    }
}

impl TryFrom<String> for Condition {
    type Error = String;
    fn try_from(text: String) -> Result<Condition, String> {
        let bad = || {
            format!(
                "\"{text}\" is not a condition: write a comparison (<, <=, >, >=), a number and a unit, as \">= 99%\", \"< 45 KB\" or \">= 30x\""
            )
        };
        let t = text.trim();
        let (cmp, rest) = [
            ("<=", Cmp::Le),
            (">=", Cmp::Ge),
            ("<", Cmp::Lt),
            (">", Cmp::Gt),
        ]
        .into_iter()
        .find_map(|(s, c)| t.strip_prefix(s).map(|r| (c, r.trim())))
        .ok_or_else(bad)?;
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, unit) = rest.split_at(split);
        let value: f64 = number.parse().map_err(|_| bad())?;
        let unit = match unit.trim() {
            "%" => Unit::Percent,
            "x" => Unit::Times,
            "B" => Unit::Bytes,
            "KB" => Unit::Kilobytes,
            "MB" => Unit::Megabytes,
            _ => return Err(bad()),
        };
        if !value.is_finite() {
            return Err(bad());
        }
        Ok(Condition { cmp, value, unit })
    }
}

impl From<Condition> for String {
    fn from(c: Condition) -> String {
        c.to_string()
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let space = if matches!(self.unit, Unit::Percent | Unit::Times) {
            ""
        } else {
            " "
        };
        write!(
            f,
            "{} {}{space}{}",
            self.cmp.symbol(),
            self.value,
            self.unit.symbol()
        )
    }
}

/// What the explorer measured for the plan after a step: the exact test accuracy and the
/// bytes of the file the plan would write.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    /// Fraction of the test set right.
    pub accuracy: f64,
    pub ratio: f64,
    /// The whole plan's bytes at each stage (`name` is empty).
    pub total: StageBytes,
    pub layers: Vec<StageBytes>,
}

/// Bytes of a layer (or of the plan) after each stage.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StageBytes {
    pub name: String,
    pub dense: u64,
    pub pruned: u64,
    pub shared: u64,
    /// The section of the `.dcz` file (the whole file, header included, for the plan).
    pub file: u64,
}

impl Measured {
    /// The session's exact figures for its current plan, once the evaluation and sizes are in.
    pub fn of(session: &Session) -> Option<Measured> {
        let eval = session.evaluation()?;
        let sizes = session.sizes()?;
        Some(Measured {
            accuracy: eval.accuracy,
            ratio: sizes.ratio(),
            total: StageBytes {
                name: String::new(),
                dense: sizes.dense_bytes,
                pruned: sizes.pruned_bytes,
                shared: sizes.shared_bytes,
                file: sizes.file_bytes,
            },
            layers: sizes
                .layers
                .iter()
                .map(|l| StageBytes {
                    name: l.name.clone(),
                    dense: l.dense_bytes,
                    pruned: l.pruned_bytes,
                    shared: l.shared_bytes,
                    file: l.file_bytes,
                })
                .collect(),
        })
    }
}

/// A check and what was measured for it.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckResult {
    /// The check in words, e.g. `fc1 file < 45 KB`.
    pub label: String,
    /// The measured value in the check's unit, e.g. `41.7 KB`.
    pub measured: String,
    pub met: bool,
}

fn bytes_text(bytes: u64) -> String {
    if bytes >= 1_000_000 {
        format!("{:.2} MB", bytes as f64 / 1e6)
    } else if bytes >= 1000 {
        format!("{:.1} KB", bytes as f64 / 1e3)
    } else {
        format!("{bytes} B")
    }
}

type PickBytes = fn(&StageBytes) -> u64;

impl Check {
    /// The stage a bytes check reads, its condition and how to read it.
    fn bytes_check(&self) -> Option<(&'static str, Condition, PickBytes)> {
        match (self.pruned_bytes, self.shared_bytes, self.file_bytes) {
            (Some(c), _, _) => Some(("pruned", c, |b| b.pruned)),
            (_, Some(c), _) => Some(("shared", c, |b| b.shared)),
            (_, _, Some(c)) => Some(("file", c, |b| b.file)),
            _ => None,
        }
    }

    /// The check in words, e.g. `fc1 file < 45 KB`.
    pub fn label(&self) -> String {
        if let Some(c) = self.accuracy {
            return format!("accuracy {c}");
        }
        if let Some(c) = self.ratio {
            return format!("ratio {c}");
        }
        match (self.bytes_check(), &self.layer) {
            (Some((stage, c, _)), None) => format!("{stage} {c}"),
            (Some((stage, c, _)), Some(name)) => format!("{name} {stage} {c}"),
            (None, _) => "an empty check".into(),
        }
    }

    /// Evaluates the check on `m`; an error only for a layer the network lacks (which
    /// [`Lesson::check_layers`] refuses before a run).
    pub fn evaluate(&self, m: &Measured) -> Result<CheckResult, String> {
        let label = self.label();
        if let Some(c) = self.accuracy {
            return Ok(CheckResult {
                label,
                measured: format!("{:.2}%", 100.0 * m.accuracy),
                met: c.cmp.holds(m.accuracy, c.value * c.unit.scale()),
            });
        }
        if let Some(c) = self.ratio {
            return Ok(CheckResult {
                label,
                measured: format!("{:.1}x", m.ratio),
                met: c.cmp.holds(m.ratio, c.value),
            });
        }
        let Some((_, c, pick)) = self.bytes_check() else {
            return Err("a check needs accuracy, ratio or a bytes key".into());
        };
        let bytes = match &self.layer {
            None => pick(&m.total),
            Some(name) => m
                .layers
                .iter()
                .find(|l| &l.name == name)
                .map(pick)
                .ok_or_else(|| format!("no layer {name}"))?,
        };
        Ok(CheckResult {
            label,
            measured: bytes_text(bytes),
            met: c.cmp.holds(bytes as f64, c.value * c.unit.scale()),
        })
    }
}

/// A lesson file that cannot be used: the message names the file, the step and the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct LessonError(pub String);

/// Where in the file a problem is: the step (number from 1, title if known) and the key.
struct At<'a> {
    file: &'a str,
    step: Option<(usize, Option<String>)>,
}

impl At<'_> {
    fn error(&self, key: &str, why: impl fmt::Display) -> LessonError {
        let mut text = format!("{}: ", self.file);
        if let Some((n, title)) = &self.step {
            match title {
                Some(t) => text.push_str(&format!("step {n} \"{t}\": ")),
                None => text.push_str(&format!("step {n}: ")),
            }
        }
        if !key.is_empty() {
            text.push_str(&format!("{key}: "));
        }
        text.push_str(&why.to_string());
        LessonError(text)
    }
}

/// Deserializes `table` as `T`, trying each key alone first so a wrong type or an unknown key
/// is reported with the key's name (serde's own messages do not carry it).
fn strict<T: DeserializeOwned>(table: &toml::Table) -> Result<T, (String, String)> {
    for (key, value) in table {
        let mut one = toml::Table::new();
        one.insert(key.clone(), value.clone());
        if let Err(e) = toml::Value::Table(one).try_into::<T>() {
            let msg = e.to_string();
            if !msg.contains("missing field") {
                return Err((key.clone(), msg.trim().to_string()));
            }
        }
    }
    toml::Value::Table(table.clone())
        .try_into::<T>()
        .map_err(|e| (String::new(), e.to_string().trim().to_string()))
}

/// The tables of the array `value` at `name` (`actions`, `checks`), each read strictly and
/// checked by `validate`; an error names the entry (`actions[1].bits`).
fn entries<T: DeserializeOwned>(
    value: Option<&toml::Value>,
    at: &At,
    name: &str,
    validate: fn(&T) -> Result<(), (String, String)>,
) -> Result<Vec<T>, LessonError> {
    array(value, at, name)?
        .iter()
        .enumerate()
        .map(|(j, v)| {
            let key = format!("{name}[{j}]");
            let entry: T = strict(table(v, at, &key)?).map_err(|(k, e)| {
                at.error(
                    &if k.is_empty() {
                        key.clone()
                    } else {
                        format!("{key}.{k}")
                    },
                    e,
                )
            })?;
            validate(&entry).map_err(|(k, e)| at.error(&format!("{key}{k}"), e))?;
            Ok(entry)
        })
        .collect()
}

fn table<'a>(value: &'a toml::Value, at: &At, key: &str) -> Result<&'a toml::Table, LessonError> {
    value
        .as_table()
        .ok_or_else(|| at.error(key, format!("must be a table, got {}", value.type_str())))
}

fn array<'a>(
    value: Option<&'a toml::Value>,
    at: &At,
    key: &str,
) -> Result<&'a [toml::Value], LessonError> {
    match value {
        None => Ok(&[]),
        Some(toml::Value::Array(a)) => Ok(a),
        Some(v) => Err(at.error(key, format!("must be a list, got {}", v.type_str()))),
    }
}

impl Lesson {
    /// Reads and parses a lesson file.
    pub fn load(path: &Path) -> Result<Lesson, LessonError> {
        let text = crate::fsutil::read_text_bounded(path, 1 << 20, "a lesson file")
            .map_err(|e| LessonError(format!("{}: {e}", path.display())))?;
        Lesson::parse(&text, &path.display().to_string())
    }

    /// Parses a lesson; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Lesson, LessonError> {
        let top = At { file, step: None };
        let mut root: toml::Table = toml::from_str(text).map_err(|e| top.error("", e))?;
        let steps = root
            .remove("step")
            .ok_or_else(|| top.error("step", "a lesson needs at least one [[step]]"))?;
        let head: Head = strict(&root).map_err(|(k, e)| top.error(&k, e))?;
        match (&head.model, &head.experiment) {
            (Some(m), None) => {
                m.parse::<crate::model::ModelKind>()
                    .map_err(|e| top.error("model", e))?;
            }
            (None, Some(_)) => {}
            _ => {
                return Err(top.error(
                    "model",
                    "give exactly one of model (a built-in network) or experiment (a file)",
                ));
            }
        }
        let steps = array(Some(&steps), &top, "step")?;
        if steps.is_empty() {
            return Err(top.error("step", "a lesson needs at least one [[step]]"));
        }
        let steps = steps
            .iter()
            .enumerate()
            .map(|(i, v)| parse_step(file, i + 1, v))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Lesson {
            title: head.title,
            model: head.model,
            experiment: head.experiment,
            description: head.description,
            steps,
        })
    }

    /// The lesson as TOML (parses back to the same lesson).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a lesson is plain data")
    }

    /// Refuses layer names `layers` (the network's) lacks, naming the step and the key.
    pub fn check_layers(&self, file: &str, layers: &[String]) -> Result<(), LessonError> {
        for (i, step) in self.steps.iter().enumerate() {
            let at = At {
                file,
                step: Some((i + 1, Some(step.title.clone()))),
            };
            let known = |name: &str| layers.iter().any(|l| l == name);
            let unknown = |name: &str| format!("no layer {name} (layers: {})", layers.join(", "));
            for (j, a) in step.actions.iter().enumerate() {
                if let Some(l) = &a.layer
                    && l != "all"
                    && !known(l)
                {
                    return Err(at.error(&format!("actions[{j}].layer"), unknown(l)));
                }
                if let Some(l) = &a.select
                    && !known(l)
                {
                    return Err(at.error(&format!("actions[{j}].select"), unknown(l)));
                }
            }
            for (j, c) in step.checks.iter().enumerate() {
                if let Some(l) = &c.layer
                    && !known(l)
                {
                    return Err(at.error(&format!("checks[{j}].layer"), unknown(l)));
                }
            }
        }
        Ok(())
    }
}

fn parse_step(file: &str, n: usize, value: &toml::Value) -> Result<Step, LessonError> {
    let mut at = At {
        file,
        step: Some((n, None)),
    };
    let mut t = table(value, &at, "")?.clone();
    at.step = Some((
        n,
        t.get("title").and_then(|v| v.as_str()).map(str::to_string),
    ));
    let actions = t.remove("actions");
    let checks = t.remove("checks");
    let head: StepHead = strict(&t).map_err(|(k, e)| at.error(&k, e))?;
    let actions = entries(actions.as_ref(), &at, "actions", Action::validate)?;
    let checks = entries(checks.as_ref(), &at, "checks", Check::validate)?;
    Ok(Step {
        title: head.title,
        text: head.text,
        actions,
        checks,
    })
}

impl Action {
    /// The layer settings this action carries.
    fn has_setting(&self) -> bool {
        self.keep.is_some()
            || self.threshold.is_some()
            || self.bits.is_some()
            || self.index_bits.is_some()
            || self.init.is_some()
            || self.quantizer.is_some()
            || self.units.is_some()
            || self.rank.is_some()
            || self.trained.is_some()
    }

    /// Checks the action's shape and ranges; the error's key is `""` or `.NAME`.
    fn validate(&self) -> Result<(), (String, String)> {
        let kinds = [
            self.layer.is_some() || self.has_setting(),
            self.job.is_some(),
            self.select.is_some(),
            self.show.is_some(),
        ];
        if kinds.iter().filter(|&&k| k).count() != 1 {
            return Err((
                String::new(),
                "an action is exactly one of: a layer edit (layer = \"fc1\" with keep, threshold, bits, index_bits, init, quantizer, units or trained), do, select or show".into(),
            ));
        }
        if self.epochs.is_some() && !matches!(self.job, Some(Job::Retrain | Job::Finetune)) {
            return Err((
                ".epochs".into(),
                "only with do = \"retrain\" or \"finetune\"".into(),
            ));
        }
        if let Some(e) = self.epochs
            && !(1..=100).contains(&e)
        {
            return Err((".epochs".into(), format!("must be 1..=100, got {e}")));
        }
        if kinds[0] {
            if self.layer.is_none() {
                return Err((
                    ".layer".into(),
                    "a layer setting needs layer = \"NAME\" or \"all\"".into(),
                ));
            }
            if !self.has_setting() {
                return Err((
                    String::new(),
                    "a layer action needs keep, threshold, bits, index_bits, init, quantizer, units or trained"
                        .into(),
                ));
            }
        }
        if self.keep.is_some() && self.threshold.is_some() {
            return Err((
                ".threshold".into(),
                "give keep or threshold, not both".into(),
            ));
        }
        if let Some(k) = self.keep
            && !(k > 0.0 && k <= 1.0)
        {
            return Err((".keep".into(), format!("must be in (0, 1], got {k}")));
        }
        if let Some(u) = self.units
            && !(u > 0.0 && u <= 1.0)
        {
            return Err((".units".into(), format!("must be in (0, 1], got {u}")));
        }
        if self.rank.is_some() && self.units.is_none() {
            return Err((".rank".into(), "only with units".into()));
        }
        if let Some(t) = self.threshold
            && !(t.is_finite() && t >= 0.0)
        {
            return Err((".threshold".into(), format!("must be 0 or more, got {t}")));
        }
        if let Some(b) = self.bits {
            let range = self.quantizer.unwrap_or_default().bits_range();
            if !range.contains(&b) {
                return Err((
                    ".bits".into(),
                    format!("must be {}..={}, got {b}", range.start(), range.end()),
                ));
            }
        }
        if let Some(b) = self.index_bits
            && !(1..=16).contains(&b)
        {
            return Err((".index_bits".into(), format!("must be 1..=16, got {b}")));
        }
        Ok(())
    }
}

impl Check {
    fn validate(&self) -> Result<(), (String, String)> {
        let bytes = [self.pruned_bytes, self.shared_bytes, self.file_bytes];
        let set = [self.accuracy.is_some(), self.ratio.is_some()]
            .into_iter()
            .chain(bytes.iter().map(Option::is_some));
        if set.filter(|&s| s).count() != 1 {
            return Err((
                String::new(),
                "a check is exactly one of accuracy, ratio, pruned_bytes, shared_bytes or file_bytes".into(),
            ));
        }
        if self.layer.is_some() && bytes.iter().all(Option::is_none) {
            return Err((
                ".layer".into(),
                "only with pruned_bytes, shared_bytes or file_bytes".into(),
            ));
        }
        let unit = |key: &str, c: Condition, ok: &[Unit], want: &str| {
            if ok.contains(&c.unit) {
                Ok(())
            } else {
                Err((
                    format!(".{key}"),
                    format!("\"{c}\": the unit must be {want}"),
                ))
            }
        };
        if let Some(c) = self.accuracy {
            unit("accuracy", c, &[Unit::Percent], "%")?;
            if c.value > 100.0 {
                return Err((".accuracy".into(), format!("\"{c}\": at most 100%")));
            }
        }
        for (key, c) in ["pruned_bytes", "shared_bytes", "file_bytes"]
            .into_iter()
            .zip(bytes)
        {
            if let Some(c) = c {
                unit(
                    key,
                    c,
                    &[Unit::Bytes, Unit::Kilobytes, Unit::Megabytes],
                    "B, KB or MB",
                )?;
            }
        }
        if let Some(c) = self.ratio {
            unit("ratio", c, &[Unit::Times], "x")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
title = "t"
model = "lenet-5"

[[step]]
title = "Prune fc1"
text = "Cut *most* of fc1.\n- one\n- two"
actions = [{ layer = "fc1", keep = 0.08 }, { layer = "all", bits = 5 }, { do = "retrain", epochs = 1 },
           { select = "fc1" }, { show = "history" }, { layer = "conv2", quantizer = "uniform", bits = 4 },
           { layer = "fc1", init = "kmeans++" }, { do = "sweep" }]
checks = [{ accuracy = ">= 99%" }, { layer = "fc1", file_bytes = "< 45 KB" }, { ratio = ">= 30x" },
          { pruned_bytes = "> 1.6 MB" }, { layer = "conv1", shared_bytes = "<= 900 B" }]

[[step]]
title = "Two"
text = "x"
"#;

    fn err(text: &str) -> String {
        Lesson::parse(text, "lessons/x.toml").unwrap_err().0
    }

    fn with_action(action: &str) -> String {
        format!(
            "title = \"t\"\nmodel = \"lenet-5\"\n[[step]]\ntitle = \"a\"\ntext = \"b\"\n[[step]]\ntitle = \"Share fc1\"\ntext = \"x\"\nactions = [{{ layer = \"fc1\", keep = 0.5 }}, {action}]\n"
        )
    }

    #[test]
    fn a_lesson_round_trips_through_its_toml() {
        let lesson = Lesson::parse(GOOD, "x").unwrap();
        assert_eq!(lesson.steps.len(), 2);
        assert_eq!(lesson.steps[0].actions.len(), 8);
        assert_eq!(lesson.steps[0].checks[1].file_bytes.unwrap().value, 45.0);
        let written = lesson.to_toml();
        assert_eq!(Lesson::parse(&written, "y").unwrap(), lesson, "{written}");
    }

    #[test]
    fn errors_name_the_file_step_and_key() {
        assert_eq!(
            err(&with_action("{ layer = \"fc1\", bits = 12 }")),
            "lessons/x.toml: step 2 \"Share fc1\": actions[1].bits: must be 1..=8, got 12"
        );
        let e = err(&with_action("{ layer = \"fc1\", bitz = 5 }"));
        assert!(
            e.starts_with("lessons/x.toml: step 2 \"Share fc1\": actions[1].bitz: unknown field"),
            "{e}"
        );
        let e = err(&with_action("{ layer = \"fc1\", bits = \"five\" }"));
        assert!(
            e.starts_with("lessons/x.toml: step 2 \"Share fc1\": actions[1].bits: "),
            "{e}"
        );
        let e = err(&with_action("{ do = \"dance\" }"));
        assert!(e.contains("actions[1].do: unknown variant `dance`"), "{e}");
        let e = err(&with_action("{ layer = \"fc1\", keep = 1.5 }"));
        assert!(
            e.ends_with("actions[1].keep: must be in (0, 1], got 1.5"),
            "{e}"
        );
        let e = err(&with_action("{ do = \"sweep\", select = \"fc1\" }"));
        assert!(e.contains("actions[1]: an action is exactly one of"), "{e}");
        let e = err(&with_action("{ do = \"sweep\", epochs = 2 }"));
        assert!(e.contains("actions[1].epochs: only with"), "{e}");
        let e = err(&GOOD.replace("\">= 30x\"", "\"at least 30\""));
        assert!(
            e.starts_with("lessons/x.toml: step 1 \"Prune fc1\": checks[2].ratio: \"at least 30\" is not a condition"),
            "{e}"
        );
        let e = err(&GOOD.replace("\">= 99%\"", "\">= 99 KB\""));
        assert!(
            e.contains("checks[0].accuracy: \">= 99 KB\": the unit must be %"),
            "{e}"
        );
        let e = err(&GOOD.replace("text = \"x\"", "txt = \"x\""));
        assert!(
            e.starts_with("lessons/x.toml: step 2 \"Two\": txt: unknown field"),
            "{e}"
        );
        let e = err(&GOOD.replace("text = \"x\"", ""));
        assert!(
            e.starts_with("lessons/x.toml: step 2 \"Two\": missing field `text`"),
            "{e}"
        );
        let e = err(&GOOD.replace("model = \"lenet-5\"", "model = \"lenet-6\""));
        assert!(
            e.starts_with("lessons/x.toml: model: unknown model 'lenet-6'"),
            "{e}"
        );
        let e = err(&GOOD.replace("title = \"t\"", "titel = \"t\""));
        assert!(e.starts_with("lessons/x.toml: titel: unknown field"), "{e}");
    }

    #[test]
    fn unknown_layers_are_refused_with_step_and_key() {
        let lesson = Lesson::parse(&with_action("{ select = \"fc9\" }"), "x").unwrap();
        let names = ["fc1".to_string(), "fc2".to_string()];
        let e = lesson.check_layers("x", &names).unwrap_err().0;
        assert_eq!(
            e,
            "x: step 2 \"Share fc1\": actions[1].select: no layer fc9 (layers: fc1, fc2)"
        );
    }

    #[test]
    fn checks_evaluate_against_the_measured_values() {
        let lesson = Lesson::parse(GOOD, "x").unwrap();
        let checks = &lesson.steps[0].checks;
        let m = Measured {
            accuracy: 0.9912,
            ratio: 41.4,
            total: StageBytes {
                file: 41_661,
                ..StageBytes::default()
            },
            layers: vec![
                StageBytes {
                    name: "fc1".into(),
                    dense: 1_600_000,
                    pruned: 1_665_000,
                    shared: 50_000,
                    file: 46_000,
                },
                StageBytes {
                    name: "conv1".into(),
                    shared: 900,
                    ..StageBytes::default()
                },
            ],
        };
        let r: Vec<_> = checks.iter().map(|c| c.evaluate(&m).unwrap()).collect();
        assert!(r[0].met && r[0].measured == "99.12%", "{r:?}");
        assert!(!r[1].met && r[1].measured == "46.0 KB", "{r:?}");
        assert!(r[2].met && r[2].label == "ratio >= 30x", "{r:?}");
        assert!(
            !r[3].met && r[3].label == "pruned > 1.6 MB",
            "the plan's total: {r:?}"
        );
        assert!(r[4].met && r[4].label == "conv1 shared <= 900 B", "{r:?}");
        let low = Measured {
            accuracy: 0.9899,
            ratio: 30.0,
            ..m
        };
        assert!(!checks[0].evaluate(&low).unwrap().met);
        assert!(
            checks[2].evaluate(&low).unwrap().met,
            ">= includes equality"
        );
        let bigger = Check {
            layer: Some("fc1".into()),
            pruned_bytes: Some(Condition::try_from("> 1600 KB".to_string()).unwrap()),
            ..Check::default()
        };
        let r = bigger.evaluate(&low).unwrap();
        assert!(
            r.met && r.label == "fc1 pruned > 1600 KB" && r.measured == "1.67 MB",
            "{r:?}"
        );
    }
}
