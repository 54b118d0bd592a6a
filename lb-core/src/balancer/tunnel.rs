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

use crate::config::{ForwardMethod, TunnelKind};
use crate::conn::ConnFlags;
use crate::nat;
use crate::packet::{Kind, Parsed};
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
            return match nat::rewrite_dst(&mut buf[..len], p, dest) {
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
