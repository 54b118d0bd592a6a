//! What the unit tests share: an in-memory packet device and the packets they build.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;

use smoltcp::wire::Ipv4Address;

use crate::tun::PacketIo;

/// In-memory device for a [`PacketRing`](crate::tun::PacketRing): `recv` pops `inbox` (a packet
/// longer than the buffer is cut to it, as a TUN read is), `send` appends to `outbox`.
#[derive(Default)]
pub struct FakeIo {
    pub inbox: RefCell<VecDeque<Vec<u8>>>,
    pub outbox: RefCell<Vec<Vec<u8>>>,
    /// The next hop of each packet in `outbox` that was sent with one (`send_to`).
    pub hops: RefCell<Vec<std::net::IpAddr>>,
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

    fn send_to(&self, pkt: &[u8], next_hop: std::net::IpAddr) -> io::Result<bool> {
        self.hops.borrow_mut().push(next_hop);
        self.send(pkt)
    }
}

/// An ICMP echo request from `src` to `dst` with identifier `ident` (built by lb-testkit).
pub fn icmp_echo_request(src: Ipv4Address, dst: Ipv4Address, ident: u16) -> Vec<u8> {
    lb_testkit::pkt::echo_request(src.into(), dst.into(), ident, 1, b"ping")
}
