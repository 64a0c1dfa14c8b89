#![no_main]
//! `sae::fuzzing::checkpoint` on arbitrary bytes.

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    sae::fuzzing::checkpoint(bytes);
});
