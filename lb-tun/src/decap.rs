//! `lb-decap`'s moving parts: the sockets tunnelled packets arrive on, the layer each one
//! hands over, and the counters. The binary (`src/bin/lb-decap.rs`) owns the loop.
//!
//! The real server's kernel needs no tunnel module: GUE arrives on an ordinary UDP socket
//! (dual-stack, on `[::]:PORT`), IPIP and GRE on raw sockets. A raw socket bound to a protocol
//! also stops the kernel from answering that protocol with an ICMP "protocol unreachable"
//! (the raw socket counts as a listener). Each packet goes through lb-core's decoder
//! ([`lb_core::tunnel::decap`]) at the layer its socket delivers, and the inner packet is
//! written into a TUN device, where the host's stack receives it as if it came from the client.

use std::io::{self, ErrorKind, Read};
use std::net::{Ipv6Addr, SocketAddr};

use lb_core::tunnel::decap::{
    decap_gre, decap_gue, decap_ipip, decap_packet, DecapError, Inner, TunnelType,
};
use lb_core::tunnel::{PROTO_GRE, PROTO_IPIP, PROTO_IPV6};
use socket2::{Domain, Protocol, Socket, Type};

/// What a socket's `recv` returns, which decides the decoder that reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// A UDP socket on the GUE port: the UDP payload (the GUE header first).
    Gue,
    /// An IPv4 raw socket for protocol 4, 41 or 47: the whole IPv4 packet.
    Ipv4Raw(u8),
    /// An IPv6 raw socket for protocol 4 or 41: the inner packet itself.
    Ipv6Ipip(u8),
    /// An IPv6 raw socket for protocol 47: the GRE header and payload.
    Ipv6Gre,
}

impl Layer {
    /// Checks and strips the outer headers of `buf` (one received datagram) as this socket
    /// delivers them; remote checksum offload completes the inner checksum in place.
    pub fn decode(self, buf: &mut [u8]) -> Result<Inner, DecapError> {
        match self {
            Layer::Gue => decap_gue(buf),
            // GUE never arrives on a raw socket: UDP is refused as "not the GUE port".
            Layer::Ipv4Raw(_) => decap_packet(buf, None),
            Layer::Ipv6Ipip(proto) => decap_ipip(buf, proto),
            Layer::Ipv6Gre => decap_gre(buf),
        }
    }

    /// The socket's kind, for logs.
    pub fn describe(self) -> String {
        match self {
            Layer::Gue => "a UDP socket (GUE over IPv4 and IPv6)".into(),
            Layer::Ipv4Raw(proto) => format!("an IPv4 raw socket for protocol {proto}"),
            Layer::Ipv6Ipip(proto) => format!("an IPv6 raw socket for protocol {proto}"),
            Layer::Ipv6Gre => format!("an IPv6 raw socket for protocol {PROTO_GRE}"),
        }
    }
}

/// Which tunnels to receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tunnels {
    /// The GUE port (`--gue-port`), if any.
    pub gue_port: Option<u16>,
    /// IPIP: protocols 4 and 41 over IPv4 and IPv6 (`--ipip`).
    pub ipip: bool,
    /// GRE: protocol 47 over IPv4 and IPv6 (`--gre`).
    pub gre: bool,
}

/// A socket tunnelled packets arrive on, in non-blocking mode, and what it delivers.
#[derive(Debug)]
pub struct Receiver {
    /// The socket.
    pub socket: Socket,
    /// The layer its `recv` returns.
    pub layer: Layer,
}

impl Receiver {
    /// Reads one datagram into `buf`; `Ok(None)` when none is waiting. A datagram longer
    /// than `buf` is cut short by the kernel; the decoder then refuses it as truncated.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            match (&self.socket).read(buf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Opens every socket `tunnels` asks for, non-blocking: one dual-stack UDP socket on
/// `[::]:port` for GUE, raw sockets for protocols 4 and 41 (IPIP) and 47 (GRE) over IPv4 and
/// IPv6. Needs `CAP_NET_RAW` for the raw ones. An IPv6 socket the host cannot open (IPv6
/// disabled) is skipped with a warning; any other failure is an error naming the socket.
pub fn open(tunnels: Tunnels) -> io::Result<Vec<Receiver>> {
    let mut out = Vec::new();
    if let Some(port) = tunnels.gue_port {
        out.push(Receiver {
            socket: gue_socket(port)?,
            layer: Layer::Gue,
        });
    }
    let mut raw = Vec::new();
    if tunnels.ipip {
        raw.extend([PROTO_IPIP, PROTO_IPV6]);
    }
    if tunnels.gre {
        raw.push(PROTO_GRE);
    }
    for proto in raw {
        out.push(Receiver {
            socket: raw_socket(Domain::IPV4, proto)?,
            layer: Layer::Ipv4Raw(proto),
        });
        match raw_socket(Domain::IPV6, proto) {
            Ok(socket) => out.push(Receiver {
                socket,
                layer: if proto == PROTO_GRE {
                    Layer::Ipv6Gre
                } else {
                    Layer::Ipv6Ipip(proto)
                },
            }),
            Err(e) if e.kind() == ErrorKind::Unsupported || e.raw_os_error() == Some(97) => {
                // EAFNOSUPPORT: no IPv6 on this host.
                log::warn!("no IPv6 raw socket for protocol {proto}: {e}");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn gue_socket(port: u16) -> io::Result<Socket> {
    let context =
        |e: io::Error| io::Error::new(e.kind(), format!("GUE socket on port {port}: {e}"));
    let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).map_err(context)?;
    s.set_only_v6(false).map_err(context)?;
    s.set_nonblocking(true).map_err(context)?;
    let any = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    s.bind(&any.into()).map_err(context)?;
    Ok(s)
}

fn raw_socket(domain: Domain, proto: u8) -> io::Result<Socket> {
    let family = if domain == Domain::IPV6 {
        "IPv6"
    } else {
        "IPv4"
    };
    let context = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("{family} raw socket for protocol {proto}: {e}"),
        )
    };
    let s =
        Socket::new(domain, Type::RAW, Some(Protocol::from(i32::from(proto)))).map_err(context)?;
    s.set_nonblocking(true).map_err(context)?;
    Ok(s)
}

/// Counters of a run: packets received per tunnel, written to the TUN device, refused per
/// reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams read from the sockets.
    pub rx: u64,
    /// Receive calls that failed (the socket is read again at its next wake-up).
    pub rx_errors: u64,
    /// Inner packets decoded, per tunnel type (`ipip`, `gue`, `gre`).
    pub decoded: [u64; 3],
    /// Of those, inner checksums completed (GUE remote checksum offload).
    pub remcsum: u64,
    /// Inner packets written to the TUN device.
    pub tx: u64,
    /// Inner packets the TUN device refused (would block or an error).
    pub tx_errors: u64,
    /// Datagrams refused, per [`DecapError`] (indexed by [`DecapError::index`]).
    pub drops: [u64; DecapError::ALL.len()],
}

impl Stats {
    /// Counts a decoding result.
    pub fn record(&mut self, result: &Result<Inner, DecapError>) {
        match result {
            Ok(inner) => {
                self.decoded[tunnel_index(inner.tunnel)] += 1;
                self.remcsum += u64::from(inner.remcsum);
            }
            Err(e) => self.drops[e.index()] += 1,
        }
    }

    /// Datagrams refused, all reasons.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// One `name value` line per counter (every reason, zero or not), for logs and tests.
    pub fn render(&self) -> String {
        let mut out = format!("rx {}\nrx_errors {}\n", self.rx, self.rx_errors);
        for t in [TunnelType::Ipip, TunnelType::Gue, TunnelType::Gre] {
            out += &format!("decoded_{} {}\n", t.name(), self.decoded[tunnel_index(t)]);
        }
        out += &format!(
            "remcsum {}\ntx {}\ntx_errors {}\n",
            self.remcsum, self.tx, self.tx_errors
        );
        for e in DecapError::ALL {
            out += &format!("drop_{} {}\n", e.name(), self.drops[e.index()]);
        }
        out
    }
}

fn tunnel_index(t: TunnelType) -> usize {
    match t {
        TunnelType::Ipip => 0,
        TunnelType::Gue => 1,
        TunnelType::Gre => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_testkit::pkt;

    fn inner() -> Vec<u8> {
        let c: SocketAddr = "10.40.0.2:40000".parse().unwrap();
        let v: SocketAddr = "10.30.0.10:80".parse().unwrap();
        pkt::tcp(c, v, pkt::SYN, 1, b"", 0)
    }

    #[test]
    fn each_layer_reads_what_its_socket_delivers() {
        let i = inner();
        // GUE: the UDP payload.
        let mut g = vec![0, 4, 0, 0];
        g.extend_from_slice(&i);
        let got = Layer::Gue.decode(&mut g).unwrap();
        assert_eq!(g[got.range()], i[..]);
        // IPv6 raw, protocol 4: the inner packet itself.
        let mut p = i.clone();
        assert_eq!(
            Layer::Ipv6Ipip(4).decode(&mut p).unwrap().range(),
            0..i.len()
        );
        assert_eq!(
            Layer::Ipv6Ipip(41).decode(&mut p),
            Err(DecapError::InnerVersion)
        );
        // IPv6 raw, protocol 47: GRE header first.
        let mut r = vec![0, 0, 8, 0];
        r.extend_from_slice(&i);
        assert_eq!(Layer::Ipv6Gre.decode(&mut r).unwrap().start, 4);
        // IPv4 raw: the whole IPv4 packet (IPIP here).
        let mut o = pkt::ip(
            "10.20.0.1".parse().unwrap(),
            "10.20.1.2".parse().unwrap(),
            4,
            0,
            i.clone(),
        );
        let got = Layer::Ipv4Raw(4).decode(&mut o).unwrap();
        assert_eq!(o[got.range()], i[..]);
        // A GUE datagram seen whole by an IPv4 raw socket is not taken (no port to match).
        let mut u = pkt::ip(
            "10.20.0.1".parse().unwrap(),
            "10.20.1.2".parse().unwrap(),
            17,
            0,
            [&[0xd4, 0x31, 0x17, 0xc0, 0, 12, 0, 0][..], &[0, 4, 0, 0]].concat(),
        );
        assert_eq!(Layer::Ipv4Raw(4).decode(&mut u), Err(DecapError::UdpPort));
    }

    #[test]
    fn stats_count_per_tunnel_and_per_reason() {
        let i = inner();
        let mut s = Stats::default();
        let mut g = [&[0, 4, 0, 0][..], &i].concat();
        s.record(&Layer::Gue.decode(&mut g));
        s.record(&Layer::Ipv6Ipip(4).decode(&mut i.clone()));
        s.record(&Layer::Gue.decode(&mut [0x40, 4, 0, 0]));
        s.record(&Layer::Gue.decode(&mut []));
        s.record(&Layer::Gue.decode(&mut []));
        assert_eq!(s.decoded, [1, 1, 0]);
        assert_eq!(s.dropped(), 3);
        assert_eq!(s.drops[DecapError::Truncated.index()], 2);
        let text = s.render();
        assert!(text.contains("decoded_gue 1\n"), "{text}");
        assert!(text.contains("drop_gue_version 1\n"), "{text}");
        assert!(text.contains("drop_truncated 2\n"), "{text}");
        assert_eq!(text.lines().count(), 8 + DecapError::ALL.len());
    }
}
