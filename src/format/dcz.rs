//! The `.dcz` container: a compressed model, self-describing and self-checking.
//! Byte layout: `docs/dcz-format.md`. The reader treats every byte as hostile: every length is
//! checked against what remains and against the architecture before anything is allocated,
//! and every failure is an error naming what is wrong, never a panic.

use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::compress::bits::BitReader;
use crate::compress::encode::{EncodeError, EncodedLayer, encode_layer};
use crate::compress::huffman::HuffmanCode;
use crate::compress::model::{BiasGrid, CompressedLayer, CompressedModel, Units};
use crate::compress::quantize::Quantizer;
use crate::compress::sparse_index;
use crate::model::activations::{ActGrid, ActivationQuant, Calibration};
use crate::model::quant::{Grid, GridParams};
use crate::model::spec::StageSpec;
use crate::model::{LayerKind, LayerSpec, ModelKind, ModelRef, NetworkSpec};

pub(crate) const MAGIC: &[u8; 4] = b"DCZ\x01";
const MAX_METADATA: usize = 1 << 20;
/// Bytes of the checksum at the end of every file.
pub(crate) const TRAILER: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum DczError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a valid .dcz file: {reason}")]
    Invalid { path: String, reason: String },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    /// A built-in network's name, or the name of the network `network` describes.
    model: String,
    /// The network's stages in order, so a reader needs nothing but the file to run it.
    /// Always written; files of a built-in written before it was have none, and their `model`
    /// names the built-in whose stages are meant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    network: Option<Vec<StageSpec>>,
    layers: Vec<LayerMeta>,
    experiment: String,
    writer: String,
    /// Present when each layer's input is quantized: the grids follow the layer count.
    /// Absent, the file is the bytes it always was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    activations: Option<ActivationsMeta>,
}

/// How a file's activation grids were made (the grids themselves are binary, after the
/// layer count, so their scales are the exact f32 values).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivationsMeta {
    bits: u8,
    calibration: Calibration,
    images: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LayerMeta {
    name: String,
    kind: LayerKind,
    shape: Vec<usize>,
    /// Absent means k-means, so files of k-means layers are the bytes they always were.
    #[serde(default, skip_serializing_if = "is_kmeans")]
    quantizer: Quantizer,
    /// The output units structured pruning kept; absent when it kept them all. The section
    /// then holds the thinned layer (see `docs/dcz-format.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outputs: Option<KeptOutputs>,
    /// 8 when the section stores the biases on an 8-bit grid; absent when they are f32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bias_bits: Option<u8>,
}

/// A layer's kept output units, as the metadata spells them.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum KeptOutputs {
    /// One character per output unit, `1` kept, `0` cut: what dcx writes. A list of 250
    /// indices deflates to about 450 bytes; this, to about 65.
    Mask(String),
    /// The kept units' indices, increasing: what files written before the mask hold.
    List(Vec<u32>),
}

fn is_kmeans(q: &Quantizer) -> bool {
    *q == Quantizer::KMeans
}

/// Where the bytes of a written file went: the size report reads these, so reported sizes
/// are the file's sizes by construction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DczLayout {
    /// Magic, metadata and layer count.
    pub header_bytes: usize,
    /// Each layer's section, its length field included.
    pub section_bytes: Vec<usize>,
    /// The checksum at the end.
    pub trailer_bytes: usize,
}

impl DczLayout {
    pub fn total(&self) -> usize {
        self.header_bytes + self.section_bytes.iter().sum::<usize>() + self.trailer_bytes
    }
}

/// Bytes of a layer's section in the file, its length field included: measured on the very
/// bytes [`to_bytes`] writes, so a size figure and the file cannot disagree.
pub fn section_bytes(layer: &CompressedLayer, enc: &EncodedLayer) -> usize {
    4 + layer_section(&layer.thinned(), enc).len()
}

/// Bytes of the header: magic, metadata, layer count.
pub fn header_bytes(model: &CompressedModel) -> usize {
    header(model).len()
}

/// Bytes of the header plus the checksum trailer.
#[cfg(test)]
pub(crate) fn overhead_bytes(model: &CompressedModel) -> usize {
    header_bytes(model) + TRAILER
}

/// Magic, metadata length and metadata, layer count, and the activation grids if there are
/// any: everything before the first section.
fn header(model: &CompressedModel) -> Vec<u8> {
    let meta = metadata(model);
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + meta.len() + 2);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(&(model.layers.len() as u16).to_le_bytes());
    if let Some(a) = &model.activations {
        for g in &a.grids {
            out.push(g.bits);
            out.extend_from_slice(&g.scale.to_le_bytes());
            out.push(g.zero_point);
        }
    }
    out
}

fn metadata(model: &CompressedModel) -> Vec<u8> {
    let spec = match ModelRef::of(&model.arch) {
        ModelRef::Builtin(kind) => NetworkSpec::builtin(kind),
        ModelRef::Defined(spec) => spec,
    };
    let meta = Metadata {
        model: spec.name,
        network: Some(spec.layers),
        layers: model
            .layers
            .iter()
            .map(|l| LayerMeta {
                name: l.name.clone(),
                kind: l.kind,
                shape: l.shape.clone(),
                quantizer: l.quantizer,
                outputs: l
                    .units
                    .as_ref()
                    .filter(|u| u.outputs.iter().any(|&k| !k))
                    .map(|u| {
                        KeptOutputs::Mask(
                            u.outputs
                                .iter()
                                .map(|&k| if k { '1' } else { '0' })
                                .collect(),
                        )
                    }),
                bias_bits: l.bias_grid.map(|_| BiasGrid::BITS),
            })
            .collect(),
        experiment: model.experiment.clone(),
        writer: format!("dcx {}", env!("CARGO_PKG_VERSION")),
        activations: model.activations.as_ref().map(|a| ActivationsMeta {
            bits: a.bits,
            calibration: a.calibration,
            images: a.images,
        }),
    };
    let json = serde_json::to_vec(&meta).expect("metadata serialises");
    // The experiment text is a large share of a small model's file: deflate it.
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&json).expect("writing to memory");
    z.finish().expect("writing to memory")
}

/// Inflates metadata, refusing to produce more than `MAX_METADATA` bytes (no zip bombs).
fn inflate_metadata(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(bytes)
        .take(MAX_METADATA as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("metadata: not deflate data: {e}"))?;
    if out.len() > MAX_METADATA {
        return Err(format!("metadata inflates past {MAX_METADATA} bytes"));
    }
    Ok(out)
}

/// Encodes every layer (codes of at most `max_code_len` bits) and serialises the file: its
/// bytes, each layer's encoding and where the parts lie.
pub(crate) fn encode(
    model: &CompressedModel,
    max_code_len: u8,
) -> Result<(Vec<u8>, Vec<EncodedLayer>, DczLayout), EncodeError> {
    let encoded = model
        .layers
        .iter()
        .map(|l| encode_layer(l, max_code_len))
        .collect::<Result<Vec<_>, _>>()?;
    let (bytes, layout) = to_bytes(model, &encoded);
    Ok((bytes, encoded, layout))
}

/// Serialises a model whose layers were encoded by [`encode_layer`].
pub(crate) fn to_bytes(model: &CompressedModel, encoded: &[EncodedLayer]) -> (Vec<u8>, DczLayout) {
    assert_eq!(model.layers.len(), encoded.len(), "one encoding per layer");
    let mut out = header(model);
    let header_bytes = out.len();
    let mut section_bytes = Vec::with_capacity(model.layers.len());
    for (layer, enc) in model.layers.iter().zip(encoded) {
        let section = layer_section(&layer.thinned(), enc);
        out.extend_from_slice(&(section.len() as u32).to_le_bytes());
        out.extend_from_slice(&section);
        section_bytes.push(4 + section.len());
    }
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest[..TRAILER]);
    let layout = DczLayout {
        header_bytes,
        section_bytes,
        trailer_bytes: TRAILER,
    };
    (out, layout)
}

fn layer_section(layer: &CompressedLayer, enc: &EncodedLayer) -> Vec<u8> {
    let mut s = Vec::new();
    s.push(layer.bits);
    s.push(layer.index_bits);
    s.extend_from_slice(&(layer.kept() as u32).to_le_bytes());
    s.extend_from_slice(&(enc.gap_symbols as u32).to_le_bytes());
    match &layer.grid {
        // k-means: the codebook itself.
        None => {
            s.extend_from_slice(&(layer.codebook.len() as u16).to_le_bytes());
            for c in &layer.codebook {
                s.extend_from_slice(&c.to_le_bytes());
            }
        }
        // A fixed grid: its parameters per group; the levels follow from them.
        Some(GridParams::Affine {
            scales,
            zero_points,
        }) => {
            s.extend_from_slice(&(scales.len() as u16).to_le_bytes());
            for c in scales {
                s.extend_from_slice(&c.to_le_bytes());
            }
            s.extend_from_slice(zero_points);
        }
        Some(GridParams::Sign { alphas }) => {
            s.extend_from_slice(&(alphas.len() as u16).to_le_bytes());
            for c in alphas {
                s.extend_from_slice(&c.to_le_bytes());
            }
        }
    }
    s.extend_from_slice(&(layer.bias.len() as u32).to_le_bytes());
    match layer.bias_grid {
        None => {
            for b in &layer.bias {
                s.extend_from_slice(&b.to_le_bytes());
            }
        }
        Some(g) => {
            s.extend_from_slice(&g.scale.to_le_bytes());
            s.push(g.zero_point);
            s.extend(layer.bias.iter().map(|&b| g.code(b)));
        }
    }
    for block in [&enc.table_bytes, &enc.weight_stream, &enc.gap_stream] {
        s.extend_from_slice(&(block.len() as u32).to_le_bytes());
        s.extend_from_slice(block);
    }
    s
}

pub fn save(path: &Path, bytes: &[u8]) -> Result<(), DczError> {
    crate::fsutil::write_atomic(path, bytes).map_err(|source| DczError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Writes `bytes` (the encoding of `model`) to `path` and reads the file back: the file alone
/// must give back the model it was written from.
pub(crate) fn save_checked(
    path: &Path,
    bytes: &[u8],
    model: &CompressedModel,
) -> Result<(), DczError> {
    if let Some(reason) = non_finite(model) {
        return Err(DczError::Invalid {
            path: path.display().to_string(),
            reason: format!("refusing to write it: {reason} (did training diverge?)"),
        });
    }
    save(path, bytes)?;
    if load(path)?.model != *model {
        return Err(DczError::Invalid {
            path: path.display().to_string(),
            reason: "reading the file back gave a different model".into(),
        });
    }
    Ok(())
}

/// The first NaN or infinity in a model's codebooks and biases, described.
fn non_finite(model: &CompressedModel) -> Option<String> {
    model
        .layers
        .iter()
        .find_map(|l| {
            let bad = |what: &str, values: &[f32]| {
                values
                    .iter()
                    .position(|v| !v.is_finite())
                    .map(|i| format!("{} {what} entry {i} is {}", l.name, values[i]))
            };
            bad("codebook", &l.codebook).or_else(|| bad("bias", &l.bias))
        })
        .or_else(|| {
            let a = model.activations.as_ref()?;
            let (l, g) = a
                .grids
                .iter()
                .enumerate()
                .find(|(_, g)| !(g.scale.is_finite() && g.scale > 0.0))?;
            let name = model.layers.get(l).map_or("?", |x| x.name.as_str());
            Some(format!("{name}'s input activation scale is {}", g.scale))
        })
}

/// A file read back: the model and where its bytes are.
#[derive(Clone, Debug, PartialEq)]
pub struct DczFile {
    pub model: CompressedModel,
    pub layout: DczLayout,
}

/// Largest `.dcz` file dcx reads: the course CNN, unpruned at 8 bits with 16-bit gaps, is
/// about 20 MB.
const MAX_FILE: u64 = 64 << 20;

pub fn load(path: &Path) -> Result<DczFile, DczError> {
    let bytes = crate::fsutil::read_bounded(path, MAX_FILE, "a .dcz file").map_err(|source| {
        DczError::Io {
            path: path.display().to_string(),
            source,
        }
    })?;
    from_bytes(&bytes).map_err(|reason| DczError::Invalid {
        path: path.display().to_string(),
        reason,
    })
}

/// Bounds-checked little-endian reader over a byte slice.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.bytes.len() - self.at < n {
            return Err(format!(
                "truncated: {what} needs {n} bytes at offset {}, only {} left",
                self.at,
                self.bytes.len() - self.at
            ));
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, String> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// `n` finite f32 values: a NaN or an infinity is refused (no model holds one).
    fn f32s(&mut self, n: usize, what: &str) -> Result<Vec<f32>, String> {
        let b = self.take(n.checked_mul(4).ok_or("length overflow")?, what)?;
        let values: Vec<f32> = b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        match values.iter().position(|v| !v.is_finite()) {
            Some(i) => Err(format!("{what} entry {i} is {}", values[i])),
            None => Ok(values),
        }
    }
    fn block(&mut self, what: &str) -> Result<&'a [u8], String> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }
}

pub fn from_bytes(bytes: &[u8]) -> Result<DczFile, String> {
    if bytes.len() < MAGIC.len() + TRAILER || &bytes[..4] != MAGIC {
        return Err("missing DCZ magic (is this a .dcz file, and of this version?)".into());
    }
    let (body, trailer) = bytes.split_at(bytes.len() - TRAILER);
    if Sha256::digest(body)[..TRAILER] != *trailer {
        return Err("checksum mismatch: the file is corrupt or truncated".into());
    }
    let mut c = Cursor { bytes: body, at: 4 };
    let meta_len = c.u32("metadata length")? as usize;
    if meta_len > MAX_METADATA {
        return Err(format!("metadata length {meta_len} exceeds {MAX_METADATA}"));
    }
    let json = inflate_metadata(c.take(meta_len, "metadata")?)?;
    let meta: Metadata = serde_json::from_slice(&json).map_err(|e| format!("metadata: {e}"))?;
    let arch = match &meta.network {
        None => meta.model.parse::<ModelKind>()?.arch(),
        Some(stages) => network_arch(&meta.model, stages).map_err(|e| format!("metadata: {e}"))?,
    };
    let count = c.u16("layer count")? as usize;
    if count != arch.layers.len() || meta.layers.len() != arch.layers.len() {
        return Err(format!(
            "{} has {} layers, the file describes {} and holds {count}",
            meta.model,
            arch.layers.len(),
            meta.layers.len()
        ));
    }
    let activations = match &meta.activations {
        Some(a) => Some(read_activations(&mut c, a, &arch)?),
        None => None,
    };
    let header_bytes = c.at;
    let mut layers = Vec::with_capacity(count);
    let mut section_bytes = Vec::with_capacity(count);
    let mut inputs: Option<Vec<bool>> = None;
    for (l, (spec, lm)) in arch.layers.iter().zip(&meta.layers).enumerate() {
        if lm.name != spec.name || lm.kind != spec.kind || lm.shape != spec.weight_shape() {
            return Err(format!(
                "layer {} ({:?} {:?}) does not match {}'s {} ({:?} {:?})",
                lm.name,
                lm.kind,
                lm.shape,
                meta.model,
                spec.name,
                spec.kind,
                spec.weight_shape()
            ));
        }
        let outputs = kept_outputs(lm.outputs.as_ref(), spec, l + 1 == count)
            .map_err(|e| format!("layer {}: outputs: {e}", spec.name))?;
        let units = Units {
            inputs: inputs
                .take()
                .unwrap_or_else(|| vec![true; arch.layers[l].inputs]),
            outputs,
        };
        let start = c.at;
        let section = c.block(&format!("layer {} section", spec.name))?;
        section_bytes.push(c.at - start);
        let form = SectionForm {
            quantizer: lm.quantizer,
            bias_grid: match lm.bias_bits {
                None => false,
                Some(BiasGrid::BITS) => true,
                Some(b) => {
                    return Err(format!(
                        "layer {}: bias_bits {b}: only 8 (an 8-bit grid) is written; f32 biases have no key",
                        spec.name
                    ));
                }
            },
        };
        let layer = if units.is_whole() {
            read_section(section, spec, form)
        } else {
            let shape = units.thinned_shape(&spec.weight_shape());
            let thin = LayerSpec {
                outputs: shape[0],
                inputs: shape[1],
                ..spec.clone()
            };
            read_section(section, &thin, form)
                .map(|t| CompressedLayer::expanded(t, spec.weight_shape(), units.clone()))
        }
        .map_err(|e| format!("layer {}: {e}", spec.name))?;
        inputs = Some(units.outputs);
        layers.push(layer);
    }
    if c.at != body.len() {
        return Err(format!(
            "{} unexpected bytes after the last layer",
            body.len() - c.at
        ));
    }
    Ok(DczFile {
        model: CompressedModel {
            arch,
            experiment: meta.experiment,
            layers,
            activations,
        },
        layout: DczLayout {
            header_bytes,
            section_bytes,
            trailer_bytes: TRAILER,
        },
    })
}

/// The network a file's `network` stages describe. A built-in's name means its own stages
/// and no others, so a name never runs two networks; and a file holds the network inference
/// runs, so batch-norm (folded into the layer before it when written) and dropout are refused.
fn network_arch(model: &str, stages: &[StageSpec]) -> Result<crate::model::Arch, String> {
    if let Ok(kind) = model.parse::<ModelKind>() {
        if stages != NetworkSpec::builtin(kind).layers.as_slice() {
            return Err(format!(
                "model '{model}' is a built-in network: its network must be the built-in's stages"
            ));
        }
        return Ok(kind.arch());
    }
    for (i, stage) in stages.iter().enumerate() {
        let kind = match stage {
            StageSpec::BatchNorm { .. } => "batch-norm",
            StageSpec::Dropout { .. } => "dropout",
            _ => continue,
        };
        return Err(format!(
            "network[{i}]: a {kind} stage; a file holds the network inference runs (batch-norm folded into the layer before it, no dropout)"
        ));
    }
    NetworkSpec {
        name: model.to_string(),
        layers: stages.to_vec(),
    }
    .to_arch_from_file()
}

/// The kept outputs of a layer's metadata as a mask: a string of `0`s and `1`s, one per
/// output, or (older files) strictly increasing unit indices below the layer's output count;
/// at least one kept, and none listed for the last layer (its outputs are the classes).
fn kept_outputs(
    kept: Option<&KeptOutputs>,
    spec: &LayerSpec,
    last: bool,
) -> Result<Vec<bool>, String> {
    let Some(kept) = kept else {
        return Ok(vec![true; spec.outputs]);
    };
    if last {
        return Err("the last layer's outputs are the classes: none can be cut".into());
    }
    let list = match kept {
        KeptOutputs::Mask(mask) => {
            if mask.len() != spec.outputs || mask.bytes().any(|b| b != b'0' && b != b'1') {
                return Err(format!(
                    "not a string of {} characters 0 or 1, one per output",
                    spec.outputs
                ));
            }
            if !mask.contains('1') {
                return Err("no output kept".into());
            }
            return Ok(mask.bytes().map(|b| b == b'1').collect());
        }
        KeptOutputs::List(list) => list,
    };
    if list.is_empty() {
        return Err("no output kept".into());
    }
    let mut keep = vec![false; spec.outputs];
    let mut prev: Option<u32> = None;
    for &o in list {
        if o as usize >= spec.outputs || prev.is_some_and(|p| o <= p) {
            return Err(format!(
                "{o} is not an increasing unit index below {}",
                spec.outputs
            ));
        }
        keep[o as usize] = true;
        prev = Some(o);
    }
    Ok(keep)
}

/// What a layer's metadata says about how its section is laid out.
#[derive(Clone, Copy)]
struct SectionForm {
    quantizer: Quantizer,
    /// The biases are an 8-bit grid (scale, zero point, a code each), not f32 each.
    bias_grid: bool,
}

fn read_section(
    bytes: &[u8],
    spec: &LayerSpec,
    form: SectionForm,
) -> Result<CompressedLayer, String> {
    let quantizer = form.quantizer;
    let shape = spec.weight_shape();
    let weights: usize = shape.iter().product();
    let mut c = Cursor { bytes, at: 0 };
    let bits = c.u8("bits")?;
    let index_bits = c.u8("index bits")?;
    if !(1..=8).contains(&bits) || !(1..=16).contains(&index_bits) {
        return Err(format!(
            "bits {bits} / index bits {index_bits} out of range"
        ));
    }
    let kept = c.u32("kept count")? as usize;
    let gap_symbols = c.u32("gap count")? as usize;
    // Every gap symbol advances at least one position, so neither can exceed the layer size.
    // G = 0 with every weight kept is a dense layer: no gaps are stored.
    let dense = kept == weights && gap_symbols == 0 && kept > 0;
    if kept > weights || gap_symbols > weights || (kept > gap_symbols && !dense) {
        return Err(format!(
            "{kept} kept weights / {gap_symbols} gaps impossible for {weights} weights"
        ));
    }
    let range = quantizer.bits_range();
    if !range.contains(&bits) {
        return Err(format!(
            "{bits} bits for the {} quantizer (it has {}..={})",
            quantizer.name(),
            range.start(),
            range.end()
        ));
    }
    let (codebook, grid, k) = match quantizer.grid(bits) {
        None => {
            let k = c.u16("codebook size")? as usize;
            if k > 1 << bits || (kept > 0 && k == 0) {
                return Err(format!("codebook of {k} entries for {bits} bits"));
            }
            (c.f32s(k, "codebook")?, None, k)
        }
        Some(g) => {
            let params = read_grid(&mut c, g, shape[0], bits)?;
            let k = g.levels();
            let table = params.table(k);
            if let Some(bad) = table.iter().find(|v| !v.is_finite()) {
                return Err(format!("grid parameters give the level {bad}"));
            }
            (table, Some(params), k)
        }
    };
    let bias_count = spec.bias_count();
    let bias_len = c.u32("bias length")? as usize;
    if bias_len != bias_count {
        return Err(format!("{bias_len} biases, expected {bias_count}"));
    }
    let (bias, bias_grid) = if form.bias_grid {
        let scale = c.f32s(1, "bias grid scale")?[0];
        if scale <= 0.0 {
            return Err(format!("bias grid scale {scale} is not > 0"));
        }
        let grid = BiasGrid {
            scale,
            zero_point: c.u8("bias grid zero point")?,
        };
        let codes = c.take(bias_len, "bias codes")?;
        (codes.iter().map(|&b| grid.value(b)).collect(), Some(grid))
    } else {
        (c.f32s(bias_len, "biases")?, None)
    };
    let tables = c.block("code tables")?;
    let weight_stream = c.block("weight stream")?;
    let gap_stream = c.block("gap stream")?;
    if c.at != bytes.len() {
        return Err("section has trailing bytes".into());
    }
    let mut t = BitReader::new(tables);
    let weight_code = HuffmanCode::read_table(&mut t).map_err(|e| format!("weight code: {e}"))?;
    let gap_code = HuffmanCode::read_table(&mut t).map_err(|e| format!("gap code: {e}"))?;
    t.expect_padding_only()
        .map_err(|e| format!("code tables: {e}"))?;
    let mut w = BitReader::new(weight_stream);
    let symbols = weight_code
        .decode(&mut w, kept)
        .map_err(|e| format!("weight stream: {e}"))?;
    w.expect_padding_only()
        .map_err(|e| format!("weight stream: {e}"))?;
    let assignments = symbols
        .iter()
        .map(|&s| {
            if (s as usize) < k {
                Ok(s as u8)
            } else {
                Err(format!("cluster index {s} outside a codebook of {k}"))
            }
        })
        .collect::<Result<Vec<u8>, String>>()?;
    let mut g = BitReader::new(gap_stream);
    let gaps = gap_code
        .decode(&mut g, gap_symbols)
        .map_err(|e| format!("gap stream: {e}"))?;
    g.expect_padding_only()
        .map_err(|e| format!("gap stream: {e}"))?;
    let positions = if dense {
        (0..weights as u32).collect()
    } else {
        sparse_index::decode_positions(&gaps, index_bits, weights)
            .map_err(|e| format!("sparse index: {e}"))?
    };
    if positions.len() != kept {
        return Err(format!(
            "gaps give {} positions, header says {kept}",
            positions.len()
        ));
    }
    Ok(CompressedLayer {
        name: spec.name.to_string(),
        kind: spec.kind,
        shape,
        bits,
        index_bits,
        quantizer,
        codebook,
        grid,
        positions,
        assignments,
        bias,
        bias_grid,
        units: None,
    })
}

/// The grid of each layer's input, in layer order: `u8` bits (the metadata's), `f32` scale
/// (finite, > 0), `u8` zero point (a code of that width).
fn read_activations(
    c: &mut Cursor,
    meta: &ActivationsMeta,
    arch: &crate::model::Arch,
) -> Result<ActivationQuant, String> {
    if !(2..=8).contains(&meta.bits) {
        return Err(format!(
            "metadata: activations.bits {} is out of range 2..=8",
            meta.bits
        ));
    }
    if meta.images == 0 {
        return Err("metadata: activations.images must be at least 1".into());
    }
    let mut grids = Vec::with_capacity(arch.layers.len());
    for spec in &arch.layers {
        let at = format!("activation grid of {}'s input", spec.name);
        let bits = c.u8(&at)?;
        let scale = c.f32s(1, &at)?[0];
        let zero_point = c.u8(&at)?;
        if bits != meta.bits {
            return Err(format!(
                "{at}: {bits} bits, the metadata says {}",
                meta.bits
            ));
        }
        if scale <= 0.0 {
            return Err(format!("{at}: scale {scale} is not a finite number > 0"));
        }
        if zero_point as u32 >= 1u32 << bits {
            return Err(format!(
                "{at}: zero point {zero_point} outside the {bits}-bit codes"
            ));
        }
        grids.push(ActGrid {
            bits,
            scale,
            zero_point,
        });
    }
    Ok(ActivationQuant {
        bits: meta.bits,
        calibration: meta.calibration,
        images: meta.images,
        grids,
    })
}

/// A fixed grid's parameters: a group count (1, or the layer's `out_channels`), then per
/// group an f32 scale and after all scales a u8 zero point (uniform / symmetric), or an f32
/// alpha (binary / ternary).
fn read_grid(
    c: &mut Cursor,
    grid: Grid,
    out_channels: usize,
    bits: u8,
) -> Result<GridParams, String> {
    let groups = c.u16("group count")? as usize;
    if groups != 1 && groups != out_channels {
        return Err(format!(
            "{groups} groups: a grid is per layer (1) or per output channel ({out_channels})"
        ));
    }
    let values = c.f32s(groups, "grid scales")?;
    match grid {
        Grid::Affine { .. } | Grid::Symmetric { .. } => {
            if let Some(bad) = values.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                return Err(format!("scale {bad} is not a finite number > 0"));
            }
            let zero_points = c.take(groups, "zero points")?.to_vec();
            let top = (1u32 << bits) - 1;
            if let Some(bad) = zero_points.iter().find(|&&z| z as u32 > top) {
                return Err(format!("zero point {bad} outside the {bits}-bit codes"));
            }
            Ok(GridParams::Affine {
                scales: values,
                zero_points,
            })
        }
        Grid::Binary | Grid::Ternary => {
            if let Some(bad) = values.iter().find(|a| !(a.is_finite() && **a >= 0.0)) {
                return Err(format!("alpha {bad} is not a finite number >= 0"));
            }
            Ok(GridParams::Sign { alphas: values })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::encode::encode_layer;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// A LeNet-300-100 with random sparse, shared layers: no training needed.
    fn random_model(seed: u64, keep: f64) -> CompressedModel {
        let mut rng = StdRng::seed_from_u64(seed);
        let arch = ModelKind::Lenet300100.arch();
        let layers = arch
            .layers
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let bits = [6u8, 5, 2][i];
                let k = 1usize << bits;
                let positions: Vec<u32> = (0..spec.weight_count() as u32)
                    .filter(|_| rng.random_bool(keep))
                    .collect();
                let assignments = positions
                    .iter()
                    .map(|_| rng.random_range(0..k) as u8)
                    .collect();
                CompressedLayer {
                    name: spec.name.to_string(),
                    kind: spec.kind,
                    shape: spec.weight_shape(),
                    bits,
                    index_bits: [5u8, 4, 3][i],
                    quantizer: Quantizer::KMeans,
                    codebook: (0..k).map(|j| j as f32 * 0.01 - 0.1).collect(),
                    grid: None,
                    positions,
                    assignments,
                    bias: (0..spec.bias_count()).map(|j| j as f32 * 1e-3).collect(),
                    bias_grid: None,
                    units: None,
                }
            })
            .collect();
        CompressedModel {
            arch: ModelKind::Lenet300100.arch(),
            experiment: "name = \"t\"".into(),
            layers,
            activations: None,
        }
    }

    /// A LeNet-5 whose every layer uses `quantizer` (per channel or not) on random sparse
    /// weights, through the same grid fit the pipeline uses.
    fn grid_model(seed: u64, quantizer: Quantizer, bits: u8, per_channel: bool) -> CompressedModel {
        let mut rng = StdRng::seed_from_u64(seed);
        let arch = ModelKind::Lenet5.arch();
        let layers = arch
            .layers
            .iter()
            .map(|spec| {
                let n = spec.weight_count();
                let weights: Vec<f32> = (0..n).map(|_| rng.random_range(-0.3f32..0.3)).collect();
                let kept: Vec<bool> = (0..n).map(|_| rng.random_bool(0.2)).collect();
                let grid = quantizer.grid(bits).unwrap();
                let groups = if per_channel {
                    spec.weight_shape()[0]
                } else {
                    1
                };
                let fitted = crate::model::quant::quantize(grid, groups, &weights, &kept);
                let positions: Vec<u32> =
                    (0..n as u32).filter(|&p| fitted.kept[p as usize]).collect();
                CompressedLayer {
                    name: spec.name.to_string(),
                    kind: spec.kind,
                    shape: spec.weight_shape(),
                    bits,
                    index_bits: 4,
                    quantizer,
                    codebook: fitted.params.table(grid.levels()),
                    assignments: positions
                        .iter()
                        .map(|&p| fitted.codes[p as usize])
                        .collect(),
                    positions,
                    grid: Some(fitted.params),
                    bias: (0..spec.bias_count()).map(|j| j as f32 * 1e-3).collect(),
                    bias_grid: None,
                    units: None,
                }
            })
            .collect();
        CompressedModel {
            arch: ModelKind::Lenet5.arch(),
            experiment: "name = \"t\"".into(),
            layers,
            activations: None,
        }
    }

    /// `random_model` with every other fc1 neuron cut: fc1 keeps only its live rows, fc2
    /// only the columns that read them, a cut neuron's bias is 0.
    fn thinned_model(seed: u64) -> CompressedModel {
        let mut model = random_model(seed, 0.1);
        let kept: Vec<bool> = (0..300).map(|o| o % 2 == 0 || o % 7 == 0).collect();
        let units = [
            Units {
                outputs: kept.clone(),
                inputs: vec![true; 784],
            },
            Units {
                outputs: vec![true; 100],
                inputs: kept.clone(),
            },
        ];
        for (layer, units) in model.layers.iter_mut().zip(units) {
            let alive = units.alive(&layer.shape);
            let (positions, assignments) = layer
                .positions
                .iter()
                .zip(&layer.assignments)
                .filter(|&(&p, _)| alive[p as usize])
                .unzip();
            layer.positions = positions;
            layer.assignments = assignments;
            for (b, &k) in layer.bias.iter_mut().zip(&units.outputs) {
                *b = if k { *b } else { 0.0 };
            }
            layer.units = Some(units);
        }
        model
    }

    #[test]
    fn kept_units_are_a_string_of_0s_and_1s_and_older_lists_still_read() {
        let model = thinned_model(4);
        let (bytes, _) = file_bytes(&model);
        assert_eq!(from_bytes(&bytes).unwrap().model, model);
        let meta = metadata_json(&bytes);
        let mask = meta["layers"][0]["outputs"].as_str().unwrap().to_string();
        assert_eq!(mask.len(), 300);
        assert_eq!(&mask[..8], "10101011");
        assert!(meta["layers"][1].get("outputs").is_none());
        // A file written before the string form lists the kept units: the same model, in
        // several times the metadata bytes.
        let listed: Vec<u32> = (0..300u32)
            .filter(|&o| mask.as_bytes()[o as usize] == b'1')
            .collect();
        let older = with_metadata(&bytes, |m| m["layers"][0]["outputs"] = listed.into());
        assert_eq!(from_bytes(&older).unwrap().model, model);
        let grown = older.len() - with_metadata(&bytes, |_| ()).len();
        assert!(grown > 200, "the list costs {grown} more bytes");
        // A mask of another length, another character or no unit kept names the layer.
        for bad in ["1".repeat(299), "2".repeat(300), "0".repeat(300)] {
            let file = with_metadata(&bytes, |m| m["layers"][0]["outputs"] = bad.into());
            let err = from_bytes(&file).unwrap_err();
            assert!(err.contains("layer fc1: outputs"), "{err}");
        }
    }

    #[test]
    fn biases_on_an_8_bit_grid_round_trip_bit_exact_in_a_byte_each() {
        let mut plain = random_model(3, 0.05);
        for layer in &mut plain.layers {
            // A negative bias and a pruned one among them: zero must stay exactly zero.
            layer.bias[0] = -0.02;
            layer.bias[1] = 0.0;
        }
        let mut gridded = plain.clone();
        for layer in &mut gridded.layers {
            let (grid, values) = BiasGrid::fit(&layer.bias);
            layer.bias = values;
            layer.bias_grid = Some(grid);
        }
        let (bytes, layout) = file_bytes(&gridded);
        let back = from_bytes(&bytes).unwrap();
        assert_eq!(back.model, gridded);
        for (g, p) in gridded.layers.iter().zip(&plain.layers) {
            assert_eq!(g.bias[1], 0.0);
            let half_step = g.bias_grid.unwrap().scale / 2.0;
            for (a, b) in g.bias.iter().zip(&p.bias) {
                assert!((a - b).abs() <= half_step * 1.001, "{a} vs {b}");
            }
        }
        // Each layer's biases shrink from 4 bytes each to a scale, a zero point and a byte each.
        let (_, plain_layout) = file_bytes(&plain);
        for (l, layer) in plain.layers.iter().enumerate() {
            let b = layer.bias.len();
            assert_eq!(
                plain_layout.section_bytes[l] - layout.section_bytes[l],
                4 * b - (5 + b)
            );
        }
        assert_eq!(metadata_json(&bytes)["layers"][0]["bias_bits"], 8);
        assert!(
            metadata_json(&file_bytes(&plain).0)["layers"][0]
                .get("bias_bits")
                .is_none()
        );
        // Another width is not a layout a reader knows.
        let other = with_metadata(&bytes, |m| m["layers"][1]["bias_bits"] = 16.into());
        let err = from_bytes(&other).unwrap_err();
        assert!(err.contains("fc2") && err.contains("bias_bits 16"), "{err}");
    }

    #[test]
    fn every_quantizer_round_trips_bit_exact_and_its_section_holds_its_parameters() {
        let cases = [
            (Quantizer::Uniform, 8, false),
            (Quantizer::Uniform, 4, true),
            (Quantizer::Symmetric, 2, false),
            (Quantizer::Symmetric, 8, true),
            (Quantizer::Binary, 1, false),
            (Quantizer::Binary, 1, true),
            (Quantizer::Ternary, 1, true),
        ];
        for (i, &(q, bits, per_channel)) in cases.iter().enumerate() {
            let model = grid_model(i as u64, q, bits, per_channel);
            let (bytes, layout) = file_bytes(&model);
            assert_eq!(layout.total(), bytes.len());
            let back = from_bytes(&bytes).unwrap();
            assert_eq!(back.model, model, "{q:?} {bits} per channel {per_channel}");
            for (a, b) in back.model.layers.iter().zip(&model.layers) {
                let (x, y) = (a.dense_weights(), b.dense_weights());
                assert!(x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()));
                // The grid's parameters, not its levels, are what the section stores.
                let groups = if per_channel { b.shape[0] } else { 1 };
                let per_group = if q.fixed_bits().is_some() { 4 } else { 5 };
                assert_eq!(b.level_bytes(), per_group * groups);
            }
        }
    }

    #[test]
    fn a_grid_section_with_a_bad_parameter_is_refused() {
        let mut model = grid_model(1, Quantizer::Uniform, 4, false);
        let Some(GridParams::Affine { scales, .. }) = &mut model.layers[0].grid else {
            panic!()
        };
        scales[0] = -1.0;
        let (bytes, _) = file_bytes(&model);
        let err = from_bytes(&bytes).unwrap_err();
        assert!(err.contains("conv1") && err.contains("scale -1"), "{err}");
        let mut model = grid_model(1, Quantizer::Uniform, 4, false);
        let Some(GridParams::Affine { zero_points, .. }) = &mut model.layers[1].grid else {
            panic!()
        };
        zero_points[0] = 16;
        let (bytes, _) = file_bytes(&model);
        let err = from_bytes(&bytes).unwrap_err();
        assert!(err.contains("zero point 16"), "{err}");
    }

    fn file_bytes(model: &CompressedModel) -> (Vec<u8>, DczLayout) {
        let enc: Vec<_> = model
            .layers
            .iter()
            .map(|l| encode_layer(l, 16).unwrap())
            .collect();
        to_bytes(model, &enc)
    }

    /// `model` with every layer input on a `bits`-bit grid of awkward f32 scales.
    fn with_activations(mut model: CompressedModel, bits: u8) -> CompressedModel {
        let grids = (0..model.layers.len())
            .map(|l| ActGrid {
                bits,
                scale: [0.123_456_79f32, 3.3e-5, 17.25, 1.0 / 3.0][l % 4],
                zero_point: (l as u8 * 5) % (1 << bits),
            })
            .collect();
        model.activations = Some(ActivationQuant {
            bits,
            calibration: Calibration::Percentile(99.99),
            images: 300,
            grids,
        });
        model
    }

    /// The metadata JSON of a written file.
    fn metadata_json(bytes: &[u8]) -> serde_json::Value {
        let len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
        serde_json::from_slice(&inflate_metadata(&bytes[8..8 + len]).unwrap()).unwrap()
    }

    #[test]
    fn activation_grids_round_trip_bit_exact_after_the_layer_count() {
        let plain = grid_model(3, Quantizer::Uniform, 4, true);
        let (plain_bytes, plain_layout) = file_bytes(&plain);
        // Without activations the metadata has no such key: the files are as they were.
        assert!(metadata_json(&plain_bytes).get("activations").is_none());
        for bits in [2u8, 4, 8] {
            let model = with_activations(plain.clone(), bits);
            let (bytes, layout) = file_bytes(&model);
            let back = from_bytes(&bytes).unwrap();
            assert_eq!(back.model, model);
            let (a, b) = (back.model.activations.unwrap(), model.activations.unwrap());
            for (x, y) in a.grids.iter().zip(&b.grids) {
                assert_eq!(x.scale.to_bits(), y.scale.to_bits());
                assert_eq!((x.bits, x.zero_point), (y.bits, y.zero_point));
            }
            assert_eq!(
                metadata_json(&bytes)["activations"],
                serde_json::json!({"bits": bits, "calibration": "99.99", "images": 300})
            );
            // The grids are 6 bytes per layer in the header; the sections are untouched.
            assert_eq!(layout.section_bytes, plain_layout.section_bytes);
            let meta_len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
            assert_eq!(layout.header_bytes, 4 + 4 + meta_len + 2 + 6 * 4);
            let grids = &bytes[4 + 4 + meta_len + 2..layout.header_bytes];
            assert_eq!(grids[0], bits);
            assert_eq!(grids[1..5], 0.123_456_79f32.to_le_bytes());
            let tail = plain_bytes.len() - TRAILER;
            assert_eq!(
                bytes[layout.header_bytes..bytes.len() - TRAILER],
                plain_bytes[plain_layout.header_bytes..tail]
            );
        }
    }

    #[test]
    fn malformed_activation_grids_are_refused_naming_the_layer() {
        let base = with_activations(grid_model(4, Quantizer::Uniform, 4, false), 4);
        type Change = fn(&mut ActivationQuant);
        let cases: [(&str, Change, &str); 7] = [
            (
                "zero scale",
                |a| a.grids[1].scale = 0.0,
                "conv2's input: scale 0",
            ),
            (
                "negative scale",
                |a| a.grids[0].scale = -2.0,
                "conv1's input: scale -2",
            ),
            (
                "NaN scale",
                |a| a.grids[2].scale = f32::NAN,
                "fc1's input entry 0 is NaN",
            ),
            (
                "infinite",
                |a| a.grids[3].scale = f32::INFINITY,
                "fc2's input entry 0 is inf",
            ),
            (
                "zero point",
                |a| a.grids[1].zero_point = 16,
                "zero point 16 outside the 4-bit",
            ),
            (
                "bits",
                |a| a.grids[2].bits = 3,
                "fc1's input: 3 bits, the metadata says 4",
            ),
            (
                "width",
                |a| {
                    a.bits = 9;
                    a.grids.iter_mut().for_each(|g| g.bits = 9);
                },
                "activations.bits 9 is out of range 2..=8",
            ),
        ];
        for (what, change, want) in cases {
            let mut model = base.clone();
            change(model.activations.as_mut().unwrap());
            let (bytes, _) = file_bytes(&model);
            let err = from_bytes(&bytes).unwrap_err();
            assert!(err.contains(want), "{what}: {err}");
        }
        let mut none = base.clone();
        none.activations.as_mut().unwrap().images = 0;
        let err = from_bytes(&file_bytes(&none).0).unwrap_err();
        assert!(err.contains("activations.images"), "{err}");
        // Grids cut short: the reader says so instead of reading sections as grids.
        let (bytes, layout) = file_bytes(&base);
        let mut cut = bytes[..layout.header_bytes - 3].to_vec();
        cut.extend_from_slice(&[0; TRAILER]);
        let err = from_bytes(&reseal(cut)).unwrap_err();
        assert!(
            err.contains("fc2's input") || err.contains("truncated"),
            "{err}"
        );
    }

    /// A small network as an experiment defines it, in the metadata's form (a stride of 1, a
    /// max-pool's size and a zero padding are left out, as the writer leaves them out).
    fn tiny_lenet_stages() -> serde_json::Value {
        serde_json::json!([
            {"type": "conv", "name": "conv1", "outputs": 3, "kernel": 5},
            {"type": "relu"},
            {"type": "max-pool"},
            {"type": "conv", "name": "conv2", "outputs": 4, "kernel": 3, "padding": 1},
            {"type": "max-pool"},
            {"type": "flatten"},
            {"type": "fc", "name": "fc1", "outputs": 16},
            {"type": "relu"},
            {"type": "fc", "name": "fc2", "outputs": 10},
        ])
    }

    /// The same with its second convolution at stride 2 instead of the pool after it.
    fn strided_stages() -> serde_json::Value {
        serde_json::json!([
            {"type": "conv", "name": "conv1", "outputs": 3, "kernel": 5},
            {"type": "relu"},
            {"type": "max-pool"},
            {"type": "conv", "name": "conv2", "outputs": 4, "kernel": 3, "padding": 1, "stride": 2},
            {"type": "flatten"},
            {"type": "fc", "name": "fc1", "outputs": 16},
            {"type": "relu"},
            {"type": "fc", "name": "fc2", "outputs": 10},
        ])
    }

    /// That network with random sparse k-means layers.
    fn defined_model(seed: u64) -> CompressedModel {
        model_of("tiny-lenet", tiny_lenet_stages(), seed)
    }

    /// The network of `stages` with random sparse k-means layers.
    fn model_of(name: &str, stages: serde_json::Value, seed: u64) -> CompressedModel {
        let spec: NetworkSpec = serde_json::from_value(serde_json::json!({
            "name": name,
            "layers": stages,
        }))
        .unwrap();
        let arch = spec.to_arch().unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let layers = arch
            .layers
            .iter()
            .map(|spec| {
                let positions: Vec<u32> = (0..spec.weight_count() as u32)
                    .filter(|_| rng.random_bool(0.3))
                    .collect();
                CompressedLayer {
                    name: spec.name.to_string(),
                    kind: spec.kind,
                    shape: spec.weight_shape(),
                    bits: 3,
                    index_bits: 4,
                    quantizer: Quantizer::KMeans,
                    codebook: (0..8).map(|j| j as f32 * 0.02 - 0.07).collect(),
                    grid: None,
                    assignments: positions.iter().map(|_| rng.random_range(0..8)).collect(),
                    positions,
                    bias: (0..spec.bias_count()).map(|j| j as f32 * 1e-3).collect(),
                    bias_grid: None,
                    units: None,
                }
            })
            .collect();
        CompressedModel {
            arch,
            experiment: "name = \"t\"".into(),
            layers,
            activations: None,
        }
    }

    /// `bytes` with its metadata JSON changed by `change`, deflated and sealed again.
    fn with_metadata(bytes: &[u8], change: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
        let mut meta = metadata_json(bytes);
        change(&mut meta);
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&serde_json::to_vec(&meta).unwrap()).unwrap();
        let deflated = z.finish().unwrap();
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(deflated.len() as u32).to_le_bytes());
        out.extend_from_slice(&deflated);
        out.extend_from_slice(&bytes[8 + len..]);
        reseal(out)
    }

    #[test]
    fn a_defined_network_is_written_as_its_stages_and_read_back() {
        let model = defined_model(5);
        let (bytes, _) = file_bytes(&model);
        let meta = metadata_json(&bytes);
        assert_eq!(meta["model"], "tiny-lenet");
        assert_eq!(meta["network"], tiny_lenet_stages());
        assert_eq!(from_bytes(&bytes).unwrap().model, model);
        // A stride other than 1 is written, and read back into the same geometry (conv2:
        // 12 -> 6, so fc1 reads 4 x 6 x 6).
        let strided = model_of("tiny-strided", strided_stages(), 5);
        assert_eq!(strided.arch.layers[1].stride, 2);
        assert_eq!(strided.arch.layers[2].inputs, 144);
        let (bytes, _) = file_bytes(&strided);
        let meta = metadata_json(&bytes);
        assert_eq!(meta["network"], strided_stages());
        assert_eq!(from_bytes(&bytes).unwrap().model, strided);
    }

    #[test]
    fn a_built_in_is_named_and_its_stages_written_so_the_file_alone_runs_it() {
        let model = random_model(1, 0.1);
        let (bytes, _) = file_bytes(&model);
        let meta = metadata_json(&bytes);
        assert_eq!(meta["model"], "lenet-300-100");
        assert_eq!(
            meta["network"],
            serde_json::json!([
                {"type": "flatten"}, {"type": "fc", "name": "fc1", "outputs": 300},
                {"type": "relu"}, {"type": "fc", "name": "fc2", "outputs": 100},
                {"type": "relu"}, {"type": "fc", "name": "fc3", "outputs": 10}
            ])
        );
        let read = from_bytes(&bytes).unwrap().model;
        assert_eq!(read, model);
        assert_eq!(read.arch.builtin, Some(ModelKind::Lenet300100));
        // Files written before the stages were: the name alone means the built-in's.
        let named_only = with_metadata(&bytes, |m| {
            m.as_object_mut().unwrap().remove("network");
        });
        assert_eq!(from_bytes(&named_only).unwrap().model, model);
        // A built-in's name with other stages would run another network under its name.
        let other = with_metadata(&bytes, |m| {
            m["network"].as_array_mut().unwrap().remove(2);
        });
        let err = from_bytes(&other).unwrap_err();
        assert!(
            err.contains("model 'lenet-300-100' is a built-in network: its network must be the built-in's stages"),
            "{err}"
        );
    }

    #[test]
    fn a_network_the_file_cannot_hold_or_that_its_layers_contradict_is_refused() {
        let (bytes, _) = file_bytes(&defined_model(6));
        type Change = fn(&mut serde_json::Value);
        fn stages(m: &mut serde_json::Value) -> &mut Vec<serde_json::Value> {
            m["network"].as_array_mut().unwrap()
        }
        let cases: [(&str, Change, &str); 11] = [
            (
                "batch-norm",
                |m| stages(m).insert(1, serde_json::json!({"type": "batch-norm"})),
                "metadata: network[1]: a batch-norm stage; a file holds the network inference runs",
            ),
            (
                "dropout",
                |m| stages(m).insert(8, serde_json::json!({"type": "dropout", "p": 0.5})),
                "metadata: network[8]: a dropout stage",
            ),
            (
                "more filters than the layer has",
                |m| stages(m)[0]["outputs"] = 5.into(),
                "layer conv1 (Conv [3, 1, 5, 5]) does not match tiny-lenet's conv1 (Conv [5, 1, 5, 5])",
            ),
            (
                "padding lost: fc1 gets fewer inputs",
                |m| {
                    stages(m)[3].as_object_mut().unwrap().remove("padding");
                },
                "layer fc1 (Fc [16, 144]) does not match tiny-lenet's fc1 (Fc [16, 100])",
            ),
            (
                "a layer the sections do not have",
                |m| {
                    let fc = serde_json::json!({"type": "fc", "name": "fc0", "outputs": 16});
                    stages(m).insert(6, fc)
                },
                "tiny-lenet has 5 layers, the file describes 4 and holds 4",
            ),
            (
                "no classifier at the end",
                |m| {
                    stages(m).pop();
                },
                "metadata: network: the last stage must be an fc layer with 10 outputs",
            ),
            (
                "a flatten missing",
                |m| {
                    stages(m).remove(5);
                },
                "metadata: network[5]: fc layer 'fc1': its input is an image (4x6x6)",
            ),
            (
                "a stride the layers were not made with: fc1 gets fewer inputs",
                |m| stages(m)[0]["stride"] = 2.into(),
                "layer fc1 (Fc [16, 144]) does not match tiny-lenet's fc1 (Fc [16, 36])",
            ),
            (
                "a stride of 0",
                |m| stages(m)[3]["stride"] = 0.into(),
                "metadata: network[3]: 'conv2': stride 0 on its 12x12 input with padding 1: must be 1..=14",
            ),
            (
                "a key no stage has",
                |m| stages(m)[1]["slope"] = 0.1.into(),
                "unknown field `slope`",
            ),
            (
                "a built-in's name",
                |m| m["model"] = "lenet-5".into(),
                "metadata: model 'lenet-5' is a built-in network",
            ),
        ];
        for (what, change, want) in cases {
            let err = from_bytes(&with_metadata(&bytes, change)).unwrap_err();
            assert!(err.contains(want), "{what}: {err}\n  want: {want}");
        }
        // The helper changes nothing else: the file unchanged through it reads.
        assert!(from_bytes(&with_metadata(&bytes, |_| {})).is_ok());
    }

    /// Re-seals a mutated body so the reader gets past the checksum into the parser.
    fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
        if bytes.len() < TRAILER {
            return bytes;
        }
        let n = bytes.len() - TRAILER;
        let digest = Sha256::digest(&bytes[..n]);
        bytes[n..].copy_from_slice(&digest[..TRAILER]);
        bytes
    }

    #[test]
    fn write_read_decode_is_bit_exact() {
        for keep in [0.0, 0.02, 0.1, 1.0] {
            let model = random_model(1, keep);
            let (bytes, layout) = file_bytes(&model);
            assert_eq!(layout.total(), bytes.len());
            let enc: Vec<_> = model
                .layers
                .iter()
                .map(|l| encode_layer(l, 16).unwrap())
                .collect();
            let predicted: usize = model
                .layers
                .iter()
                .zip(&enc)
                .map(|(l, e)| section_bytes(l, e))
                .sum::<usize>()
                + overhead_bytes(&model);
            assert_eq!(predicted, bytes.len());
            let back = from_bytes(&bytes).unwrap();
            assert_eq!(back.model, model, "keep {keep}");
            assert_eq!(back.layout, layout);
            for (a, b) in back.model.layers.iter().zip(&model.layers) {
                let (da, db) = (a.dense_weights(), b.dense_weights());
                assert!(da.iter().zip(&db).all(|(x, y)| x.to_bits() == y.to_bits()));
            }
        }
    }

    #[test]
    fn a_dense_layer_stores_no_gaps_and_a_sparse_one_cannot_claim_none() {
        let model = random_model(4, 1.0);
        let enc = encode_layer(&model.layers[2], 16).unwrap();
        assert_eq!((enc.gap_symbols, enc.gap_stream.len()), (0, 0));
        let (bytes, layout) = file_bytes(&model);
        assert_eq!(from_bytes(&bytes).unwrap().model, model);
        // fc3's G field, set from 0 to 1, or its N lowered below the weights with G = 0:
        // both refused.
        let fc3 = layout.header_bytes + layout.section_bytes[0] + layout.section_bytes[1];
        let (n_at, g_at) = (fc3 + 4 + 2, fc3 + 4 + 6);
        let mut more = bytes.clone();
        more[g_at] = 1;
        assert!(from_bytes(&reseal(more)).is_err());
        let mut fewer = bytes.clone();
        fewer[n_at] = fewer[n_at].wrapping_sub(1);
        let err = from_bytes(&reseal(fewer)).unwrap_err();
        assert!(err.contains("fc3"), "{err}");
    }

    #[test]
    fn corruption_is_a_clear_error() {
        let (mut bytes, _) = file_bytes(&random_model(2, 0.05));
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        assert!(from_bytes(&bytes).unwrap_err().contains("checksum"));
        assert!(
            from_bytes(b"PK\x03\x04 zip file")
                .unwrap_err()
                .contains("magic")
        );
        let (bytes, _) = file_bytes(&random_model(2, 0.05));
        let err = from_bytes(&bytes[..bytes.len() - 100]).unwrap_err();
        assert!(
            err.contains("checksum") || err.contains("truncated"),
            "{err}"
        );
    }

    #[test]
    fn the_metadata_names_a_quantizer_only_when_it_is_not_k_means() {
        let model = random_model(7, 0.05);
        let (bytes, layout) = file_bytes(&model);
        let meta_len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
        let json = inflate_metadata(&bytes[8..8 + meta_len]).unwrap();
        let text = String::from_utf8(json).unwrap();
        assert!(!text.contains("quantizer"), "{text}");
        assert_eq!(layout.header_bytes, header_bytes(&model));
        // A reader takes the key when it is there, and refuses one it does not know.
        let named = text.replacen("\"shape\"", "\"quantizer\":\"kmeans\",\"shape\"", 1);
        let meta: Metadata = serde_json::from_str(&named).unwrap();
        assert_eq!(meta.layers[0].quantizer, Quantizer::KMeans);
        let unknown = text.replacen("\"shape\"", "\"quantizer\":\"int3\",\"shape\"", 1);
        let err = serde_json::from_str::<Metadata>(&unknown)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("int3"), "{err}");
    }

    #[test]
    fn a_stream_with_an_extra_byte_or_a_set_padding_bit_is_refused() {
        let model = random_model(8, 0.05);
        let enc: Vec<_> = model
            .layers
            .iter()
            .map(|l| encode_layer(l, 16).unwrap())
            .collect();
        let (good, _) = to_bytes(&model, &enc);
        assert!(from_bytes(&good).is_ok());
        // One more byte in the first layer's gap stream.
        let mut extra = enc.clone();
        extra[0].gap_stream.push(0);
        let err = from_bytes(&to_bytes(&model, &extra).0).unwrap_err();
        assert!(
            err.contains("gap stream") && err.contains("after the last symbol"),
            "{err}"
        );
        // A set padding bit in the weight stream (its bits do not fill the last byte here).
        let l = (0..enc.len())
            .find(|&l| enc[l].weight_stream_bits % 8 != 0)
            .expect("some stream has padding");
        let mut padded = enc.clone();
        *padded[l].weight_stream.last_mut().unwrap() |= 1;
        let err = from_bytes(&to_bytes(&model, &padded).0).unwrap_err();
        assert!(err.contains("padding bits"), "{err}");
    }

    #[test]
    fn nan_and_inf_never_enter_or_leave_a_file() {
        // A crafted file: a NaN codebook entry and a recomputed checksum.
        let mut model = random_model(6, 0.05);
        model.layers[1].codebook[3] = f32::NAN;
        let (bytes, _) = file_bytes(&model);
        let err = from_bytes(&bytes).unwrap_err();
        assert!(err.contains("codebook entry 3 is NaN"), "{err}");
        let mut model = random_model(6, 0.05);
        model.layers[2].bias[0] = f32::INFINITY;
        let err = from_bytes(&file_bytes(&model).0).unwrap_err();
        assert!(err.contains("biases entry 0 is inf"), "{err}");
        // The writer refuses before writing, with the reason, and leaves nothing behind.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.dcz");
        let (bytes, _) = file_bytes(&model);
        let err = save_checked(&p, &bytes, &model).unwrap_err().to_string();
        assert!(
            err.contains("m.dcz") && err.contains("fc3 bias entry 0 is inf"),
            "{err}"
        );
        assert!(!p.exists());
    }

    #[test]
    fn save_and_load_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.dcz");
        std::fs::write(&p, b"DCZ\x01garbage garbage").unwrap();
        let err = load(&p).unwrap_err().to_string();
        assert!(
            err.contains("bad.dcz") && err.contains("not a valid .dcz"),
            "{err}"
        );
        let model = random_model(3, 0.1);
        let (bytes, _) = file_bytes(&model);
        let good = dir.path().join("good.dcz");
        save(&good, &bytes).unwrap();
        assert_eq!(load(&good).unwrap().model, model);
    }

    #[test]
    fn the_size_figures_are_the_written_bytes() {
        // Formerly a debug assertion, which release builds (all of dcx's) never ran.
        for (seed, keep) in [(1, 0.0), (2, 0.001), (3, 0.05), (4, 0.5), (5, 1.0)] {
            let model = random_model(seed, keep);
            let enc: Vec<_> = model
                .layers
                .iter()
                .map(|l| encode_layer(l, 16).unwrap())
                .collect();
            let (bytes, layout) = to_bytes(&model, &enc);
            assert_eq!(layout.total(), bytes.len());
            assert_eq!(
                layout.header_bytes + layout.trailer_bytes,
                overhead_bytes(&model)
            );
            for ((l, e), &s) in model.layers.iter().zip(&enc).zip(&layout.section_bytes) {
                assert_eq!(section_bytes(l, e), s, "seed {seed} keep {keep} {}", l.name);
            }
            // And each section's length field says the same.
            let mut at = layout.header_bytes;
            for &s in &layout.section_bytes {
                let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
                assert_eq!(4 + len, s);
                at += s;
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::testing::fuzz_cases(2000)))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&bytes);
            let _ = from_bytes(&bytes);
            let _ = from_bytes(&reseal(with_magic));
        }

        #[test]
        fn mutated_and_truncated_files_never_panic(
            cut in 0usize..4000,
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
            thinned in any::<bool>(),
        ) {
            // Also a file with the optional parts: kept-unit strings and biases on grids.
            let model = if thinned {
                let mut model = thinned_model(4);
                for layer in &mut model.layers {
                    let (grid, values) = BiasGrid::fit(&layer.bias);
                    layer.bias = values;
                    layer.bias_grid = Some(grid);
                }
                model
            } else {
                random_model(4, 0.01)
            };
            let (bytes, _) = file_bytes(&model);
            let mut m = bytes.clone();
            for (at, x) in flips {
                let i = at % m.len();
                m[i] ^= x;
            }
            let m = reseal(m);
            let _ = from_bytes(&m);
            let t = reseal(bytes[..bytes.len().saturating_sub(cut)].to_vec());
            let _ = from_bytes(&t);
        }
    }
}
