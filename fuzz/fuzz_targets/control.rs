#![no_main]
// See FUZZING.md and lb-core/tests/harness/control.rs for what this target checks.
use lb_fuzz::{harness, lbadm};

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::control::run(
    data,
    lbadm::decode,
    lbadm::encode
));
