//! lb-tun: the Linux demo gateway around lb-core.
#![deny(unsafe_code)]

pub mod control;
pub mod metrics;
pub mod tun;
