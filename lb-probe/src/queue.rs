//! [`QueueDevice`]: a smoltcp device over two packet queues, for a frontend that moves the
//! probes' packets itself (lb-tun diverts the packets for its probe sources from the TUN
//! device into `rx` and writes `tx` back to it) and for tests.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;

/// A `Medium::Ip` device whose received packets are taken from `rx` and whose transmitted
/// packets are pushed to `tx`.
#[derive(Debug)]
pub struct QueueDevice {
    /// Packets for the interface (whole IP packets).
    pub rx: VecDeque<Vec<u8>>,
    /// Packets the interface sent.
    pub tx: VecDeque<Vec<u8>>,
    mtu: usize,
    /// Most packets `tx` holds; the interface is told the device is busy beyond it.
    tx_max: usize,
}

impl QueueDevice {
    /// An empty device with this MTU, holding at most `tx_max` unsent packets.
    pub fn new(mtu: usize, tx_max: usize) -> Self {
        QueueDevice {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            mtu,
            tx_max,
        }
    }
}

/// A received packet.
pub struct QueueRx(Vec<u8>);

/// Room for one packet in `tx`.
pub struct QueueTx<'a>(&'a mut VecDeque<Vec<u8>>);

impl RxToken for QueueRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for QueueTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = alloc::vec![0; len];
        let r = f(&mut buf);
        self.0.push_back(buf);
        r
    }
}

impl Device for QueueDevice {
    type RxToken<'a> = QueueRx;
    type TxToken<'a> = QueueTx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(QueueRx, QueueTx<'_>)> {
        if self.tx.len() >= self.tx_max {
            return None;
        }
        let p = self.rx.pop_front()?;
        Some((QueueRx(p), QueueTx(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<QueueTx<'_>> {
        (self.tx.len() < self.tx_max).then_some(QueueTx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ip;
        c.max_transmission_unit = self.mtu;
        c
    }
}
