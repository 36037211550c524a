//! INT8 inference against the f32 network it was made from: accuracy on the fixture, logits
//! close to f32 for every architecture, every kernel giving the same logits, batching not
//! changing them.

mod common;

use dcx::model::int8::{Calibration, Int8Net, Kernel};
use dcx::model::train::{self, Silent, TrainConfig};
use dcx::model::{Arch, ModelKind, Net, NetworkSpec};

/// A network with stride-2 and stride-3 convolutions, one padded and one pooled after.
fn strided() -> Arch {
    let spec: NetworkSpec = toml::from_str(
        r#"
name = "strided"
layers = [
  { type = "conv", name = "conv1", outputs = 8, kernel = 5, stride = 2 },
  { type = "relu" },
  { type = "conv", name = "conv2", outputs = 12, kernel = 3, padding = 1, stride = 3 },
  { type = "relu" },
  { type = "max-pool" },
  { type = "flatten" },
  { type = "fc", name = "fc1", outputs = 10 },
]
"#,
    )
    .unwrap();
    spec.to_arch().unwrap()
}

/// Every built-in network and the strided one.
fn every_arch() -> Vec<Arch> {
    ModelKind::ALL
        .iter()
        .map(|k| k.arch())
        .chain([strided()])
        .collect()
}

/// The largest |int8 − f32| logit, relative to the largest |f32| logit.
fn relative_logit_error(net: &Net, int8: &Int8Net, images: &[f32], n: usize) -> f32 {
    let want = net.logits(images, n).unwrap();
    let got = int8.forward(images, n);
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    err / scale
}

#[test]
fn int8_lenet5_on_the_fixture_is_as_accurate_as_f32() {
    let data = common::fixture();
    let net = Net::new(&ModelKind::Lenet5.arch(), 3).unwrap();
    let cfg = TrainConfig {
        epochs: 3,
        batch_size: 32,
        ..TrainConfig::default()
    };
    train::train(&net, &data, &cfg, &[], &mut Silent).unwrap();
    let f32_eval = train::evaluate(&net, &data.test).unwrap();
    assert!(f32_eval.accuracy > 0.75, "f32 {}", f32_eval.accuracy);

    let n = 300;
    for calibration in [Calibration::MinMax, Calibration::Percentile(99.99)] {
        let int8 = Int8Net::calibrate(&net, &data.train.images[..n * 784], n, calibration).unwrap();
        let correct = int8.correct(&data.test, 64);
        // 200 test images: within 2 of f32's count (1 point).
        assert!(
            correct.abs_diff(f32_eval.correct) <= 2,
            "{calibration:?}: int8 {correct} vs f32 {} correct of {}",
            f32_eval.correct,
            f32_eval.total
        );
        let err = relative_logit_error(&net, &int8, &data.test.images, data.test.len);
        assert!(
            err < 0.02,
            "{calibration:?}: logits off by {err} of their range"
        );
    }
}

/// Random (untrained) weights of every network, including the course CNN's padded
/// convolutions, whose border reads the input's zero point, and strided convolutions.
#[test]
fn int8_logits_follow_f32_for_every_architecture() {
    let data = common::fixture().subset(100, 40);
    for arch in every_arch() {
        let kind = &arch.name;
        let net = Net::new(&arch, 11).unwrap();
        let int8 = Int8Net::calibrate(
            &net,
            &data.train.images,
            data.train.len,
            Calibration::MinMax,
        )
        .unwrap();
        let err = relative_logit_error(&net, &int8, &data.test.images, data.test.len);
        assert!(err < 0.05, "{kind}: logits off by {err} of their range");
    }
}

#[test]
fn every_kernel_and_every_batching_give_the_same_logits() {
    let data = common::fixture().subset(64, 37);
    for arch in [
        ModelKind::Lenet5.arch(),
        ModelKind::Lenet300100.arch(),
        strided(),
    ] {
        let kind = &arch.name;
        let net = Net::new(&arch, 5).unwrap();
        let int8 = Int8Net::calibrate(&net, &data.train.images, 64, Calibration::MinMax).unwrap();
        let (images, n) = (&data.test.images, data.test.len);
        let want = int8.forward(images, n);
        for kernel in Kernel::available() {
            let k = int8.clone().with_kernel(kernel);
            // The whole batch (split over threads by image), and one image at a time (each
            // product split over threads instead).
            assert_eq!(k.forward(images, n), want, "{kind} {kernel:?} batch");
            let one: Vec<f32> = images
                .chunks(784)
                .flat_map(|img| k.forward(img, 1))
                .collect();
            assert_eq!(one, want, "{kind} {kernel:?} one by one");
        }
    }
}

#[test]
fn calibration_without_images_is_an_error() {
    let net = Net::new(&ModelKind::Lenet5.arch(), 1).unwrap();
    let err = Int8Net::calibrate(&net, &[], 0, Calibration::MinMax).unwrap_err();
    assert!(err.to_string().contains("calibration"), "{err}");
    let err = "99.99x".parse::<Calibration>().unwrap_err();
    assert!(
        err.contains("99.99x") && err.contains("percentile"),
        "{err}"
    );
    assert!("50".parse::<Calibration>().is_err());
    assert_eq!("minmax".parse(), Ok(Calibration::MinMax));
    assert_eq!("99.9".parse(), Ok(Calibration::Percentile(99.9)));
}
