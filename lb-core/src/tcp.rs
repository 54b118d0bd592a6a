//! IPVS's TCP connection state machine and protocol timeouts, as data (docs/ipvs-semantics.md §2.1–§2.8).
//!
//! A connection entry keeps a [`TcpState`]. For every TCP packet of the connection the balancer
//! calls [`next_state`] with the packet's flags, the [`Direction`] it travelled in and whether
//! `secure_tcp` is active, then re-arms the entry's idle timer with
//! [`TcpTimeouts::timeout`] of the new state (§2.7: every packet re-arms, even when the state
//! does not change). A new entry starts in [`TcpState::None`] and the creating packet is run
//! through the machine in the `Input` direction before the entry goes into the table (IPVS
//! inserts it with [`INITIAL_TIMEOUT`] first; within one call the two are the same).
//!
//! UDP has a single state with one timeout ([`TcpTimeouts::udp`], §2.8) and no transitions.

#![warn(missing_docs)]

use core::fmt;

use crate::config::Timeouts;
use crate::time::Duration;

/// TCP header flag bits as they sit in byte 13 of the TCP header.
pub mod flags {
    /// No more data from the sender.
    pub const FIN: u8 = 0x01;
    /// Synchronise sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push.
    pub const PSH: u8 = 0x08;
    /// The acknowledgment field is significant.
    pub const ACK: u8 = 0x10;
    /// The urgent pointer is significant.
    pub const URG: u8 = 0x20;
}

/// The state of a TCP connection entry, with IPVS's numbering (`IP_VS_TCP_S_*`, §2.1).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum TcpState {
    /// `NO`: a new entry before its first transition (2 s).
    #[default]
    None = 0,
    /// `ES`: data flows (900 s).
    Established = 1,
    /// `SS`: a SYN seen from the server side (120 s).
    SynSent = 2,
    /// `SR`: the client's SYN seen (60 s).
    SynRecv = 3,
    /// `FW`: a FIN seen from the server (NAT) or the client (DR/TUN) (120 s).
    FinWait = 4,
    /// `TW`: both FINs seen (120 s).
    TimeWait = 5,
    /// `CL`: reset, or a segment with none of SYN/FIN/ACK/RST (10 s).
    Close = 6,
    /// `CW`: the client's FIN seen (60 s).
    CloseWait = 7,
    /// `LA`: last ACK awaited (30 s).
    LastAck = 8,
    /// `LI`: listening; not reached by the tables from a new entry (120 s).
    Listen = 9,
    /// `SA`: under secure_tcp, the server's SYN+ACK seen (120 s).
    SynAck = 10,
}

impl TcpState {
    /// Every state, in IPVS's numeric order (the column order of the transition tables).
    pub const ALL: [TcpState; 11] = [
        TcpState::None,
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::SynAck,
    ];

    /// The two-letter abbreviation the tables of docs/ipvs-semantics.md use (`NO`, `ES`, `SS`, …).
    pub const fn abbr(self) -> &'static str {
        match self {
            TcpState::None => "NO",
            TcpState::Established => "ES",
            TcpState::SynSent => "SS",
            TcpState::SynRecv => "SR",
            TcpState::FinWait => "FW",
            TcpState::TimeWait => "TW",
            TcpState::Close => "CL",
            TcpState::CloseWait => "CW",
            TcpState::LastAck => "LA",
            TcpState::Listen => "LI",
            TcpState::SynAck => "SA",
        }
    }

    /// The name `ipvsadm -L -c` prints in its state column (`ESTABLISHED`, `TIME_WAIT`, …).
    pub const fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::SynAck => "SYNACK",
        }
    }

    /// Whether a connection in this state counts in its real server's `activeconns` rather than
    /// `inactconns` (§2.1: ESTABLISHED, SYN_SENT, SYN_RECV and SYNACK). Call it on every state
    /// change to move the connection between the two counters.
    pub const fn is_active(self) -> bool {
        matches!(
            self,
            TcpState::Established | TcpState::SynSent | TcpState::SynRecv | TcpState::SynAck
        )
    }

    /// The state with IPVS number `n`, if there is one (e.g. from a sync message).
    pub const fn from_u8(n: u8) -> Option<TcpState> {
        if (n as usize) < Self::ALL.len() {
            Some(Self::ALL[n as usize])
        } else {
            None
        }
    }
}

/// Prints the `ipvsadm -L -c` name.
impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The name `ipvsadm -L -c` prints for a UDP entry's (single) state.
pub const UDP_STATE_NAME: &str = "UDP";

/// Which transition sub-table a packet uses (§2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client → director.
    Input = 0,
    /// Real server → client through the director (NAT replies).
    Output = 1,
    /// Client → director while the entry has NOOUTPUT (DR, TUN and LOCALNODE connections, until
    /// an `Output` packet is seen): used instead of `Input`.
    InputOnly = 2,
}

/// The event a TCP packet feeds the state machine, chosen from its flags (§2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpEvent {
    /// SYN set (and not RST).
    Syn = 0,
    /// FIN set (and neither RST nor SYN).
    Fin = 1,
    /// ACK set, and none of RST, SYN, FIN.
    Ack = 2,
    /// RST set.
    Rst = 3,
}

/// The event for a TCP header's flag byte, by strict priority RST > SYN > FIN > ACK; `None` when
/// none of the four is set (the next state is then CLOSE, §2.2).
#[inline]
pub const fn event(tcp_flags: u8) -> Option<TcpEvent> {
    if tcp_flags & flags::RST != 0 {
        Some(TcpEvent::Rst)
    } else if tcp_flags & flags::SYN != 0 {
        Some(TcpEvent::Syn)
    } else if tcp_flags & flags::FIN != 0 {
        Some(TcpEvent::Fin)
    } else if tcp_flags & flags::ACK != 0 {
        Some(TcpEvent::Ack)
    } else {
        None
    }
}

/// A transition table, indexed `[direction][event][current state]`.
pub type TransitionTable = [[[TcpState; 11]; 4]; 3];

const ES: TcpState = TcpState::Established;
const SS: TcpState = TcpState::SynSent;
const SR: TcpState = TcpState::SynRecv;
const FW: TcpState = TcpState::FinWait;
const TW: TcpState = TcpState::TimeWait;
const CL: TcpState = TcpState::Close;
const CW: TcpState = TcpState::CloseWait;
const LA: TcpState = TcpState::LastAck;
const LI: TcpState = TcpState::Listen;
const SA: TcpState = TcpState::SynAck;

// Both tables: Linux `net/netfilter/ipvs/ip_vs_proto_tcp.c`, `tcp_states` and `tcp_states_dos`
// (mainline 6.1x), as transcribed in the docs/ipvs-semantics.md §2.4 and §2.5. Rows are events (syn, fin, ack,
// rst); columns are the current state in the order NO ES SS SR FW TW CL CW LA LI SA.

/// The normal transition table (`tcp_states`, §2.4).
pub static TCP_STATES: TransitionTable = [
    // INPUT
    [
        /* syn */ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        /* fin */ [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
        /* ack */ [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        /* rst */ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
    ],
    // OUTPUT
    [
        /* syn */ [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
        /* fin */ [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
        /* ack */ [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
        /* rst */ [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
    ],
    // INPUT_ONLY
    [
        /* syn */ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        /* fin */ [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
        /* ack */ [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        /* rst */ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    ],
];

/// The table used while `secure_tcp` defends against a SYN flood (`tcp_states_dos`, §2.5).
pub static TCP_STATES_DOS: TransitionTable = [
    // INPUT
    [
        /* syn */ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SA],
        /* fin */ [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, SA],
        /* ack */ [ES, ES, SS, SR, FW, TW, CL, CW, CL, LI, SA],
        /* rst */ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    ],
    // OUTPUT
    [
        /* syn */ [SS, ES, SS, SA, SS, SS, SS, SS, SS, LI, SA],
        /* fin */ [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
        /* ack */ [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
        /* rst */ [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
    ],
    // INPUT_ONLY
    [
        /* syn */ [SA, ES, ES, SR, SA, SA, SA, SA, SA, SA, SA],
        /* fin */ [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
        /* ack */ [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        /* rst */ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    ],
];

/// The state a TCP connection in `cur` moves to when a packet with header flags `tcp_flags`
/// travels in `dir`. `dos` selects the `secure_tcp` table. A packet with none of SYN, FIN, ACK,
/// RST set moves the connection to CLOSE (§2.2). Call it for every TCP packet of an entry.
#[inline]
pub fn next_state(dos: bool, dir: Direction, tcp_flags: u8, cur: TcpState) -> TcpState {
    let Some(ev) = event(tcp_flags) else {
        return TcpState::Close;
    };
    let table = if dos { &TCP_STATES_DOS } else { &TCP_STATES };
    table[dir as usize][ev as usize][cur as usize]
}

/// The idle timeout of a brand-new entry before its first transition (`ip_vs_conn_new`, §2.7).
pub const INITIAL_TIMEOUT: Duration = Duration::from_secs(3);

/// Per-state TCP idle timeouts and the UDP timeout (§2.1, §2.8). 96 bytes.
///
/// Start from [`TcpTimeouts::DEFAULT`]; change with [`TcpTimeouts::apply_set`]
/// (`ipvsadm --set`); list with [`TcpTimeouts::get`] (`ipvsadm -L --timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpTimeouts {
    tcp_ms: [u64; 11],
    udp_ms: u64,
}

impl TcpTimeouts {
    /// IPVS's defaults: NONE 2 s, ESTABLISHED 900 s, SYN_SENT 120 s, SYN_RECV 60 s, FIN_WAIT
    /// 120 s, TIME_WAIT 120 s, CLOSE 10 s, CLOSE_WAIT 60 s, LAST_ACK 30 s, LISTEN 120 s,
    /// SYNACK 120 s; UDP 300 s.
    pub const DEFAULT: TcpTimeouts = TcpTimeouts {
        tcp_ms: [
            2_000, 900_000, 120_000, 60_000, 120_000, 120_000, 10_000, 60_000, 30_000, 120_000,
            120_000,
        ],
        udp_ms: 300_000,
    };

    /// The idle timeout of a TCP entry in `state`. Call it after every transition (or
    /// non-transition) to re-arm the entry.
    #[inline]
    pub const fn timeout(&self, state: TcpState) -> Duration {
        Duration::from_millis(self.tcp_ms[state as usize])
    }

    /// The idle timeout of a UDP entry, re-armed by every packet.
    #[inline]
    pub const fn udp(&self) -> Duration {
        Duration::from_millis(self.udp_ms)
    }

    /// `ipvsadm --set tcp tcpfin udp`: sets the ESTABLISHED, FIN_WAIT and UDP timeouts (in
    /// seconds); a 0 keeps the current value. Existing entries keep their armed timers and pick
    /// up the new value on their next packet, as in IPVS.
    pub fn apply_set(&mut self, t: Timeouts) {
        if t.tcp != 0 {
            self.tcp_ms[TcpState::Established as usize] = u64::from(t.tcp) * 1000;
        }
        if t.tcp_fin != 0 {
            self.tcp_ms[TcpState::FinWait as usize] = u64::from(t.tcp_fin) * 1000;
        }
        if t.udp != 0 {
            self.udp_ms = u64::from(t.udp) * 1000;
        }
    }

    /// The three settable timeouts in whole seconds, as `ipvsadm -L --timeout` lists them
    /// (`Timeout (tcp tcpfin udp): 900 120 300`).
    pub fn get(&self) -> Timeouts {
        let secs = |ms: u64| u32::try_from(ms / 1000).unwrap_or(u32::MAX);
        Timeouts {
            tcp: secs(self.tcp_ms[TcpState::Established as usize]),
            tcp_fin: secs(self.tcp_ms[TcpState::FinWait as usize]),
            udp: secs(self.udp_ms),
        }
    }
}

impl Default for TcpTimeouts {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// docs/ipvs-semantics.md §2.4 and §2.5, read from the document itself: the tests parse
    /// its tables and compare them with the static tables cell by cell, so the document and the
    /// code cannot drift apart (a typo in either fails).
    fn reference_tables() -> &'static str {
        let doc = include_str!("../../docs/ipvs-semantics.md");
        let start = doc
            .find("### 2.4")
            .expect("docs/ipvs-semantics.md has §2.4");
        let end = doc
            .find("### 2.6")
            .expect("docs/ipvs-semantics.md has §2.6");
        &doc[start..end]
    }

    fn state(abbr: &str) -> TcpState {
        TcpState::ALL
            .into_iter()
            .find(|s| s.abbr() == abbr)
            .unwrap_or_else(|| panic!("unknown state {abbr:?}"))
    }

    fn cells(line: &str) -> Vec<&str> {
        line.trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect()
    }

    fn direction(name: &str) -> Direction {
        match name {
            "INPUT" => Direction::Input,
            "OUTPUT" => Direction::Output,
            "INPUT_ONLY" => Direction::InputOnly,
            _ => panic!("unknown direction {name:?}"),
        }
    }

    fn event_index(name: &str) -> usize {
        ["syn", "fin", "ack", "rst"]
            .iter()
            .position(|e| *e == name)
            .unwrap_or_else(|| panic!("unknown event {name:?}"))
    }

    /// Parses the six tables of docs/ipvs-semantics.md: (normal, dos), each fully filled (checked).
    fn parse_reference() -> (TransitionTable, TransitionTable) {
        let mut tables = [[[[None::<TcpState>; 11]; 4]; 3]; 2];
        let mut which = None;
        let mut dir = None;
        for line in reference_tables().lines() {
            let line = line.trim();
            if line.starts_with("### 2.4") {
                which = Some(0);
            } else if line.starts_with("### 2.5") {
                which = Some(1);
            } else if line.starts_with("Every cell") {
                break;
            } else if matches!(line, "INPUT" | "OUTPUT" | "INPUT_ONLY") {
                dir = Some(direction(line));
            } else if line.starts_with("| event") {
                let header = cells(line);
                let cols: Vec<_> = header[1..].iter().map(|a| state(a)).collect();
                assert_eq!(cols, TcpState::ALL, "column order");
            } else if line.starts_with("| ") {
                let c = cells(line);
                assert_eq!(c.len(), 12, "{line}");
                let ev = event_index(c[0]);
                let (w, d) = (which.unwrap(), dir.unwrap());
                for (col, abbr) in c[1..].iter().enumerate() {
                    let slot = &mut tables[w][d as usize][ev][col];
                    assert!(slot.is_none(), "cell given twice: {line}");
                    *slot = Some(state(abbr));
                }
            }
        }
        let fill = |t: &[[[Option<TcpState>; 11]; 4]; 3]| {
            let mut out = [[[TcpState::None; 11]; 4]; 3];
            for d in 0..3 {
                for e in 0..4 {
                    for s in 0..11 {
                        out[d][e][s] = t[d][e][s].expect("reference cell missing");
                    }
                }
            }
            out
        };
        (fill(&tables[0]), fill(&tables[1]))
    }

    #[test]
    fn every_cell_matches_the_reference() {
        let (normal, dos) = parse_reference();
        let mut checked = 0;
        for d in 0..3 {
            for e in 0..4 {
                for s in 0..11 {
                    assert_eq!(
                        TCP_STATES[d][e][s], normal[d][e][s],
                        "normal [{d}][{e}][{s}]"
                    );
                    assert_eq!(TCP_STATES_DOS[d][e][s], dos[d][e][s], "dos [{d}][{e}][{s}]");
                    checked += 2;
                }
            }
        }
        assert_eq!(checked, 264);
    }

    #[test]
    fn differing_cells_are_exactly_the_listed_ones() {
        let mut listed = Vec::new();
        let text = reference_tables()
            .split("Every cell that differs")
            .nth(1)
            .unwrap();
        for line in text.lines().filter(|l| l.starts_with("| ")) {
            let c = cells(line);
            if c[0] == "direction" {
                continue;
            }
            let (d, ev) = (direction(c[0]), event_index(c[1]));
            let (normal, dos) = (state(c[3]), state(c[4]));
            for from in c[2].split(',').map(|s| state(s.trim())) {
                listed.push((d as usize, ev, from as usize, normal, dos));
            }
        }
        let mut actual = Vec::new();
        for d in 0..3 {
            for e in 0..4 {
                for s in 0..11 {
                    let (n, x) = (TCP_STATES[d][e][s], TCP_STATES_DOS[d][e][s]);
                    if n != x {
                        actual.push((d, e, s, n, x));
                    }
                }
            }
        }
        listed.sort();
        actual.sort();
        assert_eq!(listed.len(), 15);
        assert_eq!(actual, listed);
    }

    #[test]
    fn event_priority() {
        use flags::*;
        assert_eq!(event(RST | SYN | FIN | ACK), Some(TcpEvent::Rst));
        assert_eq!(event(SYN | ACK), Some(TcpEvent::Syn));
        assert_eq!(event(SYN | FIN), Some(TcpEvent::Syn));
        assert_eq!(event(FIN | ACK), Some(TcpEvent::Fin));
        assert_eq!(event(ACK | PSH), Some(TcpEvent::Ack));
        assert_eq!(event(PSH | URG), None);
        assert_eq!(event(0), None);
        for s in TcpState::ALL {
            for dir in [Direction::Input, Direction::Output, Direction::InputOnly] {
                assert_eq!(next_state(false, dir, PSH, s), TcpState::Close);
                assert_eq!(next_state(true, dir, 0, s), TcpState::Close);
            }
        }
        // SYN+ACK from the server is a syn event: SYN_RECV stays (normal), goes SYNACK (dos).
        assert_eq!(
            next_state(false, Direction::Output, SYN | ACK, TcpState::SynRecv),
            TcpState::SynRecv
        );
        assert_eq!(
            next_state(true, Direction::Output, SYN | ACK, TcpState::SynRecv),
            TcpState::SynAck
        );
    }

    /// Runs a packet sequence from NONE and returns the final state.
    fn run(dos: bool, steps: &[(Direction, u8)]) -> TcpState {
        steps
            .iter()
            .fold(TcpState::None, |s, &(d, f)| next_state(dos, d, f, s))
    }

    #[test]
    fn nat_orderly_close_from_either_side_ends_in_time_wait() {
        use flags::*;
        use Direction::{Input as I, Output as O};
        // The handshake, then one data segment from the server (under secure_tcp, only that
        // OUTPUT ack establishes the connection).
        let open = [(I, SYN), (O, SYN | ACK), (I, ACK), (O, ACK | PSH)];
        for dos in [false, true] {
            assert_eq!(run(dos, &open), TcpState::Established, "dos={dos}");
            let mut client_closes = open.to_vec();
            client_closes.extend([(I, FIN | ACK), (O, ACK), (O, FIN | ACK), (I, ACK)]);
            assert_eq!(run(dos, &client_closes), TcpState::TimeWait, "dos={dos}");
            let mut server_closes = open.to_vec();
            server_closes.extend([(O, FIN | ACK), (I, ACK), (I, FIN | ACK), (O, ACK)]);
            assert_eq!(run(dos, &server_closes), TcpState::TimeWait, "dos={dos}");
            // Both FINs cross before either is acknowledged.
            let mut both = open.to_vec();
            both.extend([(I, FIN | ACK), (O, FIN | ACK), (I, ACK), (O, ACK)]);
            assert_eq!(run(dos, &both), TcpState::TimeWait, "dos={dos}");
            // Further ACKs (retransmissions) keep TIME_WAIT.
            both.extend([(I, ACK), (O, ACK)]);
            assert_eq!(run(dos, &both), TcpState::TimeWait, "dos={dos}");
        }
        let open = &open[..3];
        // Handshake: normal table establishes on the client's ACK; DoS only on an OUTPUT ack.
        assert_eq!(run(false, open), TcpState::Established);
        assert_eq!(run(true, open), TcpState::SynAck);
        assert_eq!(
            run(true, &[(I, SYN), (O, SYN | ACK), (O, ACK)]),
            TcpState::Established
        );
    }

    #[test]
    fn dr_client_fin_ends_in_fin_wait() {
        use flags::*;
        use Direction::InputOnly as X;
        let close = [
            (X, SYN),
            (X, ACK),
            (X, ACK | PSH),
            (X, FIN | ACK),
            (X, ACK),
            (X, ACK),
        ];
        assert_eq!(run(false, &close), TcpState::FinWait);
        assert_eq!(run(true, &close), TcpState::FinWait);
        // A new DR SYN lands in SYN_RECV normally, SYNACK under secure_tcp (§2.5).
        assert_eq!(run(false, &[(X, SYN)]), TcpState::SynRecv);
        assert_eq!(run(true, &[(X, SYN)]), TcpState::SynAck);
    }

    #[test]
    fn rst_from_established_gives_close() {
        for dos in [false, true] {
            for dir in [Direction::Input, Direction::Output, Direction::InputOnly] {
                for f in [flags::RST, flags::RST | flags::ACK] {
                    let s = next_state(dos, dir, f, TcpState::Established);
                    assert_eq!(s, TcpState::Close, "dos={dos} {dir:?}");
                }
            }
        }
    }

    #[test]
    fn names_and_activity() {
        let names: Vec<_> = TcpState::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "NONE",
                "ESTABLISHED",
                "SYN_SENT",
                "SYN_RECV",
                "FIN_WAIT",
                "TIME_WAIT",
                "CLOSE",
                "CLOSE_WAIT",
                "LAST_ACK",
                "LISTEN",
                "SYNACK"
            ]
        );
        for (i, s) in TcpState::ALL.into_iter().enumerate() {
            assert_eq!(s as usize, i);
            assert_eq!(TcpState::from_u8(i as u8), Some(s));
        }
        assert_eq!(TcpState::from_u8(11), None);
        let active: Vec<_> = TcpState::ALL
            .into_iter()
            .filter(|s| s.is_active())
            .collect();
        assert_eq!(
            active,
            [
                TcpState::Established,
                TcpState::SynSent,
                TcpState::SynRecv,
                TcpState::SynAck
            ]
        );
    }

    #[test]
    fn timeouts_default_set_get() {
        let mut t = TcpTimeouts::DEFAULT;
        let secs: Vec<_> = TcpState::ALL.iter().map(|&s| t.timeout(s).secs()).collect();
        assert_eq!(secs, [2, 900, 120, 60, 120, 120, 10, 60, 30, 120, 120]);
        assert_eq!(t.udp().secs(), 300);
        assert_eq!(INITIAL_TIMEOUT.millis(), 3000);
        let listed = t.get();
        assert_eq!((listed.tcp, listed.tcp_fin, listed.udp), (900, 120, 300));
        t.apply_set(Timeouts {
            tcp: 0,
            tcp_fin: 30,
            udp: 0,
        });
        let listed = t.get();
        assert_eq!((listed.tcp, listed.tcp_fin, listed.udp), (900, 30, 300));
        assert_eq!(t.timeout(TcpState::FinWait).millis(), 30_000);
        t.apply_set(Timeouts {
            tcp: 7200,
            tcp_fin: 0,
            udp: 5,
        });
        let listed = t.get();
        assert_eq!((listed.tcp, listed.tcp_fin, listed.udp), (7200, 30, 5));
        // Only the three settable timeouts move.
        assert_eq!(t.timeout(TcpState::TimeWait).secs(), 120);
        assert_eq!(t.timeout(TcpState::Close).secs(), 10);
        assert_eq!(core::mem::size_of::<TcpTimeouts>(), 96);
    }
}
