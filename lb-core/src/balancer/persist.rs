//! Persistence templates (docs/ipvs-semantics.md §4.2, §4.3): a client's valid template, or a server
//! scheduled and a template created for it; an invalid template is never matched again.

use crate::addr::{mask, Protocol};
use crate::config::ServiceKey;
use crate::conn::{ConnFlags, Entry, Handle};
use crate::packet::Parsed;
use crate::server::ServerId;
use crate::service::ServiceId;
use crate::time::{Duration, Instant};

use super::inbound::NewConnError;
use super::Balancer;

impl Balancer<'_> {
    /// The server of the persistence template for this packet's client (creating the
    /// template if needed), for one-packet services.
    pub(super) fn template_server(
        &mut self,
        now: Instant,
        p: &Parsed,
        proto: Protocol,
        svc: ServiceId,
    ) -> Option<ServerId> {
        let t = self.template_for(now, p, proto, svc).ok()?;
        let e = self.conns.get(t)?;
        let server = e.server;
        let timeout = e.timeout();
        self.conns.touch(t, now + timeout);
        Some(server)
    }

    /// Finds a valid persistence template for the packet's client, or schedules and creates
    /// one (docs/ipvs-semantics.md §4.2 `ip_vs_check_template`, §4.3).
    pub(super) fn template_for(
        &mut self,
        now: Instant,
        p: &Parsed,
        proto: Protocol,
        svc: ServiceId,
    ) -> Result<Handle, NewConnError> {
        let Some(service) = self.director.service(svc) else {
            return Err(NewConnError::NoServer);
        };
        let Some(pers) = service.config.persistence else {
            return Err(NewConnError::NoServer);
        };
        let vport = match service.config.key {
            ServiceKey::Addr { vip, .. } => vip.port(),
            ServiceKey::Fwmark { .. } => 0,
        };
        let caddr = mask(p.src.ip(), pers.prefix);
        let hash = self.conns.hash(proto, caddr, 0);
        let found = self.conns.find(hash, |e| {
            e.is_template()
                && !e.flags.contains(INVALID)
                && e.service == svc
                && e.vport == vport
                && e.key_matches(proto, caddr, 0)
        });
        if let Some(t) = found {
            let valid = self.conns.get(t).is_some_and(|e| {
                self.director.server(e.server).is_some_and(|s| {
                    s.available && !(self.settings.expire_quiescent_template && s.weight() == 0)
                })
            });
            if valid {
                return Ok(t);
            }
            // Invalid: never matched again; freed now if it controls nothing, else it expires
            // on its own timer once its connections are gone.
            let n = self.conns.get(t).map_or(0, |e| e.n_control());
            if n == 0 {
                self.remove_entry(t);
            } else if let Some(e) = self.conns.get_mut(t) {
                e.flags.set(INVALID, true);
            }
        }
        let server = self
            .pick_server(now, p, proto, svc)
            .ok_or(NewConnError::NoServer)?;
        let mut tpl = Entry::template(proto, caddr, 0);
        tpl.vport = vport;
        tpl.service = svc;
        tpl.server = server;
        // Bound like the connections it controls (IPVS gives a template its destination's
        // flags too): a sync record of it names the method.
        if let Some(s) = self.director.server(server) {
            super::method::bind(&mut tpl, s.config.method);
        }
        tpl.set_timeout(Duration::from_secs(u64::from(pers.timeout_secs)));
        let hash = self.conns.hash_of(&tpl);
        let t = self.insert(now, tpl, hash)?;
        self.director.bind_template(server);
        Ok(t)
    }
}

/// A spare connection-flag bit: the template may no longer be used (IPVS rehashes such a
/// template so it never matches again). 0x20 is `embryonic.rs`'s `COUNTED`.
pub(super) const INVALID: ConnFlags = ConnFlags(0x10);
