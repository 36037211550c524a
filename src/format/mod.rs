//! File formats dcx writes (byte layouts documented in `docs/`).

pub mod dcz;
