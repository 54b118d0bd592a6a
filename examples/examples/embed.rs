//! lb-core end to end over hand-made packets: a wrr service with two real servers, five
//! clients' SYNs, a server's SYN-ACK, and the timers. Run it with
//! `cargo run -p lb-examples --example embed`.
use std::net::IpAddr;

use lb_core::{Balancer, Instant, Limits, Secrets, Verdict};
use smoltcp::phy::ChecksumCapabilities as Caps;
use smoltcp::wire::{IpProtocol, Ipv4Address as Ip, Ipv4Packet, Ipv4Repr, TcpControl};
use smoltcp::wire::{TcpPacket, TcpRepr, TcpSeqNumber as Seq};

/// Writes the TCP segment `src:sport → dst:dport` as an IPv4 packet into `buf`; its length.
fn tcp(buf: &mut [u8], src: Ip, sport: u16, dst: Ip, dport: u16, ack: Option<i32>) -> usize {
    let tcp = TcpRepr {
        src_port: sport,
        dst_port: dport,
        control: TcpControl::Syn,
        seq_number: Seq(1),
        ack_number: ack.map(Seq),
        window_len: 64240,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let mut packet = Ipv4Packet::new_unchecked(&mut *buf);
    ip.emit(&mut packet, &Caps::default());
    let mut segment = TcpPacket::new_unchecked(packet.payload_mut());
    tcp.emit(&mut segment, &src.into(), &dst.into(), &Caps::default());
    ip.buffer_len() + tcp.buffer_len()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Memory for 4 services of 16 servers and 4,096 connections, taken once, on the heap.
    let secrets = Secrets::from_bytes([42; 24]); // in production: random bytes (getrandom)
    let mut now = Instant::ZERO; // milliseconds since any epoch you like
    let mut lb = Balancer::alloc(Limits::new(4, 16), 4096, &secrets, now);
    lb.apply_line(now, "-A -t 10.0.0.1:80 -s wrr")?;
    lb.apply_line(now, "-a -t 10.0.0.1:80 -r 192.168.1.10:8080 -m -w 3")?;
    lb.apply_line(now, "-a -t 10.0.0.1:80 -r 192.168.1.11:8080 -m -w 1")?;
    let (client, vip) = (Ip::new(198, 51, 100, 7), Ip::new(10, 0, 0, 1));
    let mut buf = [0u8; 1500]; // ≥ lb_core::REPLY_MAX: room for any reply lb-core generates
    let mut servers = Vec::new();
    for port in 40000..40005 {
        let len = tcp(&mut buf, client, port, vip, 80, None);
        let verdict = lb.process(now, &mut buf, len);
        println!("SYN from port {port}: {verdict:?}"); // rewritten in place
        if let Verdict::ToServer(t) = verdict {
            servers.push(t.dst); // send buf[..t.len] toward t.dst
        }
    }
    // The first client's server answers; the reply leaves from the VIP.
    let Some(&IpAddr::V4(server)) = servers.first() else {
        return Err("no server".into());
    };
    let len = tcp(&mut buf, server, 8080, client, 40000, Some(2));
    let verdict = lb.process(now, &mut buf, len);
    let source = Ipv4Packet::new_checked(&buf[..])?.src_addr();
    println!("SYN-ACK from {server}: {verdict:?}, source now {source}");

    // Timers: sleep until poll_timeout, then handle_timeout; None: sleep until a packet.
    while let Some(at) = lb.poll_timeout() {
        now = at;
        lb.handle_timeout(now);
    }
    println!(
        "idle at {} s: {} connections",
        now.millis() / 1000,
        lb.connection_count()
    );
    Ok(())
}
