#![no_main]
//! `sae::fuzzing::npy` on arbitrary bytes.

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    sae::fuzzing::npy(bytes);
});
