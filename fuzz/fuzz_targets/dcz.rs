#![no_main]

// The input's journey is dcx::fuzzing::dcz, shared with the unit test that replays fuzz/seeds/dcz.
libfuzzer_sys::fuzz_target!(|data: &[u8]| dcx::fuzzing::dcz(data));
