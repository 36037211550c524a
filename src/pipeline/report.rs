//! Human-readable reports: the per-layer size table (`dcx inspect`, `report.md`) and the
//! whole-run summary. Everything here formats numbers computed elsewhere; nothing is computed.

use std::fmt::Write;

use super::cost::CostReport;
use super::run::CompressionReport;
use super::size::{LayerSize, SizeReport};
use crate::compress::paper;
use crate::compress::quantize::Quantizer;
use crate::model::ModelKind;
use crate::model::latency::LatencyReport;

fn kb(bytes: u64) -> String {
    format!("{:.1} KB", bytes as f64 / 1000.0)
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

/// Markdown table, one row per layer plus header and total rows.
pub(crate) fn layer_table(sizes: &SizeReport, thresholds: Option<&[f32]>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| layer | weights | kept | threshold | bits | index bits | fillers | dense | pruned (P) | shared (P+Q) | file (P+Q+H) | ratio | weight bits H (entropy) | index bits H (entropy) |"
    );
    let _ = writeln!(
        s,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (i, l) in sizes.layers.iter().enumerate() {
        let t = thresholds
            .and_then(|t| t.get(i))
            .map_or("-".to_string(), |t| format!("{t:.4}"));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {t} | {} | {} | {} | {} | {} | {} | {} | {:.1}x | {:.2} ({:.2}) | {:.2} ({:.2}) |",
            l.name,
            l.weights,
            pct(l.kept_fraction()),
            l.bits,
            l.index_bits,
            l.fillers,
            kb(l.dense_bytes),
            kb(l.pruned_bytes),
            kb(l.shared_bytes),
            kb(l.file_bytes),
            l.ratio(),
            l.weight_bits_huffman,
            l.weight_bits_entropy,
            l.index_bits_huffman,
            l.index_bits_entropy,
        );
    }
    let _ = writeln!(
        s,
        "| header + metadata + checksum | | | | | | | | | | {} | | | |",
        kb(sizes.header_bytes + sizes.trailer_bytes)
    );
    let kept = sizes.kept() as f64 / sizes.weights().max(1) as f64;
    let _ = writeln!(
        s,
        "| **total** | {} | {} | | | | {} | {} | {} ({:.1}x) | {} ({:.1}x) | **{} ({} bytes)** | **{:.1}x** | | |",
        sizes.weights(),
        pct(kept),
        sizes.layers.iter().map(|l| l.fillers).sum::<usize>(),
        kb(sizes.dense_bytes),
        kb(sizes.pruned_bytes),
        sizes.dense_bytes as f64 / sizes.pruned_bytes.max(1) as f64,
        kb(sizes.shared_bytes),
        sizes.dense_bytes as f64 / sizes.shared_bytes.max(1) as f64,
        kb(sizes.file_bytes),
        sizes.file_bytes,
        sizes.ratio(),
    );
    let (gridded, f32s): (Vec<&LayerSize>, Vec<&LayerSize>) =
        sizes.layers.iter().partition(|l| l.bias_grid);
    // f32 biases are what the columns assume: only a grid needs saying.
    if !gridded.is_empty() {
        let names = |ls: &[&LayerSize]| -> String {
            ls.iter()
                .map(|l| l.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let bytes = |ls: &[&LayerSize]| -> u64 { ls.iter().map(|l| l.bias_bytes).sum() };
        let _ = write!(
            s,
            "\nBiases on 8-bit grids (a byte each, and 5 bytes per layer for the grid's scale and zero point) in {}: {} bytes",
            names(&gridded),
            bytes(&gridded)
        );
        if !f32s.is_empty() {
            let _ = write!(
                s,
                "; as f32 (4 bytes each) in {}: {} bytes",
                names(&f32s),
                bytes(&f32s)
            );
        }
        let _ = writeln!(s, ".");
    }
    s
}

fn millions(n: u64) -> String {
    format!("{:.3} M", n as f64 / 1e6)
}

/// Markdown table of what running the network costs, per layer and total: the dense
/// original, the thinned network (cut units removed) and the nonzero weights alone, with the
/// multiply-add ratio of each against dense.
pub(crate) fn cost_table(cost: &CostReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| layer | units kept | params dense | params thinned | params nonzero | MACs dense | MACs thinned | MACs nonzero |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for l in &cost.layers {
        let _ = writeln!(
            s,
            "| {} | {} / {} | {} | {} | {} | {} | {} | {} |",
            l.name,
            l.units_kept,
            l.units,
            l.params_dense,
            l.params_thinned,
            l.params_nonzero,
            millions(l.macs_dense),
            millions(l.macs_thinned),
            millions(l.macs_nonzero),
        );
    }
    let x = |part: u64| cost.macs_dense() as f64 / part.max(1) as f64;
    let _ = writeln!(
        s,
        "| **total** | | {} | {} | {} | {} | {} ({:.2}x fewer) | {} ({:.2}x fewer) |",
        cost.params_dense(),
        cost.params_thinned(),
        cost.params_nonzero(),
        millions(cost.macs_dense()),
        millions(cost.macs_thinned()),
        x(cost.macs_thinned()),
        millions(cost.macs_nonzero()),
        x(cost.macs_nonzero()),
    );
    s
}

/// Markdown table of measured batch latency: the dense network, then each faster way to run
/// the plan with its speedup against dense.
pub(crate) fn latency_table(l: &LatencyReport) -> String {
    let mut s = String::new();
    let names: Vec<&str> = l
        .rows
        .first()
        .map(|r| r.paths.iter().map(|p| path_name(&p.path)).collect())
        .unwrap_or_default();
    let _ = writeln!(s, "| batch | dense f32 | {} |", names.join(" | "));
    let _ = writeln!(s, "|---:|---:|{}", "---:|".repeat(names.len()));
    for r in &l.rows {
        let cells: Vec<String> = r
            .paths
            .iter()
            .map(|p| format!("{:.3} ms ({:.2}x)", p.ms, p.speedup))
            .collect();
        let _ = writeln!(
            s,
            "| {} | {:.3} ms | {} |",
            r.batch,
            r.dense_ms,
            cells.join(" | ")
        );
    }
    let _ = writeln!(
        s,
        "\nMedian batch latency on {} threads, {} images per pass, {} passes per path, the paths alternating; speedup against dense f32 in parentheses.",
        l.threads, l.images, l.repeats
    );
    s
}

/// A latency path's name in words.
fn path_name(key: &str) -> &str {
    match key {
        "sparse" => "sparse f32 (nonzero weights, CSR)",
        "thinned" => "thinned f32 (cut units removed)",
        "thinned_sparse" => "thinned sparse",
        "int8" => "int8",
        other => other,
    }
}

/// `builtin`: the built-in network the report is of, whose paper figures it compares with.
pub(crate) fn markdown(r: &CompressionReport, builtin: Option<ModelKind>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {} ({})\n", r.experiment, r.model);
    // Only a plan that quantizes activations gets their column: other reports are as before.
    let quantized = r.stages.iter().any(|st| st.activation_bits.is_some());
    let (head, rule) = if quantized {
        (" activations |", "---|")
    } else {
        ("", "")
    };
    let _ = writeln!(
        s,
        "| stage | test accuracy | test error | loss | weights kept | .dcz bytes |{head}"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|{rule}");
    for st in &r.stages {
        let acts = match (quantized, st.activation_bits) {
            (false, _) => String::new(),
            (true, Some(b)) => format!(" {b}-bit |"),
            (true, None) => " f32 |".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.4} | {} | {} |{acts}",
            st.stage,
            pct(st.accuracy),
            pct(1.0 - st.accuracy),
            st.loss,
            pct(st.kept),
            st.file_bytes.map_or("-".to_string(), |b| b.to_string())
        );
    }
    if let Some(a) = &r.activations {
        let _ = writeln!(
            s,
            "\nActivations: every layer's input is quantized: {a}, an affine grid per layer \
             input calibrated on the network the file holds (the file stores the grids; \
             `dcx eval` applies them)."
        );
    }
    let _ = writeln!(s, "\n## Sizes (bytes of the written model.dcz)\n");
    s.push_str(&layer_table(&r.sizes, Some(&r.thresholds)));
    if !r.cost.layers.is_empty() {
        let _ = writeln!(
            s,
            "\n## Inference cost (per image; MACs are multiply-adds)\n\nThinned: the network with the units structured pruning cut removed, smaller dense layers. Nonzero: what a sparse kernel multiplies (zeros skipped). Counted, not timed: the next table times them.\n"
        );
        s.push_str(&cost_table(&r.cost));
    }
    if let Some(l) = &r.latency {
        let _ = writeln!(s, "\n## Inference speed (measured)\n");
        s.push_str(&latency_table(l));
    }
    let _ = writeln!(s, "\n## Weight sharing and quantization\n");
    let _ = writeln!(
        s,
        "| layer | quantizer | levels | k-means init | k-means iterations | SSE at init | SSE | unused levels |"
    );
    let _ = writeln!(s, "|---|---|---:|---|---:|---:|---:|---:|");
    for l in &r.sharing {
        // A fixed grid is not initialised or iterated: its SSE is the quantization error.
        let kmeans = l.quantizer == Quantizer::KMeans.name();
        let (init, iterations) = if kmeans {
            (l.init.clone(), l.iterations.to_string())
        } else {
            ("-".into(), "-".into())
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.6} | {:.6} | {} |",
            l.name, l.quantizer, l.k, init, iterations, l.init_sse, l.sse, l.empty_clusters
        );
    }
    // A run trained from scratch has no baseline to set beside the paper's "before".
    if let Some(p) = builtin
        .and_then(paper::figure)
        .filter(|_| !r.baseline_checkpoint.is_empty())
    {
        let _ = writeln!(s, "\n## Compared with the paper (Table 1)\n");
        let _ = writeln!(
            s,
            "| | error before | error after | dense | compressed | ratio |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
        let _ = writeln!(
            s,
            "| paper | {} | {} | {:.0} KB | {:.0} KB | {:.0}x |",
            pct(p.error_before),
            pct(p.error_after),
            p.dense_kb,
            p.compressed_kb,
            p.ratio
        );
        let _ = writeln!(
            s,
            "| dcx | {} | {} | {} | {} | {:.1}x |",
            pct(1.0 - r.baseline().accuracy),
            pct(1.0 - r.last().accuracy),
            kb(r.sizes.dense_bytes),
            kb(r.sizes.file_bytes),
            r.sizes.ratio()
        );
    }
    let start = if r.baseline_checkpoint.is_empty() {
        "Trained from scratch (no baseline checkpoint)".to_string()
    } else {
        format!("Baseline checkpoint: `{}`", r.baseline_checkpoint)
    };
    // An explorer export takes milliseconds (it runs no training): "0.0 s" would read as
    // nothing measured.
    let time = match r.seconds {
        s if s >= 1.0 => format!(" Wall time: {s:.1} s."),
        s if s > 0.0 => format!(" Wall time: {:.0} ms.", s * 1000.0),
        _ => String::new(),
    };
    let _ = writeln!(
        s,
        "\n{start}.{time} k-means stops when no weight changes cluster unless the experiment says otherwise."
    );
    s
}
