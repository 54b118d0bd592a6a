//! Handing a client's packet to its real server by the entry's method (docs/ipvs-semantics.md
//! §6, docs/tunnels.md): NAT rewrites it; direct routing sends it unchanged to the real server as
//! next hop; a tunnel builds the outer headers here and [`Balancer::encapsulate`] puts them
//! in front of the packet once the verdict is known. DR and tunnels check the path MTU first,
//! as the kernel's `ensure_mtu_is_adequate` does.
//!
//! Where the headers go: the datapath works on the packet's own slice of the buffer, which
//! starts at the packet. Without enough headroom (always with [`Balancer::process`]) the
//! forward step moves the packet back by the headers' length and writes them in front of it
//! (the buffer needs that much room after the packet). With enough headroom
//! ([`Balancer::process_at`], `process_burst` with [`Packet::start`](super::Packet::start))
//! it leaves the headers in [`Balancer`]'s `outer` (they depend on the inner packet alone: its
//! length, TTL, DS field, DF and flow) and the entry point writes them into the headroom
//! ([`Balancer::encapsulate`]): nothing moves. Either way the verdict's length counts them.
//! `process` itself then needs no step after the verdict: the common path pays nothing.

use core::net::{IpAddr, SocketAddr};

use crate::checksum;
use crate::config::{ForwardMethod, TunnelKind};
use crate::conn::ConnFlags;
use crate::nat;
use crate::packet::{Kind, Parsed, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use crate::server::ServerId;
use crate::time::Instant;
use crate::tunnel::{self, Outer};
use crate::verdict::{DropReason, Transmit, Verdict};

use super::{method, Balancer};

/// The smallest MTU an IPv4 host must accept (RFC 791): no "fragmentation needed" below it.
const IPV4_MIN_MTU: usize = 68;
/// IPv6's minimum link MTU (RFC 8200 §5): "packet too big" never advertises less.
const IPV6_MIN_MTU: usize = 1280;

impl Balancer<'_> {
    /// Makes a client's packet `p` (in `buf[..len]`, `buf` running to the end of the caller's
    /// buffer) one for real server `server` at `dest`, by the method of an entry with `flags`:
    /// NAT rewrites the destination; direct routing leaves the packet as it is (the verdict
    /// names the real server as next hop); a tunnel leaves it as it is too and builds the outer
    /// headers to go in front of it. `Ok` holds the length of those headers (0 for NAT and
    /// DR), `Err` the verdict instead: a counted drop, or the ICMP "too big" answer of a
    /// packet over the path MTU.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) fn send_to_server(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        p: &Parsed,
        dest: SocketAddr,
        flags: ConnFlags,
        server: ServerId,
        syn: bool,
    ) -> Result<usize, Verdict> {
        if method::is_nat(flags) {
            return match nat::rewrite_transport(&mut buf[..len], p, dest, false, self.csum_partial)
            {
                Ok(()) => Ok(0),
                Err(_) => Err(self.drop(DropReason::Malformed, syn)),
            };
        }
        self.not_nat(now, buf, len, p, dest, flags, server, syn)
    }

    /// [`send_to_server`](Self::send_to_server) by direct routing or a tunnel.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn not_nat(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        p: &Parsed,
        dest: SocketAddr,
        flags: ConnFlags,
        server: ServerId,
        syn: bool,
    ) -> Result<usize, Verdict> {
        if flags.contains(method::ROUTE) {
            return self.fits_path(now, buf, len, p, 0, syn).map(|()| 0);
        }
        let kind = match self.director.server(server).map(|s| s.config.method) {
            Some(ForwardMethod::Tunnel(kind)) => kind,
            // The entry was bound to a tunnel and its server has since been edited to
            // another method: IPVS's transmitter reads the server's tunnel type, which then
            // is its default.
            _ => TunnelKind::Ipip,
        };
        self.tunnel_out(now, buf, len, p, dest.ip(), kind, syn)
    }

    /// Puts `p` in a tunnel of `kind` to `rip`, after the path-MTU and room checks: the outer
    /// headers written in front of the moved packet, or, when the headroom holds them, left
    /// for [`encapsulate`](Self::encapsulate). Their length, or the verdict instead (see
    /// [`send_to_server`](Self::send_to_server)).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn tunnel_out(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        p: &Parsed,
        rip: IpAddr,
        kind: TunnelKind,
        syn: bool,
    ) -> Result<usize, Verdict> {
        let src = match rip {
            IpAddr::V4(_) => self.settings.tunnel_source_v4.map(IpAddr::V4),
            IpAddr::V6(_) => self.settings.tunnel_source_v6.map(IpAddr::V6),
        };
        let Some(src) = src else {
            // The frontend took its tunnel source away after the server was added.
            return Err(self.drop(DropReason::UnsupportedMethod, syn));
        };
        let hl = tunnel::overhead(kind, rip.is_ipv6());
        self.fits_path(now, buf, len, p, hl, syn)?;
        let inner_len = (p.total_len as usize).min(len);
        if self.headroom < hl && buf.len() < inner_len + hl {
            return Err(self.drop(DropReason::NoHeadroom, syn));
        }
        if self.csum_partial {
            // The outer packet is complete: so is the inner one (and a GUE or GRE checksum
            // over it is then right).
            if !complete_inner(&mut buf[..inner_len], p) {
                return Err(self.drop(DropReason::Malformed, syn));
            }
            self.csum_partial = false;
        }
        // Without DF the outer IPv4 header takes a fresh identification (with DF it is 0).
        self.ip_id = self.ip_id.wrapping_add(1);
        let Ok(outer) = tunnel::build(&buf[..inner_len], kind, src, rip, self.ip_id) else {
            return Err(self.drop(DropReason::Malformed, syn));
        };
        self.counters.tunnelled += 1;
        if self.headroom >= hl {
            self.outer = outer;
        } else {
            buf.copy_within(..inner_len, hl);
            buf[..hl].copy_from_slice(outer.as_bytes());
        }
        Ok(hl)
    }

    /// Checks that `p` with `hl` bytes of tunnel headers fits
    /// [`Settings::path_mtu`](crate::Settings::path_mtu); if not, the answer the kernel gives
    /// (see there) as `Err`.
    fn fits_path(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        p: &Parsed,
        hl: usize,
        syn: bool,
    ) -> Result<(), Verdict> {
        let mtu = usize::from(self.settings.path_mtu);
        let inner = p.total_len as usize;
        if mtu == 0 || inner + hl <= mtu {
            return Ok(());
        }
        let left = mtu.saturating_sub(hl);
        let advertise = if p.v6 {
            let left = left.max(IPV6_MIN_MTU);
            if inner <= left {
                // Within IPv6's minimum MTU: the path fragments the outer packet.
                return Ok(());
            }
            left
        } else {
            if !ipv4_df(buf) {
                // No DF: the outer header has none either; the path fragments it.
                return Ok(());
            }
            if left < IPV4_MIN_MTU {
                return Err(self.drop(DropReason::TooBig, syn));
            }
            left
        };
        if p.kind != Kind::Transport {
            // Never an ICMP error about an ICMP error.
            return Err(self.drop(DropReason::TooBig, syn));
        }
        self.counters.too_big_replies += 1;
        let vip = p.dst.ip();
        Err(
            self.reply_with(now, p, buf, DropReason::NoRoomForReply, syn, |out, b| {
                nat::write_icmp_too_big(out, &b[..len], p, vip, advertise as u32)
            }),
        )
    }

    /// Writes the outer headers the forward step left in `self.outer` into the headroom in
    /// front of the packet of verdict `v`, which starts at `buf[start]` (the forward step saw
    /// that `start` bytes hold them, and counted them in the verdict's length).
    pub(super) fn encapsulate(&mut self, buf: &mut [u8], start: usize, v: Verdict) -> Verdict {
        let outer = core::mem::replace(&mut self.outer, Outer::NONE);
        let hl = outer.len();
        let Verdict::ToServer(t) = v else {
            return v;
        };
        let at = start - hl;
        buf[at..start].copy_from_slice(outer.as_bytes());
        Verdict::ToServer(Transmit {
            dst: t.dst,
            start: at,
            len: t.len,
        })
    }
}

/// Whether the IPv4 header at the start of `pkt` has DF set.
fn ipv4_df(pkt: &[u8]) -> bool {
    pkt.get(6).is_some_and(|b| b & 0x40 != 0)
}

/// What an ICMP error from a tunnel's path says about the packet it quotes: the real server
/// the outer packet went to, the headers lb-core put in front, and the client's packet inside.
struct QuotedTunnel<'q> {
    /// The outer destination: the real server.
    rip: IpAddr,
    /// Bytes of outer headers before the inner packet.
    overhead: usize,
    /// The quoted inner packet (the client's), as much as the quote holds.
    inner: &'q [u8],
}

/// Reads `q`, the packet an ICMP error quotes, as one lb-core tunnelled from `source`: an outer
/// IPv4 (no options) or IPv6 header from `source`, then IPIP, GUE or GRE as lb-core writes them.
fn quoted_tunnel(q: &[u8], source: IpAddr) -> Option<QuotedTunnel<'_>> {
    let (ip_len, proto, src, rip) = match q.first()? >> 4 {
        4 if q.len() >= 20 && q[0] == 0x45 => {
            let a = |i: usize| IpAddr::from([q[i], q[i + 1], q[i + 2], q[i + 3]]);
            (20, q[9], a(12), a(16))
        }
        6 if q.len() >= 40 => {
            let a = |i: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&q[i..i + 16]);
                IpAddr::from(b)
            };
            (40, q[6], a(8), a(24))
        }
        _ => return None,
    };
    if src != source {
        return None;
    }
    let after = q.get(ip_len..)?;
    let overhead = ip_len
        + match proto {
            tunnel::PROTO_IPIP | tunnel::PROTO_IPV6 => 0,
            // GUE version 0, data, no options (what lb-core sends).
            tunnel::PROTO_UDP if after.len() >= 12 && after[8] == 0 => 8 + tunnel::GUE_HEADER_LEN,
            tunnel::PROTO_GRE if after.len() >= 4 => match u16::from_be_bytes([after[0], after[1]])
            {
                0 => tunnel::GRE_HEADER_LEN,
                tunnel::GRE_FLAG_CSUM => tunnel::GRE_CSUM_HEADER_LEN,
                _ => return None,
            },
            _ => return None,
        };
    Some(QuotedTunnel {
        rip,
        overhead,
        inner: q.get(overhead..)?,
    })
}

/// The client's flow in a quoted inner packet: (protocol, client, VIP, IPv6, DF), if it is
/// TCP or UDP with its ports in the quote.
fn quoted_flow(inner: &[u8]) -> Option<(crate::Protocol, SocketAddr, SocketAddr, bool, bool)> {
    let (v6, l4, proto, src, dst, df) = match inner.first()? >> 4 {
        4 if inner.len() >= 20 => {
            let ihl = usize::from(inner[0] & 0xf) * 4;
            let a = |i: usize| IpAddr::from([inner[i], inner[i + 1], inner[i + 2], inner[i + 3]]);
            (false, ihl, inner[9], a(12), a(16), inner[6] & 0x40 != 0)
        }
        6 if inner.len() >= 40 => {
            let a = |i: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&inner[i..i + 16]);
                IpAddr::from(b)
            };
            (true, 40, inner[6], a(8), a(24), false)
        }
        _ => return None,
    };
    let proto = crate::Protocol::from_number(proto)?;
    let ports = inner.get(l4..l4 + 4)?;
    let sport = u16::from_be_bytes([ports[0], ports[1]]);
    let dport = u16::from_be_bytes([ports[2], ports[3]]);
    Some((
        proto,
        SocketAddr::new(src, sport),
        SocketAddr::new(dst, dport),
        v6,
        df,
    ))
}

impl Balancer<'_> {
    /// An ICMP error addressed to a tunnel source (`p`, in `buf[..len]`): `None` when `p` is not
    /// addressed to one. The path toward a real server telling lb-core that a tunnelled packet
    /// did not get through: relayed to the client as the kernel's `ip_vs_in_icmp` does, from
    /// the VIP, quoting the client's packet, "fragmentation needed" / "packet too big" with the
    /// MTU left once the tunnel headers are taken off (and not at all for an IPv4 packet
    /// without DF, nor below IPv4's 68 or IPv6's 1,280 bytes), any other error with its own
    /// type and code when the client's family is the path's. Anything else sent there is a
    /// counted drop (`icmp_mismatch`): it would loop, and nothing of lb's own listens there.
    pub(super) fn tunnel_icmp(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        p: &Parsed,
    ) -> Option<Verdict> {
        let to = p.dst.ip();
        let ours = match to {
            IpAddr::V4(a) => self.settings.tunnel_source_v4 == Some(a),
            IpAddr::V6(a) => self.settings.tunnel_source_v6 == Some(a),
        };
        if !ours {
            return None;
        }
        let icmp_at = usize::from(p.l4_offset);
        let relay = buf.get(icmp_at..len).and_then(|icmp| {
            let (ty, code) = (*icmp.first()?, *icmp.get(1)?);
            // As the kernel's ICMP relay: unreachable (with "too big"), source quench and time
            // exceeded. A parameter problem points into the outer headers: nothing the client
            // could act on.
            // An unreachable *protocol* or *port* is the outer packet's (IPIP or GRE not taken,
            // the GUE port closed): told to the client it would read as its own TCP or UDP
            // being refused and drop the connection, so it is not relayed (the kernel relays
            // it as it came).
            let outer_refused = if p.v6 {
                ty == 1 && code == 4
            } else {
                ty == 3 && matches!(code, 2 | 3)
            };
            let error = !outer_refused
                && if p.v6 {
                    matches!(ty, 1..=3)
                } else {
                    matches!(ty, 3 | 4 | 11)
                };
            let too_big = if p.v6 { ty == 2 } else { ty == 3 && code == 4 };
            let icmp_proto = if p.v6 { PROTO_ICMPV6 } else { PROTO_ICMP };
            if p.proto != icmp_proto || !error {
                return None;
            }
            let q = quoted_tunnel(icmp.get(8..)?, to)?;
            let (proto, client, vip, inner_v6, df) = quoted_flow(q.inner)?;
            // The connection it is about, tunnelled to the real server the outer packet went to.
            let svc = self.director.lookup(proto, vip, None)?;
            let h = self.find_addrs(proto, client, vip, Some(svc)).1?;
            let e = self.conns.get(h)?;
            let rip = self.director.server(e.server)?.addr().ip();
            if !e.flags.contains(method::TUNNEL) || rip != q.rip {
                return None;
            }
            let head = if too_big {
                let reported = if p.v6 {
                    u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]])
                } else {
                    u32::from(u16::from_be_bytes([icmp[6], icmp[7]]))
                };
                let left = (reported as usize).checked_sub(q.overhead)?;
                if inner_v6 {
                    let m = (left.max(IPV6_MIN_MTU) as u32).to_be_bytes();
                    [2, 0, 0, 0, m[0], m[1], m[2], m[3]]
                } else {
                    if !df || left < IPV4_MIN_MTU {
                        return None;
                    }
                    let m = (left.min(usize::from(u16::MAX)) as u16).to_be_bytes();
                    [3, 4, 0, 0, 0, 0, m[0], m[1]]
                }
            } else if inner_v6 == p.v6 {
                [ty, code, 0, 0, icmp[4], icmp[5], icmp[6], icmp[7]]
            } else {
                return None;
            };
            Some((
                client.ip(),
                vip.ip(),
                head,
                q.inner.len(),
                icmp_at + 8 + q.overhead,
            ))
        });
        let Some((client, vip, head, inner_len, inner_at)) = relay else {
            return Some(self.drop(DropReason::IcmpMismatch, false));
        };
        if !self.limiter.allow(&self.settings, now, client) {
            return Some(self.drop(DropReason::ReplyRateLimited, false));
        }
        let cap = buf.len().min(super::REPLY_MAX);
        let quote = &buf[inner_at..inner_at + inner_len];
        let Some(n) = nat::write_icmp_to(&mut self.scratch[..cap], vip, client, head, quote) else {
            return Some(self.drop(DropReason::NoRoomForReply, false));
        };
        buf[..n].copy_from_slice(&self.scratch[..n]);
        self.counters.replies += 1;
        self.counters.tunnel_icmp_relayed += 1;
        Some(Verdict::Reply(Transmit::of(&buf[..n])))
    }
}

/// Completes the partial TCP/UDP checksum of `p` (in `pkt`, the IP packet to its end) in
/// software, as the device would have: the sum from the L4 header to the end, with the field
/// in place, complemented. False when `p` is not a TCP or UDP packet whose checksum field
/// lies in `pkt` (the frontend marked something else partial).
fn complete_inner(pkt: &mut [u8], p: &Parsed) -> bool {
    let field = match (p.kind, p.proto) {
        (Kind::Transport, PROTO_TCP) => 16,
        (Kind::Transport, PROTO_UDP) => 6,
        _ => return false,
    };
    pkt.get_mut(usize::from(p.l4_offset)..)
        .is_some_and(|l4| checksum::complete_partial(l4, field))
}
