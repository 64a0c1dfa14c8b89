#![no_main]
//! `sae::fuzzing::model_file` on arbitrary bytes.

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    sae::fuzzing::model_file(bytes);
});
