//! The layers of the code point one way: a module uses only modules below it in [`LAYERS`],
//! so there is no import loop and each concept can be read without the ones above it. The
//! graph is read from the source (`crate::NAME` in code, comments left out), the same way
//! anyone can with `grep -rn "crate::" src/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom first. Modules on one line may not use each other.
const LAYERS: &[&[&str]] = &[
    &["fsutil", "palette", "testing"],
    &["data"],
    &["model"],
    &["compress"],
    &["format"],
    &["experiment"],
    &["pipeline"],
    &["explore"],
    &["analysis"],
    &["plot"],
    &["tui"],
    &["commands", "fuzzing"],
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module -> the top-level modules its code names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let deps = graph.entry(module.clone()).or_default();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            for (i, _) in code.match_indices("crate::") {
                let name: String = code[i + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    deps.insert(name);
                }
            }
        }
    }
    graph
}

#[test]
fn every_module_uses_only_modules_below_it() {
    let graph = imports();
    let mut wrong = Vec::new();
    for (module, deps) in &graph {
        let Some(r) = rank(module) else {
            wrong.push(format!("{module}: not in LAYERS; give it its place"));
            continue;
        };
        for dep in deps {
            match rank(dep) {
                Some(d) if d < r => {}
                Some(_) => wrong.push(format!("{module} uses {dep}, which is not below it")),
                None => wrong.push(format!("{module} uses {dep}, which is not in LAYERS")),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{}\n(the graph: {graph:#?})",
        wrong.join("\n")
    );
}

#[test]
fn the_reader_sees_a_use_and_a_loop() {
    // The check itself: a module naming one above it must be caught.
    let graph = imports();
    assert!(graph["commands"].contains("tui"));
    assert!(graph["pipeline"].contains("compress"));
    assert!(rank("compress") < rank("pipeline"));
}
