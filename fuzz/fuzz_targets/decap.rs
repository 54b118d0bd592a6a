#![no_main]
// See FUZZING.md and lb-core/tests/harness/decap.rs for what this target checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_fuzz::harness::decap::run(data));
