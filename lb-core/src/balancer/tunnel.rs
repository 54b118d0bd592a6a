//! Handing a client's packet to its real server by the entry's method (docs/ipvs-semantics.md
//! §6, docs/tunnels.md): NAT rewrites it; direct routing sends it unchanged to the real server as
//! next hop; a tunnel builds the outer headers here and [`Balancer::encapsulate`] puts them
//! in front of the packet once the verdict is known. DR and tunnels check the path MTU first,
//! as the kernel's `ensure_mtu_is_adequate` does.
//!
//! Why the headers wait: the datapath works on the packet's own slice of the buffer, which
//! starts at the packet; only the caller of [`Balancer::process_at`] knows the headroom in
//! front of it. So the forward step builds the headers into [`Balancer`]'s `outer` (they
//! depend on the inner packet alone: its length, TTL, DS field, DF and flow) and the entry
//! point places them: into the headroom when there is enough, else by moving the packet back
//! (the buffer then needs that much room after the packet).

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
    /// headers to go in front of it. `Err` holds the verdict instead: a counted drop, or the
    /// ICMP "too big" answer of a packet over the path MTU.
    #[allow(clippy::too_many_arguments)]
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
    ) -> Result<(), Verdict> {
        if method::is_nat(flags) {
            return nat::rewrite_dst(&mut buf[..len], p, dest)
                .map_err(|_| self.drop(DropReason::Malformed, syn));
        }
        if flags.contains(method::ROUTE) {
            return self.fits_path(now, buf, len, p, 0, syn);
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

    /// Builds the outer headers that carry `p` by `kind` to `rip`, after the path-MTU and
    /// room checks (see [`send_to_server`](Self::send_to_server)).
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
    ) -> Result<(), Verdict> {
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
        match tunnel::build(&buf[..inner_len], kind, src, rip, self.ip_id) {
            Ok(outer) => {
                self.outer = outer;
                self.counters.tunnelled += 1;
                Ok(())
            }
            Err(_) => Err(self.drop(DropReason::Malformed, syn)),
        }
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

    /// Puts the outer headers the forward step built (in `self.outer`) in front of the packet
    /// of verdict `v`, which starts at `buf[start]`: into the headroom when it is large enough,
    /// else by moving the packet back by their length (the forward step checked the room).
    #[cold]
    #[inline(never)]
    pub(super) fn encapsulate(&mut self, buf: &mut [u8], start: usize, v: Verdict) -> Verdict {
        let outer = core::mem::replace(&mut self.outer, Outer::NONE);
        let Verdict::ToServer(t) = v else {
            return v;
        };
        let hl = outer.len();
        let at = if start >= hl {
            start - hl
        } else {
            buf.copy_within(start..start + t.len, start + hl);
            start
        };
        buf[at..at + hl].copy_from_slice(outer.as_bytes());
        Verdict::ToServer(Transmit {
            dst: t.dst,
            start: at,
            len: t.len + hl,
        })
    }
}

/// Whether the IPv4 header at the start of `pkt` has DF set.
fn ipv4_df(pkt: &[u8]) -> bool {
    pkt.get(6).is_some_and(|b| b & 0x40 != 0)
}
