//! The health checker's caller-owned memory: [`HealthLimits`] (the sizes), [`HealthStorage`]
//! (the slices the balancer takes) and [`HealthResources`] (statically sized arrays for
//! embedded targets).

use managed::ManagedSlice;

use super::{Member, SvcHealth, Target};

/// The sizes of a health checker's storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthLimits {
    /// Distinct probes (identical checks of one address share one); at most 65,535 are used.
    pub targets: usize,
    /// Checked (service, real server) pairs; at most 65,535 are used.
    pub members: usize,
    /// Services with a [`VirtualServerHealth`](super::VirtualServerHealth).
    pub services: usize,
    /// Probes in flight at once (the transport's socket pool); more wait, oldest due first.
    pub max_in_flight: usize,
}

/// Caller-owned memory for the health checker: on the heap with `HealthStorage::alloc`
/// (feature `alloc`) or lent by a [`HealthResources`].
pub struct HealthStorage<'a> {
    pub(crate) targets: ManagedSlice<'a, Target>,
    pub(crate) members: ManagedSlice<'a, Member>,
    pub(crate) services: ManagedSlice<'a, SvcHealth>,
    pub(crate) max_in_flight: usize,
}

#[cfg(feature = "alloc")]
impl HealthStorage<'static> {
    /// Storage for `limits`, on the heap (the checker itself never allocates).
    pub fn alloc(limits: HealthLimits) -> Self {
        use alloc::vec;
        HealthStorage {
            targets: ManagedSlice::Owned(vec![Target::EMPTY; limits.targets]),
            members: ManagedSlice::Owned(vec![Member::EMPTY; limits.members]),
            services: ManagedSlice::Owned(vec![SvcHealth::EMPTY; limits.services]),
            max_in_flight: limits.max_in_flight,
        }
    }
}

/// Statically sized health-check storage (a `static` on a microcontroller): `TARGETS` probes,
/// `MEMBERS` checked servers, `SERVICES` service policies.
pub struct HealthResources<const TARGETS: usize, const MEMBERS: usize, const SERVICES: usize> {
    targets: [Target; TARGETS],
    members: [Member; MEMBERS],
    services: [SvcHealth; SERVICES],
}

impl<const T: usize, const M: usize, const S: usize> HealthResources<T, M, S> {
    /// Empty resources; usable in a `static` initialiser.
    pub const fn new() -> Self {
        HealthResources {
            targets: [Target::EMPTY; T],
            members: [Member::EMPTY; M],
            services: [SvcHealth::EMPTY; S],
        }
    }

    /// Lends the arrays as a [`HealthStorage`], with at most `max_in_flight` probes at once.
    pub fn storage(&mut self, max_in_flight: usize) -> HealthStorage<'_> {
        HealthStorage {
            targets: ManagedSlice::Borrowed(&mut self.targets[..]),
            members: ManagedSlice::Borrowed(&mut self.members[..]),
            services: ManagedSlice::Borrowed(&mut self.services[..]),
            max_in_flight,
        }
    }
}

impl<const T: usize, const M: usize, const S: usize> Default for HealthResources<T, M, S> {
    fn default() -> Self {
        Self::new()
    }
}
