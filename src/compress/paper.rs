//! The paper's MNIST figures (Han, Mao & Dally 2016, Table 1), for side-by-side reports.

use crate::model::ModelKind;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PaperFigure {
    pub error_before: f64,
    pub error_after: f64,
    pub dense_kb: f64,
    pub compressed_kb: f64,
    pub ratio: f64,
}

pub fn figure(model: ModelKind) -> Option<PaperFigure> {
    match model {
        ModelKind::Lenet300100 => Some(PaperFigure {
            error_before: 0.0164,
            error_after: 0.0158,
            dense_kb: 1070.0,
            compressed_kb: 27.0,
            ratio: 40.0,
        }),
        ModelKind::Lenet5 => Some(PaperFigure {
            error_before: 0.0080,
            error_after: 0.0074,
            dense_kb: 1720.0,
            compressed_kb: 44.0,
            ratio: 39.0,
        }),
        ModelKind::CourseCnn => None,
    }
}
