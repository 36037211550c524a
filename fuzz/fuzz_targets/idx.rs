#![no_main]

// The input's journey is dcx::fuzzing::idx, shared with the unit test that replays fuzz/seeds/idx.
libfuzzer_sys::fuzz_target!(|data: &[u8]| dcx::fuzzing::idx(data));
