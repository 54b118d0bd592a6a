//! The verdicts the balancer makes itself: a counted pass or drop, or a generated answer (TCP
//! RST, ICMP port unreachable, echo reply) built in the scratch buffer and copied over the
//! packet. Every answer is rate-limited first (`ratelimit.rs`): over the limit, it is a drop
//! counted under [`DropReason::ReplyRateLimited`].

use crate::addr::Protocol;
use crate::nat;
use crate::packet::Parsed;
use crate::tcp;
use crate::time::Instant;
use crate::verdict::{DropReason, Transmit, Verdict};

use super::{Balancer, REPLY_MAX};

impl Balancer<'_> {
    #[inline]
    pub(super) fn pass(&mut self, pkt: &[u8]) -> Verdict {
        self.counters.passed += 1;
        Verdict::Pass(Transmit::of(pkt))
    }

    #[inline]
    pub(super) fn drop(&mut self, reason: DropReason, syn: bool) -> Verdict {
        self.counters.drops[reason.index()] += 1;
        if syn {
            self.counters.syn_drops += 1;
        }
        Verdict::Drop(reason)
    }

    /// A packet to a virtual address on a port or protocol no service serves: answered (TCP
    /// RST, ICMP port unreachable) or dropped, never passed on.
    pub(super) fn answer_unserved(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        p: &Parsed,
    ) -> Verdict {
        match p.transport() {
            Some(Protocol::Tcp) => self.answer_tcp(now, buf, len, p, DropReason::NoService),
            Some(Protocol::Udp) => self.answer_udp(now, buf, len, p, DropReason::NoService),
            None => self.drop(DropReason::NoService, false),
        }
    }

    /// Answers a TCP packet with a RST (never a RST to a RST); `reason` counts a drop when no
    /// answer is possible, [`DropReason::ReplyRateLimited`] when the limit holds it back.
    pub(super) fn answer_tcp(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        p: &Parsed,
        reason: DropReason,
    ) -> Verdict {
        if p.tcp_flags & tcp::flags::RST != 0 {
            return self.drop(reason, false);
        }
        let syn = p.tcp_flags & tcp::flags::SYN != 0;
        self.reply_with(now, p, buf, reason, syn, |out, b| {
            nat::write_tcp_rst(out, p, &b[..len])
        })
    }

    /// Answers a UDP packet with ICMP port unreachable from the address it was sent to (or
    /// drops it: `reason`, or [`DropReason::ReplyRateLimited`]).
    pub(super) fn answer_udp(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        p: &Parsed,
        reason: DropReason,
    ) -> Verdict {
        let src = p.dst.ip();
        self.reply_with(now, p, buf, reason, false, |out, b| {
            nat::write_icmp_port_unreachable(out, &b[..len], p, src)
        })
    }

    /// Builds a reply to `p`'s source in the scratch buffer, then copies it over the packet.
    /// When the reply limit holds it back, a drop counted as
    /// [`DropReason::ReplyRateLimited`]; when it does not fit, a drop counted as `no_room` (the
    /// caller's reason: `NoService` for an unserved packet, `NoRoomForReply` for an echo). `syn`
    /// counts the drop as a dropped SYN too.
    pub(super) fn reply_with(
        &mut self,
        now: Instant,
        p: &Parsed,
        buf: &mut [u8],
        no_room: DropReason,
        syn: bool,
        write: impl FnOnce(&mut [u8], &[u8]) -> Option<usize>,
    ) -> Verdict {
        if !self.limiter.allow(&self.settings, now, p.src.ip()) {
            return self.drop(DropReason::ReplyRateLimited, syn);
        }
        let cap = buf.len().min(REPLY_MAX);
        let Some(n) = write(&mut self.scratch[..cap], buf) else {
            return self.drop(no_room, syn);
        };
        buf[..n].copy_from_slice(&self.scratch[..n]);
        self.counters.replies += 1;
        Verdict::Reply(Transmit::of(&buf[..n]))
    }
}
