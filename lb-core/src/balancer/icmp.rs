//! ICMP: errors about a tracked flow, rewritten in both directions (docs/ipvs-semantics.md §6.1), and echo
//! requests to a virtual address, answered. (An error from the client side about a direct-routing
//! connection goes to its real server unchanged, as its packets do.)
//!
//! An error is about a tracked flow when the packet it quotes is one the balancer sent: a reply
//! VIP:vport → client (the error comes from the client side) or a packet forwarded client →
//! RIP:rport (from the real-server side). The kernel's `ip_vs_in_icmp` and `ip_vs_out_icmp` look
//! the connection up from the quoted packet alone and then translate the error, wherever its
//! outer header sends it (`ip_vs_forward_icmp` even catches errors in transit on the FORWARD
//! hook). We are stricter: the error is translated only when its **outer destination is the
//! quoted packet's source**: the VIP for an error about a reply, the client for an error about a
//! forwarded packet (which then goes to that client and nowhere else). Anything else quoting a
//! tracked flow is a counted drop, [`DropReason::IcmpMismatch`]: otherwise whoever guesses a flow
//! could inject an error into it from anywhere, or have the balancer reflect one (rewritten to
//! come from the VIP) to any address. The outer source is not checked: a router on either
//! path may send the error.
//!
//! Errors that do not quote a tracked flow pass on untouched unless they are addressed to a VIP
//! (a counted drop), as do transit errors whose quote lb-core cannot read (too short, of the
//! other family: `unparsed` in datapath.rs), as the kernel accepts them.

use crate::nat;
use crate::packet::{IcmpError, Parsed};
use crate::time::Instant;
use crate::verdict::{DropReason, Transmit, Verdict};

use super::method;
use super::Balancer;

impl Balancer<'_> {
    /// ICMP errors about a tracked flow: rewrite outer and embedded headers (docs/ipvs-semantics.md §6.1),
    /// if the outer destination is the quoted packet's source (else [`DropReason::IcmpMismatch`]).
    pub(super) fn icmp_error(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        p: &Parsed,
        ie: &IcmpError,
    ) -> Verdict {
        // From the client side, about a reply we sent (VIP:vport → client).
        if let Some(svc) = self.director.lookup(ie.proto, ie.src, None) {
            // The flow it quotes, forward: client → VIP:vport.
            let (_, found) = self.find_addrs(ie.proto, ie.dst, ie.src, Some(svc));
            if let Some((dest, flags, server)) = found
                .and_then(|h| self.conns.get(h))
                .and_then(|e| Some((self.endpoint_of(e)?, e.flags, e.server)))
            {
                // Only an error sent to the VIP the reply came from.
                if p.dst.ip() != ie.src.ip() {
                    return self.drop(DropReason::IcmpMismatch, false);
                }
                if !method::is_nat(flags) {
                    // The connection's transmitter carries the error (`ip_vs_icmp_xmit`):
                    // unchanged to the real server, by direct routing or in its tunnel.
                    let inner = Transmit::of(&buf[..len]).len;
                    return match self.send_to_server(now, buf, len, p, dest, flags, server, false) {
                        Ok(outer) => Verdict::ToServer(Transmit {
                            dst: dest.ip(),
                            start: 0,
                            len: inner + outer,
                        }),
                        Err(v) => v,
                    };
                }
                return match nat::rewrite_icmp_to_server(&mut buf[..len], p, dest) {
                    Ok(()) => Verdict::ToServer(Transmit::of(&buf[..len])),
                    Err(_) => self.drop(DropReason::Malformed, false),
                };
            }
            return self.drop(DropReason::NoConnection, false);
        }
        // From the server side, about a packet we forwarded (client → RIP:rport).
        // (A DR or tunnel connection sends nothing with the real server's address: such a
        // quote is not about it.)
        if let Some(h) = self.find_reply(ie.proto, ie.dst, ie.src) {
            if let Some(vip) = self
                .conns
                .get(h)
                .filter(|e| method::is_nat(e.flags))
                .and_then(|e| self.vip_of(e))
            {
                // Only an error sent to the client the packet came from.
                if p.dst.ip() != ie.src.ip() {
                    return self.drop(DropReason::IcmpMismatch, false);
                }
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
    /// Echo replies are rate-limited as every generated reply ([`DropReason::ReplyRateLimited`]).
    pub(super) fn echo_request(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        p: &Parsed,
    ) -> Verdict {
        if self.is_vip(p.dst.ip()) {
            self.reply_with(now, p, buf, DropReason::NoRoomForReply, false, |out, b| {
                nat::write_echo_reply(out, &b[..len], p)
            })
        } else {
            self.pass(&buf[..len])
        }
    }
}
