//! Counters per service and per real server, and IPVS's rate estimator (reference §4.5
//! `run_estimation`: cps, pps and bps over a 2 s period, smoothed).

/// Traffic counters of a service or a real server, as `ipvsadm -L --stats` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets client → server.
    pub in_pkts: u64,
    /// Packets server → client.
    pub out_pkts: u64,
    /// Bytes client → server.
    pub in_bytes: u64,
    /// Bytes server → client.
    pub out_bytes: u64,
}

impl Stats {
    /// All zero.
    pub const fn new() -> Self {
        Stats {
            conns: 0,
            in_pkts: 0,
            out_pkts: 0,
            in_bytes: 0,
            out_bytes: 0,
        }
    }
}
