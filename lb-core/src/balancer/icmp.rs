//! ICMP: errors about a tracked flow, rewritten in both directions (docs/ipvs-semantics.md §6.1), and echo
//! requests to a virtual address, answered.

use crate::nat;
use crate::packet::{IcmpError, Parsed};
use crate::verdict::{DropReason, Transmit, Verdict};

use super::Balancer;

impl Balancer<'_> {
    /// ICMP errors about a tracked flow: rewrite outer and embedded headers (docs/ipvs-semantics.md §6.1).
    pub(super) fn icmp_error(
        &mut self,
        buf: &mut [u8],
        len: usize,
        p: &Parsed,
        ie: &IcmpError,
    ) -> Verdict {
        // From the client side, about a reply we sent (VIP:vport → client).
        if let Some(svc) = self.director.lookup(ie.proto, ie.src, None) {
            // The flow it quotes, forward: client → VIP:vport.
            let (_, found) = self.find_addrs(ie.proto, ie.dst, ie.src, Some(svc));
            if let Some(dest) = found
                .and_then(|h| self.conns.get(h))
                .and_then(|e| self.endpoint_of(e))
            {
                return match nat::rewrite_icmp_to_server(&mut buf[..len], p, dest) {
                    Ok(()) => Verdict::ToServer(Transmit::of(&buf[..len])),
                    Err(_) => self.drop(DropReason::Malformed, false),
                };
            }
            return self.drop(DropReason::NoConnection, false);
        }
        // From the server side, about a packet we forwarded (client → RIP:rport).
        if let Some(h) = self.find_reply(ie.proto, ie.dst, ie.src) {
            if let Some(vip) = self.conns.get(h).and_then(|e| self.vip_of(e)) {
                return match nat::rewrite_icmp_to_client(&mut buf[..len], p, vip) {
                    Ok(()) => Verdict::ToClient(Transmit::of(&buf[..len])),
                    Err(_) => self.drop(DropReason::Malformed, false),
                };
            }
        }
        if self.is_vip(p.dst.ip()) {
            return self.drop(DropReason::NoConnection, false);
        }
        self.pass(&buf[..len])
    }

    /// An echo request: answered when it is addressed to a virtual address, else passed on.
    pub(super) fn echo_request(&mut self, buf: &mut [u8], len: usize, p: &Parsed) -> Verdict {
        if self.is_vip(p.dst.ip()) {
            match self.reply_with(buf, |out, b| nat::write_echo_reply(out, &b[..len], p)) {
                Verdict::Drop(reason) => self.drop(reason, false),
                v => v,
            }
        } else {
            self.pass(&buf[..len])
        }
    }
}
