//! `lb-demo-synflood`: a bounded SYN flood from spoofed IPv4 sources, for the end-to-end test
//! of the gateway's SYN-flood defence (scripts/test-e2e.sh, scenario `synflood`).
//!
//! It sends TCP SYNs to one address and port through a raw socket (root), each from a random
//! address of a source prefix and a random port, at a fixed rate for a fixed time, then prints
//! how many it sent. Nothing answers for the spoofed sources: route the prefix's replies
//! somewhere that drops them. Bounded on purpose: `--rate` and `--seconds` are required, and
//! the rate is capped.
#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use clap::Parser;

/// The highest rate accepted (packets per second).
const MAX_RATE: u32 = 100_000;

/// Send spoofed TCP SYNs to ADDR:PORT for a bounded time.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Target (IPv4 address and port), e.g. 10.30.0.10:80.
    #[arg(long)]
    target: SocketAddrV4,
    /// Source prefix the spoofed addresses are drawn from, e.g. 10.99.0.0/16.
    #[arg(long)]
    sources: String,
    /// SYNs per second (at most 100,000).
    #[arg(long)]
    rate: u32,
    /// How long to send, in seconds (fractions allowed).
    #[arg(long)]
    seconds: f64,
    /// Seed of the address and port generator (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(sent) => {
            println!("sent {sent}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lb-demo-synflood: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `a.b.c.d/len` as (network, host mask).
fn prefix(s: &str) -> Result<(u32, u32), String> {
    let (a, len) = s
        .split_once('/')
        .ok_or_else(|| format!("--sources {s}: want ADDR/LEN"))?;
    let a: Ipv4Addr = a.parse().map_err(|e| format!("--sources {s}: {e}"))?;
    let len: u32 = len.parse().map_err(|e| format!("--sources {s}: {e}"))?;
    if !(8..=30).contains(&len) {
        return Err(format!("--sources {s}: length {len} outside 8..=30"));
    }
    let host = u32::MAX >> len;
    Ok((u32::from(a) & !host, host))
}

/// xorshift64*: fast and good enough for spoofed addresses.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn run(args: &Args) -> Result<u64, String> {
    if args.rate == 0 || args.rate > MAX_RATE {
        return Err(format!("--rate {}: want 1..={MAX_RATE}", args.rate));
    }
    if !(args.seconds > 0.0 && args.seconds <= 600.0) {
        return Err(format!("--seconds {}: want (0, 600]", args.seconds));
    }
    let (net, host) = prefix(&args.sources)?;
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let mut rng = Rng(seed | 1);
    use socket2::{Domain, Protocol, Socket, Type};
    // IPPROTO_RAW: we write the IP header ourselves (IP_HDRINCL implied).
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255)))
        .map_err(|e| format!("raw socket (needs root): {e}"))?;
    let dst = SocketAddr::V4(args.target).into();
    let total = (f64::from(args.rate) * args.seconds) as u64;
    let start = Instant::now();
    let mut sent = 0u64;
    let mut pkt = [0u8; 40];
    while sent < total {
        // Catch up to the schedule, then sleep a millisecond.
        let due = ((start.elapsed().as_secs_f64() * f64::from(args.rate)) as u64).min(total);
        while sent < due {
            let r = rng.next();
            let mut src = net | ((r >> 32) as u32 & host);
            if src & host == 0 || src & host == host {
                src ^= 1; // not the network or broadcast address
            }
            let sport = 1024 + (r as u16 % 64_000);
            syn(&mut pkt, Ipv4Addr::from(src), sport, args.target, r as u32);
            // A full socket buffer drops this one; the schedule goes on.
            if sock.send_to(&pkt, &dst).is_ok() {
                sent += 1;
            } else {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
        if start.elapsed().as_secs_f64() > args.seconds + 1.0 {
            break;
        }
    }
    Ok(sent)
}

/// A 40-byte IPv4 + TCP SYN from `src:sport` to `dst` with sequence number `seq`.
fn syn(p: &mut [u8; 40], src: Ipv4Addr, sport: u16, dst: SocketAddrV4, seq: u32) {
    p.fill(0);
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[6] = 0x40; // DF
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.ip().octets());
    let c = checksum(&[&p[..20]]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let t = 20;
    p[t..t + 2].copy_from_slice(&sport.to_be_bytes());
    p[t + 2..t + 4].copy_from_slice(&dst.port().to_be_bytes());
    p[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
    p[t + 12] = 5 << 4;
    p[t + 13] = 0x02; // SYN
    p[t + 14..t + 16].copy_from_slice(&64240u16.to_be_bytes());
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.ip().octets());
    pseudo[9] = 6;
    pseudo[10..12].copy_from_slice(&20u16.to_be_bytes());
    let c = checksum(&[&pseudo, &p[t..]]);
    p[t + 16..t + 18].copy_from_slice(&c.to_be_bytes());
}

/// The Internet checksum of the concatenated parts (each of even length).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for part in parts {
        for w in part.chunks(2) {
            sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_syn_is_well_formed() {
        let mut p = [0u8; 40];
        let dst = SocketAddrV4::new(Ipv4Addr::new(10, 30, 0, 10), 80);
        syn(&mut p, Ipv4Addr::new(10, 99, 1, 2), 4321, dst, 7);
        assert_eq!(checksum(&[&p[..20]]), 0, "IP header checksum");
        let mut pseudo = [0u8; 12];
        pseudo[..4].copy_from_slice(&p[12..16]);
        pseudo[4..8].copy_from_slice(&p[16..20]);
        pseudo[9] = 6;
        pseudo[10..12].copy_from_slice(&20u16.to_be_bytes());
        assert_eq!(checksum(&[&pseudo, &p[20..]]), 0, "TCP checksum");
        let parsed = lb_testkit::pkt::src_of(&p).unwrap();
        assert_eq!(parsed, "10.99.1.2:4321".parse().unwrap());
        assert_eq!(p[33], 0x02);
    }

    #[test]
    fn prefixes_are_checked() {
        assert_eq!(prefix("10.99.1.2/16").unwrap(), (0x0a63_0000, 0x0000_ffff));
        assert!(prefix("10.99.0.0").is_err());
        assert!(prefix("10.99.0.0/4").is_err());
        assert!(prefix("10.99.0.0/31").is_err());
    }
}
