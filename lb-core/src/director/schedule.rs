//! Scheduling a new connection: [`SchedInput`] (what the schedulers read from the packet) and
//! [`Director::schedule`], which runs the service's scheduler over its list.

use core::net::SocketAddr;

use super::Director;
use crate::addr::Protocol;
use crate::sched::Sched;
use crate::server::{DestList, ServerId};
use crate::service::ServiceId;
use crate::time::Instant;

/// What a scheduling decision reads from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedInput {
    /// The packet's protocol.
    pub proto: Protocol,
    /// The client's address and port (sh and mh key on them).
    pub client: SocketAddr,
    /// The packet's destination (the VIP, or any address for fwmark services); dh, lblc and
    /// lblcr key on its address.
    pub dst: SocketAddr,
}

impl Director<'_> {
    /// Picks a real server for a new connection of service `svc` (after `lookup`), running the
    /// service's scheduler; `None` when no server is available (the caller answers as IPVS's
    /// `ip_vs_leave` does). Updates only the scheduler's state: call `bind_conn` /
    /// `bind_template` when the entry is created.
    pub fn schedule(
        &mut self,
        svc: ServiceId,
        input: &SchedInput,
        now: Instant,
    ) -> Option<ServerId> {
        let s = usize::from(svc);
        let per = self.limits.servers_per_service;
        let tslots = self.limits.table_slots_per_service;
        let lslots = self.limits.lblc_entries_per_service;
        let service = self.services.get_mut(s)?.get_mut()?;
        if service.deleted {
            return None;
        }
        let base = s * per;
        let dests = DestList {
            order: &self.order[base..base + service.len()],
            servers: &self.servers,
        };
        let tb = s * tslots;
        let lb = s * lslots;
        let mut sched = Sched {
            kind: service.config.scheduler,
            flags: service.config.flags,
            table: &self.tables[tb..tb + service.table_size as usize],
            lblc: &mut self.lblc[lb..lb + lslots],
            lblcr: &mut self.lblcr[lb..lb + lslots],
            lblcr_expiration: self.lblcr_expiration,
        };
        sched.pick(
            &mut service.sched,
            dests,
            input.client.ip(),
            input.client.port(),
            input.dst.ip(),
            now,
        )
    }
}
