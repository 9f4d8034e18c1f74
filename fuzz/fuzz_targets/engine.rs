#![no_main]
//! See `receptionist::testing::fuzz::engine`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| receptionist::testing::fuzz::engine(data));
