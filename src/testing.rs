//! Helpers shared by the unit tests.

/// Cases for the parsers' fuzz properties: `default` in ordinary runs (CI), or
/// `PROPTEST_CASES` for a long run (`PROPTEST_CASES=1000000 cargo test --release --lib
/// never_panic`).
pub(crate) fn fuzz_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
