#![no_main]

// The input's journey is dcx::fuzzing::figures_json, shared with the unit test that replays fuzz/seeds/figures_json.
libfuzzer_sys::fuzz_target!(|data: &[u8]| dcx::fuzzing::figures_json(data));
