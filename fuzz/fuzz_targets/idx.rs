#![no_main]
//! `sae::fuzzing::idx` on arbitrary bytes.

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    sae::fuzzing::idx(bytes);
});
