#![no_main]
//! See `receptionist::testing::fuzz::webhook_form`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| receptionist::testing::fuzz::webhook_form(data));
