#![no_main]
//! See `receptionist::testing::fuzz::twilio_message`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| receptionist::testing::fuzz::twilio_message(data));
