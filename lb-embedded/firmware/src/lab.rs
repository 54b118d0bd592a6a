//! The in-memory network of the firmware example, `Medium::Ip` (plain `no_std` code, also
//! run on the host by `lb-embedded/tests/firmware_lab.rs`).
//!
//! Every millisecond-tick ([`NEW_CLIENT_EVERY_MS`]) the device produces a new client SYN to the
//! virtual service; when the gateway forwards a SYN to a real server, the device answers with
//! that server's SYN-ACK; when the gateway delivers the SYN-ACK back to the client (rewritten to
//! come from the VIP), the client answers with an ACK and a RST, which the gateway forwards
//! and which close the entry. So the gateway runs its whole path: schedule, NAT both ways, the TCP state
//! machine and the timers.
//!
//! The gateway also runs both sync daemons, as each of a keepalived pair does
//! (docs/sync.md §4.1): the master sends every connection's close to 224.0.0.81:8848, which the
//! device counts ([`LabDevice::sync_messages`]); no peer master sends anything to the backup.
//!
//! And it checks one real server's health ([`configure_health`]): a TCP probe every second
//! from the gateway's own address, which the device's server answers like any SYN.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use lb_embedded::lb_core::{Duration, HealthCheck, HealthError, Instant, ServiceKey};
use lb_embedded::route::Route;
use lb_embedded::smoltcp::phy::{self, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use lb_embedded::smoltcp::time::Instant as SmolInstant;
use lb_embedded::smoltcp::wire::{
    IpAddress, IpCidr, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr,
    TcpSeqNumber, UdpPacket,
};
use lb_embedded::{Gateway, LineError};

/// A new client connects this often.
pub const NEW_CLIENT_EVERY_MS: i64 = 16;

pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
pub const CONFIG: &[&str] = &[
    "-A -t 192.0.2.10:80 -s wrr",
    "-a -t 192.0.2.10:80 -r 10.1.0.11:8080 -m -w 3",
    "-a -t 192.0.2.10:80 -r 10.1.0.12:8080 -m -w 2",
    "-a -t 192.0.2.10:80 -r 10.1.0.13:8080 -m -w 1",
    "-A -u 192.0.2.10:53 -s rr",
    "-a -u 192.0.2.10:53 -r 10.1.0.11:53 -m",
    // One link: the interface name is not used.
    "--start-daemon master --mcast-interface lab0 --syncid 1",
    "--start-daemon backup --mcast-interface lab0 --syncid 1",
];

const SLOTS: usize = 8;
const SLOT_BYTES: usize = 64;
const MTU: usize = 1500;

/// The in-memory network (see the crate docs).
pub struct LabDevice {
    ring: [[u8; SLOT_BYTES]; SLOTS],
    lens: [usize; SLOTS],
    head: usize,
    queued: usize,
    tx: [u8; MTU],
    next_client: u32,
    /// SYN-ACKs delivered to clients through the gateway.
    pub handshakes: u32,
    /// Sync messages the gateway's master sent (UDP to the sync group's port).
    pub sync_messages: u32,
    last_client_ms: i64,
}

impl LabDevice {
    /// An empty network.
    pub const fn new() -> Self {
        LabDevice {
            ring: [[0; SLOT_BYTES]; SLOTS],
            lens: [0; SLOTS],
            head: 0,
            queued: 0,
            tx: [0; MTU],
            next_client: 0,
            handshakes: 0,
            sync_messages: 0,
            last_client_ms: i64::MIN,
        }
    }

    /// Queues a TCP segment for the gateway to receive.
    fn push_tcp(
        &mut self,
        src: (Ipv4Addr, u16),
        dst: (Ipv4Addr, u16),
        control: TcpControl,
        ack: Option<u32>,
    ) {
        if self.queued == SLOTS {
            return;
        }
        let tcp = TcpRepr {
            src_port: src.1,
            dst_port: dst.1,
            control,
            seq_number: TcpSeqNumber(0x1000),
            ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
            window_len: 4096,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        };
        let ip = Ipv4Repr {
            src_addr: src.0,
            dst_addr: dst.0,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let slot = (self.head + self.queued) % SLOTS;
        let len = ip.buffer_len() + tcp.buffer_len();
        let caps = ChecksumCapabilities::default();
        let buf = &mut self.ring[slot][..len];
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        ip.emit(&mut p, &caps);
        tcp.emit(
            &mut TcpPacket::new_unchecked(p.payload_mut()),
            &IpAddress::Ipv4(src.0),
            &IpAddress::Ipv4(dst.0),
            &caps,
        );
        self.lens[slot] = len;
        self.queued += 1;
    }

    /// Reacts to a frame the gateway sent: servers answer SYNs, clients reset SYN-ACKs.
    fn sent(&mut self, len: usize) {
        let Ok(ip) = Ipv4Packet::new_checked(&self.tx[..len]) else {
            return;
        };
        if ip.next_header() == IpProtocol::Udp
            && UdpPacket::new_checked(ip.payload()).is_ok_and(|u| u.dst_port() == 8848)
        {
            self.sync_messages = self.sync_messages.wrapping_add(1);
            return;
        }
        if ip.next_header() != IpProtocol::Tcp {
            return;
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
            return;
        };
        let (sp, dp, seq) = (tcp.src_port(), tcp.dst_port(), tcp.seq_number().0 as u32);
        if tcp.syn() && !tcp.ack() {
            // A real server accepts.
            self.push_tcp(
                (dst, dp),
                (src, sp),
                TcpControl::Syn,
                Some(seq.wrapping_add(1)),
            );
        } else if tcp.syn() && tcp.ack() {
            // The client got its SYN-ACK from the VIP: it completes the handshake, then resets
            // (IPVS ignores a RST in SYN_RECV; in ESTABLISHED it closes the entry: 10 s).
            self.handshakes = self.handshakes.wrapping_add(1);
            let ack = Some(seq.wrapping_add(1));
            self.push_tcp((dst, dp), (src, sp), TcpControl::None, ack);
            self.push_tcp((dst, dp), (src, sp), TcpControl::Rst, None);
        }
    }

    /// A new client SYN to the virtual service.
    fn new_client(&mut self) {
        let n = self.next_client;
        self.next_client = n.wrapping_add(1);
        let client = Ipv4Addr::new(198, 51, 100, 1 + (n % 200) as u8);
        let port = 1024 + (n / 200 % 60000) as u16;
        self.push_tcp((client, port), (VIP, 80), TcpControl::Syn, None);
    }
}

/// Receive token: one frame.
pub struct Rx<'a>(&'a [u8]);
/// Transmit token: the device reacts to what it is given.
pub struct Tx<'a>(&'a mut LabDevice);

impl phy::RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(MTU);
        let r = f(&mut self.0.tx[..len]);
        self.0.sent(len);
        r
    }
}

/// The frame the gateway receives is copied out of the ring before the ring can change, so
/// the receive token borrows a copy slot.
pub struct Lab {
    /// The network's state.
    pub dev: LabDevice,
    rx: [u8; SLOT_BYTES],
}

impl Lab {
    /// An empty network.
    pub const fn new() -> Self {
        Lab {
            dev: LabDevice::new(),
            rx: [0; SLOT_BYTES],
        }
    }
}

impl Device for Lab {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, t: SmolInstant) -> Option<(Rx<'_>, Tx<'_>)> {
        if self.dev.queued == 0 {
            let ms = t.total_millis();
            if ms.saturating_sub(self.dev.last_client_ms) < NEW_CLIENT_EVERY_MS {
                return None;
            }
            self.dev.last_client_ms = ms;
            self.dev.new_client();
        }
        let slot = self.dev.head;
        let len = self.dev.lens[slot];
        self.rx[..len].copy_from_slice(&self.dev.ring[slot][..len]);
        self.dev.head = (slot + 1) % SLOTS;
        self.dev.queued -= 1;
        Some((Rx(&self.rx[..len]), Tx(&mut self.dev)))
    }

    fn transmit(&mut self, _t: SmolInstant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.dev))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ip;
        c.max_transmission_unit = MTU;
        c.max_burst_size = Some(SLOTS);
        c
    }
}

/// Gives the gateway its address, route, services and sync daemons (the sync socket must be
/// attached: `Gateway::attach_sync`).
pub fn configure(gw: &mut Gateway<'_>, now: Instant) -> Result<(), LineError> {
    let _ = gw.add_address(IpCidr::new(IpAddress::Ipv4(Ipv4Addr::new(10, 1, 0, 1)), 24));
    let _ = gw.add_route(Route::default_via(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 254))));
    for line in CONFIG {
        gw.apply_line(now, line)?;
    }
    Ok(())
}

/// The real server the firmware checks (its TCP service's first).
pub const CHECKED: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 11)), 8080);

/// The check: keepalived's `TCP_CHECK` with `delay_loop 1`, `connect_timeout 1`, the first
/// probe at once. The lab's servers answer every SYN, so each probe passes one poll (1 ms)
/// after its SYN and the server stays UP; the probes come from the gateway's own address.
pub fn check() -> HealthCheck {
    HealthCheck {
        delay_loop: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        warmup: Some(Duration::from_millis(0)),
        ..HealthCheck::tcp()
    }
}

/// Checks [`CHECKED`] with [`check`] (the probes must be attached: `Gateway::attach_probes`,
/// and the services configured: [`configure`]).
pub fn configure_health(gw: &mut Gateway<'_>, now: Instant) -> Result<(), HealthError> {
    let service = ServiceKey::tcp(SocketAddr::new(IpAddr::V4(VIP), 80));
    gw.balancer_mut()
        .set_health_check(now, &service, CHECKED, &check())
}
