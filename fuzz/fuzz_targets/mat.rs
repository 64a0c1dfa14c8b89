#![no_main]
//! `sae::fuzzing::mat` on arbitrary bytes.

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    sae::fuzzing::mat(bytes);
});
