#![no_main]
//! See `receptionist::testing::fuzz::wav_repair`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| receptionist::testing::fuzz::wav_repair(data));
