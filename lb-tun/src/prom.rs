//! The Prometheus text exposition the gateway publishes on `--metrics`.
//!
//! The IPVS part uses node_exporter's ipvs collector names, help texts, types and labels
//! (`collector/ipvs_linux.go`), so dashboards built for kernel IPVS work unchanged:
//!
//! * `node_ipvs_connections_total`, `node_ipvs_incoming_packets_total`,
//!   `node_ipvs_outgoing_packets_total`, `node_ipvs_incoming_bytes_total`,
//!   `node_ipvs_outgoing_bytes_total`: counters, summed over all services (the kernel's
//!   `/proc/net/ip_vs_stats` totals);
//! * `node_ipvs_backend_connections_active`, `node_ipvs_backend_connections_inactive`,
//!   `node_ipvs_backend_weight`: gauges per real server, labelled `local_address`,
//!   `local_mark` (empty: TUN services carry no mark), `local_port`, `proto`, `remote_address`,
//!   `remote_port` (client_golang prints labels sorted by name).
//!
//! Our own metrics are prefixed `lbtun_`: drops by reason, the port-reuse and removed-server
//! reschedules, SYN drops, tunnelled packets and path MTU answers, table occupancy, and the
//! TUN ring's I/O counters.

use std::fmt::Write;

use lb_core::{Balancer, DropReason, Protocol, ServiceKey};

use crate::tun::RingStats;

/// What the gateway itself counts, beside the balancer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrontendStats {
    /// Packets the balancer passed whose destination is a former virtual address: dropped,
    /// because writing them back into the TUN would loop.
    pub loop_drops: u64,
    /// Drained-server events seen.
    pub drained_events: u64,
    /// Health transitions seen (`Event::Health`).
    pub health_events: u64,
    /// Control requests answered, and how many of them failed.
    pub control_requests: u64,
    /// Control requests that failed.
    pub control_errors: u64,
    /// Packets from an offloading device whose virtio-net header or partial checksum could not
    /// be used (malformed): dropped.
    pub offload_drops: u64,
    /// 64 KB TCP segments from an offloading device cut into packets in software (to a
    /// tunnel), and the packets cut.
    pub segmented: u64,
    /// Packets those segments were cut into.
    pub segments: u64,
}

/// Writes one metric family's HELP and TYPE lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn single(out: &mut String, name: &str, kind: &str, help: &str, v: u64) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {v}");
}

/// Escapes a label value (backslash, double quote, newline).
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Formats every metric. `uptime_secs` is the gateway's age.
pub fn format(lb: &Balancer<'_>, ring: &RingStats, fe: &FrontendStats, uptime_secs: u64) -> String {
    let mut out = String::with_capacity(4096);
    let d = lb.director();

    // ---- node_exporter's ipvs collector
    let mut tot = [0u64; 5];
    for (_, s) in d.services() {
        let st = s.stats;
        for (t, v) in
            tot.iter_mut()
                .zip([st.conns, st.in_pkts, st.out_pkts, st.in_bytes, st.out_bytes])
        {
            *t += v;
        }
    }
    let globals = [
        (
            "node_ipvs_connections_total",
            "The total number of connections made.",
        ),
        (
            "node_ipvs_incoming_packets_total",
            "The total number of incoming packets.",
        ),
        (
            "node_ipvs_outgoing_packets_total",
            "The total number of outgoing packets.",
        ),
        (
            "node_ipvs_incoming_bytes_total",
            "The total amount of incoming data.",
        ),
        (
            "node_ipvs_outgoing_bytes_total",
            "The total amount of outgoing data.",
        ),
    ];
    for ((name, help), v) in globals.iter().zip(tot) {
        single(&mut out, name, "counter", help, v);
    }

    let mut rows = Vec::new();
    for (id, s) in crate::listing::sorted_services(lb) {
        let (local_address, local_port, proto, mark) = service_label_values(&s.config.key);
        for srv in crate::listing::sorted_servers(lb, id) {
            let labels = format!(
                "local_address=\"{}\",local_mark=\"{}\",local_port=\"{}\",proto=\"{}\",remote_address=\"{}\",remote_port=\"{}\"",
                esc(&local_address),
                esc(&mark),
                local_port,
                proto,
                esc(&srv.addr().ip().to_string()),
                srv.addr().port()
            );
            rows.push((labels, [srv.active, srv.inactive, srv.weight()]));
        }
    }
    let backends = [
        (
            "node_ipvs_backend_connections_active",
            "The current active connections by local and remote address.",
        ),
        (
            "node_ipvs_backend_connections_inactive",
            "The current inactive connections by local and remote address.",
        ),
        (
            "node_ipvs_backend_weight",
            "The current backend weight by local and remote address.",
        ),
    ];
    for (k, (name, help)) in backends.into_iter().enumerate() {
        family(&mut out, name, "gauge", help);
        for (labels, values) in &rows {
            let _ = writeln!(out, "{name}{{{labels}}} {}", values[k]);
        }
    }

    // ---- ours
    let c = lb.counters();
    family(
        &mut out,
        "lbtun_drops_total",
        "counter",
        "Packets the balancer dropped, by reason.",
    );
    for r in DropReason::ALL {
        let _ = writeln!(
            out,
            "lbtun_drops_total{{reason=\"{}\"}} {}",
            r.name(),
            c.drops(r)
        );
    }
    let ours: [(&str, &str, u64); 23] = [
        (
            "lbtun_syn_drops_total",
            "Dropped packets that carried a SYN (included in lbtun_drops_total).",
            c.syn_drops,
        ),
        (
            "lbtun_reuse_reschedules_total",
            "SYNs that reused a client port whose entry was in TIME_WAIT/CLOSE, rescheduled at once.",
            c.reuse_reschedules,
        ),
        (
            "lbtun_quiescent_reschedules_total",
            "SYNs whose entry pointed at a weight-0 server, rescheduled.",
            c.quiescent_reschedules,
        ),
        (
            "lbtun_nodest_reschedules_total",
            "Packets of a removed server's flow that were rescheduled.",
            c.nodest_reschedules,
        ),
        (
            "lbtun_nodest_resets_total",
            "Packets of a removed server's flow answered with a RST.",
            c.nodest_resets,
        ),
        (
            "lbtun_no_server_total",
            "New connections with no server available, answered with a RST or ICMP.",
            c.no_server,
        ),
        (
            "lbtun_conns_created_total",
            "Connection entries created (templates not included).",
            c.conns_created,
        ),
        (
            "lbtun_evictions_total",
            "Entries evicted to make room for a new connection on a full table (TIME_WAIT, CLOSE, half-open, idle templates).",
            c.evictions,
        ),
        (
            "lbtun_embryonic_evictions_total",
            "Half-open entries (SYN_RECV, SYNACK) among the evictions.",
            c.embryonic_evictions,
        ),
        (
            "lbtun_passed_packets_total",
            "Packets passed through untouched (not for a virtual service).",
            c.passed,
        ),
        (
            "lbtun_replies_total",
            "Packets generated by the balancer (RST, ICMP errors, echo replies).",
            c.replies,
        ),
        (
            "lbtun_defence_drops_total",
            "Entries dropped by the drop_entry defence.",
            c.defence_drops,
        ),
        (
            "lbtun_fragments_forwarded_total",
            "Later fragments forwarded after their first fragment's decision.",
            c.fragments_forwarded,
        ),
        (
            "lbtun_fragment_evictions_total",
            "First-fragment decisions replaced early in a full fragment table.",
            c.fragment_evictions,
        ),
        (
            "lbtun_tunnelled_total",
            "Packets put in a tunnel (-i) to their real server.",
            c.tunnelled,
        ),
        (
            "lbtun_too_big_replies_total",
            "ICMP fragmentation needed / packet too big answers to DR and tunnel packets over --path-mtu (in lbtun_replies_total when sent).",
            c.too_big_replies,
        ),
        (
            "lbtun_tunnel_icmp_relayed_total",
            "ICMP errors from a tunnel's path about a tunnelled packet, relayed to its client (in lbtun_replies_total).",
            c.tunnel_icmp_relayed,
        ),
        (
            "lbtun_loop_drops_total",
            "Passed packets to a former virtual address, dropped so they do not loop.",
            fe.loop_drops,
        ),
        (
            "lbtun_offload_drops_total",
            "Packets from the offloading TUN device whose virtio-net header or partial checksum was malformed, dropped.",
            fe.offload_drops,
        ),
        (
            "lbtun_segmented_total",
            "TCP segments of up to 64 KB from the offloading TUN device cut into packets in software (to a tunnel).",
            fe.segmented,
        ),
        (
            "lbtun_segments_total",
            "Packets cut from those segments.",
            fe.segments,
        ),
        (
            "lbtun_drained_events_total",
            "Quiescent servers that became drained.",
            fe.drained_events,
        ),
        (
            "lbtun_control_requests_total",
            "lbadm requests answered.",
            fe.control_requests,
        ),
    ];
    for (name, help, v) in ours {
        single(&mut out, name, "counter", help, v);
    }
    single(
        &mut out,
        "lbtun_control_errors_total",
        "counter",
        "lbadm requests that failed.",
        fe.control_errors,
    );
    single(
        &mut out,
        "lbtun_connections",
        "gauge",
        "Entries in the connection table (templates included).",
        lb.connection_count() as u64,
    );
    single(
        &mut out,
        "lbtun_connections_capacity",
        "gauge",
        "Capacity of the connection table.",
        lb.capacity() as u64,
    );
    single(
        &mut out,
        "lbtun_bursts_total",
        "counter",
        "Bursts read from the TUN device.",
        ring.bursts,
    );
    single(
        &mut out,
        "lbtun_rx_packets_total",
        "counter",
        "Packets read from the TUN device.",
        ring.rx_packets,
    );
    single(
        &mut out,
        "lbtun_rx_truncated_total",
        "counter",
        "Packets too big for a buffer, dropped.",
        ring.rx_truncated,
    );
    single(
        &mut out,
        "lbtun_tx_packets_total",
        "counter",
        "Packets written to the TUN device.",
        ring.tx_packets,
    );
    single(
        &mut out,
        "lbtun_tx_errors_total",
        "counter",
        "Packets the TUN device refused, dropped.",
        ring.tx_errors,
    );
    single(
        &mut out,
        "lbtun_uptime_seconds",
        "gauge",
        "Seconds since the gateway started.",
        uptime_secs,
    );
    out
}

/// The TUN device's queues (`--queues`): each one's packets read (and their bytes) and
/// written, labelled
/// `queue="K"`, `lbtun_lock_waits_total`, how often a queue's thread found the shared
/// gateway's lock held by another, and with steering (`crate::steer`) `lbtun_steer_moves_total`,
/// the buckets of flows moved between queues.
pub fn format_queues(queues: &[RingStats], lock_waits: u64, steer_moves: Option<u64>) -> String {
    let mut out = String::new();
    for (name, help, pick) in [
        (
            "lbtun_queue_rx_packets_total",
            "Packets read from each queue of the TUN device.",
            (|s: &RingStats| s.rx_packets) as fn(&RingStats) -> u64,
        ),
        (
            "lbtun_queue_rx_bytes_total",
            "Bytes of the packets read from each queue of the TUN device.",
            |s: &RingStats| s.rx_bytes,
        ),
        (
            "lbtun_queue_tx_packets_total",
            "Packets written to each queue of the TUN device.",
            |s: &RingStats| s.tx_packets,
        ),
    ] {
        family(&mut out, name, "counter", help);
        for (i, q) in queues.iter().enumerate() {
            let _ = writeln!(out, "{name}{{queue=\"{i}\"}} {}", pick(q));
        }
    }
    single(
        &mut out,
        "lbtun_lock_waits_total",
        "counter",
        "Times a queue's packet thread found the shared gateway's lock held by another.",
        lock_waits,
    );
    if let Some(moves) = steer_moves {
        single(
            &mut out,
            "lbtun_steer_moves_total",
            "counter",
            "Buckets of flows moved from the busiest queue to the idlest (steering).",
            moves,
        );
    }
    out
}

/// The service's values of node_exporter's `local_address`, `local_port`, `proto` and
/// `local_mark` labels.
fn service_label_values(key: &ServiceKey) -> (String, u16, &'static str, String) {
    match *key {
        ServiceKey::Addr { proto, vip } => (
            vip.ip().to_string(),
            vip.port(),
            match proto {
                Protocol::Tcp => "TCP",
                Protocol::Udp => "UDP",
            },
            String::new(),
        ),
        ServiceKey::Fwmark { mark, .. } => (String::new(), 0, "FWM", mark.to_string()),
    }
}

/// node_exporter's ipvs labels of real server `server` in `service`.
fn ipvs_labels(service: &ServiceKey, server: std::net::SocketAddr) -> String {
    let (local_address, local_port, proto, mark) = service_label_values(service);
    format!(
        "local_address=\"{}\",local_mark=\"{}\",local_port=\"{}\",proto=\"{}\",remote_address=\"{}\",remote_port=\"{}\"",
        esc(&local_address),
        esc(&mark),
        local_port,
        proto,
        esc(&server.ip().to_string()),
        server.port()
    )
}

/// The health metrics, when probes run: `lbtun_real_server_up` (1 UP, 0 DOWN) per checked
/// real server and `lbtun_health_checks_total` per checked real server and result, with the
/// ipvs labels (a server the checker removed keeps its series).
pub fn format_health(lb: &Balancer<'_>, probes: &crate::health::Probes) -> String {
    let mut out = String::new();
    let statuses: Vec<_> = lb.health_statuses().collect();
    family(
        &mut out,
        "lbtun_real_server_up",
        "gauge",
        "Whether the health checker holds the real server UP (1) or DOWN (0).",
    );
    for s in &statuses {
        let up = u8::from(s.state == lb_core::HealthState::Up);
        let _ = writeln!(
            out,
            "lbtun_real_server_up{{{}}} {up}",
            ipvs_labels(&s.service, s.server)
        );
    }
    family(
        &mut out,
        "lbtun_health_checks_total",
        "counter",
        "Health probes of the real server that ended, by result.",
    );
    for s in &statuses {
        let counts = probes.results(s.server);
        for (name, n) in crate::health::RESULTS.iter().zip(counts) {
            let _ = writeln!(
                out,
                "lbtun_health_checks_total{{{},result=\"{name}\"}} {n}",
                ipvs_labels(&s.service, s.server)
            );
        }
    }
    single(
        &mut out,
        "lbtun_health_probes_in_flight",
        "gauge",
        "Health probes running now.",
        probes.busy() as u64,
    );
    out
}
