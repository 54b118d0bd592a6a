//! Fragments, forwarded one by one (docs/ipvs-semantics.md, "Fragments"): the first fragment
//! of a TCP/UDP datagram holds the ports, so it is looked up, scheduled and rewritten as a
//! whole packet would be (its L4 checksum updated incrementally, which is right for the whole
//! datagram); where it went is filed in the fragment table (`conn/fragments.rs`) under the
//! datagram's reassembly key, and every later fragment of the datagram gets the same address
//! rewrite (and, over IPv4, its header checksum) from there. One packet in, one packet out,
//! no copy, no reassembly buffer: what Maglev and Katran do.
//!
//! The price: a later fragment that arrives before its first (or after its decision expired,
//! [`FRAG_TIMEOUT`](crate::conn::FRAG_TIMEOUT), or was replaced in a full table) has nowhere
//! to go; addressed to a virtual address it is a counted drop ([`DropReason::Fragment`]),
//! otherwise it passes on untouched as a router would pass it. Linux sends the fragments of a
//! datagram in order. Overlapping fragments (RFC 5722) are forwarded as they come: the
//! receiver, which reassembles, refuses them; tiny fragments (RFC 1858) are refused by the
//! parse. Fragments of anything but TCP and UDP (ICMP echo, other protocols) addressed to a
//! virtual address are counted drops as before; elsewhere they pass.

use crate::addr::{addr_bytes, ip_of};
use crate::config::{ForwardMethod, TunnelKind};
use crate::conn::fragments::{Filed, FragDecision, FragKey};
use crate::nat;
use crate::packet::{Fragment, Kind, Parsed};
use crate::time::Instant;
use crate::verdict::{DropReason, Transmit, Verdict};
use core::net::IpAddr;

use super::datapath::Hint;
use super::Balancer;

impl Balancer<'_> {
    /// A fragment (`p.fragment` is `f`): the first one of a TCP/UDP datagram through the
    /// general path, its decision filed; a later one after its first's decision.
    pub(super) fn fragmented(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        p: &Parsed,
        f: Fragment,
    ) -> Verdict {
        let key = FragKey {
            v6: p.v6,
            // IPv6 reassembles by addresses and identification alone (RFC 8200 §4.5).
            proto: if p.v6 { 0 } else { p.proto },
            id: f.id,
            src: addr_bytes(p.src.ip()),
            dst: addr_bytes(p.dst.ip()),
        };
        match p.kind {
            Kind::Transport => {
                let v = self.process_parsed(now, buf, len, p, Hint::None);
                match v {
                    Verdict::ToServer(t) => {
                        // Direct routing and tunnels left the destination as it was: the real
                        // server is the next hop, or the tunnel's end.
                        // (A tunnelled packet grew by its outer headers.)
                        let how = if t.len > p.total_len as usize {
                            Via::Tunnel
                        } else if holds_dst(buf, t.dst) {
                            Via::Nat
                        } else {
                            Via::Route
                        };
                        self.file(now, p, &key, false, how, addr_bytes(t.dst), t.dst.is_ipv6());
                    }
                    Verdict::ToClient(_) => {
                        // The source the reply now comes from: the virtual address.
                        let at = if p.v6 { 8 } else { 12 };
                        let n = if p.v6 { 16 } else { 4 };
                        let mut vip = [0u8; 16];
                        if let Some(b) = buf.get(at..at + n) {
                            vip[..n].copy_from_slice(b);
                        }
                        self.file(now, p, &key, true, Via::Nat, vip, p.v6);
                    }
                    _ => {}
                }
                v
            }
            Kind::Fragment => self.later_fragment(now, buf, len, p, &key),
            _ => {
                if self.is_vip(p.dst.ip()) {
                    self.drop(DropReason::Fragment, false)
                } else {
                    self.pass(&buf[..len])
                }
            }
        }
    }

    /// Files where a first fragment went (`to_client`: its source became `addr`; else `how`
    /// it went to `addr`, of the family `addr_is_v6` says), with the connection its bytes
    /// count on.
    #[allow(clippy::too_many_arguments)]
    fn file(
        &mut self,
        now: Instant,
        p: &Parsed,
        key: &FragKey,
        to_client: bool,
        how: Via,
        addr: [u8; 16],
        addr_is_v6: bool,
    ) {
        let conn = p.transport().and_then(|proto| {
            let h = if to_client {
                self.find_reply(proto, p.src, p.dst)
            } else {
                let svc = self.director.lookup(proto, p.dst, None)?;
                self.find_addrs(proto, p.src, p.dst, Some(svc)).1
            }?;
            self.conns.get(h).map(|e| (e.server, e.service))
        });
        let d = FragDecision {
            to_client,
            addr,
            conn,
            route: how == Via::Route,
            tunnel: how == Via::Tunnel,
            addr_v6: addr_is_v6,
        };
        match self.conns.fragments.insert(key, &d, now) {
            Filed::Free => {}
            Filed::Replaced => self.counters.fragment_evictions += 1,
            // No fragment table: the later fragments will be counted drops.
            Filed::NoRoom => {}
        }
    }

    /// A later fragment: rewritten (or, for direct routing, sent to the same next hop) as its
    /// first fragment was, if that decision is live.
    fn later_fragment(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        p: &Parsed,
        key: &FragKey,
    ) -> Verdict {
        let Some(d) = self.conns.fragments.get(key, now) else {
            if self.is_vip(p.dst.ip()) {
                return self.drop(DropReason::Fragment, false);
            }
            return self.pass(&buf[..len]);
        };
        let addr = ip_of(d.addr_v6, &d.addr);
        let mut outer = 0;
        if d.tunnel {
            // Its server's tunnel, as the first fragment's; a datagram of no connection (one-packet
            // scheduling) has no server to ask, and goes by IPIP.
            let kind = match d.conn.and_then(|(s, _)| self.director.server(s)) {
                Some(s) => match s.config.method {
                    ForwardMethod::Tunnel(kind) => kind,
                    _ => TunnelKind::Ipip,
                },
                None => TunnelKind::Ipip,
            };
            match self.tunnel_out(now, buf, len, p, addr, kind, false) {
                Ok(n) => outer = n,
                Err(v) => return v,
            }
        } else if !d.route && nat::rewrite_fragment(&mut buf[..len], p, addr, d.to_client).is_err()
        {
            return self.drop(DropReason::Malformed, false);
        }
        if let Some((server, svc)) = d.conn {
            let data = (p.total_len as usize).saturating_sub(usize::from(p.l4_offset));
            self.director.count_bytes(server, svc, data, d.to_client);
        }
        self.counters.fragments_forwarded += 1;
        if d.to_client {
            Verdict::ToClient(Transmit {
                start: 0,
                dst: p.dst.ip(),
                len: p.total_len as usize,
            })
        } else {
            Verdict::ToServer(Transmit {
                start: 0,
                dst: addr,
                len: p.total_len as usize + outer,
            })
        }
    }
}

/// How a first fragment went to its real server.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Nat,
    Route,
    Tunnel,
}

/// Whether the IP header at the start of `pkt` has destination `dst`.
fn holds_dst(pkt: &[u8], dst: IpAddr) -> bool {
    match dst {
        IpAddr::V4(a) => pkt.get(16..20) == Some(&a.octets()[..]),
        IpAddr::V6(a) => pkt.get(24..40) == Some(&a.octets()[..]),
    }
}
