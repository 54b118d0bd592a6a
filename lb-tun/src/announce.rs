//! `--announce`: lb-tun owns the host routes (/32, /128) of its VIPs on its TUN device, in the
//! main table, so a routing daemon on the host (BIRD's `protocol kernel` with `learn`, FRR's
//! `redistribute kernel`) announces exactly what this gateway serves (README "Several
//! gateways"). Two routes per VIP, told apart by their protocol number:
//!
//! * the **announced** route (proto [`DEFAULT_PROTO`], 76, metric 64) while the gateway can serve
//!   the VIP ([`served_vips`]): the address of a non-fwmark service with at least one real
//!   server that takes new connections (in the list, weight above 0). A server the health
//!   checker takes DOWN leaves the list or gets weight 0, so with checks configured a VIP is
//!   announced once a server passed them, and withdrawn when none is left;
//! * the **held** route (proto [`HELD_PROTO`], 77, metric 4096) for every VIP configured:
//!   it keeps the packets that still arrive for a VIP not announced (flows on a drained server,
//!   a gateway leaving) flowing into the TUN. The routing daemon must not export it.
//!
//! [`Announcer`] adds and removes both over rtnetlink to match the configuration, withdraws
//! the announced ones on [`withdraw`](Announcer::withdraw) (graceful leave, stop) and all on
//! drop. If the process dies, the TUN device it created goes with it, and the kernel removes
//! every route through it.

use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;

use lb_core::ipvsadm::Command;
use lb_core::{Balancer, ServiceKey};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// The protocol number of the announced routes by default (`ip route show proto 76`, BIRD's
/// `krt_source = 76`): unassigned in iproute2's `rt_protos`, so no other daemon's.
pub const DEFAULT_PROTO: u8 = 76;
/// The protocol number of the held routes (unassigned too).
pub const HELD_PROTO: u8 = 77;
/// The announced routes' metric. Not 0: IPv6 reads 0 as its default, 1024.
const ANNOUNCED_METRIC: u32 = 64;
/// The held routes' metric: above the announced ones', so those win while they exist (and
/// apart from IPv6's default 1024, so an `ip -6 route add` is not replaced by one).
const HELD_METRIC: u32 = 4096;

/// Every VIP of a configured (non-fwmark) service, served or not.
pub fn configured_vips(lb: &Balancer<'_>) -> BTreeSet<IpAddr> {
    lb.director()
        .services()
        .filter_map(|(_, svc)| match svc.config.key {
            ServiceKey::Addr { vip, .. } => Some(vip.ip()),
            ServiceKey::Fwmark { .. } => None,
        })
        .collect()
}

/// The VIPs `lb` can serve now: addresses of the services (fwmark services have none) with a
/// real server that takes new connections.
pub fn served_vips(lb: &Balancer<'_>) -> BTreeSet<IpAddr> {
    let d = lb.director();
    d.services()
        .filter_map(|(id, svc)| match svc.config.key {
            ServiceKey::Addr { vip, .. } => d
                .servers(id)
                .iter()
                .any(|(_, s)| s.available && s.weight() > 0)
                .then_some(vip.ip()),
            ServiceKey::Fwmark { .. } => None,
        })
        .collect()
}

/// What [`Announcer::sync`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Routes added.
    pub added: Vec<IpAddr>,
    /// Routes removed.
    pub removed: Vec<IpAddr>,
}

/// The two kinds of route (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Announced,
    Held,
}

/// The VIP host routes on one device, over an rtnetlink socket.
pub struct Announcer {
    sock: Socket,
    ifindex: u32,
    proto: u8,
    seq: u32,
    announced: BTreeSet<IpAddr>,
    held: BTreeSet<IpAddr>,
}

impl Announcer {
    /// Takes device `dev` (which must exist: open the TUN device first), sets it up (a route
    /// needs an up device), and removes routes with protocol `proto` left on it by an earlier
    /// run (a persistent device outlives its gateway).
    pub fn open(dev: &str, proto: u8) -> io::Result<Self> {
        let ifindex = ifindex(dev)?;
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        let mut a = Announcer {
            sock,
            ifindex,
            proto,
            seq: 0,
            announced: BTreeSet::new(),
            held: BTreeSet::new(),
        };
        let mut link = LinkMessage::default();
        link.header.index = ifindex;
        link.header.flags = LinkFlags::Up;
        link.header.change_mask = LinkFlags::Up;
        a.request(RouteNetlinkMessage::SetLink(link), 0)?;
        for (kind, dst) in a.stale_routes()? {
            a.route(false, kind, dst)?;
            log::info!("announce: removed a stale route to {dst} on {dev}");
        }
        Ok(a)
    }

    /// The VIPs announced now.
    pub fn announced(&self) -> &BTreeSet<IpAddr> {
        &self.announced
    }

    /// Makes the announced routes those of `announce` and the held ones those of `hold` (held
    /// routes first, so a VIP withdrawn keeps a route). A route that fails stays as it was,
    /// and the next call tries again; the changes to the announced set are returned.
    pub fn sync(
        &mut self,
        announce: &BTreeSet<IpAddr>,
        hold: &BTreeSet<IpAddr>,
    ) -> io::Result<Changes> {
        let mut first_err = None;
        let mut held = std::mem::take(&mut self.held);
        self.sync_kind(Kind::Held, &mut held, hold, &mut first_err);
        self.held = held;
        let mut announced = std::mem::take(&mut self.announced);
        let changes = self.sync_kind(Kind::Announced, &mut announced, announce, &mut first_err);
        self.announced = announced;
        match first_err {
            Some(e) => Err(e),
            None => Ok(changes),
        }
    }

    fn sync_kind(
        &mut self,
        kind: Kind,
        have: &mut BTreeSet<IpAddr>,
        want: &BTreeSet<IpAddr>,
        first_err: &mut Option<io::Error>,
    ) -> Changes {
        let mut changes = Changes::default();
        let gone: Vec<IpAddr> = have.difference(want).copied().collect();
        let new: Vec<IpAddr> = want.difference(have).copied().collect();
        for dst in gone {
            match self.route(false, kind, dst) {
                Ok(()) => {
                    have.remove(&dst);
                    changes.removed.push(dst);
                }
                Err(e) => *first_err = first_err.take().or(Some(e)),
            }
        }
        for dst in new {
            match self.route(true, kind, dst) {
                Ok(()) => {
                    have.insert(dst);
                    changes.added.push(dst);
                }
                Err(e) => *first_err = first_err.take().or(Some(e)),
            }
        }
        changes
    }

    /// Withdraws every announced route, keeping the held ones (graceful leave).
    pub fn withdraw(&mut self) -> io::Result<Changes> {
        let hold = self.held.clone();
        self.sync(&BTreeSet::new(), &hold)
    }

    /// Adds (`add`) or deletes the host route of `kind` to `dst` on the device.
    fn route(&mut self, add: bool, kind: Kind, dst: IpAddr) -> io::Result<()> {
        let (proto, metric) = match kind {
            Kind::Announced => (self.proto, ANNOUNCED_METRIC),
            Kind::Held => (HELD_PROTO, HELD_METRIC),
        };
        let mut m = RouteMessage::default();
        m.header = RouteHeader {
            address_family: match dst {
                IpAddr::V4(_) => AddressFamily::Inet,
                IpAddr::V6(_) => AddressFamily::Inet6,
            },
            destination_prefix_length: if dst.is_ipv4() { 32 } else { 128 },
            table: RouteHeader::RT_TABLE_MAIN,
            protocol: RouteProtocol::from(proto),
            scope: RouteScope::Link,
            kind: RouteType::Unicast,
            ..RouteHeader::default()
        };
        m.attributes = vec![
            RouteAttribute::Destination(RouteAddress::from(dst)),
            RouteAttribute::Oif(self.ifindex),
            RouteAttribute::Priority(metric),
        ];
        if add {
            // Replace: idempotent, and takes over a route another run left.
            self.request(
                RouteNetlinkMessage::NewRoute(m),
                NLM_F_CREATE | NLM_F_REPLACE,
            )
        } else {
            match self.request(RouteNetlinkMessage::DelRoute(m), 0) {
                // Already gone (the device went down and took it, or someone deleted it).
                Err(e) if e.raw_os_error() == Some(ESRCH) => Ok(()),
                r => r,
            }
        }
    }

    /// Routes on the device in the main table with our protocol numbers.
    fn stale_routes(&mut self) -> io::Result<Vec<(Kind, IpAddr)>> {
        self.seq += 1;
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | NLM_F_DUMP;
        hdr.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(
            hdr,
            NetlinkPayload::from(RouteNetlinkMessage::GetRoute(RouteMessage::default())),
        );
        msg.finalize();
        self.send(&msg)?;
        let mut found = Vec::new();
        loop {
            let (buf, _) = self.sock.recv_from_full()?;
            let mut at = 0;
            while at < buf.len() {
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[at..])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = m.header.length as usize;
                if m.header.sequence_number == self.seq {
                    match m.payload {
                        NetlinkPayload::Done(_) => return Ok(found),
                        NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => {
                            if let Some(dst) = self.ours(&r) {
                                found.push(dst);
                            }
                        }
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                at += len;
            }
        }
    }

    /// The kind and destination of `r` if it is one of our host routes on the device.
    fn ours(&self, r: &RouteMessage) -> Option<(Kind, IpAddr)> {
        let h = &r.header;
        let kind = match u8::from(h.protocol) {
            p if p == self.proto => Kind::Announced,
            HELD_PROTO => Kind::Held,
            _ => return None,
        };
        if h.table != RouteHeader::RT_TABLE_MAIN {
            return None;
        }
        if !r
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Oif(i) if *i == self.ifindex))
        {
            return None;
        }
        let dst = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(v4))
                if h.destination_prefix_length == 32 =>
            {
                Some(IpAddr::V4(*v4))
            }
            RouteAttribute::Destination(RouteAddress::Inet6(v6))
                if h.destination_prefix_length == 128 =>
            {
                Some(IpAddr::V6(*v6))
            }
            _ => None,
        })?;
        Some((kind, dst))
    }

    /// Sends one request with an ACK asked for and waits for it.
    fn request(&mut self, inner: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.seq += 1;
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        hdr.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(hdr, NetlinkPayload::from(inner));
        msg.finalize();
        self.send(&msg)?;
        loop {
            let (buf, _) = self.sock.recv_from_full()?;
            let mut at = 0;
            while at < buf.len() {
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[at..])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = m.header.length as usize;
                if m.header.sequence_number == self.seq {
                    if let NetlinkPayload::Error(e) = m.payload {
                        return match e.code {
                            None => Ok(()),
                            Some(_) => Err(e.to_io()),
                        };
                    }
                }
                if len == 0 {
                    break;
                }
                at += len;
            }
        }
    }

    fn send(&self, msg: &NetlinkMessage<RouteNetlinkMessage>) -> io::Result<()> {
        let mut buf = vec![0; msg.buffer_len()];
        msg.serialize(&mut buf);
        self.sock.send(&buf, 0)?;
        Ok(())
    }
}

impl Drop for Announcer {
    /// Removes every route, announced ones first.
    fn drop(&mut self) {
        let none = BTreeSet::new();
        let hold = self.held.clone();
        let r = self
            .sync(&none, &hold)
            .and_then(|_| self.sync(&none, &none));
        if let Err(e) = r {
            log::error!("announce: routes not all removed: {e}");
        }
    }
}

/// ESRCH ("no such process"): what the kernel answers when asked to delete a route that is
/// not there.
const ESRCH: i32 = 3;

/// The interface index of `dev`, from sysfs.
fn ifindex(dev: &str) -> io::Result<u32> {
    let path = format!("/sys/class/net/{dev}/ifindex");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
    text.trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {e}")))
}

/// The real servers of `cmds` (a configuration's commands) that use NAT (`-m`): their
/// replies must come back through the gateway that holds the connection's entry, which ECMP
/// over several gateways does not ensure (README "NAT in a cluster").
pub fn nat_servers<'c>(cmds: impl IntoIterator<Item = &'c Command>) -> usize {
    cmds.into_iter()
        .filter(|c| {
            matches!(c, Command::AddServer(_, s) | Command::EditServer(_, s)
                if s.method == lb_core::ForwardMethod::Masq)
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::Gateway;
    use lb_core::Instant;

    const T0: Instant = Instant::from_millis(0);

    fn gw(conf: &str) -> Gateway {
        let limits = lb_core::Limits {
            services: 8,
            servers_per_service: 8,
            table_slots_per_service: 4093,
            lblc_entries_per_service: 8,
        };
        let mut g = Gateway::with_limits(limits, 1024, 7, [3; 16], T0);
        g.apply_batch(T0, "lb.conf", conf).unwrap();
        g
    }

    #[test]
    fn nat_servers_are_counted_from_the_commands() {
        let items = crate::gateway::parse_batch(
            "c",
            "-A -t 10.30.0.10:80 -s mh\n\
             -a -t 10.30.0.10:80 -r 10.20.1.2:80 -m\n\
             -a -t 10.30.0.10:80 -r 10.20.1.3:80 -g\n\
             -e -t 10.30.0.10:80 -r 10.20.1.3:80 -m -w 2\n",
        )
        .unwrap();
        assert_eq!(nat_servers(items.iter().map(|i| &i.cmd)), 2);
    }

    fn vips(list: &[&str]) -> BTreeSet<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    /// A VIP is served while one of its services has a server with weight above 0: not with
    /// no server, not with all at weight 0, and one service of two is enough.
    #[test]
    fn a_vip_is_served_while_a_service_has_a_server_taking_connections() {
        let mut g = gw("\
-A -t 10.30.0.10:80 -s mh
-a -t 10.30.0.10:80 -r 10.20.1.2:80 -m
-A -t 10.30.0.11:80 -s rr
-A -t [fd00:30::10]:80 -s rr
-a -t [fd00:30::10]:80 -r [fd00:20::2]:80 -m -w 0
-A -u 10.30.0.12:53 -s rr
-a -u 10.30.0.12:53 -r 10.20.1.2:53 -m -w 0
-A -t 10.30.0.12:53 -s rr
-a -t 10.30.0.12:53 -r 10.20.1.3:53 -m -w 2
");
        assert_eq!(
            served_vips(g.balancer()),
            vips(&["10.30.0.10", "10.30.0.12"])
        );
        assert_eq!(
            configured_vips(g.balancer()),
            vips(&["10.30.0.10", "10.30.0.11", "10.30.0.12", "fd00:30::10"])
        );
        g.apply_batch(
            T0,
            "edit",
            "-e -t [fd00:30::10]:80 -r [fd00:20::2]:80 -m -w 1\n",
        )
        .unwrap();
        g.apply_batch(T0, "del", "-d -t 10.30.0.10:80 -r 10.20.1.2:80\n")
            .unwrap();
        assert_eq!(
            served_vips(g.balancer()),
            vips(&["10.30.0.12", "fd00:30::10"])
        );
    }
}
