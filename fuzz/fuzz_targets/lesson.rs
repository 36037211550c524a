#![no_main]

// The input's journey is dcx::fuzzing::lesson, shared with the unit test that replays fuzz/seeds/lesson.
libfuzzer_sys::fuzz_target!(|data: &[u8]| dcx::fuzzing::lesson(data));
