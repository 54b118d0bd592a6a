//! IPVS's connection-sync messages on the wire (docs/sync.md §2): the version 1 header and
//! records lb-core sends and reads, and version 0, which it reads.
//!
//! A message is a UDP payload. Version 1 starts with an 8-byte header (reserved 0, syncid,
//! size, record count, version 1, spare 0), then records, each on a 4-byte boundary of the
//! message: a fixed part of 36 bytes (IPv4) or 72 bytes (IPv6) and options. Every multi-byte
//! field is big-endian. Version 0 has a 4-byte header (count, syncid, size) and 24-byte IPv4
//! records without timeouts.
//!
//! [`MessageWriter`] packs [`Record`]s into a caller's buffer as the kernel's master does
//! (padding written in front of the next record, the last record never padded, at most 255
//! records). [`Message::parse`] checks a header and [`Message::records`] walks the records with
//! the kernel backup's two classes of error: [`RecordError::Fatal`] ends the walk (records
//! already read stay good), [`RecordError::Skip`] refuses one record.
//!
//! lb's own option, [`OPT_LB_TIMER`] (type 0x60: the "optional" bit 0x40 plus a type no kernel
//! knows, so a kernel backup skips it), carries an entry's exact timeout and time left in
//! milliseconds (64 bits each); the table snapshot always writes it, the sync master never needs it.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Version-1 header length.
pub const HEADER_V1: usize = 8;
/// Version-0 header length.
pub const HEADER_V0: usize = 4;
/// Fixed part of an IPv4 version-1 record.
pub const RECORD_V4: usize = 36;
/// Fixed part of an IPv6 version-1 record.
pub const RECORD_V6: usize = 72;
/// A version-0 record (IPv4 only).
pub const RECORD_V0: usize = 24;
/// Most records one message carries (the count is one byte).
pub const MAX_RECORDS: usize = 255;

/// Option: sequence-number adjustments (FTP helper; 24 bytes). Read and ignored.
pub const OPT_SEQ_DATA: u8 = 1;
/// Option: persistence-engine data. lb-core has no persistence engines: the record is refused.
pub const OPT_PE_DATA: u8 = 2;
/// Option: persistence-engine name.
pub const OPT_PE_NAME: u8 = 3;
/// The "optional" bit of an option type: an unknown option with it is skipped.
pub const OPT_F_PARAM: u8 = 0x40;
/// lb's option: `timeout_ms` then `left_ms`, two big-endian u64 (16 bytes).
pub const OPT_LB_TIMER: u8 = OPT_F_PARAM | 0x20;

/// `IP_VS_CONN_F_*` flag bits as they travel (the uapi header's values).
pub mod flags {
    /// The forwarding-method field.
    pub const FWD_MASK: u32 = 0x0007;
    /// Masquerading (NAT).
    pub const MASQ: u32 = 0x0000;
    /// Tunnelling.
    pub const TUNNEL: u32 = 0x0002;
    /// Direct routing.
    pub const DROUTE: u32 = 0x0003;
    /// The entry was created by sync.
    pub const SYNC: u32 = 0x0020;
    /// Never sent.
    pub const HASHED: u32 = 0x0040;
    /// No reply seen (set for every non-NAT destination).
    pub const NOOUTPUT: u32 = 0x0080;
    /// Not counted as an active connection.
    pub const INACTIVE: u32 = 0x0100;
    /// FTP sequence adjustment, either direction.
    pub const SEQ_MASK: u32 = 0x0600;
    /// Client port not known yet (FTP data).
    pub const NO_CPORT: u32 = 0x0800;
    /// A persistence template.
    pub const TEMPLATE: u32 = 0x1000;
    /// One-packet scheduling: never synced.
    pub const ONE_PACKET: u32 = 0x2000;
}

/// lb's timer option: the entry's exact re-arm timeout and the time it had left when written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbTimer {
    /// The timeout the entry re-arms with, in milliseconds.
    pub timeout_ms: u64,
    /// Time left before it expires, in milliseconds.
    pub left_ms: u64,
}

/// One connection entry or persistence template, as a sync record carries it.
///
/// The three addresses have one family (the record's); for a template of a fwmark service
/// `vaddr` holds the mark in its first four bytes and `protocol` is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// IP protocol number (6, 17; 0 for a fwmark template).
    pub protocol: u8,
    /// `IP_VS_CONN_F_*` bits ([`flags`]); HASHED is never written.
    pub flags: u32,
    /// Protocol state number (TCP: IPVS's 0–10; UDP 0; template: 1 = assured).
    pub state: u16,
    /// Client address and port.
    pub client: SocketAddr,
    /// Virtual address and port.
    pub vaddr: SocketAddr,
    /// Real server address and port.
    pub daddr: SocketAddr,
    /// The firewall mark the entry was created with (0: none).
    pub fwmark: u32,
    /// The entry's timeout setting in seconds (0 in version 0: the receiver's own table).
    pub timeout_secs: u32,
    /// lb's exact timer, when the writer added it.
    pub lb_timer: Option<LbTimer>,
}

impl Record {
    /// Whether the addresses are IPv6.
    pub fn is_ipv6(&self) -> bool {
        self.client.is_ipv6()
    }

    /// Whether this is a persistence template.
    pub fn is_template(&self) -> bool {
        self.flags & flags::TEMPLATE != 0
    }

    /// The encoded length without alignment padding.
    pub fn encoded_len(&self) -> usize {
        let fixed = if self.is_ipv6() { RECORD_V6 } else { RECORD_V4 };
        fixed + if self.lb_timer.is_some() { 18 } else { 0 }
    }

    /// Writes the record at the start of `out` (no padding); `None` if it does not fit or the
    /// three addresses are not of one family.
    pub fn encode(&self, out: &mut [u8]) -> Option<usize> {
        let v6 = self.is_ipv6();
        if self.vaddr.is_ipv6() != v6 || self.daddr.is_ipv6() != v6 {
            return None;
        }
        let len = self.encoded_len();
        let out = out.get_mut(..len)?;
        out[0] = u8::from(v6);
        out[1] = self.protocol;
        out[2..4].copy_from_slice(&(len as u16 & 0x0fff).to_be_bytes());
        out[4..8].copy_from_slice(&(self.flags & !flags::HASHED).to_be_bytes());
        out[8..10].copy_from_slice(&self.state.to_be_bytes());
        out[10..12].copy_from_slice(&self.client.port().to_be_bytes());
        out[12..14].copy_from_slice(&self.vaddr.port().to_be_bytes());
        out[14..16].copy_from_slice(&self.daddr.port().to_be_bytes());
        out[16..20].copy_from_slice(&self.fwmark.to_be_bytes());
        out[20..24].copy_from_slice(&self.timeout_secs.to_be_bytes());
        let mut at = 24;
        for a in [self.client.ip(), self.vaddr.ip(), self.daddr.ip()] {
            match a {
                IpAddr::V4(a) => {
                    out[at..at + 4].copy_from_slice(&a.octets());
                    at += 4;
                }
                IpAddr::V6(a) => {
                    out[at..at + 16].copy_from_slice(&a.octets());
                    at += 16;
                }
            }
        }
        if let Some(t) = self.lb_timer {
            out[at] = OPT_LB_TIMER;
            out[at + 1] = 16;
            out[at + 2..at + 10].copy_from_slice(&t.timeout_ms.to_be_bytes());
            out[at + 10..at + 18].copy_from_slice(&t.left_ms.to_be_bytes());
        }
        Some(len)
    }

    /// Reads one version-1 record from the start of `b` (which ends where the message ends).
    /// Returns the record and its length from `ver_size` (without padding).
    pub fn decode(b: &[u8]) -> Result<(Record, usize), RecordError> {
        use RecordError::{Fatal, Skip};
        if b.len() < RECORD_V4 {
            return Err(Fatal(WireFault::Truncated));
        }
        let ver_size = u16::from_be_bytes([b[2], b[3]]);
        let len = usize::from(ver_size & 0x0fff);
        if ver_size >> 12 != 0 {
            return Err(Fatal(WireFault::RecordVersion));
        }
        if len > b.len() {
            return Err(Fatal(WireFault::RecordLength));
        }
        let v6 = match b[0] {
            t if t & 1 == 1 => true,
            0 => false,
            _ => return Err(Fatal(WireFault::RecordType)),
        };
        let fixed = if v6 { RECORD_V6 } else { RECORD_V4 };
        if len < fixed {
            return Err(Fatal(WireFault::RecordLength));
        }
        let rec = &b[..len];
        let be16 = |o: usize| u16::from_be_bytes([rec[o], rec[o + 1]]);
        let be32 = |o: usize| u32::from_be_bytes([rec[o], rec[o + 1], rec[o + 2], rec[o + 3]]);
        let addr = |o: usize| -> IpAddr {
            if v6 {
                let mut a = [0u8; 16];
                a.copy_from_slice(&rec[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(a))
            } else {
                IpAddr::V4(Ipv4Addr::new(rec[o], rec[o + 1], rec[o + 2], rec[o + 3]))
            }
        };
        let step = if v6 { 16 } else { 4 };
        let mut r = Record {
            protocol: rec[1],
            flags: be32(4) & !flags::HASHED,
            state: be16(8),
            client: SocketAddr::new(addr(24), be16(10)),
            vaddr: SocketAddr::new(addr(24 + step), be16(12)),
            daddr: SocketAddr::new(addr(24 + 2 * step), be16(14)),
            fwmark: be32(16),
            timeout_secs: be32(20),
            lb_timer: None,
        };
        let (mut skip, mut seen) = (None, 0u8);
        let mut at = fixed;
        while at < len {
            if at + 2 > len {
                return Err(Fatal(WireFault::OptionTruncated));
            }
            let (ty, olen) = (rec[at], usize::from(rec[at + 1]));
            let data = at + 2;
            if olen == 0 || data + olen > len {
                return Err(Fatal(WireFault::OptionLength));
            }
            let kind = ty & !OPT_F_PARAM;
            let bit = match kind {
                OPT_SEQ_DATA | OPT_PE_DATA | OPT_PE_NAME => 1u8 << kind,
                _ => 0,
            };
            if bit != 0 && seen & bit != 0 {
                return Err(Fatal(WireFault::OptionTwice));
            }
            seen |= bit;
            match kind {
                OPT_SEQ_DATA if olen != 24 => return Err(Fatal(WireFault::OptionLength)),
                OPT_SEQ_DATA => {}
                OPT_PE_NAME if olen > 16 => return Err(Fatal(WireFault::OptionLength)),
                OPT_PE_DATA | OPT_PE_NAME => skip = skip.or(Some(SkipReason::PersistenceEngine)),
                _ if ty == OPT_LB_TIMER && olen == 16 => {
                    let be64 = |o: usize| (u64::from(be32(o)) << 32) | u64::from(be32(o + 4));
                    r.lb_timer = Some(LbTimer {
                        timeout_ms: be64(data),
                        left_ms: be64(data + 8),
                    });
                }
                _ if ty & OPT_F_PARAM != 0 => {}
                _ => skip = skip.or(Some(SkipReason::UnknownOption)),
            }
            at = data + olen;
        }
        if let Some(why) = skip {
            return Err(Skip(why, len));
        }
        r.check().map_err(|why| Skip(why, len))?;
        Ok((r, len))
    }

    /// The kernel backup's per-record checks on flags, protocol and state.
    fn check(&self) -> Result<(), SkipReason> {
        let f = self.flags;
        if f & flags::ONE_PACKET != 0 || (f & flags::TEMPLATE != 0 && f & flags::NO_CPORT != 0) {
            return Err(SkipReason::Flags);
        }
        if self.is_template() {
            if self.state >= 2 {
                return Err(SkipReason::State);
            }
            return match self.protocol {
                0 | 6 | 17 => Ok(()),
                _ => Err(SkipReason::Protocol),
            };
        }
        match self.protocol {
            6 if self.state <= 10 => Ok(()),
            17 if self.state == 0 => Ok(()),
            6 | 17 => Err(SkipReason::State),
            _ => Err(SkipReason::Protocol),
        }
    }
}

/// Why a whole message is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// Shorter than a header.
    Truncated,
    /// The header's size is not the datagram's length.
    Size {
        /// What the header says.
        header: usize,
        /// The datagram's length.
        datagram: usize,
    },
    /// Another syncid than the one this backup accepts.
    SyncId {
        /// The message's.
        got: u8,
    },
    /// No backup daemon runs to take it.
    NoBackup,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => f.write_str("sync message shorter than its header"),
            WireError::Size { header, datagram } => write!(
                f,
                "sync message size {header} in the header but {datagram} bytes received"
            ),
            WireError::SyncId { got } => write!(f, "sync message for syncid {got}"),
            WireError::NoBackup => f.write_str("sync message but no backup daemon runs"),
        }
    }
}

impl core::error::Error for WireError {}

/// A fault that ends the walk over a message's records (the kernel drops the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireFault {
    /// Fewer bytes left than a record's fixed part.
    Truncated,
    /// A record's length is past the message's end or shorter than its fixed part.
    RecordLength,
    /// A record format version other than 0.
    RecordVersion,
    /// A record type other than 0 (IPv4) or odd (IPv6).
    RecordType,
    /// An option header cut by the record's end.
    OptionTruncated,
    /// An option of length 0, past the record, or of a wrong length for its type.
    OptionLength,
    /// A known option twice in one record.
    OptionTwice,
}

/// Why one record is refused (the rest of the message is still read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// ONE_PACKET, or NO_CPORT together with TEMPLATE.
    Flags,
    /// A protocol lb-core does not balance.
    Protocol,
    /// A state number out of range for the protocol.
    State,
    /// A persistence-engine option (lb-core has no persistence engines).
    PersistenceEngine,
    /// An unknown option without the optional bit.
    UnknownOption,
}

/// What reading one record found wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// The rest of the message cannot be read.
    Fatal(WireFault),
    /// This record is refused; the next one starts after its `usize` bytes (plus padding).
    Skip(SkipReason, usize),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Fatal(w) => write!(f, "sync record unreadable ({w:?}); rest dropped"),
            RecordError::Skip(s, _) => write!(f, "sync record refused ({s:?})"),
        }
    }
}

impl core::error::Error for RecordError {}

/// The version of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Version 0: IPv4 records of 24 bytes, no timeouts.
    V0,
    /// Version 1.
    V1,
}

/// A received message whose header checked out.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The message's syncid.
    pub syncid: u8,
    /// Its version.
    pub version: Version,
    count: u8,
    body: &'a [u8],
}

impl<'a> Message<'a> {
    /// Checks the header of datagram `b` as the kernel's backup does: at least 4 bytes, the size
    /// field equal to the length, and the syncid (`accept`: `None` or `Some(0)` take any).
    /// Version 1 iff the version byte is 1 and the reserved and spare fields are 0; else
    /// version 0.
    pub fn parse(b: &'a [u8], accept: Option<u8>) -> Result<Message<'a>, WireError> {
        if b.len() < HEADER_V0 {
            return Err(WireError::Truncated);
        }
        let size = usize::from(u16::from_be_bytes([b[2], b[3]]));
        if size != b.len() {
            return Err(WireError::Size {
                header: size,
                datagram: b.len(),
            });
        }
        let syncid = b[1];
        if let Some(want) = accept.filter(|&w| w != 0) {
            if syncid != want {
                return Err(WireError::SyncId { got: syncid });
            }
        }
        let v1 = b.len() >= HEADER_V1 && b[0] == 0 && b[5] == 1 && b[6] == 0 && b[7] == 0;
        Ok(if v1 {
            Message {
                syncid,
                version: Version::V1,
                count: b[4],
                body: &b[HEADER_V1..],
            }
        } else {
            Message {
                syncid,
                version: Version::V0,
                count: b[0],
                body: &b[HEADER_V0..],
            }
        })
    }

    /// The number of records the header announces.
    pub fn count(&self) -> usize {
        usize::from(self.count)
    }

    /// The records, in order. After a [`RecordError::Fatal`] the iterator ends.
    pub fn records(&self) -> Records<'a> {
        Records {
            version: self.version,
            left: self.count,
            body: self.body,
            at: 0,
            offset: match self.version {
                Version::V1 => HEADER_V1,
                Version::V0 => HEADER_V0,
            },
        }
    }
}

/// Iterator over a message's records ([`Message::records`]).
#[derive(Debug, Clone)]
pub struct Records<'a> {
    version: Version,
    left: u8,
    body: &'a [u8],
    at: usize,
    /// The body's offset in the message, for alignment.
    offset: usize,
}

impl Iterator for Records<'_> {
    type Item = Result<Record, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let rest = self.body.get(self.at..).unwrap_or(&[]);
        let r = match self.version {
            Version::V1 => Record::decode(rest),
            Version::V0 => decode_v0(rest),
        };
        let used = match r {
            Ok((_, n)) | Err(RecordError::Skip(_, n)) => n,
            Err(RecordError::Fatal(_)) => {
                self.left = 0;
                return Some(r.map(|(rec, _)| rec));
            }
        };
        // Records start on 4-byte boundaries of the message (version 0's are 24 or 48 bytes).
        let end = self.offset + self.at + used;
        self.at = end.next_multiple_of(4) - self.offset;
        Some(r.map(|(rec, _)| rec))
    }
}

/// A version-0 record (and its 24 bytes of sequence data when its flags say so).
fn decode_v0(b: &[u8]) -> Result<(Record, usize), RecordError> {
    if b.len() < RECORD_V0 {
        return Err(RecordError::Fatal(WireFault::Truncated));
    }
    let be16 = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
    let v4 = |o: usize| IpAddr::V4(Ipv4Addr::new(b[o], b[o + 1], b[o + 2], b[o + 3]));
    let fl = u32::from(be16(20)) & !flags::HASHED;
    let len = if fl & flags::SEQ_MASK != 0 {
        RECORD_V0 + 24
    } else {
        RECORD_V0
    };
    if len > b.len() {
        return Err(RecordError::Fatal(WireFault::Truncated));
    }
    let r = Record {
        protocol: b[1],
        flags: fl,
        state: be16(22),
        client: SocketAddr::new(v4(8), be16(2)),
        vaddr: SocketAddr::new(v4(12), be16(4)),
        daddr: SocketAddr::new(v4(16), be16(6)),
        fwmark: 0,
        timeout_secs: 0,
        lb_timer: None,
    };
    r.check().map_err(|why| RecordError::Skip(why, len))?;
    Ok((r, len))
}

/// Packs records into one version-1 message in a caller's buffer, as the kernel's master
/// does. The buffer's length is the sync max length.
#[derive(Debug)]
pub struct MessageWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
    count: u8,
    version: Version,
}

impl<'b> MessageWriter<'b> {
    /// An empty message with `syncid`; `None` if `buf` cannot hold a header.
    pub fn new(buf: &'b mut [u8], syncid: u8) -> Option<MessageWriter<'b>> {
        let buf = cap_len(buf);
        let h = buf.get_mut(..HEADER_V1)?;
        h.copy_from_slice(&[0, syncid, 0, HEADER_V1 as u8, 0, 1, 0, 0]);
        Some(MessageWriter {
            buf,
            len: HEADER_V1,
            count: 0,
            version: Version::V1,
        })
    }

    /// An empty version-0 message (`sync_version` 0: IPv4 records without timeouts, for
    /// backups that predate version 1); `None` if `buf` cannot hold a header.
    pub fn new_v0(buf: &'b mut [u8], syncid: u8) -> Option<MessageWriter<'b>> {
        let buf = cap_len(buf);
        let h = buf.get_mut(..HEADER_V0)?;
        h.copy_from_slice(&[0, syncid, 0, HEADER_V0 as u8]);
        Some(MessageWriter {
            buf,
            len: HEADER_V0,
            count: 0,
            version: Version::V0,
        })
    }

    /// Appends `r` (padding in front of it to a 4-byte boundary); `false` if it does not fit or
    /// the message already holds [`MAX_RECORDS`]: send this one and start another.
    pub fn push(&mut self, r: &Record) -> bool {
        if usize::from(self.count) >= MAX_RECORDS {
            return false;
        }
        let start = self.len.next_multiple_of(4);
        let Some(out) = self.buf.get_mut(start..) else {
            return false;
        };
        let written = match self.version {
            Version::V1 => r.encode(out),
            Version::V0 => encode_v0(r, out),
        };
        let Some(n) = written else {
            return false;
        };
        self.buf[self.len..start].fill(0);
        self.len = start + n;
        self.count += 1;
        self.buf[2..4].copy_from_slice(&(self.len as u16).to_be_bytes());
        match self.version {
            Version::V1 => self.buf[4] = self.count,
            Version::V0 => self.buf[0] = self.count,
        }
        true
    }

    /// Records in the message so far.
    pub fn count(&self) -> usize {
        usize::from(self.count)
    }

    /// The message's length so far (the header's size field).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no record has been pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The finished message.
    pub fn finish(self) -> &'b [u8] {
        &self.buf[..self.len]
    }
}

/// A message's length is a 16-bit field.
fn cap_len(buf: &mut [u8]) -> &mut [u8] {
    let n = buf.len().min(usize::from(u16::MAX));
    &mut buf[..n]
}

/// A version-0 record: IPv4 only, 16 bits of flags, no timeout, fwmark or options.
fn encode_v0(r: &Record, out: &mut [u8]) -> Option<usize> {
    let (IpAddr::V4(c), IpAddr::V4(v), IpAddr::V4(d)) = (r.client.ip(), r.vaddr.ip(), r.daddr.ip())
    else {
        return None;
    };
    let out = out.get_mut(..RECORD_V0)?;
    out[0] = 0;
    out[1] = r.protocol;
    out[2..4].copy_from_slice(&r.client.port().to_be_bytes());
    out[4..6].copy_from_slice(&r.vaddr.port().to_be_bytes());
    out[6..8].copy_from_slice(&r.daddr.port().to_be_bytes());
    out[8..12].copy_from_slice(&c.octets());
    out[12..16].copy_from_slice(&v.octets());
    out[16..20].copy_from_slice(&d.octets());
    out[20..22]
        .copy_from_slice(&((r.flags & !flags::HASHED & !flags::SEQ_MASK) as u16).to_be_bytes());
    out[22..24].copy_from_slice(&r.state.to_be_bytes());
    Some(RECORD_V0)
}
