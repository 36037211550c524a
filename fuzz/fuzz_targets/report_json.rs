#![no_main]

// The input's journey is dcx::fuzzing::report_json, shared with the unit test that replays fuzz/seeds/report_json.
libfuzzer_sys::fuzz_target!(|data: &[u8]| dcx::fuzzing::report_json(data));
