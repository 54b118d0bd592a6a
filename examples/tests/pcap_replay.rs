//! The `pcap-replay` example's logic (`lb_examples::pcap_replay`) on captures built here: a
//! TCP handshake through a NAT service in raw-IP and Ethernet captures, a generated RST, a
//! frame that is not IP, idle expiry on the capture's clock, configuration errors, and the
//! output read back by tcpdump when it is installed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use lb_core::Balancer;
use lb_examples::pcap_replay::{
    build_balancer, configure, read_config, replay, replay_files, ConfigLine, Summary,
};
use lb_testkit::pkt::{self, ACK, RST, SYN};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::{DataLink, TsResolution};

const CONFIG: &str = "\
# a NAT service with one real server
-A -t 10.0.0.100:80 -s rr

-a -t 10.0.0.100:80 -r 10.1.0.1:8080 -m
";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const CLIENT: &str = "192.0.2.1:40000";
const VIP: &str = "10.0.0.100:80";
const SERVER: &str = "10.1.0.1:8080";
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const LB_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn balancer() -> Balancer<'static> {
    let lines: Vec<ConfigLine> = CONFIG
        .lines()
        .enumerate()
        .map(|(i, l)| ConfigLine {
            origin: format!("CONFIG:{}", i + 1),
            text: l.to_string(),
        })
        .collect();
    let mut b = build_balancer(1024, 1);
    configure(&mut b, &lines).unwrap();
    b
}

/// The handshake as the balancer sees it: SYN to the VIP, the server's SYN-ACK to the client
/// (NAT: the reply comes back through the balancer), the client's ACK.
fn handshake() -> Vec<Vec<u8>> {
    let (c, v, s) = (sa(CLIENT), sa(VIP), sa(SERVER));
    vec![
        pkt::tcp(c, v, SYN, 1000, b"", 0),
        pkt::tcp(s, c, SYN | ACK, 5000, b"", 0),
        pkt::tcp(c, v, ACK, 1001, b"", 0),
    ]
}

fn times() -> impl Iterator<Item = Duration> {
    (0..).map(|i| Duration::new(1_700_000_000, 123_456_000) + Duration::from_millis(10 * i))
}

fn ethernet(ip: &[u8]) -> Vec<u8> {
    let mut f = [LB_MAC, CLIENT_MAC].concat();
    f.extend_from_slice(if ip[0] >> 4 == 4 {
        &[8, 0]
    } else {
        &[0x86, 0xdd]
    });
    f.extend_from_slice(ip);
    f
}

fn capture(
    datalink: DataLink,
    ts_resolution: TsResolution,
    frames: &[(Duration, Vec<u8>)],
) -> Vec<u8> {
    let header = PcapHeader {
        datalink,
        ts_resolution,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
    for (ts, f) in frames {
        w.write_packet(&PcapPacket::new(*ts, f.len() as u32, f))
            .unwrap();
    }
    w.into_writer()
}

/// The output's header and packets (timestamp, bytes).
fn read(pcap: &[u8]) -> (PcapHeader, Vec<(Duration, Vec<u8>)>) {
    let mut r = PcapReader::new(pcap).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        assert_eq!(p.orig_len as usize, p.data.len());
        out.push((p.timestamp, p.data.into_owned()));
    }
    (r.header(), out)
}

fn run(b: &mut Balancer<'_>, pcap: &[u8]) -> (Summary, Vec<u8>) {
    let mut out = Vec::new();
    let s = replay(b, pcap, &mut out).unwrap();
    (s, out)
}

/// The three handshake packets came out rewritten, with valid checksums.
fn assert_rewritten(ips: &[&[u8]]) {
    let [syn, syn_ack, ack] = ips else {
        panic!("{} packets written", ips.len())
    };
    for p in ips {
        assert!(pkt::checksums_ok(p), "bad checksum: {p:02x?}");
    }
    assert_eq!(pkt::src_of(syn), Some(sa(CLIENT)));
    assert_eq!(pkt::dst_of(syn), Some(sa(SERVER)));
    assert_eq!(pkt::src_of(syn_ack), Some(sa(VIP)));
    assert_eq!(pkt::dst_of(syn_ack), Some(sa(CLIENT)));
    assert_eq!(pkt::dst_of(ack), Some(sa(SERVER)));
}

#[test]
fn raw_ip_handshake_is_rewritten() {
    let frames: Vec<_> = times().zip(handshake()).collect();
    let mut b = balancer();
    let (s, out) = run(
        &mut b,
        &capture(DataLink::RAW, TsResolution::MicroSecond, &frames),
    );
    let (h, pkts) = read(&out);
    assert_eq!(h.datalink, DataLink::RAW);
    let ips: Vec<&[u8]> = pkts.iter().map(|(_, p)| &p[..]).collect();
    assert_rewritten(&ips);
    let ts: Vec<_> = pkts.iter().map(|(t, _)| *t).collect();
    assert_eq!(ts, times().take(3).collect::<Vec<_>>());
    assert_eq!((s.read, s.written, s.to_server, s.to_client), (3, 3, 2, 1));
    assert_eq!((s.pass, s.reply, s.dropped(), s.connections), (0, 0, 0, 1));
}

#[test]
fn ethernet_keeps_headers_and_swaps_macs_of_a_reply() {
    let mut ips = handshake();
    // Port 81 of the VIP has no service: answered with a RST from the VIP.
    ips.push(pkt::tcp(sa(CLIENT), sa("10.0.0.100:81"), SYN, 1, b"", 0));
    let mut frames: Vec<_> = ips.iter().map(|p| ethernet(p)).collect();
    // An ARP request, copied through.
    let mut arp = [[0xff; 6], CLIENT_MAC].concat();
    arp.extend_from_slice(&[8, 6]);
    arp.resize(60, 0);
    frames.push(arp.clone());
    // Not a packet: dropped, not written.
    frames.push(ethernet(&[0x45, 0, 0, 20]));
    let frames: Vec<_> = times().zip(frames).collect();
    let mut b = balancer();
    let pcap = capture(DataLink::ETHERNET, TsResolution::NanoSecond, &frames);
    let (s, out) = run(&mut b, &pcap);
    let (h, pkts) = read(&out);
    assert_eq!(
        (h.datalink, h.ts_resolution),
        (DataLink::ETHERNET, TsResolution::NanoSecond)
    );
    assert_eq!(pkts.len(), 5);
    let ips: Vec<&[u8]> = pkts[..3].iter().map(|(_, f)| &f[14..]).collect();
    assert_rewritten(&ips);
    for (i, (ts, f)) in pkts[..3].iter().enumerate() {
        assert_eq!(*ts, frames[i].0);
        assert_eq!(f[..14], frames[i].1[..14], "link header kept");
    }
    let (ts, rst) = &pkts[3];
    assert_eq!(*ts, frames[3].0);
    assert_eq!(rst[..12], [CLIENT_MAC, LB_MAC].concat(), "MACs swapped");
    assert!(pkt::checksums_ok(&rst[14..]));
    assert_eq!(pkt::src_of(&rst[14..]), Some(sa("10.0.0.100:81")));
    assert_eq!(pkt::dst_of(&rst[14..]), Some(sa(CLIENT)));
    assert_eq!(rst[14 + 20 + 13] & RST, RST);
    assert_eq!(pkts[4], (frames[4].0, arp));
    assert_eq!(
        (s.read, s.written, s.reply, s.not_ip, s.dropped()),
        (6, 5, 1, 1, 1)
    );
    assert_eq!(s.drops[0].0.to_string(), "malformed");
    let text = s.to_string();
    assert!(
        text.contains("malformed") && text.contains("not IP (copied)"),
        "{text}"
    );
}

#[test]
fn idle_entries_expire_on_the_capture_clock() {
    let mut frames: Vec<_> = times().zip(handshake()).take(2).collect();
    // Ten minutes later, something unrelated: the half-open entry is gone by then.
    let other = pkt::udp(sa("192.0.2.7:5000"), sa("198.51.100.1:53"), b"q");
    frames.push((frames[0].0 + Duration::from_secs(600), other));
    let mut b = balancer();
    let (s, _) = run(
        &mut b,
        &capture(DataLink::IPV4, TsResolution::MicroSecond, &frames),
    );
    assert_eq!((s.to_server, s.to_client, s.pass), (1, 1, 1));
    assert_eq!(s.connections, 0);
}

#[test]
fn unsupported_link_type_is_refused() {
    let pcap = capture(DataLink::PPP, TsResolution::MicroSecond, &[]);
    let e = replay(&mut balancer(), &pcap[..], Vec::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("unsupported link type PPP (9)"), "{e}");
    let e = replay(&mut balancer(), &b"not a capture at all"[..], Vec::new()).unwrap_err();
    assert!(e.to_string().contains("not a pcap file"), "{e}");
}

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("pcap-replay-{name}"))
}

#[test]
fn config_errors_name_file_and_line() {
    let path = tmp("bad.conf");
    std::fs::write(
        &path,
        "# comment\n-A -t 10.0.0.100:80 -s rr\n\n-a -t 10.0.0.100:80 -r 10.1.0.1 -w 70000\n",
    )
    .unwrap();
    let lines = read_config(&path).unwrap();
    assert_eq!(lines.len(), 2);
    let e = configure(&mut build_balancer(16, 0), &lines)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with(&format!("{}:4: ", path.display())), "{e}");
    assert!(e.ends_with("-w 70000"), "{e}");
    // A command the configuration refuses: a server for a service that does not exist.
    let lines = [ConfigLine {
        origin: "--line 1".into(),
        text: "-a -t 10.0.0.9:80 -r 10.1.0.1".into(),
    }];
    let e = configure(&mut build_balancer(16, 0), &lines)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("--line 1: "), "{e}");
}

/// The file path the example's `main` takes, and the output read back by tcpdump.
#[test]
fn files_replay_and_tcpdump_reads_the_output() {
    let (conf, input, output) = (tmp("ok.conf"), tmp("in.pcap"), tmp("out.pcap"));
    std::fs::write(&conf, CONFIG).unwrap();
    let frames: Vec<_> = times()
        .zip(handshake().iter().map(|p| ethernet(p)))
        .collect();
    std::fs::write(
        &input,
        capture(DataLink::ETHERNET, TsResolution::MicroSecond, &frames),
    )
    .unwrap();
    let mut b = build_balancer(1024, 0);
    configure(&mut b, &read_config(&conf).unwrap()).unwrap();
    let s = replay_files(&mut b, &input, &output).unwrap();
    assert_eq!((s.read, s.written), (3, 3));
    let (_, pkts) = read(&std::fs::read(&output).unwrap());
    let ips: Vec<&[u8]> = pkts.iter().map(|(_, f)| &f[14..]).collect();
    assert_rewritten(&ips);

    let dump = match Command::new("tcpdump")
        .args(["-nn", "-tt", "-r"])
        .arg(&output)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("SKIP tcpdump check: tcpdump not runnable ({e}); apt-get install tcpdump");
            return;
        }
    };
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.status.success(),
        "tcpdump: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (line, t) in lines.iter().zip([
        "1700000000.123456",
        "1700000000.133456",
        "1700000000.143456",
    ]) {
        assert!(line.starts_with(t), "{text}");
    }
    assert!(
        lines[0].contains("192.0.2.1.40000 > 10.1.0.1.8080: Flags [S]"),
        "{text}"
    );
    assert!(
        lines[1].contains("10.0.0.100.80 > 192.0.2.1.40000: Flags [S.]"),
        "{text}"
    );
    assert!(
        lines[2].contains("192.0.2.1.40000 > 10.1.0.1.8080: Flags [.]"),
        "{text}"
    );
}
