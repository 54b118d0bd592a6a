#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod announce;
pub mod control;
pub mod decap;
pub mod drain;
pub mod gateway;
pub mod health;
pub mod keepalived;
pub mod listing;
pub mod metrics;
pub mod offload;
pub mod prom;
pub mod steer;
pub mod syncd;
pub mod tap;
pub mod tun;

#[cfg(test)]
mod test_support;
