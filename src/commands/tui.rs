//! `dcx` (no subcommand) / `dcx explore`: the explorer TUI.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;

use crate::data::{self, DataError, FetchOptions, Mnist};
use crate::experiment::Experiment;
use crate::explore::{Session, WorkerOptions};
use crate::model::{ModelKind, ModelRef};
use crate::tui::controller::Setup;

#[derive(Debug, Args, Default)]
pub struct TuiArgs {
    /// lenet-300-100, lenet-5 or course-cnn (default: lenet-5, or the experiment's model).
    #[arg(long)]
    pub model: Option<ModelKind>,
    /// Start from this experiment's plan and training recipe instead of an unpruned plan.
    #[arg(long, value_name = "FILE")]
    pub experiment: Option<PathBuf>,
    /// Larger, higher-contrast elements and fewer panels, for a projector (key: z).
    #[arg(long)]
    pub lecture: bool,
    /// Where `e` writes its folders.
    #[arg(long, value_name = "DIR", default_value = "exports")]
    pub exports: PathBuf,
}

/// The training recipe each network's shipped experiment uses, so the explorer and
/// `dcx compress experiments/…` share one cached checkpoint.
fn recipe(model: ModelKind) -> Experiment {
    let text = match model {
        ModelKind::Lenet300100 => include_str!("../../experiments/paper-lenet-300-100.toml"),
        ModelKind::Lenet5 => include_str!("../../experiments/paper-lenet-5.toml"),
        ModelKind::CourseCnn => include_str!("../../experiments/course-2bit.toml"),
    };
    Experiment::parse(text, recipe_file(model)).expect("shipped experiments parse (tested)")
}

fn recipe_file(model: ModelKind) -> &'static str {
    match model {
        ModelKind::Lenet300100 => "experiments/paper-lenet-300-100.toml",
        ModelKind::Lenet5 => "experiments/paper-lenet-5.toml",
        ModelKind::CourseCnn => "experiments/course-2bit.toml",
    }
}

/// The experiment the explorer starts from: the named file, or an unpruned plan with the
/// network's shipped training, retraining and fine-tuning recipe.
pub(crate) fn starting_experiment(args: &TuiArgs) -> anyhow::Result<Experiment> {
    if let Some(path) = &args.experiment {
        let exp = Experiment::load(path)?;
        if let Some(m) = args.model
            && crate::model::ModelRef::from(m) != exp.model
        {
            anyhow::bail!(
                "{}: the experiment is for {}, but --model asks for {m}",
                path.display(),
                exp.model
            );
        }
        return Ok(exp);
    }
    let model = args.model.unwrap_or(ModelKind::Lenet5);
    let shipped = recipe(model);
    Ok(Experiment {
        retrain: shipped.retrain.clone(),
        finetune: shipped.finetune.clone(),
        ..Session::default_experiment(&model.arch(), shipped.train.clone())
    })
}

/// MNIST for the explorer. When it is nowhere to be found, says where dcx looked and offers
/// to download it (on a terminal), rather than failing inside the full-screen UI.
fn data_or_offer(explicit: Option<&Path>) -> anyhow::Result<Mnist> {
    let dir = match data::locate(explicit) {
        Ok(dir) => dir,
        Err(DataError::NotFound(why)) => {
            let dest = explicit
                .map(Path::to_path_buf)
                .or_else(data::default_data_dir)
                .ok_or_else(|| anyhow::anyhow!("{why}"))?;
            if !std::io::stdin().is_terminal() {
                anyhow::bail!("{why}\n\nDownload it with `dcx data fetch`.");
            }
            eprintln!("{why}\n");
            eprint!(
                "Download MNIST (about 11 MB, checksums verified) into {} now? [Y/n] ",
                dest.display()
            );
            std::io::stderr().flush()?;
            let mut answer = String::new();
            let read = std::io::stdin().lock().read_line(&mut answer)?;
            // Ctrl-D (end of input, nothing read) is no answer, so no download; Enter is yes.
            if read == 0 || answer.trim().to_lowercase().starts_with('n') {
                anyhow::bail!(
                    "no MNIST: run `dcx data fetch` (or pass --data DIR with the four IDX files)"
                );
            }
            print!("{}", data::fetch(&FetchOptions::new(&dest))?);
            dest
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Mnist::load(&dir)?)
}

pub fn run(data_dir: Option<&Path>, args: &TuiArgs) -> anyhow::Result<()> {
    let template = starting_experiment(args)?;
    if !std::io::stdout().is_terminal() {
        // Piped or scripted: there is no screen to explore on, so do the explorer's job
        // without one: the whole pipeline with the network's shipped (paper) settings.
        let (file, exp) = match (&args.experiment, &template.model) {
            (Some(path), _) => (path.clone(), template),
            (None, ModelRef::Builtin(kind)) => (PathBuf::from(recipe_file(*kind)), recipe(*kind)),
            (None, ModelRef::Defined(_)) => {
                anyhow::bail!("a network defined in an experiment needs --experiment FILE")
            }
        };
        eprintln!(
            "no terminal to open the explorer in; running `dcx compress {}` instead",
            file.display()
        );
        return super::compress::run_experiment(data_dir, exp, None);
    }
    let data = Arc::new(data_or_offer(data_dir)?);
    let runs =
        crate::explore::runs::scan(&[Path::new("out"), &args.exports], &template.arch().name);
    crate::tui::run(
        Setup {
            data,
            template,
            cache_dir: crate::model::cache::cache_dir(),
            export_root: args.exports.clone(),
            // What `dcx compress` wrote (out/NAME) and earlier exports, of this network.
            runs,
            lecture: args.lecture,
            worker: WorkerOptions::default(),
            lessons_dir: PathBuf::from("lessons"),
            lesson_start: Some(super::lesson::template),
            lesson: None,
        },
        crate::tui::theme::Colors::from_env(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_network_has_a_shipped_recipe_and_an_unpruned_start() {
        for model in [
            ModelKind::Lenet300100,
            ModelKind::Lenet5,
            ModelKind::CourseCnn,
        ] {
            assert_eq!(recipe(model).model, model.into());
            let exp = starting_experiment(&TuiArgs {
                model: Some(model),
                ..TuiArgs::default()
            })
            .unwrap();
            assert_eq!(exp.model, model.into());
            assert_eq!(exp.train, recipe(model).train);
            assert!(exp.layers.is_empty());
        }
    }

    #[test]
    fn a_model_that_contradicts_the_experiment_is_an_error_naming_the_file() {
        let err = starting_experiment(&TuiArgs {
            model: Some(ModelKind::CourseCnn),
            experiment: Some(PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/experiments/paper-lenet-5.toml"
            ))),
            ..TuiArgs::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("paper-lenet-5.toml"), "{err}");
        assert!(err.contains("course-cnn"), "{err}");
    }
}
