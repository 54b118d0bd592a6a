//! What the unit tests share: an in-memory packet device and the packets they build.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr};

use crate::tun::PacketIo;

/// In-memory device for a [`PacketRing`](crate::tun::PacketRing): `recv` pops `inbox` (a packet
/// longer than the buffer is cut to it, as a TUN read is), `send` appends to `outbox`.
#[derive(Default)]
pub struct FakeIo {
    pub inbox: RefCell<VecDeque<Vec<u8>>>,
    pub outbox: RefCell<Vec<Vec<u8>>>,
}

impl FakeIo {
    /// A device with `pkts` waiting to be read.
    pub fn with(pkts: &[Vec<u8>]) -> FakeIo {
        let io = FakeIo::default();
        io.inbox.borrow_mut().extend(pkts.iter().cloned());
        io
    }
}

impl PacketIo for FakeIo {
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let Some(p) = self.inbox.borrow_mut().pop_front() else {
            return Ok(None);
        };
        let n = p.len().min(buf.len());
        buf[..n].copy_from_slice(&p[..n]);
        Ok(Some(n))
    }

    fn send(&self, pkt: &[u8]) -> io::Result<bool> {
        self.outbox.borrow_mut().push(pkt.to_vec());
        Ok(true)
    }
}

/// An ICMP echo request from `src` to `dst` with identifier `ident`.
pub fn icmp_echo_request(src: Ipv4Address, dst: Ipv4Address, ident: u16) -> Vec<u8> {
    let icmp = Icmpv4Repr::EchoRequest {
        ident,
        seq_no: 1,
        data: b"ping",
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        hop_limit: 64,
    };
    let mut buf = vec![0u8; ip.buffer_len() + icmp.buffer_len()];
    let caps = ChecksumCapabilities::default();
    let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
    ip.emit(&mut p, &caps);
    icmp.emit(&mut Icmpv4Packet::new_unchecked(p.payload_mut()), &caps);
    buf
}
