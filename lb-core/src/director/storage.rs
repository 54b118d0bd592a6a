//! The director's caller-owned memory: [`Limits`] (the sizes), [`DirectorStorage`] (the slices
//! [`Director::new`] takes) and [`DirectorResources`] (statically sized arrays for embedded
//! targets).

use core::mem::size_of;

use managed::ManagedSlice;

#[cfg(doc)]
use super::Director;
use crate::sched::lblc::LblcEntry;
use crate::sched::lblcr::LblcrEntry;
use crate::sched::mh::MhScratch;
#[cfg(any(doc, feature = "alloc"))]
use crate::server::NO_SERVER;
use crate::server::{RealServer, ServerId};
use crate::service::ServiceSlot;
use crate::stats::RateEstimator;

/// The sizes of a director's storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Service slots.
    pub services: usize,
    /// Real servers per service, deleted-but-referenced ones included.
    /// `services × servers_per_service` must stay below 65535 ([`NO_SERVER`]).
    pub servers_per_service: usize,
    /// sh/dh/mh table slots per service: the largest table a service may use (mh M = 65521
    /// and sh 2^16 need 65536).
    pub table_slots_per_service: usize,
    /// lblc cache entries per service, and as many lblcr entries.
    pub lblc_entries_per_service: usize,
}

impl Default for Limits {
    /// 64 services × 1023 servers (as many as a `u16` id allows), 65536 table slots and 1024
    /// lblc/lblcr entries per service.
    fn default() -> Self {
        Limits {
            services: 64,
            servers_per_service: 1023,
            table_slots_per_service: 65536,
            lblc_entries_per_service: 1024,
        }
    }
}

impl Limits {
    /// Bytes of storage these limits need, all arrays included.
    pub const fn storage_bytes(&self) -> usize {
        let per_server = size_of::<RealServer>()
            + size_of::<RateEstimator>()
            + size_of::<ServerId>()
            + size_of::<MhScratch>();
        let per_service = size_of::<ServiceSlot>()
            + self.servers_per_service * per_server
            + self.table_slots_per_service * size_of::<ServerId>()
            + self.lblc_entries_per_service * (size_of::<LblcEntry>() + size_of::<LblcrEntry>());
        self.services * per_service
    }
}

/// Caller-owned memory for a [`Director`]: each slice holds `services ×` its per-service size
/// (see [`Limits`]). Build it from borrowed slices,
#[cfg_attr(feature = "alloc", doc = "[`DirectorStorage::alloc`]")]
#[cfg_attr(not(feature = "alloc"), doc = "`DirectorStorage::alloc`")]
/// (feature `alloc`) or [`DirectorResources::storage`]. Contents are reset by [`Director::new`].
pub struct DirectorStorage<'a> {
    /// The sizes the slices are meant for. [`Director::new`] shrinks them to what the slices
    /// actually hold.
    pub limits: Limits,
    /// `services` entries.
    pub services: ManagedSlice<'a, ServiceSlot>,
    /// `services × servers_per_service` entries.
    pub servers: ManagedSlice<'a, RealServer>,
    /// One estimator per server slot.
    pub server_rates: ManagedSlice<'a, RateEstimator>,
    /// Per-service list order, one entry per server slot.
    pub order: ManagedSlice<'a, ServerId>,
    /// `services × table_slots_per_service` sh/dh/mh slots.
    pub tables: ManagedSlice<'a, ServerId>,
    /// mh's build scratch, one per server slot.
    pub mh_scratch: ManagedSlice<'a, MhScratch>,
    /// `services × lblc_entries_per_service` lblc entries.
    pub lblc: ManagedSlice<'a, LblcEntry>,
    /// As many lblcr entries.
    pub lblcr: ManagedSlice<'a, LblcrEntry>,
}

#[cfg(feature = "alloc")]
impl DirectorStorage<'static> {
    /// Storage for `limits`, on the heap (host convenience; the director itself never
    /// allocates).
    pub fn alloc(limits: Limits) -> Self {
        use alloc::vec;
        let n = limits.services * limits.servers_per_service;
        DirectorStorage {
            limits,
            services: ManagedSlice::Owned(vec![ServiceSlot::FREE; limits.services]),
            servers: ManagedSlice::Owned(vec![RealServer::EMPTY; n]),
            server_rates: ManagedSlice::Owned(vec![RateEstimator::NEW; n]),
            order: ManagedSlice::Owned(vec![NO_SERVER; n]),
            tables: ManagedSlice::Owned(vec![
                NO_SERVER;
                limits.services * limits.table_slots_per_service
            ]),
            mh_scratch: ManagedSlice::Owned(vec![MhScratch::EMPTY; n]),
            lblc: ManagedSlice::Owned(vec![
                LblcEntry::EMPTY;
                limits.services * limits.lblc_entries_per_service
            ]),
            lblcr: ManagedSlice::Owned(vec![
                LblcrEntry::EMPTY;
                limits.services * limits.lblc_entries_per_service
            ]),
        }
    }
}

/// Statically sized storage for embedded targets, to put in a `static` (via a `StaticCell` or
/// similar) and borrow with [`DirectorResources::storage`]. The parameters are **totals**:
/// `SERVICES` slots, `SERVERS` server slots (split evenly: `SERVERS / SERVICES` per service),
/// `TABLE_SLOTS` sh/dh/mh slots and `LBLC_ENTRIES` lblc and as many lblcr entries, likewise
/// split. Example: `DirectorResources<4, 64, 4096, 0>` gives 4 services of 16 servers with
/// tables of up to 1024 slots (sh/dh 256, mh 509 or 1021).
pub struct DirectorResources<
    const SERVICES: usize,
    const SERVERS: usize,
    const TABLE_SLOTS: usize,
    const LBLC_ENTRIES: usize,
> {
    services: [ServiceSlot; SERVICES],
    servers: [RealServer; SERVERS],
    server_rates: [RateEstimator; SERVERS],
    order: [ServerId; SERVERS],
    tables: [ServerId; TABLE_SLOTS],
    mh_scratch: [MhScratch; SERVERS],
    lblc: [LblcEntry; LBLC_ENTRIES],
    lblcr: [LblcrEntry; LBLC_ENTRIES],
}

impl<const SVC: usize, const SRV: usize, const TAB: usize, const LBLC: usize>
    DirectorResources<SVC, SRV, TAB, LBLC>
{
    /// Empty resources; usable in a `static` initialiser.
    pub const fn new() -> Self {
        DirectorResources {
            // All zero bits (so a `static` lands in .bss); `Director::new` resets every
            // slot to its proper empty value.
            services: [ServiceSlot::FREE; SVC],
            servers: [RealServer::EMPTY; SRV],
            server_rates: [RateEstimator::NEW; SRV],
            order: [0; SRV],
            tables: [0; TAB],
            mh_scratch: [MhScratch::EMPTY; SRV],
            lblc: [LblcEntry::ZEROED; LBLC],
            lblcr: [LblcrEntry::ZEROED; LBLC],
        }
    }

    /// Lends the arrays as a [`DirectorStorage`] for [`Director::new`].
    pub fn storage(&mut self) -> DirectorStorage<'_> {
        let per = |total: usize| total.checked_div(SVC).unwrap_or(0);
        DirectorStorage {
            limits: Limits {
                services: SVC,
                servers_per_service: per(SRV),
                table_slots_per_service: per(TAB),
                lblc_entries_per_service: per(LBLC),
            },
            services: ManagedSlice::Borrowed(&mut self.services[..]),
            servers: ManagedSlice::Borrowed(&mut self.servers[..]),
            server_rates: ManagedSlice::Borrowed(&mut self.server_rates[..]),
            order: ManagedSlice::Borrowed(&mut self.order[..]),
            tables: ManagedSlice::Borrowed(&mut self.tables[..]),
            mh_scratch: ManagedSlice::Borrowed(&mut self.mh_scratch[..]),
            lblc: ManagedSlice::Borrowed(&mut self.lblc[..]),
            lblcr: ManagedSlice::Borrowed(&mut self.lblcr[..]),
        }
    }
}

impl<const SVC: usize, const SRV: usize, const TAB: usize, const LBLC: usize> Default
    for DirectorResources<SVC, SRV, TAB, LBLC>
{
    fn default() -> Self {
        Self::new()
    }
}
