//! The sync daemons' sockets (docs/sync.md §4): UDP multicast on the daemon's interface, set up
//! as the kernel's sync threads set theirs up. lb-core decides what to send and applies what
//! arrives; this module only moves the datagrams.
//!
//! * Master: bound to the interface (`SO_BINDTODEVICE`), multicast TTL as configured, loopback
//!   off (a host does not hear itself), connected to group:port.
//! * Backup: address reuse on, bound to the interface and to group:port, member of the group on
//!   that interface.
//! * A unicast "group" (our extension): the master sends to that address (TTL as configured),
//!   the backup binds to it, its own address, and joins nothing. Like the kernel it does not check the sender: anyone on that link who
//!   knows the syncid can create entries (docs/sync.md §5).

use std::io::{self, Read};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use lb_core::sync::daemon::{DaemonConfig, SyncRole};
use lb_core::{Balancer, Instant};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

/// Most messages read per loop iteration (the rest wait for the next).
const RECV_BUDGET: usize = 64;

/// One running daemon's socket.
struct Daemon {
    config: DaemonConfig,
    socket: Socket,
}

/// The gateway's sync sockets.
#[derive(Default)]
pub struct SyncIo {
    master: Option<Daemon>,
    backup: Option<Daemon>,
    buf: Vec<u8>,
    /// Send errors (the message is dropped, as the kernel drops it).
    pub send_errors: u64,
}

/// The interface's index, from sysfs (the network namespace's own view).
fn ifindex(name: &str) -> io::Result<u32> {
    let path = format!("/sys/class/net/{name}/ifindex");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("no interface {name:?} ({path}: {e})")))?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {text:?}")))
}

fn open(d: &DaemonConfig) -> io::Result<Socket> {
    let name = d.interface.as_str();
    let index = ifindex(name)?;
    let v6 = d.group.is_ipv6();
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    s.bind_device(Some(name.as_bytes()))?;
    let group = SocketAddr::new(d.group, d.port);
    match d.role {
        SyncRole::Master => {
            match (v6, d.group.is_multicast()) {
                (true, true) => {
                    s.set_multicast_if_v6(index)?;
                    s.set_multicast_hops_v6(u32::from(d.ttl))?;
                    s.set_multicast_loop_v6(false)?;
                }
                // The interface is SO_BINDTODEVICE's: multicast goes out the bound device.
                (false, true) => {
                    s.set_multicast_ttl_v4(u32::from(d.ttl))?;
                    s.set_multicast_loop_v4(false)?;
                }
                (true, false) => s.set_unicast_hops_v6(u32::from(d.ttl))?,
                (false, false) => s.set_ttl_v4(u32::from(d.ttl))?,
            }
            s.connect(&group.into())?;
        }
        SyncRole::Backup => {
            s.set_reuse_address(true)?;
            match d.group {
                IpAddr::V4(g) if g.is_multicast() => {
                    s.bind(&group.into())?;
                    s.join_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(index))?;
                }
                IpAddr::V6(g) if g.is_multicast() => {
                    s.set_only_v6(true)?;
                    s.bind(&SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), d.port).into())?;
                    s.join_multicast_v6(&g, index)?;
                }
                // Unicast (our extension): the backup's own address.
                _ => {
                    if v6 {
                        s.set_only_v6(true)?;
                    }
                    s.bind(&group.into())?;
                }
            }
        }
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

impl SyncIo {
    /// Opens the socket for daemon `d` (replacing a running one of its role). The error says
    /// what failed (no such interface, no permission, address in use).
    pub fn start(&mut self, d: &DaemonConfig) -> io::Result<()> {
        let socket = open(d).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{} sync daemon on {}: {e}", d.role.name(), d.interface),
            )
        })?;
        let daemon = Some(Daemon { config: *d, socket });
        match d.role {
            SyncRole::Master => self.master = daemon,
            SyncRole::Backup => self.backup = daemon,
        }
        log::info!("started {d}");
        Ok(())
    }

    /// Closes the socket of `role`'s daemon.
    pub fn stop(&mut self, role: SyncRole) {
        let d = match role {
            SyncRole::Master => self.master.take(),
            SyncRole::Backup => self.backup.take(),
        };
        if let Some(d) = d {
            log::info!("stopped {}", d.config);
        }
    }

    /// Sends the master's due messages and applies what the backup received.
    pub fn run(&mut self, lb: &mut Balancer<'_>, now: Instant) {
        if let Some(m) = &self.master {
            self.buf.resize(usize::from(m.config.effective_maxlen()), 0);
            while let Some(n) = lb.poll_sync(now, &mut self.buf) {
                match m.socket.send(&self.buf[..n]) {
                    Ok(_) => {}
                    Err(e) => {
                        self.send_errors += 1;
                        log::debug!("sync message of {n} bytes not sent: {e}");
                    }
                }
            }
        }
        if let Some(b) = &self.backup {
            // Read with the largest message a master may send, so a long one is not cut.
            self.buf.resize(65_535, 0);
            for _ in 0..RECV_BUDGET {
                // `Read for &Socket`: socket2's own `recv` wants uninitialised bytes.
                match (&b.socket).read(&mut self.buf) {
                    Ok(n) => {
                        if let Err(e) = lb.receive_sync(now, &self.buf[..n]) {
                            log::debug!("sync message refused: {e}");
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        log::debug!("sync receive: {e}");
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_core::sync::daemon::IfName;

    fn can_bind_device() -> Option<&'static str> {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).ok()?;
        match s.bind_device(Some(b"lo")) {
            Ok(()) => None,
            Err(_) => Some("SO_BINDTODEVICE needs CAP_NET_RAW (run as root)"),
        }
    }

    /// A master and a backup on the loopback, with a unicast "group": the backup's socket
    /// receives what the master's sends (the kernel's sockets, not a mock).
    #[test]
    fn unicast_master_reaches_its_backup_on_loopback() {
        if let Some(why) = can_bind_device() {
            println!("SKIPPED: {why}");
            return;
        }
        let mut d = DaemonConfig::new(SyncRole::Backup, IfName::new("lo").unwrap());
        d.group = "127.0.0.1".parse().unwrap();
        d.port = 18848 + (std::process::id() % 1000) as u16;
        let backup = open(&d).expect("backup socket");
        d.role = SyncRole::Master;
        let master = open(&d).expect("master socket");
        master
            .send(b"\x00\x07\x00\x08\x00\x01\x00\x00")
            .expect("send");
        let mut buf = [0u8; 64];
        let mut got = None;
        for _ in 0..100 {
            match (&backup).read(&mut buf) {
                Ok(n) => {
                    got = Some(n);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, Some(8));
        assert_eq!(&buf[..2], &[0, 7]);
    }
}
