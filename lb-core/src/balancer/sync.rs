//! The sync daemons' protocol work (docs/sync.md §3–§4): the master queues entries by IPVS's
//! rules (`ip_vs_sync_conn_needed`) as packets arrive and packs them into messages when
//! [`Balancer::poll_sync`] is asked; the backup applies received messages
//! ([`Balancer::receive_sync`]) with the rules of the snapshot import.

use crate::conn::{ConnFlags, Entry, Handle};
use crate::sync::daemon::{DaemonConfig, SyncRole};
use crate::sync::wire::{Message, MessageWriter, RecordError, WireError};
use crate::tcp::TcpState;
use crate::time::{Duration, Instant};

use super::state::{Applied, ImportReport};
use super::Balancer;

/// Entries the master holds between two messages; more are dropped and counted
/// ([`SyncStats::queue_drops`]), as the kernel drops messages past `sync_qlen_max`.
pub const SYNC_QUEUE: usize = 256;
/// How long a partly filled message may wait (the kernel's `IPVS_SYNC_FLUSH_TIME`, 2 s); a
/// full one goes at the next [`Balancer::poll_sync`].
pub const SYNC_FLUSH: Duration = Duration::from_secs(2);

/// The sync daemons' counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncStats {
    /// Entries the master queued.
    pub queued: u64,
    /// Entries not queued: the queue was full.
    pub queue_drops: u64,
    /// Messages the master handed out.
    pub messages_sent: u64,
    /// Records in them.
    pub records_sent: u64,
    /// Messages the backup was given.
    pub messages_received: u64,
    /// Of those, refused whole (size, syncid, no backup daemon).
    pub messages_refused: u64,
    /// Records refused (malformed, unsupported).
    pub records_refused: u64,
    /// Entries the backup created.
    pub created: u64,
    /// Entries it refreshed.
    pub updated: u64,
    /// Records ignored (the late notice of a replaced entry).
    pub ignored: u64,
    /// Records for a service this balancer does not have.
    pub no_service: u64,
    /// Records for a real server the service does not have.
    pub no_server: u64,
    /// Records dropped because the table was full.
    pub table_full: u64,
}

/// What [`Balancer::receive_sync`] did with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncReceipt {
    /// Records applied (created or refreshed).
    pub applied: u32,
    /// Records not applied (refused, ignored, or no service, server or room).
    pub dropped: u32,
}

/// The daemons' state inside the balancer.
pub(crate) struct SyncEngine {
    master: Option<DaemonConfig>,
    backup: Option<DaemonConfig>,
    queue: heapless::Deque<Handle, SYNC_QUEUE>,
    /// When the oldest queued entry was queued.
    since: Option<Instant>,
    stats: SyncStats,
}

impl SyncEngine {
    pub(crate) const fn new() -> SyncEngine {
        SyncEngine {
            master: None,
            backup: None,
            queue: heapless::Deque::new(),
            since: None,
            stats: SyncStats {
                queued: 0,
                queue_drops: 0,
                messages_sent: 0,
                records_sent: 0,
                messages_received: 0,
                messages_refused: 0,
                records_refused: 0,
                created: 0,
                updated: 0,
                ignored: 0,
                no_service: 0,
                no_server: 0,
                table_full: 0,
            },
        }
    }

    /// Whether the master runs (checked on every client packet).
    #[inline(always)]
    pub(crate) fn master_on(&self) -> bool {
        self.master.is_some()
    }

    /// When `poll_sync` has a message for the frontend: `None` if nothing is queued.
    pub(crate) fn next_flush(&self) -> Option<Instant> {
        self.since.map(|t| t + SYNC_FLUSH)
    }
}

impl Balancer<'_> {
    /// Starts the daemon `d` describes (replacing a running one of its role). The frontend
    /// opens its socket; see [`poll_sync`](Self::poll_sync) and
    /// [`receive_sync`](Self::receive_sync).
    pub(crate) fn start_daemon(&mut self, d: DaemonConfig) {
        match d.role {
            SyncRole::Master => {
                self.sync.master = Some(d);
                self.sync.queue.clear();
                self.sync.since = None;
            }
            SyncRole::Backup => self.sync.backup = Some(d),
        }
    }

    /// Stops the daemon of `role` (nothing if none runs).
    pub(crate) fn stop_daemon(&mut self, role: SyncRole) {
        match role {
            SyncRole::Master => {
                self.sync.master = None;
                self.sync.queue.clear();
                self.sync.since = None;
            }
            SyncRole::Backup => self.sync.backup = None,
        }
    }

    /// The running daemon of `role`, as `--start-daemon` configured it (`-L --daemon`).
    pub fn sync_daemon(&self, role: SyncRole) -> Option<&DaemonConfig> {
        match role {
            SyncRole::Master => self.sync.master.as_ref(),
            SyncRole::Backup => self.sync.backup.as_ref(),
        }
    }

    /// The sync daemons' counters.
    pub fn sync_stats(&self) -> &SyncStats {
        &self.sync.stats
    }

    /// The master's next message, written into `buf` (up to its `--sync-maxlen`): `Some(len)`
    /// when one is due — enough entries queued to fill one, or the oldest queued for
    /// [`SYNC_FLUSH`] — else `None`. Call after each burst and when
    /// [`poll_timeout`](Self::poll_timeout) fires, until it returns `None`, and send each
    /// message to the daemon's group. `buf` should hold the max length (1,472 bytes by
    /// default); a shorter one makes shorter messages.
    pub fn poll_sync(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let d = self.sync.master?;
        let flush = self.sync.since.is_some_and(|t| now >= t + SYNC_FLUSH);
        let cap = buf.len().min(usize::from(d.effective_maxlen()));
        let per_message = (cap.saturating_sub(8) / 36).max(1);
        if self.sync.queue.is_empty() || (!flush && self.sync.queue.len() < per_message) {
            return None;
        }
        let buf = &mut buf[..cap];
        let v0 = self.settings.sync_version == 0;
        let mut w = if v0 {
            MessageWriter::new_v0(buf, d.syncid)?
        } else {
            MessageWriter::new(buf, d.syncid)?
        };
        while let Some(&h) = self.sync.queue.front() {
            let Some(rec) = self.sync_record(h) else {
                self.sync.queue.pop_front();
                continue;
            };
            if !w.push(&rec) {
                if w.is_empty() {
                    // It can never fit (an IPv6 entry in a version-0 message, or a tiny
                    // buffer): drop it rather than block the queue.
                    self.sync.queue.pop_front();
                    self.sync.stats.queue_drops += 1;
                    continue;
                }
                break;
            }
            self.sync.queue.pop_front();
        }
        self.sync.since = if self.sync.queue.is_empty() {
            None
        } else {
            self.sync.since
        };
        if w.is_empty() {
            return None;
        }
        self.sync.stats.messages_sent += 1;
        self.sync.stats.records_sent += w.count() as u64;
        Some(w.finish().len())
    }

    /// Applies one message received by the backup daemon (the UDP payload), as IPVS's backup
    /// does: the header checked (size, syncid), then each record applied until one that makes
    /// the rest unreadable. Entries are created or refreshed with the received state and
    /// timeout and forward nothing until their traffic arrives. Errors (and a message when no
    /// backup daemon runs) are counted in [`sync_stats`](Self::sync_stats).
    pub fn receive_sync(&mut self, now: Instant, msg: &[u8]) -> Result<SyncReceipt, WireError> {
        self.sync.stats.messages_received += 1;
        let Some(d) = self.sync.backup else {
            self.sync.stats.messages_refused += 1;
            return Err(WireError::NoBackup);
        };
        let m = match Message::parse(msg, Some(d.syncid)) {
            Ok(m) => m,
            Err(e) => {
                self.sync.stats.messages_refused += 1;
                return Err(e);
            }
        };
        let mut receipt = SyncReceipt::default();
        let mut report = ImportReport::default();
        for r in m.records() {
            let rec = match r {
                Ok(mut rec) => {
                    // lb's own timer option is for snapshots; sync uses the kernel's seconds.
                    rec.lb_timer = None;
                    rec
                }
                Err(RecordError::Skip(..) | RecordError::Fatal(_)) => {
                    self.sync.stats.records_refused += 1;
                    receipt.dropped += 1;
                    continue;
                }
            };
            let applied = self.apply_record(now, &rec);
            report.count(applied);
            if matches!(applied, Applied::Created | Applied::Updated) {
                receipt.applied += 1;
            } else {
                receipt.dropped += 1;
            }
        }
        let s = &mut self.sync.stats;
        for (total, n) in [
            (&mut s.created, report.created),
            (&mut s.updated, report.updated),
            (&mut s.ignored, report.ignored),
            (&mut s.no_service, report.no_service),
            (&mut s.no_server, report.no_server),
            (&mut s.table_full, report.table_full),
        ] {
            *total += u64::from(n);
        }
        Ok(receipt)
    }

    /// [`sync_after_input`](Self::sync_after_input) for a packet that left the entry's state
    /// as it was (the fast path's).
    #[cold]
    pub(super) fn sync_after_steady(&mut self, now: Instant, h: Handle) {
        if let Some(state) = self.conns.get(h).map(|e| e.state) {
            self.sync_after_input(now, h, state);
        }
    }

    /// The master's rules after a client packet on entry `h` (`old`: its state before the
    /// packet): the entry when `ip_vs_sync_conn_needed` says so, then its template, which
    /// counts the packet and (with a non-zero period) is sent every time.
    #[cold]
    pub(super) fn sync_after_input(&mut self, now: Instant, h: Handle, old: u8) {
        let (threshold, period) = (self.settings.sync_threshold, self.settings.sync_period);
        let Some(e) = self.conns.get_mut(h) else {
            return;
        };
        // `in_pkts` is a byte: keep it on the same residue once it would saturate.
        if period > 0 && e.in_pkts == u8::MAX {
            e.in_pkts = u8::MAX - period;
        }
        let needed = conn_needed(e, old, threshold, period);
        let control = e.control();
        if needed {
            self.sync_queue(now, h);
        }
        let Some(t) = control else { return };
        let Some(tpl) = self.conns.get_mut(t) else {
            return;
        };
        tpl.count_in_pkt();
        if period > 0 && tpl.in_pkts == u8::MAX {
            tpl.in_pkts = u8::MAX - period;
        }
        if period > 0 || tpl.in_pkts == threshold {
            self.sync_queue(now, t);
        }
    }

    fn sync_queue(&mut self, now: Instant, h: Handle) {
        if self.sync.queue.back() == Some(&h) {
            return; // already next to go, with its newest state
        }
        if self.sync.queue.push_back(h).is_err() {
            self.sync.stats.queue_drops += 1;
            return;
        }
        self.sync.stats.queued += 1;
        self.sync.since.get_or_insert(now);
    }

    /// The record the master sends for entry `h` now (no lb timer option: the kernel's
    /// timeout in seconds).
    fn sync_record(&self, h: Handle) -> Option<crate::sync::wire::Record> {
        let e = self.conns.get(h)?;
        let left = self.conns.deadline(h)?.saturating_since(Instant::ZERO);
        let mut r = self.entry_record(e, left)?;
        r.lb_timer = None;
        Some(r)
    }
}

/// IPVS's `ip_vs_sync_conn_needed` for a connection (not a template), without
/// `sync_refresh_period` (docs/sync.md §3.1): TCP only in ESTABLISHED, FIN_WAIT, CLOSE,
/// CLOSE_WAIT and TIME_WAIT; a change into one of the last four at once; otherwise the packet
/// rule, `in_pkts % period == threshold` (or `== threshold` with period 0).
fn conn_needed(e: &Entry, old: u8, threshold: u8, period: u8) -> bool {
    if e.is_template() || e.flags.contains(ConnFlags::ONE_PACKET) {
        return false;
    }
    if e.proto() == crate::addr::Protocol::Tcp {
        let state = TcpState::from_u8(e.state).unwrap_or(TcpState::None);
        use TcpState as S;
        if !matches!(
            state,
            S::Established | S::FinWait | S::Close | S::CloseWait | S::TimeWait
        ) {
            return false;
        }
        if e.state != old && state != S::Established {
            return true;
        }
    }
    let pkts = e.in_pkts;
    if period > 0 {
        pkts % period == threshold
    } else {
        pkts == threshold
    }
}
