//! What the unit tests share: an in-memory packet device and the packets they build.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;

use smoltcp::wire::Ipv4Address;

use crate::tun::{PacketIo, VNET_HDR_LEN};

/// In-memory device for a [`PacketRing`](crate::tun::PacketRing): `recv` pops `inbox` (a packet
/// longer than the buffer is cut to it, as a TUN read is), `send` appends to `outbox`.
#[derive(Default)]
pub struct FakeIo {
    pub inbox: RefCell<VecDeque<Vec<u8>>>,
    pub outbox: RefCell<Vec<Vec<u8>>>,
    /// The next hop of each packet in `outbox` that was sent with one (`send_to`).
    pub hops: RefCell<Vec<std::net::IpAddr>>,
    /// The virtio-net header of each packet in `inbox` (zeros when shorter), as a device with
    /// offloads hands them over.
    pub inbox_vnet: RefCell<VecDeque<[u8; VNET_HDR_LEN]>>,
    /// The header each packet of `outbox` was written with (zeros for `send`).
    pub outbox_vnet: RefCell<Vec<[u8; VNET_HDR_LEN]>>,
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
    fn recv_vnet(&self, hdr: &mut [u8; VNET_HDR_LEN], buf: &mut [u8]) -> io::Result<Option<usize>> {
        *hdr = self.inbox_vnet.borrow_mut().pop_front().unwrap_or_default();
        self.recv(buf)
    }

    fn send_vnet(&self, hdr: &[u8; VNET_HDR_LEN], pkt: &[u8]) -> io::Result<bool> {
        self.outbox.borrow_mut().push(pkt.to_vec());
        self.outbox_vnet.borrow_mut().push(*hdr);
        Ok(true)
    }

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
        self.outbox_vnet.borrow_mut().push([0; VNET_HDR_LEN]);
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
