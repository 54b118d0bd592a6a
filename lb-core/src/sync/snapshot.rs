//! The connection-table snapshot (docs/sync.md §1): what `lb-tun --state FILE` writes when it
//! stops and reads when it starts, so a restart loses no established connection.
//!
//! Layout (all integers big-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `LBSNAP` and the format version, `00 01` |
//! | 8 | reserved, zero |
//! | … | records: version-1 sync records ([`Record`]) each with lb's timer option, each starting on a 4-byte boundary of the snapshot (zero padding in front) |
//! | 4 | record count |
//! | 4 | CRC-32 (IEEE) of every byte before it |
//!
//! The records are the ones the sync protocol carries, so a snapshot is also readable by
//! anything that reads sync records; the timer option makes a restore exact to the millisecond
//! (the entry's timeout and the time it had left) where sync has whole seconds.
//!
//! [`Exporter`] writes a snapshot in pieces into caller buffers; [`read`] checks a whole one
//! (magic, version, length, checksum, every record) before [`crate::Balancer::import_state`]
//! applies anything, so a damaged or foreign input changes nothing.

use core::fmt;

use super::wire::{Record, RecordError};

/// The first eight bytes of a snapshot: magic and format version 1.
pub const MAGIC: [u8; 8] = *b"LBSNAP\x00\x01";
/// Length of the header (magic, version, reserved).
pub const HEADER: usize = 16;
/// Length of the trailer (count, CRC).
pub const TRAILER: usize = 8;
/// The smallest buffer [`Exporter::write`] accepts: room for the header or one record with
/// its padding, or the trailer.
pub const CHUNK_MIN: usize = 96;

/// Why a snapshot is refused. Nothing has been applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Shorter than a header and a trailer, or the records do not fill the space between.
    Truncated {
        /// The input's length.
        len: usize,
    },
    /// Not a snapshot (the magic is wrong).
    NotASnapshot,
    /// A snapshot of another format version.
    Version {
        /// The version found.
        found: u16,
    },
    /// The CRC does not match: the file is damaged.
    Checksum {
        /// The CRC in the trailer.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// The trailer's count is not the number of records.
    Count {
        /// The trailer's count.
        stored: u32,
        /// Records found.
        found: u32,
    },
    /// Record `index` (from 0) cannot be read.
    Record {
        /// Its index.
        index: u32,
        /// Its byte offset in the snapshot.
        offset: usize,
        /// What is wrong with it.
        error: RecordError,
    },
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Truncated { len } => {
                write!(f, "state snapshot truncated ({len} bytes)")
            }
            SnapshotError::NotASnapshot => f.write_str("not an lb state snapshot (bad magic)"),
            SnapshotError::Version { found } => write!(
                f,
                "state snapshot format version {found}; this build reads version 1"
            ),
            SnapshotError::Checksum { stored, computed } => write!(
                f,
                "state snapshot damaged: CRC {computed:#010x} computed, {stored:#010x} stored"
            ),
            SnapshotError::Count { stored, found } => write!(
                f,
                "state snapshot damaged: {stored} records announced, {found} found"
            ),
            SnapshotError::Record {
                index,
                offset,
                error,
            } => write!(
                f,
                "state snapshot record {index} at byte {offset} unreadable: {error}"
            ),
        }
    }
}

impl core::error::Error for SnapshotError {}

/// Checks a whole snapshot and returns an iterator over its records (all known good).
pub fn read(b: &[u8]) -> Result<SnapshotRecords<'_>, SnapshotError> {
    if b.len() < HEADER + TRAILER {
        return Err(SnapshotError::Truncated { len: b.len() });
    }
    if b[..6] != MAGIC[..6] {
        return Err(SnapshotError::NotASnapshot);
    }
    let found = u16::from_be_bytes([b[6], b[7]]);
    if found != 1 {
        return Err(SnapshotError::Version { found });
    }
    let body_end = b.len() - TRAILER;
    let t = &b[body_end..];
    let stored_count = u32::from_be_bytes([t[0], t[1], t[2], t[3]]);
    let stored = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    let computed = crc32(&b[..body_end + 4]);
    if stored != computed {
        return Err(SnapshotError::Checksum { stored, computed });
    }
    let records = SnapshotRecords {
        b: &b[..body_end],
        at: HEADER,
        index: 0,
    };
    let mut found = 0u32;
    for r in records.clone() {
        r?;
        found += 1;
    }
    if found != stored_count {
        return Err(SnapshotError::Count {
            stored: stored_count,
            found,
        });
    }
    Ok(records)
}

/// The records of a snapshot [`read`] has checked.
#[derive(Debug, Clone)]
pub struct SnapshotRecords<'a> {
    b: &'a [u8],
    at: usize,
    index: u32,
}

impl Iterator for SnapshotRecords<'_> {
    type Item = Result<Record, SnapshotError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.b.len() {
            return None;
        }
        let (offset, index) = (self.at, self.index);
        let fail = |error| SnapshotError::Record {
            index,
            offset,
            error,
        };
        match Record::decode(&self.b[self.at..]) {
            Ok((r, n)) => {
                // The next record starts on a 4-byte boundary; the padding must be zero.
                let end = offset + n;
                let next = align4(end).min(self.b.len());
                self.index += 1;
                if self.b[end..next].iter().any(|&x| x != 0) {
                    self.at = self.b.len();
                    return Some(Err(fail(RecordError::Fatal(
                        super::wire::WireFault::RecordLength,
                    ))));
                }
                self.at = next;
                Some(Ok(r))
            }
            Err(e) => {
                self.at = self.b.len();
                Some(Err(fail(e)))
            }
        }
    }
}

/// Where an [`Exporter`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Header,
    Records,
    Trailer,
    Done,
}

/// Writes a snapshot of a balancer's table in pieces ([`crate::Balancer::export_state`]).
///
/// Call [`write`](Self::write) with the balancer and a buffer until it returns 0. The snapshot
/// is consistent if no packet is processed between the calls (lb-tun writes it in one go).
#[derive(Debug, Clone)]
pub struct Exporter {
    phase: Phase,
    /// Next slab index to look at.
    pub(crate) next: usize,
    count: u32,
    /// Bytes written so far (for alignment).
    offset: usize,
    crc: Crc32,
    pub(crate) now: crate::time::Instant,
}

impl Exporter {
    pub(crate) fn new(now: crate::time::Instant) -> Exporter {
        Exporter {
            phase: Phase::Header,
            next: 0,
            count: 0,
            offset: 0,
            crc: Crc32::new(),
            now,
        }
    }

    /// Records written so far.
    pub fn records(&self) -> u32 {
        self.count
    }

    /// Writes the next bytes of the snapshot into `out` and returns how many; 0 once it is
    /// complete. `out` must hold at least [`CHUNK_MIN`] bytes, or nothing is written.
    pub fn write(&mut self, balancer: &crate::Balancer<'_>, out: &mut [u8]) -> usize {
        if out.len() < CHUNK_MIN {
            return 0;
        }
        let mut n = 0;
        loop {
            match self.phase {
                Phase::Header => {
                    out[..8].copy_from_slice(&MAGIC);
                    out[8..HEADER].fill(0);
                    n = HEADER;
                    self.phase = Phase::Records;
                }
                Phase::Records => {
                    let Some((rec, next)) = balancer.export_record(self, self.next) else {
                        self.phase = Phase::Trailer;
                        continue;
                    };
                    let at = self.offset + n;
                    let pad = align4(at) - at;
                    if n + pad + rec.encoded_len() > out.len() {
                        break;
                    }
                    out[n..n + pad].fill(0);
                    let Some(len) = rec.encode(&mut out[n + pad..]) else {
                        // Mixed families cannot come from one entry; skip it rather than stop.
                        self.next = next;
                        continue;
                    };
                    n += pad + len;
                    self.next = next;
                    self.count += 1;
                }
                Phase::Trailer => {
                    if n + TRAILER > out.len() {
                        break;
                    }
                    out[n..n + 4].copy_from_slice(&self.count.to_be_bytes());
                    self.crc.update(&out[..n + 4]);
                    let crc = self.crc.finish();
                    out[n + 4..n + TRAILER].copy_from_slice(&crc.to_be_bytes());
                    self.offset += n + TRAILER;
                    self.phase = Phase::Done;
                    return n + TRAILER;
                }
                Phase::Done => return 0,
            }
        }
        self.crc.update(&out[..n]);
        self.offset += n;
        n
    }
}

fn align4(x: usize) -> usize {
    (x + 3) & !3
}

/// CRC-32 (IEEE 802.3, reflected, as zlib and `crc32` print it) of `b`.
pub fn crc32(b: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(b);
    c.finish()
}

/// A running CRC-32 (IEEE).
#[derive(Debug, Clone)]
struct Crc32(crc32fast::Hasher);

impl Crc32 {
    fn new() -> Crc32 {
        Crc32(crc32fast::Hasher::new())
    }
    fn update(&mut self, b: &[u8]) {
        self.0.update(b);
    }
    fn finish(&self) -> u32 {
        self.0.clone().finalize()
    }
}
