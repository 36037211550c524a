//! Networks as data: the list of stages an experiment file writes under `[model]`, checked and
//! turned into an [`Arch`]. The three built-in networks are such lists too.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::arch::{Arch, LayerKind, LayerSpec, ModelKind, NormSpec, Stage};

/// Bounds that keep a hostile or mistyped file from asking for unbounded memory.
const MAX_STAGES: usize = 64;
const MAX_UNITS: usize = 1 << 16;
const MAX_WEIGHTS: usize = 32 << 20;
const CLASSES: usize = 10;

/// A network: a name and its stages in order. The input is one 28x28 MNIST image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    pub name: String,
    pub layers: Vec<StageSpec>,
}

fn one() -> usize {
    1
}
fn two() -> usize {
    2
}
fn is_zero(v: &usize) -> bool {
    *v == 0
}
fn is_one(v: &usize) -> bool {
    *v == 1
}
fn is_two(v: &usize) -> bool {
    *v == 2
}

/// One stage, as written: `{ type = "conv", name = "conv1", outputs = 20, kernel = 5 }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum StageSpec {
    Conv {
        name: String,
        outputs: usize,
        kernel: usize,
        #[serde(default, skip_serializing_if = "is_zero")]
        padding: usize,
        #[serde(default = "one", skip_serializing_if = "is_one")]
        stride: usize,
    },
    Fc {
        name: String,
        outputs: usize,
    },
    Relu {},
    MaxPool {
        #[serde(default = "two", skip_serializing_if = "is_two")]
        size: usize,
    },
    Flatten {},
    BatchNorm {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    Dropout {
        p: f64,
    },
}

impl StageSpec {
    fn conv(name: &str, outputs: usize, kernel: usize, padding: usize) -> StageSpec {
        StageSpec::strided_conv(name, outputs, kernel, padding, 1)
    }

    fn strided_conv(
        name: &str,
        outputs: usize,
        kernel: usize,
        padding: usize,
        stride: usize,
    ) -> StageSpec {
        StageSpec::Conv {
            name: name.to_string(),
            outputs,
            kernel,
            padding,
            stride,
        }
    }

    fn fc(name: &str, outputs: usize) -> StageSpec {
        StageSpec::Fc {
            name: name.to_string(),
            outputs,
        }
    }
}

/// What a stage receives: channels of a square image, or a flat vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Image { channels: usize, side: usize },
    Flat(usize),
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Shape::Image { channels, side } => write!(f, "{channels}x{side}x{side}"),
            Shape::Flat(n) => write!(f, "{n} values"),
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl NetworkSpec {
    /// A built-in network's stages.
    pub fn builtin(kind: ModelKind) -> NetworkSpec {
        use StageSpec::*;
        let layers = match kind {
            ModelKind::Lenet300100 => vec![
                Flatten {},
                StageSpec::fc("fc1", 300),
                Relu {},
                StageSpec::fc("fc2", 100),
                Relu {},
                StageSpec::fc("fc3", 10),
            ],
            // Caffe's LeNet: no non-linearity after the convolutions.
            ModelKind::Lenet5 => vec![
                StageSpec::conv("conv1", 20, 5, 0),
                MaxPool { size: 2 },
                StageSpec::conv("conv2", 50, 5, 0),
                MaxPool { size: 2 },
                Flatten {},
                StageSpec::fc("fc1", 500),
                Relu {},
                StageSpec::fc("fc2", 10),
            ],
            ModelKind::CourseCnn => vec![
                StageSpec::conv("conv1", 64, 3, 1),
                Relu {},
                MaxPool { size: 2 },
                StageSpec::conv("conv2", 256, 3, 1),
                Relu {},
                MaxPool { size: 2 },
                Flatten {},
                StageSpec::fc("fc1", 512),
                Relu {},
                StageSpec::fc("fc2", 10),
            ],
        };
        NetworkSpec {
            name: kind.name().to_string(),
            layers,
        }
    }

    /// Checks the stages against each other and the 28x28 input and builds the network.
    /// `Err` names the stage (by position and name) and what is wrong with it.
    pub fn to_arch(&self) -> Result<Arch, String> {
        self.checked("name", "layers")
    }

    /// [`NetworkSpec::to_arch`] for a network read from a `.dcz` file, whose metadata keeps
    /// the name in `model` and the stages in `network`: errors use those keys.
    pub(crate) fn to_arch_from_file(&self) -> Result<Arch, String> {
        self.checked("model", "network")
    }

    /// `name_key` and `stages_key`: what the text being read calls the name and the stages.
    fn checked(&self, name_key: &str, stages_key: &str) -> Result<Arch, String> {
        if !valid_name(&self.name) {
            return Err(format!(
                "{name_key}: '{}' must be 1 to 64 letters, digits, '-', '_' or '.'",
                self.name
            ));
        }
        let builtin = self.name.parse::<ModelKind>().ok();
        if let Some(kind) = builtin
            && *self != NetworkSpec::builtin(kind)
        {
            return Err(format!(
                "{name_key}: '{}' is a built-in network; give yours another name (or write model = \"{}\")",
                self.name, self.name
            ));
        }
        if self.layers.is_empty() || self.layers.len() > MAX_STAGES {
            return Err(format!(
                "{stages_key}: a network has 1 to {MAX_STAGES} stages, this one {}",
                self.layers.len()
            ));
        }
        let mut layers: Vec<LayerSpec> = Vec::new();
        let mut norms: Vec<NormSpec> = Vec::new();
        let mut stages = Vec::with_capacity(self.layers.len());
        let mut shape = Shape::Image {
            channels: 1,
            side: 28,
        };
        let mut names: Vec<String> = Vec::new();
        let mut weights = 0usize;
        for (i, stage) in self.layers.iter().enumerate() {
            let at = |what: String| format!("{stages_key}[{i}]: {what}");
            let mut take_name = |name: &str| -> Result<(), String> {
                if !valid_name(name) {
                    return Err(at(format!(
                        "name '{name}' must be 1 to 64 letters, digits, '-', '_' or '.'"
                    )));
                }
                if names.iter().any(|n| n == name) {
                    return Err(at(format!("name '{name}' is used twice")));
                }
                names.push(name.to_string());
                Ok(())
            };
            if i == 0 && !matches!(stage, StageSpec::Conv { .. } | StageSpec::Flatten {}) {
                return Err(at(
                    "a network starts with a conv layer (on the image) or a flatten (for fc layers)"
                        .into(),
                ));
            }
            let units = |outputs: usize| {
                if (1..=MAX_UNITS).contains(&outputs) {
                    Ok(())
                } else {
                    Err(at(format!(
                        "outputs: must be 1 to {MAX_UNITS}, got {outputs}"
                    )))
                }
            };
            match stage {
                StageSpec::Conv {
                    name,
                    outputs,
                    kernel,
                    padding,
                    stride,
                } => {
                    take_name(name)?;
                    units(*outputs)?;
                    let Shape::Image { channels, side } = shape else {
                        return Err(at(format!(
                            "conv layer '{name}' after a flatten: its input is {shape}, not an image"
                        )));
                    };
                    if *kernel == 0 || 2 * padding >= *kernel || *kernel > side + 2 * padding {
                        return Err(at(format!(
                            "'{name}': kernel {kernel} with padding {padding} does not fit its {side}x{side} input (kernel 1..={}, padding at most half the kernel less one)",
                            side + 2 * padding
                        )));
                    }
                    // Past the padded side every stride gives the same 1x1 output: a larger
                    // one is a mistake, not another network.
                    if *stride == 0 || *stride > side + 2 * padding {
                        return Err(at(format!(
                            "'{name}': stride {stride} on its {side}x{side} input with padding {padding}: must be 1..={}",
                            side + 2 * padding
                        )));
                    }
                    let layer = LayerSpec {
                        name: name.clone(),
                        kind: LayerKind::Conv,
                        inputs: channels,
                        outputs: *outputs,
                        kernel: *kernel,
                        padding: *padding,
                        stride: *stride,
                    };
                    let out = layer
                        .output_side(side)
                        .ok_or_else(|| at(format!("'{name}': its output would be empty")))?;
                    layers.push(layer);
                    shape = Shape::Image {
                        channels: *outputs,
                        side: out,
                    };
                }
                StageSpec::Fc { name, outputs } => {
                    take_name(name)?;
                    units(*outputs)?;
                    let Shape::Flat(inputs) = shape else {
                        return Err(at(format!(
                            "fc layer '{name}': its input is an image ({shape}); put {{ type = \"flatten\" }} before it"
                        )));
                    };
                    layers.push(LayerSpec {
                        name: name.clone(),
                        kind: LayerKind::Fc,
                        inputs,
                        outputs: *outputs,
                        kernel: 1,
                        padding: 0,
                        stride: 1,
                    });
                    shape = Shape::Flat(*outputs);
                }
                StageSpec::Relu {} => {}
                StageSpec::MaxPool { size } => {
                    let Shape::Image { channels, side } = shape else {
                        return Err(at(format!(
                            "max-pool after a flatten: its input is {shape}"
                        )));
                    };
                    if *size != 2 {
                        return Err(at(format!(
                            "max-pool size {size} is not supported: pooling is 2x2 with stride 2"
                        )));
                    }
                    if side % 2 != 0 {
                        return Err(at(format!(
                            "max-pool of a {side}x{side} image: 2x2 pooling needs an even side (change a kernel or padding before it)"
                        )));
                    }
                    shape = Shape::Image {
                        channels,
                        side: side / 2,
                    };
                }
                StageSpec::Flatten {} => {
                    let Shape::Image { channels, side } = shape else {
                        return Err(at("a second flatten: the input is already flat".into()));
                    };
                    shape = Shape::Flat(channels * side * side);
                }
                StageSpec::BatchNorm { name } => {
                    let layer = match self.layers.get(i.wrapping_sub(1)) {
                        Some(StageSpec::Conv { .. } | StageSpec::Fc { .. }) => layers.len() - 1,
                        _ => {
                            return Err(at(
                                "batch-norm comes right after a conv or fc layer (it is folded into that layer for inference)"
                                    .into(),
                            ));
                        }
                    };
                    let name = name
                        .clone()
                        .unwrap_or_else(|| format!("{}.bn", layers[layer].name));
                    take_name(&name)?;
                    stages.push(Stage::BatchNorm(norms.len()));
                    norms.push(NormSpec {
                        name,
                        channels: layers[layer].outputs,
                        layer,
                    });
                    continue;
                }
                StageSpec::Dropout { p } => {
                    if !(0.0..1.0).contains(p) {
                        return Err(at(format!("dropout p: must be in [0, 1), got {p}")));
                    }
                    stages.push(Stage::Dropout(*p as f32));
                    continue;
                }
            }
            stages.push(match stage {
                StageSpec::Conv { .. } | StageSpec::Fc { .. } => Stage::Layer(layers.len() - 1),
                StageSpec::Relu {} => Stage::Relu,
                StageSpec::MaxPool { .. } => Stage::MaxPool2,
                _ => Stage::Flatten,
            });
            if let Some(Stage::Layer(l)) = stages.last() {
                weights = weights.saturating_add(layers[*l].weight_count());
                if weights > MAX_WEIGHTS {
                    return Err(at(format!(
                        "the network has more than {MAX_WEIGHTS} weights; dcx trains on a CPU"
                    )));
                }
            }
        }
        match (self.layers.last(), layers.last()) {
            (Some(StageSpec::Fc { .. }), Some(last)) if last.outputs == CLASSES => {}
            _ => {
                return Err(format!(
                    "{stages_key}: the last stage must be an fc layer with {CLASSES} outputs (one per digit); this network ends in {shape}"
                ));
            }
        }
        Ok(Arch {
            name: self.name.clone(),
            builtin,
            layers,
            norms,
            stages,
        })
    }
}

impl Arch {
    /// The stages as an experiment file writes them (the inverse of [`NetworkSpec::to_arch`]).
    pub fn spec(&self) -> NetworkSpec {
        let layers = self
            .stages
            .iter()
            .map(|&s| match s {
                Stage::Layer(l) => {
                    let spec = &self.layers[l];
                    match spec.kind {
                        LayerKind::Conv => StageSpec::strided_conv(
                            &spec.name,
                            spec.outputs,
                            spec.kernel,
                            spec.padding,
                            spec.stride,
                        ),
                        LayerKind::Fc => StageSpec::fc(&spec.name, spec.outputs),
                    }
                }
                Stage::Relu => StageSpec::Relu {},
                Stage::MaxPool2 => StageSpec::MaxPool { size: 2 },
                Stage::Flatten => StageSpec::Flatten {},
                Stage::BatchNorm(n) => {
                    let norm = &self.norms[n];
                    let default = format!("{}.bn", self.layers[norm.layer].name);
                    StageSpec::BatchNorm {
                        name: (norm.name != default).then(|| norm.name.clone()),
                    }
                }
                Stage::Dropout(p) => StageSpec::Dropout { p: p as f64 },
            })
            .collect();
        NetworkSpec {
            name: self.name.clone(),
            layers,
        }
    }
}

#[cfg(test)]
impl NetworkSpec {
    /// A small network with strided convolutions for the inference engines' tests: a 5x5
    /// stride-2 conv on 8 channels with an even output (the shape the explorer's Winograd
    /// path takes at stride 1), a max-pool after it, and a padded stride-3 conv.
    pub(crate) fn strided_example() -> NetworkSpec {
        use StageSpec::*;
        NetworkSpec {
            name: "strided-example".into(),
            layers: vec![
                StageSpec::conv("conv1", 8, 3, 1),
                Relu {},
                // 28 -> 12
                StageSpec::strided_conv("conv2", 16, 5, 0, 2),
                Relu {},
                // 12 -> 6
                MaxPool { size: 2 },
                // 6 -> 2
                StageSpec::strided_conv("conv3", 12, 3, 1, 3),
                Relu {},
                Flatten {},
                StageSpec::fc("fc1", 32),
                Relu {},
                StageSpec::fc("fc2", 10),
            ],
        }
    }
}

/// The network an experiment names: a built-in by its name (`model = "lenet-5"`), or one it
/// defines (`[model] name = ..., layers = [...]`).
#[derive(Clone, Debug, PartialEq)]
pub enum ModelRef {
    Builtin(ModelKind),
    Defined(NetworkSpec),
}

impl ModelRef {
    /// The network; a defined one must have passed [`NetworkSpec::to_arch`] (experiments
    /// check it when they are read).
    pub fn arch(&self) -> Arch {
        match self {
            ModelRef::Builtin(kind) => kind.arch(),
            ModelRef::Defined(spec) => spec
                .to_arch()
                .expect("a defined network is checked when the experiment is read"),
        }
    }

    /// The network, checked: for references read from a file another program wrote.
    pub fn to_arch(&self) -> Result<Arch, String> {
        match self {
            ModelRef::Builtin(kind) => Ok(kind.arch()),
            ModelRef::Defined(spec) => spec.to_arch(),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            ModelRef::Builtin(kind) => kind.name(),
            ModelRef::Defined(spec) => &spec.name,
        }
    }

    /// The reference that names `arch`: a built-in by name, any other by its stages.
    pub fn of(arch: &Arch) -> ModelRef {
        match arch.builtin {
            Some(kind) => ModelRef::Builtin(kind),
            None => ModelRef::Defined(arch.spec()),
        }
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<ModelKind> for ModelRef {
    fn from(kind: ModelKind) -> ModelRef {
        ModelRef::Builtin(kind)
    }
}

impl Serialize for ModelRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ModelRef::Builtin(kind) => kind.serialize(s),
            ModelRef::Defined(spec) => spec.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ModelRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ModelRef, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ModelRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a built-in network's name, or a table with name and layers")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ModelRef, E> {
                v.parse().map(ModelRef::Builtin).map_err(E::custom)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<ModelRef, A::Error> {
                let spec =
                    NetworkSpec::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                spec.to_arch().map_err(serde::de::Error::custom)?;
                Ok(ModelRef::Defined(spec))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A network in a file is its reference: a built-in's name, or a defined network's stages.
impl Serialize for Arch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ModelRef::of(self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Arch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Arch, D::Error> {
        ModelRef::deserialize(d)?
            .to_arch()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize)]
    struct Holder {
        model: ModelRef,
    }

    fn parse(text: &str) -> Result<ModelRef, String> {
        toml::from_str::<Holder>(text)
            .map(|h| h.model)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn every_builtin_round_trips_through_its_stages() {
        for kind in ModelKind::ALL {
            let arch = kind.arch();
            assert_eq!(arch.builtin, Some(kind));
            assert_eq!(arch.spec(), NetworkSpec::builtin(kind));
            let text = toml::to_string(&Holder {
                model: ModelRef::Defined(arch.spec()),
            })
            .unwrap();
            // A written-out built-in reads back as that built-in.
            assert_eq!(parse(&text).unwrap().arch(), arch, "{text}");
        }
    }

    const QUARTER: &str = r#"
[model]
name = "lenet-5-quarter"
layers = [
  { type = "conv", name = "conv1", outputs = 5, kernel = 5 },
  { type = "batch-norm" },
  { type = "relu" },
  { type = "max-pool" },
  { type = "conv", name = "conv2", outputs = 12, kernel = 5, padding = 1 },
  { type = "max-pool" },
  { type = "flatten" },
  { type = "fc", name = "fc1", outputs = 125 },
  { type = "relu" },
  { type = "dropout", p = 0.25 },
  { type = "fc", name = "fc2", outputs = 10 },
]
"#;

    #[test]
    fn a_defined_network_round_trips_and_infers_its_inputs() {
        let model = parse(QUARTER).unwrap();
        let arch = model.arch();
        assert_eq!(arch.builtin, None);
        let inputs: Vec<usize> = arch.layers.iter().map(|l| l.inputs).collect();
        // 28 -> conv5 24 -> pool 12 -> conv5 pad 1 10 -> pool 5: 12 x 5 x 5.
        assert_eq!(inputs, vec![1, 5, 300, 125]);
        assert_eq!(
            arch.norms,
            vec![NormSpec {
                name: "conv1.bn".into(),
                channels: 5,
                layer: 0
            }]
        );
        assert!(
            arch.relu_follows(0),
            "a ReLU after the batch-norm follows conv1"
        );
        let text = toml::to_string(&Holder {
            model: model.clone(),
        })
        .unwrap();
        assert_eq!(parse(&text).unwrap(), model, "{text}");
        let inference = arch.inference();
        assert!(!inference.trains_differently());
        assert_eq!(inference.layers, arch.layers);
        assert_eq!(inference.stages.len(), arch.stages.len() - 2);
    }

    const STRIDED: &str = r#"
[model]
name = "strided"
layers = [
  { type = "conv", name = "conv1", outputs = 6, kernel = 5, stride = 2 },
  { type = "relu" },
  { type = "conv", name = "conv2", outputs = 8, kernel = 3, padding = 1, stride = 3 },
  { type = "flatten" },
  { type = "fc", name = "fc1", outputs = 10 },
]
"#;

    #[test]
    fn a_strided_network_infers_its_sizes_and_keeps_its_stride() {
        let model = parse(STRIDED).unwrap();
        let arch = model.arch();
        // 28 -> 5x5 stride 2: 12 -> 3x3 pad 1 stride 3: 4, so fc1 sees 8 x 4 x 4.
        assert_eq!(arch.layers[2].inputs, 128);
        let strides: Vec<usize> = arch.layers.iter().map(|l| l.stride).collect();
        assert_eq!(strides, vec![2, 3, 1]);
        assert_eq!(arch.output_pixels(0), 144);
        assert_eq!(arch.output_pixels(1), 16);
        let text = toml::to_string(&Holder {
            model: model.clone(),
        })
        .unwrap();
        assert!(text.contains("stride = 2"), "{text}");
        assert_eq!(parse(&text).unwrap(), model, "{text}");
        // Stride 1 is not written, so networks without strides read and write as before.
        let plain = toml::to_string(&Holder {
            model: ModelRef::Defined(ModelKind::Lenet5.arch().spec()),
        })
        .unwrap();
        assert!(!plain.contains("stride"), "{plain}");
    }

    #[test]
    fn bad_networks_say_which_stage_and_why() {
        let cases = [
            (r#"model = "lenet""#, "unknown model 'lenet'"),
            (
                r#"model = { name = "lenet-5", layers = [{ type = "flatten" }, { type = "fc", name = "fc", outputs = 10 }] }"#,
                "is a built-in network",
            ),
            (
                r#"model = { name = "n", layers = [{ type = "fc", name = "fc", outputs = 10 }] }"#,
                "layers[0]: a network starts with",
            ),
            (
                r#"model = { name = "n", layers = [{ type = "conv", name = "c", outputs = 4, kernel = 3 }, { type = "fc", name = "fc", outputs = 10 }] }"#,
                "layers[1]: fc layer 'fc': its input is an image (4x26x26)",
            ),
            (
                r#"model = { name = "n", layers = [{ type = "conv", name = "c", outputs = 4, kernel = 3, stride = 0 }, { type = "flatten" }, { type = "fc", name = "fc", outputs = 10 }] }"#,
                "layers[0]: 'c': stride 0 on its 28x28 input with padding 0: must be 1..=28",
            ),
            (
                r#"model = { name = "n", layers = [{ type = "conv", name = "c", outputs = 4, kernel = 3, padding = 1, stride = 31 }, { type = "flatten" }, { type = "fc", name = "fc", outputs = 10 }] }"#,
                "layers[0]: 'c': stride 31 on its 28x28 input with padding 1: must be 1..=30",
            ),
            (
                // 28 -> stride-2 3x3 13: an odd side for the pool.
                r#"model = { name = "n", layers = [{ type = "conv", name = "c", outputs = 4, kernel = 3, stride = 2 }, { type = "max-pool" }, { type = "flatten" }, { type = "fc", name = "fc", outputs = 10 }] }"#,
                "layers[1]: max-pool of a 13x13 image",
            ),
            (
                // 28 -> 14 -> 7 -> 3: a 5x5 kernel does not fit 3x3.
                r#"model = { name = "n", layers = [{ type = "conv", name = "a", outputs = 4, kernel = 3, padding = 1, stride = 2 }, { type = "conv", name = "b", outputs = 4, kernel = 3, padding = 1, stride = 2 }, { type = "conv", name = "c", outputs = 4, kernel = 3, stride = 2 }, { type = "conv", name = "d", outputs = 4, kernel = 5 }, { type = "flatten" }, { type = "fc", name = "fc", outputs = 10 }] }"#,
                "layers[3]: 'd': kernel 5 with padding 0 does not fit its 3x3 input",
            ),
            (
                r#"model = { name = "n", layers = [{ type = "conv", name = "c", outputs = 4, kernel = 3 }, { type = "max-pool" }, { type = "max-pool" }, { type = "flatten" }, { type = "fc", name = "fc", outputs = 10 }] }"#,
                "layers[2]: max-pool of a 13x13 image",
            ),
            (
                r#"model = { name = "n", layers = [{ type = "flatten" }, { type = "fc", name = "fc", outputs = 10 }, { type = "relu" }, { type = "batch-norm" }] }"#,
                "layers[3]: batch-norm comes right after",
            ),
            (
                r#"model = { name = "n", layers = [{ type = "flatten" }, { type = "fc", name = "a", outputs = 10 }, { type = "fc", name = "a", outputs = 10 }] }"#,
                "layers[2]: name 'a' is used twice",
            ),
            (
                r#"model = { name = "n", layers = [{ type = "flatten" }, { type = "fc", name = "a", outputs = 12 }] }"#,
                "the last stage must be an fc layer with 10 outputs",
            ),
            (
                r#"model = { name = "n", layers = [{ type = "flatten" }, { type = "fc", name = "a", outputs = 65536 }, { type = "fc", name = "b", outputs = 65536 }, { type = "fc", name = "c", outputs = 10 }] }"#,
                "more than",
            ),
            (
                r#"model = { name = "n", layers = [{ type = "flatten" }, { type = "dropout", p = 1.0 }, { type = "fc", name = "c", outputs = 10 }] }"#,
                "dropout p: must be in [0, 1)",
            ),
            (
                r#"model = { name = "n", layers = [{ type = "flatten", size = 3 }, { type = "fc", name = "c", outputs = 10 }] }"#,
                "unknown field `size`",
            ),
            (
                r#"model = { name = "n", layers = [{ type = "softmax" }] }"#,
                "unknown variant `softmax`",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text}\n  gave: {err}\n  want: {want}");
        }
    }
}
