//! Packets in: [`Balancer::process`] (the fast path first), [`Balancer::process_burst`] (the
//! same, its look-ups staged), `Balancer::process_general` (the general path alone, feature `internals`), and the
//! general path's dispatch of a parsed packet by kind.

use core::net::IpAddr;

use crate::conn::Handle;
use crate::director::Unmatched;
use crate::packet::{self, Flow, Kind, Malformed, Parsed};
use crate::service::ServiceId;
use crate::time::Instant;
use crate::verdict::{DropReason, Transmit, Verdict};

use super::matching::FlowKey;
use super::{Balancer, Packet};

impl Balancer<'_> {
    /// Processes one IP packet (no link-layer header) held in `buf[..len]`, rewriting it in
    /// place; call for every packet the frontend receives, in arrival order, with the current
    /// time. The [`Verdict`] says what to do next: send `buf[t.range()]` toward `t.dst`, or
    /// drop. Here `t.start` is always 0.
    ///
    /// `buf` may be longer than the packet: its capacity bounds a generated reply (a TCP RST,
    /// an ICMP error quoting the packet, an echo reply). Give it at least
    /// [`REPLY_MAX`](crate::REPLY_MAX) bytes (1,280) and every reply fits; with less, a reply
    /// that does not fit is a counted drop ([`DropReason::NoRoomForReply`]). NAT and direct
    /// routing never grow a packet; a tunnel (`-i`) puts up to
    /// [`tunnel::MAX_OVERHEAD`](crate::tunnel::MAX_OVERHEAD) bytes of headers in front of it,
    /// moving the packet back to make room, so for tunnel services leave that much after the
    /// packet (else [`DropReason::NoHeadroom`]), or leave it in front and call
    /// [`process_at`](Balancer::process_at), which moves nothing.
    pub fn process(&mut self, now: Instant, buf: &mut [u8], len: usize) -> Verdict {
        // No headroom: a tunnelled packet was moved and its headers written already.
        self.process_here(now, buf, len)
    }

    /// [`process`](Balancer::process) for a packet held in `buf[start..start + len]`, with
    /// `start` bytes of headroom in front of it: the outer headers of a tunnelled packet go
    /// into the headroom (when it holds them: [`tunnel::MAX_OVERHEAD`](crate::tunnel::MAX_OVERHEAD)
    /// bytes always do), so the packet is never moved. The verdict's
    /// [`Transmit::range`](crate::Transmit::range) says where the packet to send now starts:
    /// `start`, or before it for a tunnelled packet.
    pub fn process_at(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        start: usize,
        len: usize,
    ) -> Verdict {
        let start = start.min(buf.len());
        self.headroom = start;
        let v = self.process_here(now, &mut buf[start..], len);
        self.headroom = 0;
        if self.outer.is_empty() {
            shifted(v, start)
        } else {
            self.encapsulate(buf, start, v)
        }
    }

    /// [`process_at`](Balancer::process_at) of `pkt`, honouring and updating its
    /// [`csum_partial`](Packet::csum_partial): call it instead for packets whose device may
    /// hand over a partial TCP/UDP checksum (checksum offload). On return `pkt.csum_partial`
    /// says whether the packet to send, `pkt.buf[t.range()]`, still has one.
    pub fn process_packet(&mut self, now: Instant, pkt: &mut Packet<'_>) -> Verdict {
        if !pkt.csum_partial {
            return self.process_at(now, pkt.buf, pkt.start, pkt.len);
        }
        // The general path alone: the fast path's rewrite assumes a complete checksum.
        let start = pkt.start.min(pkt.buf.len());
        self.headroom = start;
        self.csum_partial = true;
        let v = self.general(now, &mut pkt.buf[start..], pkt.len);
        self.headroom = 0;
        let v = if self.outer.is_empty() {
            shifted(v, start)
        } else {
            self.encapsulate(pkt.buf, start, v)
        };
        pkt.csum_partial = self.csum_partial && still_partial(&v);
        self.csum_partial = false;
        v
    }

    /// `process` of the packet in `buf[..len]`; tunnel headers that fit the headroom
    /// (`self.headroom`) are left in `self.outer` for the caller to place.
    #[inline(always)]
    fn process_here(&mut self, now: Instant, buf: &mut [u8], len: usize) -> Verdict {
        let len = len.min(buf.len());
        if let Some(f) = packet::parse_flow(&buf[..len]) {
            let (svc, hash) = self.look(&f);
            let found = self.find_flow(hash, &FlowKey::of(&f), svc);
            return self.process_flow(now, buf, len, &f, svc, hash, found);
        }
        self.general(now, buf, len)
    }

    /// [`process`](Balancer::process) without the established-flow fast path
    /// ([`parse_flow`](packet::parse_flow) and what follows): every packet parsed in full and
    /// taken through the general path. The same verdicts, bytes and counters, only slower:
    /// the reference the differential tests and the fuzz target hold the fast path to.
    #[cfg(feature = "internals")]
    pub fn process_general(&mut self, now: Instant, buf: &mut [u8], len: usize) -> Verdict {
        self.general(now, buf, len)
    }

    /// The general path (see `process_general`).
    pub(crate) fn general(&mut self, now: Instant, buf: &mut [u8], len: usize) -> Verdict {
        let len = len.min(buf.len());
        match packet::parse(&buf[..len]) {
            Ok(ref p) => match p.fragment {
                None => self.process_parsed(now, buf, len, p, Hint::None),
                Some(f) => self.fragmented(now, buf, len, p, f),
            },
            Err(m) => self.unparsed(&buf[..len], m),
        }
    }

    /// Processes a burst of packets; `verdicts[i]` is the verdict for `pkts[i]`. Equivalent to
    /// calling [`process_packet`](Balancer::process_packet) on each in order (so each packet's
    /// [`csum_partial`](Packet::csum_partial) is honoured and updated), but the table lookups
    /// of the whole burst are issued together first, so their cache misses overlap.
    pub fn process_burst(
        &mut self,
        now: Instant,
        pkts: &mut [Packet<'_>],
        verdicts: &mut [Verdict],
    ) {
        // Two copies of the loop: the one for bursts without headroom and without partial
        // checksums is the loop as it was before there were any, instruction for instruction.
        if pkts.iter().any(|p| p.start != 0 || p.csum_partial) {
            self.burst::<true>(now, pkts, verdicts);
        } else {
            self.burst::<false>(now, pkts, verdicts);
        }
    }

    /// `process_burst`; `HEADROOM`: some packet has headroom or a partial checksum (else
    /// every `start` is 0 and every `csum_partial` false).
    #[inline(always)]
    fn burst<const HEADROOM: bool>(
        &mut self,
        now: Instant,
        pkts: &mut [Packet<'_>],
        verdicts: &mut [Verdict],
    ) {
        const STAGE: usize = 32;
        let n = pkts.len().min(verdicts.len());
        let mut start = 0;
        while start < n {
            let end = (start + STAGE).min(n);
            let count = end - start;
            let mut flows = [Flow::EMPTY; STAGE];
            let mut staged = [Staged::No; STAGE];
            let mut hashes = [0u64; STAGE];
            let mut found: [Option<Handle>; STAGE] = [None; STAGE];
            // Stage 1: read the packets of the common shape (TCP/UDP, no IP options or
            // extension headers), find their live service (the services do not change during
            // a burst) and hash their client side: the source of a forward packet, the
            // destination of a reply. Other packets take the full path in stage 3.
            for (i, pkt) in pkts[start..end].iter().enumerate() {
                let at = if HEADROOM {
                    pkt.start.min(pkt.buf.len())
                } else {
                    0
                };
                let len = pkt.len.min(pkt.buf.len() - at);
                if let Some(f) = packet::parse_flow(&pkt.buf[at..at + len]) {
                    let (svc, hash) = self.look(&f);
                    flows[i] = f;
                    hashes[i] = hash;
                    staged[i] = Staged::Flow(svc);
                }
            }
            // Stage 2: all index slots, then all entries, both directions.
            let gen = self.generation;
            {
                let director = &self.director;
                self.conns
                    .find_burst(&hashes[..count], &mut found[..count], |i, e| {
                        match staged[i] {
                            Staged::No => false,
                            Staged::Flow(svc) => FlowKey::of(&flows[i]).matches(director, e, svc),
                        }
                    });
            }
            // Stage 3: state machine and rewrite, in order. The lookups stay valid while no
            // entry was inserted or removed.
            for i in 0..count {
                let pkt = &mut pkts[start + i];
                let at = if HEADROOM {
                    pkt.start.min(pkt.buf.len())
                } else {
                    0
                };
                let buf = &mut pkt.buf[at..];
                let len = pkt.len.min(buf.len());
                // Tunnel headers go into the headroom when it holds them (`tunnel.rs`).
                if HEADROOM {
                    self.headroom = at;
                    self.csum_partial = pkt.csum_partial;
                }
                let v = match staged[i] {
                    // Not of the common shape (parse_flow refused it in stage 1), or with a
                    // partial checksum, which the fast path's rewrite does not follow.
                    Staged::No => self.general(now, buf, len),
                    Staged::Flow(_) if HEADROOM && pkt.csum_partial => self.general(now, buf, len),
                    Staged::Flow(svc) => {
                        let f = &flows[i];
                        let h = if self.generation == gen {
                            found[i]
                        } else {
                            self.find_flow(hashes[i], &FlowKey::of(f), svc)
                        };
                        self.process_flow(now, buf, len, f, svc, hashes[i], h)
                    }
                };
                verdicts[start + i] = if !HEADROOM || at == 0 {
                    v
                } else {
                    self.headroom = 0;
                    if self.outer.is_empty() {
                        shifted(v, at)
                    } else {
                        self.encapsulate(pkt.buf, at, v)
                    }
                };
                if HEADROOM && pkt.csum_partial {
                    pkt.csum_partial = self.csum_partial && still_partial(&verdicts[start + i]);
                    self.csum_partial = false;
                }
            }
            start = end;
        }
    }

    /// A packet lb-core cannot parse. Tiny fragments, IPv6 extension-header chains it does not
    /// follow (a Routing header with segments left: the packet is not at its final destination)
    /// and ICMP errors whose quote lb-core cannot read (too short, of the other family: the
    /// outer packet is well-formed) that are not addressed to a virtual address pass on
    /// untouched, as a router would; those to a VIP are counted drops. Anything else malformed
    /// is a counted drop.
    fn unparsed(&mut self, pkt: &[u8], m: Malformed) -> Verdict {
        if matches!(
            m,
            Malformed::TinyFragment
                | Malformed::Ipv6ExtensionHeaders
                | Malformed::BadEmbeddedPacket
        ) {
            if let Some(dst) = raw_destination(pkt) {
                if !self.is_vip(dst) {
                    return self.pass(pkt);
                }
            }
        }
        self.drop(malformed_reason(m), false)
    }

    pub(super) fn process_parsed(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        p: &Parsed,
        hint: Hint,
    ) -> Verdict {
        match p.kind {
            Kind::Transport => {
                let Some(proto) = p.transport() else {
                    return self.not_ours(now, buf, len, p);
                };
                let (svc, found) = match hint {
                    Hint::Forward(svc, hash, found) => (Some(svc), Some((hash, found))),
                    Hint::Reply(_) => (None, None),
                    Hint::None => (self.director.lookup(proto, p.dst, None), None),
                };
                if let Some(svc) = svc {
                    return self.inbound(now, buf, len, p, proto, svc, found);
                }
                let reply = match hint {
                    Hint::Reply(found) => found,
                    _ => self.find_reply(proto, p.src, p.dst),
                };
                if let Some(h) = reply {
                    return self.outbound(now, buf, len, p, h);
                }
                match self.director.unmatched(proto, p.dst) {
                    // Flows of a deleted service: expired and answered like a removed server's.
                    Unmatched::Retired(svc) => self.inbound(now, buf, len, p, proto, svc, None),
                    Unmatched::Vip => self.answer_unserved(now, buf, len, p),
                    Unmatched::Other => self.pass(&buf[..len]),
                }
            }
            // ICMP errors to a tunnel source are about tunnelled packets (`tunnel.rs`); the
            // quoted outer packet is UDP for GUE (an `IcmpError`), IPIP or GRE otherwise.
            Kind::IcmpError(ie) => match self.tunnel_icmp(now, buf, len, p) {
                Some(v) => v,
                None => self.icmp_error(now, buf, len, p, &ie),
            },
            Kind::EchoRequest => self.echo_request(now, buf, len, p),
            Kind::Other if matches!(p.proto, packet::PROTO_ICMP | packet::PROTO_ICMPV6) => {
                match self.tunnel_icmp(now, buf, len, p) {
                    Some(v) => v,
                    None => self.not_ours(now, buf, len, p),
                }
            }
            // Later fragments never come here (`fragmented` takes them): not ours.
            Kind::Other | Kind::Fragment => self.not_ours(now, buf, len, p),
        }
    }

    /// A packet that is neither for a service nor a reply of a tracked flow: pass it on, unless
    /// it is addressed to a virtual address, where it would loop.
    fn not_ours(&mut self, now: Instant, buf: &mut [u8], len: usize, p: &Parsed) -> Verdict {
        if !self.is_vip(p.dst.ip()) {
            return self.pass(&buf[..len]);
        }
        self.answer_unserved(now, buf, len, p)
    }
}

/// What a burst's first stage found out about a packet.
#[derive(Clone, Copy)]
enum Staged {
    /// Not of the common shape: the full path, in order.
    No,
    /// A [`Flow`] for this live service, or for none (looked up as a reply).
    Flow(Option<ServiceId>),
}

/// Look-ups already made for a packet (valid while no entry was inserted or removed).
#[derive(Clone, Copy)]
pub(super) enum Hint {
    /// None: look everything up.
    None,
    /// The packet's live service, its flow hash and its connection entry, if any.
    Forward(ServiceId, u64, Option<Handle>),
    /// No live service; the reply's entry, if any.
    Reply(Option<Handle>),
}

/// The destination address of a packet whose fixed IP header is intact.
fn raw_destination(pkt: &[u8]) -> Option<IpAddr> {
    match pkt.first()? >> 4 {
        4 => {
            let b: [u8; 4] = pkt.get(16..20)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        6 => {
            let b: [u8; 16] = pkt.get(24..40)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        _ => None,
    }
}

fn malformed_reason(m: Malformed) -> DropReason {
    match m {
        Malformed::BadIpv4HeaderChecksum => DropReason::BadIpChecksum,
        Malformed::TinyFragment => DropReason::Fragment,
        Malformed::Ipv6ExtensionHeaders => DropReason::Ipv6ExtensionHeaders,
        _ => DropReason::Malformed,
    }
}

/// Whether the packet of verdict `v`, which came in with a partial checksum that lb-core did
/// not complete, still has it: the packet itself goes on (not a generated reply, not a drop).
#[inline(always)]
fn still_partial(v: &Verdict) -> bool {
    matches!(
        v,
        Verdict::ToServer(_) | Verdict::ToClient(_) | Verdict::Pass(_)
    )
}

/// Verdict `v` of a packet processed at `buf[start..]`, its transmit range made absolute.
#[inline(always)]
fn shifted(v: Verdict, start: usize) -> Verdict {
    // The verdict's own start is 0.
    let at = |t: Transmit| Transmit { start, ..t };
    match v {
        Verdict::ToServer(t) => Verdict::ToServer(at(t)),
        Verdict::ToClient(t) => Verdict::ToClient(at(t)),
        Verdict::Pass(t) => Verdict::Pass(at(t)),
        Verdict::Reply(t) => Verdict::Reply(at(t)),
        Verdict::Drop(r) => Verdict::Drop(r),
    }
}
