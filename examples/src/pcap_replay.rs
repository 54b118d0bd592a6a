//! The logic of the `pcap-replay` example: every packet of a capture through lb-core's
//! [`Balancer::process`], the rewritten packets to another capture with the same timestamps.
//!
//! * Link types: raw IP (101, and 228/229 for IPv4/IPv6 only), Ethernet (1; an 802.1Q tag
//!   is skipped) and Linux cooked capture v1/v2 (113/276). The link header is kept for the
//!   output (a [`Verdict::Reply`] on Ethernet swaps the MAC addresses); frames that carry no
//!   IPv4/IPv6 packet are copied through unchanged.
//! * The clock: `now` is the packet's timestamp relative to the first packet (never going
//!   back), and [`Balancer::handle_timeout`] runs whenever [`Balancer::poll_timeout`] has
//!   passed, so idle entries expire as they would have live.
//! * Dropped packets are not written; [`Summary`] counts every verdict.

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::time::Duration;

use lb_core::ipvsadm::parse_line;
use lb_core::{Balancer, DropReason, Instant, Limits, Secrets, Verdict, REPLY_MAX};
use pcap_file::pcap::{PcapHeader, PcapReader, PcapWriter, RawPcapPacket};
use pcap_file::{DataLink, TsResolution};

/// Any error of the replay, with its context in the message.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A balancer with an empty table of `capacity` entries and no services. The one place that
/// knows how a [`Balancer`] is put together.
pub fn build_balancer(capacity: usize, seed: u64) -> Balancer<'static> {
    // A replay must be reproducible: the secrets come from the seed, not from an RNG.
    let mut bytes = [0u8; 24];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&(!seed).to_le_bytes());
    bytes[16..].copy_from_slice(&seed.to_le_bytes());
    Balancer::alloc(
        Limits::default(),
        capacity,
        &Secrets::from_bytes(bytes),
        Instant::ZERO,
    )
}

/// One ipvsadm command line and where it came from (`FILE:LINE` or `--line N`), for errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigLine {
    pub origin: String,
    pub text: String,
}

/// The command lines of an `ipvsadm-save` file (blank lines and `#` comments skipped).
pub fn read_config(path: &Path) -> Result<Vec<ConfigLine>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| ConfigLine {
            origin: format!("{}:{}", path.display(), i + 1),
            text: l.to_string(),
        })
        .collect())
}

/// Parses and applies `lines` in order; the first bad one is an error naming its origin.
pub fn configure(b: &mut Balancer<'_>, lines: &[ConfigLine]) -> Result<(), Error> {
    for l in lines {
        let bad = |e: &dyn fmt::Display| format!("{}: {e}: {}", l.origin, l.text.trim());
        if let Some(cmd) = parse_line(&l.text).map_err(|e| bad(&e))? {
            b.apply(Instant::ZERO, &cmd).map_err(|e| bad(&e))?;
        }
    }
    Ok(())
}

/// What happened to the packets of a replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub read: u64,
    pub written: u64,
    pub to_server: u64,
    pub to_client: u64,
    pub pass: u64,
    pub reply: u64,
    /// Frames that carry no IP packet (ARP, LLDP…), copied through.
    pub not_ip: u64,
    /// Drops by reason, in [`DropReason::ALL`] order, zeros left out.
    pub drops: Vec<(DropReason, u64)>,
    /// The balancer's live entries (templates included) after the last packet.
    pub connections: usize,
}

impl Summary {
    fn count(&mut self, v: &Verdict) {
        match v {
            Verdict::ToServer(_) => self.to_server += 1,
            Verdict::ToClient(_) => self.to_client += 1,
            Verdict::Pass(_) => self.pass += 1,
            Verdict::Reply(_) => self.reply += 1,
            Verdict::Drop(r) => match self.drops.iter_mut().find(|(d, _)| d == r) {
                Some((_, n)) => *n += 1,
                None => self.drops.push((*r, 1)),
            },
        }
    }

    /// Dropped packets, all reasons.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().map(|(_, n)| n).sum()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "packets read      {:>8}", self.read)?;
        writeln!(f, "packets written   {:>8}", self.written)?;
        writeln!(f, "  to server       {:>8}", self.to_server)?;
        writeln!(f, "  to client       {:>8}", self.to_client)?;
        writeln!(f, "  pass            {:>8}", self.pass)?;
        writeln!(f, "  reply           {:>8}", self.reply)?;
        writeln!(f, "  not IP (copied) {:>8}", self.not_ip)?;
        writeln!(f, "dropped           {:>8}", self.dropped())?;
        for (r, n) in &self.drops {
            writeln!(f, "  {:<22}{n:>8}", r.to_string())?;
        }
        writeln!(f, "connections       {:>8}", self.connections)
    }
}

/// The link layers we read: where the IP packet starts in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Raw,
    Ethernet,
    Sll,
    Sll2,
}

impl Link {
    fn of(dl: DataLink) -> Result<Link, Error> {
        Ok(match dl {
            DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Link::Raw,
            DataLink::ETHERNET => Link::Ethernet,
            DataLink::LINUX_SLL => Link::Sll,
            DataLink::LINUX_SLL2 => Link::Sll2,
            other => {
                return Err(format!(
                    "unsupported link type {other:?} ({}): raw IP (101, 228, 229), Ethernet (1) \
                     and Linux cooked capture (113, 276) are supported",
                    u32::from(other)
                )
                .into())
            }
        })
    }

    /// The link header's length, or `None` when the frame carries no IPv4/IPv6 packet.
    fn header_len(self, frame: &[u8]) -> Option<usize> {
        let ethertype = |at: usize| {
            frame
                .get(at..at + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
        };
        let (len, ty) = match self {
            Link::Raw => return Some(0),
            Link::Ethernet if ethertype(12)? == 0x8100 => (18, ethertype(16)?),
            Link::Ethernet => (14, ethertype(12)?),
            Link::Sll => (16, ethertype(14)?),
            Link::Sll2 => (20, ethertype(0)?),
        };
        (matches!(ty, 0x0800 | 0x86dd) && frame.len() >= len).then_some(len)
    }
}

/// A packet's timestamp.
fn timestamp(p: &RawPcapPacket<'_>, res: TsResolution) -> Duration {
    match res {
        TsResolution::MicroSecond => Duration::from_micros(u64::from(p.ts_frac)),
        TsResolution::NanoSecond => Duration::from_nanos(u64::from(p.ts_frac)),
    }
    .saturating_add(Duration::from_secs(u64::from(p.ts_sec)))
}

/// Replays the capture `input` through `b`, writing what it transmits to `output` (a pcap of
/// the same link type, timestamp resolution and byte order).
pub fn replay(
    b: &mut Balancer<'_>,
    input: impl Read,
    output: impl Write,
) -> Result<Summary, Error> {
    let mut reader = PcapReader::new(input).map_err(|e| {
        format!("not a pcap file (pcapng is not read; `editcap -F pcap` converts): {e}")
    })?;
    let header = reader.header();
    let link = Link::of(header.datalink)?;
    let out_header = PcapHeader {
        snaplen: header.snaplen.max(65535),
        ..header
    };
    let mut writer = PcapWriter::with_header(output, out_header)?;
    let mut s = Summary::default();
    let mut buf = vec![0u8; 65536 + REPLY_MAX];
    let (mut first, mut now) = (None, Instant::ZERO);
    while let Some(raw) = reader.next_raw_packet() {
        let raw = raw.map_err(|e| format!("packet {}: {e}", s.read + 1))?;
        s.read += 1;
        let ts = timestamp(&raw, header.ts_resolution);
        let since = ts.saturating_sub(*first.get_or_insert(ts));
        now = now.max(Instant::from_millis(since.as_millis() as u64));
        if b.poll_timeout().is_some_and(|t| t <= now) {
            b.handle_timeout(now);
        }
        let frame = &raw.data[..];
        let out = match link.header_len(frame) {
            None => {
                s.not_ip += 1;
                frame.to_vec()
            }
            Some(hl) => {
                let ip = &frame[hl..];
                if buf.len() < ip.len() + REPLY_MAX {
                    buf.resize(ip.len() + REPLY_MAX, 0);
                }
                buf[..ip.len()].copy_from_slice(ip);
                let v = b.process(now, &mut buf, ip.len());
                s.count(&v);
                let Some(t) = v.transmit() else { continue };
                let mut out = frame[..hl].to_vec();
                if link == Link::Ethernet && matches!(v, Verdict::Reply(_)) {
                    let (dst, src) = out.split_at_mut(6);
                    dst.swap_with_slice(&mut src[..6]);
                }
                out.extend_from_slice(&buf[..t.len]);
                out
            }
        };
        // Bytes the capture cut off stay counted in the original length.
        let cut = raw.orig_len.saturating_sub(raw.incl_len);
        let packet = RawPcapPacket {
            ts_sec: raw.ts_sec,
            ts_frac: raw.ts_frac,
            incl_len: out.len() as u32,
            orig_len: out.len() as u32 + cut,
            data: Cow::Borrowed(&out[..]),
        };
        writer.write_raw_packet(&packet)?;
        s.written += 1;
    }
    writer.into_writer().flush()?;
    s.drops.sort_by_key(|(r, _)| r.index());
    s.connections = b.connection_count();
    Ok(s)
}

/// [`replay`] from file `input` to file `output` (removed again if the replay fails).
pub fn replay_files(b: &mut Balancer<'_>, input: &Path, output: &Path) -> Result<Summary, Error> {
    let inp = File::open(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let out = File::create(output).map_err(|e| format!("{}: {e}", output.display()))?;
    replay(b, BufReader::new(inp), BufWriter::new(out)).map_err(|e| {
        let _ = std::fs::remove_file(output);
        format!("{}: {e}", input.display()).into()
    })
}
