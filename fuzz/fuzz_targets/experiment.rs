#![no_main]

// The input's journey is dcx::fuzzing::experiment, shared with the unit test that replays fuzz/seeds/experiment.
libfuzzer_sys::fuzz_target!(|data: &[u8]| dcx::fuzzing::experiment(data));
