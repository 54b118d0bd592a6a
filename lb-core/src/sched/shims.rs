//! TEMPORARY SHIMS — the lead deletes this file at merge.
//!
//! The real `wlc`, `sh`, `dh`, `mh`, `lblc` and `lblcr` modules are written on another branch
//! (worktree `schedtab`) with exactly these signatures. These stand-ins only let the dispatcher
//! and the director compile and be tested before the merge: `wlc` is implemented honestly
//! (reference §5.4); the others return `None` / do nothing, and their behaviour is tested on
//! the other branch.
#![allow(missing_docs, clippy::missing_const_for_fn)]

pub mod wlc {
    use crate::server::{DestList, ServerId};

    /// wlc (reference §5.4): the first non-OVERLOAD server with weight > 0, replaced by a later
    /// non-OVERLOAD d when `overhead(L)·w(d) > overhead(d)·w(L)`; ties keep the earlier.
    pub fn pick(dests: DestList<'_>) -> Option<ServerId> {
        let mut it = dests.iter();
        let (mut least, mut loh, mut lw) = loop {
            let (id, d) = it.next()?;
            if d.eligible() {
                break (id, d.overhead(), u64::from(d.weight()));
            }
        };
        for (id, d) in it {
            if d.overloaded {
                continue;
            }
            let (doh, dw) = (d.overhead(), u64::from(d.weight()));
            if loh * dw > doh * lw {
                (least, loh, lw) = (id, doh, dw);
            }
        }
        Some(least)
    }
}

pub mod sh {
    use crate::config::SchedFlags;
    use crate::server::{DestList, ServerId, NO_SERVER};
    use core::net::IpAddr;

    pub const DEFAULT_SIZE: u32 = 256;

    pub fn valid_size(size: u32) -> bool {
        size.is_power_of_two() && (16..=1 << 20).contains(&size)
    }

    pub fn build(table: &mut [ServerId], _dests: DestList<'_>) {
        table.fill(NO_SERVER);
    }

    pub fn pick(
        _table: &[ServerId],
        _dests: DestList<'_>,
        _flags: SchedFlags,
        _client: IpAddr,
        _cport: u16,
    ) -> Option<ServerId> {
        None
    }
}

pub mod dh {
    use crate::server::{DestList, ServerId, NO_SERVER};
    use core::net::IpAddr;

    pub const DEFAULT_SIZE: u32 = 256;

    pub fn valid_size(size: u32) -> bool {
        size.is_power_of_two() && (16..=1 << 20).contains(&size)
    }

    pub fn build(table: &mut [ServerId], _dests: DestList<'_>) {
        table.fill(NO_SERVER);
    }

    pub fn pick(_table: &[ServerId], _dests: DestList<'_>, _daddr: IpAddr) -> Option<ServerId> {
        None
    }
}

pub mod mh {
    use crate::config::{ConfigError, SchedFlags};
    use crate::server::{DestList, ServerId, NO_SERVER};
    use core::net::IpAddr;

    pub const PRIMES: [u32; 10] = [
        251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
    ];
    pub const DEFAULT_SIZE: u32 = 4093;

    pub fn valid_size(size: u32) -> bool {
        PRIMES.contains(&size)
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct MhScratch {
        pub offset: u32,
        pub skip: u32,
        pub perm: u32,
        pub turns: u32,
    }

    impl MhScratch {
        pub const EMPTY: MhScratch = MhScratch {
            offset: 0,
            skip: 0,
            perm: 0,
            turns: 0,
        };
    }

    pub fn build(
        table: &mut [ServerId],
        _scratch: &mut [MhScratch],
        dests: DestList<'_>,
    ) -> Result<(), ConfigError> {
        table.fill(NO_SERVER);
        if dests.len() > table.len() {
            return Err(ConfigError::TooManyServersForTable);
        }
        Ok(())
    }

    pub fn pick(
        _table: &[ServerId],
        _dests: DestList<'_>,
        _flags: SchedFlags,
        _client: IpAddr,
        _cport: u16,
    ) -> Option<ServerId> {
        None
    }
}

pub mod lblc {
    use crate::server::{DestList, ServerId, NO_SERVER};
    use crate::time::{Duration, Instant};
    use core::net::IpAddr;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct LblcEntry {
        pub server: ServerId,
    }

    impl LblcEntry {
        pub const EMPTY: LblcEntry = LblcEntry { server: NO_SERVER };
    }

    pub fn pick(
        _cache: &mut [LblcEntry],
        _dests: DestList<'_>,
        _daddr: IpAddr,
        _now: Instant,
    ) -> Option<ServerId> {
        None
    }

    pub fn gc(_cache: &mut [LblcEntry], _now: Instant, _expiration: Duration) {}

    pub fn forget_server(cache: &mut [LblcEntry], id: ServerId) {
        for e in cache.iter_mut().filter(|e| e.server == id) {
            *e = LblcEntry::EMPTY;
        }
    }
}

pub mod lblcr {
    use crate::server::{DestList, ServerId, NO_SERVER};
    use crate::time::{Duration, Instant};
    use core::net::IpAddr;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct LblcrEntry {
        pub server: ServerId,
    }

    impl LblcrEntry {
        pub const EMPTY: LblcrEntry = LblcrEntry { server: NO_SERVER };
    }

    pub fn pick(
        _cache: &mut [LblcrEntry],
        _dests: DestList<'_>,
        _daddr: IpAddr,
        _now: Instant,
        _expiration: Duration,
    ) -> Option<ServerId> {
        None
    }

    pub fn gc(_cache: &mut [LblcrEntry], _now: Instant, _expiration: Duration) {}

    pub fn forget_server(cache: &mut [LblcrEntry], id: ServerId) {
        for e in cache.iter_mut().filter(|e| e.server == id) {
            *e = LblcrEntry::EMPTY;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::wlc;
    use crate::sched::fixture::Fixture;

    #[test]
    fn wlc_shim_is_weighted_least_connection() {
        let mut f = Fixture::new();
        let a = f.add(1, 3);
        let b = f.add(2, 1);
        // Idle, tie 0·w → b (first).
        assert_eq!(wlc::pick(f.list()), Some(b));
        f.s(b).inactive = 1; // 1/1 vs 0/3 → a
        assert_eq!(wlc::pick(f.list()), Some(a));
        f.s(a).active = 1; // 256/3 vs 1/1 → b
        assert_eq!(wlc::pick(f.list()), Some(b));
        f.s(b).config.weight = 0; // b skipped as the first candidate
        assert_eq!(wlc::pick(f.list()), Some(a));
    }
}
