#!/usr/bin/env bash
# bench-gateway.sh — the gateway comparison of issues 7 and 16, one table from one run in one topology
# (scripts/netns-lib.sh: client ns — gw ns (TUN lb0) — servers s1, s2), processes pinned:
#
#   packets/s (UDP, 64-byte payloads, iperf3 at full speed, client → server through the gateway):
#     bare TUN echo forwarder (tun-echo)           vs  lb-tun (a UDP service on the VIP)
#     → forwarded packets/s (lb0 counters), gateway CPU per packet (the process's utime+stime)
#   new connections/s (HTTP/1.0, one connection per request, hey at a fixed offered load):
#     straight to a server (baseline)  vs  kernel nftables DNAT  vs  lb-tun (rr over s1, s2)
#     vs  the bare TUN echo forwarder carrying the same connections to s1 (no NAT: the client
#     talks to s1's address and both directions are routed through lb0, as `scripts/demo.sh
#     --echo` does) — what the packets of a connection cost a TUN gateway with no balancer
#     → completed connections/s, p50/p99 latency, CPU per connection: of all our processes
#       (hey, nginx, the gateway: utime+stime, so other tenants of a shared machine do not count;
#       kernel work done in their syscalls' softirq context is included where the kernel charges
#       it to them) and the gateway's (lb-tun: its process; kernel DNAT: ours minus the direct
#       baseline's, since the kernel's NAT runs in softirq context, in no process of its own)
#
# Pinning: the gateway process on CPU $GW_CPU, the load generator and the servers on
# $LOAD_CPU. Run as root from the repository:
#
#   scripts/bench-gateway.sh                 # tun-echo, kernel DNAT, direct (lb-tun rows: "not run")
#   scripts/bench-gateway.sh --with-lb-tun   # also lb-tun (needs the gateway wired to the balancer)
#
# Env: DURATION (s per measurement, 10), UDP (0: skip the packets/s rows, 1), RATE (offered connections/s, 2000; 0 = as fast as the
# CONC workers go, i.e. saturation), CONC (hey workers, 20), GW_CPU (1), LOAD_CPU (0), UDP_LEN (64), LBT_BIN_DIR (where tun-echo and lb-tun are;
# default: cargo build --release -p lb-tun), LBTUN_ARGS (more lb-tun arguments), PERF_DATA (a path prefix: record the gateway's
# profile during each connections row with `perf record -F 999 -g` into PREFIX.ROW; perf costs
# CPU of its own, so leave it unset for the figures).
set -u
cd "$(dirname "$0")/.."
LBT_NSERVERS=2
. scripts/netns-lib.sh

DURATION="${DURATION:-10}"
RATE="${RATE:-2000}"
CONC="${CONC:-20}"
GW_CPU="${GW_CPU:-1}"
LOAD_CPU="${LOAD_CPU:-0}"
UDP_LEN="${UDP_LEN:-64}"
UDP="${UDP:-1}"
WITH_LBTUN=0
[ "${1:-}" = "--with-lb-tun" ] && WITH_LBTUN=1

fail() { echo "bench-gateway: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (network namespaces)"
for t in nft hey iperf3 taskset ip nginx; do
	command -v "$t" >/dev/null || fail "$t not installed (apt-get install -y nftables hey iperf3 util-linux iproute2 nginx-light)"
done
if [ -z "${LBT_BIN_DIR:-}" ]; then
	cargo build -q --release -p lb-tun || fail "cargo build --release -p lb-tun"
fi
TUN_ECHO="$(lbt_bin tun-echo)" || fail "tun-echo binary"
if [ "$WITH_LBTUN" = 1 ]; then LB_TUN="$(lbt_bin lb-tun)" || fail "lb-tun binary"; fi

trap topo_down EXIT
trap 'exit 130' INT TERM
topo_up || fail "topo_up"
TMP="$(lbt_tmpdir)"
S1="$(server_addr4 1)"
S2="$(server_addr4 2)"
VIP="$LBT_VIP4"
nsx client sysctl -qw net.ipv4.ip_local_port_range="1024 65000"
nsx client sysctl -qw net.ipv4.tcp_tw_reuse=1
# No TIME_WAIT on the servers: a row's connections would otherwise meet the previous rows'
# TIME_WAIT sockets (same client ports, 60 s) and, the tun-echo row reaching s1 by its own
# address and the next rows by the VIP (other TCP timestamp offsets), be refused (PAWS), reset
# and retried: ~0.3 packets more per connection and a slower p99 in whichever row comes later.
for i in 1 2; do nsx "s$i" sysctl -qw net.ipv4.tcp_max_tw_buckets=0; done

# --- helpers -------------------------------------------------------------------------------

# ns_cpu — utime+stime (jiffies) of every process in the server and gateway namespaces (the
# machine is shared, so /proc/stat would count other tenants' work too).
ns_cpu() {
	local ns pid t=0
	for ns in s1 s2 gw; do
		for pid in $(ip netns pids "${LBT}-$ns" 2>/dev/null); do
			t=$((t + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
		done
	done
	echo "$t"
}
# proc_cpu PID — utime + stime of PID, in jiffies.
proc_cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ="$(getconf CLK_TCK)"
# tun_rx — packets the gateway process wrote into lb0 (the device's RX counter).
tun_rx() { nsx gw cat "/sys/class/net/$LBT_TUN/statistics/rx_packets"; }

# route_mode and stop_gw: scripts/netns-lib.sh.
start_gw() { # NAME CMD... — start a gateway process pinned to GW_CPU; sets GW_PID
	local name="$1"
	shift
	GW_PID=$(start_in_ns gw "$name" taskset -c "$GW_CPU" "$@")
	sleep 0.5
	kill -0 "$GW_PID" 2>/dev/null || fail "$name did not start: $(cat "$TMP/$name.log")"
}

lbtun_config() { # FILE — the services lb-tun balances (ipvsadm -S format)
	cat >"$1" <<EOF
-A -t $VIP:80 -s rr
-a -t $VIP:80 -r $S1:80 -m -w 1
-a -t $VIP:80 -r $S2:80 -m -w 1
-A -t $VIP:5201 -s rr
-a -t $VIP:5201 -r $S1:5201 -m -w 1
-A -u $VIP:5201 -s rr
-a -u $VIP:5201 -r $S1:5201 -m -w 1
EOF
}

declare -A R # results: R[row.field]

# udp_run ROW TARGET — iperf3 UDP at full speed through the running gateway GW_PID.
udp_run() {
	local row="$1" target="$2" rx0 rx1 c0 c1 sent
	[ "$UDP" = 1 ] || return 0
	rx0=$(tun_rx)
	c0=$(proc_cpu "$GW_PID")
	nsx client taskset -c "$LOAD_CPU" iperf3 -c "$target" -u -b 0 -l "$UDP_LEN" -t "$DURATION" -J \
		>"$TMP/$row.iperf.json" 2>&1
	rx1=$(tun_rx)
	c1=$(proc_cpu "$GW_PID")
	sent=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["end"]["sum"]["packets"])' \
		"$TMP/$row.iperf.json" 2>/dev/null || echo 0)
	R[$row.pps]=$(awk -v a="$rx0" -v b="$rx1" -v d="$DURATION" 'BEGIN { printf "%.0f", (b - a) / d }')
	R[$row.offered]=$(awk -v s="$sent" -v d="$DURATION" 'BEGIN { printf "%.0f", s / d }')
	R[$row.gwcpu]=$(awk -v c="$((c1 - c0))" -v hz="$HZ" -v n="$((rx1 - rx0))" \
		'BEGIN { if (n > 0) printf "%.2f µs", c / hz * 1e6 / n; else print "n/a" }')
}

# perf_start ROW / perf_stop — with PERF_DATA set, profile the gateway GW_PID meanwhile, and
# count its system calls (PREFIX.ROW.stat).
perf_start() {
	PERF_PIDS=""
	[ -n "${PERF_DATA:-}" ] && [ -n "${GW_PID:-}" ] || return 0
	perf record -q -F 999 -g -p "$GW_PID" -o "$PERF_DATA.$1" >"$TMP/perf-$1.log" 2>&1 &
	PERF_PIDS=$!
	perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_read,syscalls:sys_enter_write \
		-e syscalls:sys_enter_epoll_wait -p "$GW_PID" -o "$PERF_DATA.$1.stat" >/dev/null 2>&1 &
	PERF_PIDS="$PERF_PIDS $!"
	sleep 0.3
}
perf_stop() {
	local p
	for p in ${PERF_PIDS:-}; do
		kill -INT "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	PERF_PIDS=""
}

# conn_run ROW URL — hey at RATE connections/s for DURATION; fills conn/s, p99, CPU per conn.
conn_run() {
	local row="$1" url="$2" b0 b1 c0=0 c1=0 rx0=0 rx1=0 n ok q heycpu
	q=$(( (RATE + CONC - 1) / CONC ))
	b0=$(ns_cpu)
	[ -n "${GW_PID:-}" ] && c0=$(proc_cpu "$GW_PID") && rx0=$(tun_rx)
	# hey's own CPU: its parent shell's cutime+cstime once it has been waited for.
	perf_start "$row"
	heycpu=$(nsx client taskset -c "$LOAD_CPU" sh -c 'hey "$@" >"$0" 2>"$0.err"; awk "{ print \$16 + \$17 }" /proc/$$/stat' \
		"$TMP/$row.csv" -z "${DURATION}s" -c "$CONC" -q "$q" -disable-keepalive -t 10 -o csv "$url")
	b1=$(( $(ns_cpu) + heycpu ))
	[ -n "${GW_PID:-}" ] && c1=$(proc_cpu "$GW_PID") && rx1=$(tun_rx)
	perf_stop
	n=$(($(wc -l <"$TMP/$row.csv") - 1))
	ok=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next } $col["status-code"] == 200' \
		"$TMP/$row.csv" | wc -l)
	R[$row.cps]=$(awk -v n="$ok" -v d="$DURATION" 'BEGIN { printf "%.0f", n / d }')
	R[$row.errors]=$((n - ok))
	R[$row.p99]=$(csv_summary "$TMP/$row.csv" | sed -n 's/.*p99 \([0-9.]*\) ms.*/\1 ms/p')
	R[$row.p50]=$(csv_summary "$TMP/$row.csv" | sed -n 's/.*p50 \([0-9.]*\) ms.*/\1 ms/p')
	R[$row.cpu_us]=$(awk -v c="$((b1 - b0))" -v hz="$HZ" -v n="$ok" \
		'BEGIN { if (n > 0) printf "%.1f", c / hz * 1e6 / n; else print "n/a" }')
	if [ -n "${GW_PID:-}" ]; then
		R[$row.gwcpu_conn]=$(awk -v c="$((c1 - c0))" -v hz="$HZ" -v n="$ok" \
			'BEGIN { if (n > 0) printf "%.1f µs", c / hz * 1e6 / n; else print "n/a" }')
		R[$row.pkts_conn]=$(awk -v p="$((rx1 - rx0))" -v n="$ok" \
			'BEGIN { if (n > 0) printf "%.1f", p / n; else print "n/a" }')
	fi
}

# --- servers (pinned to LOAD_CPU) ---------------------------------------------------------------
start_servers || fail "servers did not start"
for pid in $(ip netns pids "${LBT}-s1") $(ip netns pids "${LBT}-s2"); do taskset -pc "$LOAD_CPU" "$pid" >/dev/null; done
start_in_ns s1 iperf3-s1 taskset -c "$LOAD_CPU" iperf3 -s -B "$S1" >/dev/null
sleep 0.3

# --- packets/s: bare TUN echo forwarder -----------------------------------------------------------
route_mode tun-both
start_gw tun-echo "$TUN_ECHO" --tun "$LBT_TUN"
udp_run echo "$S1"
conn_run echo "http://$S1/"
stop_gw

# --- packets/s and connections/s: lb-tun --------------------------------------------------------
if [ "$WITH_LBTUN" = 1 ]; then
	route_mode tun
	lbtun_config "$TMP/lb-tun.conf"
	# shellcheck disable=SC2086
	start_gw lb-tun "$LB_TUN" --tun "$LBT_TUN" --config "$TMP/lb-tun.conf" --control "$TMP/lbadm.sock" ${LBTUN_ARGS:-}
	udp_run lbtun "$VIP"
	conn_run lbtun "http://$VIP/"
	stop_gw
fi

# --- connections/s: straight to a server, then kernel nftables DNAT -----------------------------
route_mode kernel
GW_PID=""
conn_run direct "http://$S1/"
nsx gw nft -f - <<EOF || fail "nft"
table ip lbbench {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr $VIP tcp dport 80 dnat to numgen inc mod 2 map { 0 : $S1, 1 : $S2 }
	}
}
EOF
conn_run dnat "http://$VIP/"
nsx gw nft delete table ip lbbench

# The DNAT row's gateway CPU: our processes' CPU per connection above the direct baseline.
R[dnat.gwcpu]=$(awk -v a="${R[dnat.cpu_us]}" -v b="${R[direct.cpu_us]}" 'BEGIN { printf "%.1f µs (ours − direct)", a - b }')

# --- the table ------------------------------------------------------------------------------------
nr() { echo "${R[$1]:-not run}"; }
ratio() { awk -v a="${R[$1]:-}" -v b="${R[$2]:-}" 'BEGIN { if (a != "" && b + 0 > 0) printf "%.2f×", a / b; else print "—" }'; }
echo
echo "Gateway comparison — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs ($(lscpu | sed -n 's/^Model name: *//p')),"
echo "gateway pinned to CPU $GW_CPU, load and servers to CPU $LOAD_CPU; ${DURATION} s per row; offered $RATE conn/s ($CONC workers)"
echo
echo "| path | packets/s (UDP $UDP_LEN B) | gateway CPU / packet | conn/s (offered $RATE) | errors | p50 | p99 | CPU / conn (our processes) | gateway CPU / conn | packets / conn (TUN) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
echo "| straight to a server (baseline) | — | — | $(nr direct.cps) | $(nr direct.errors) | $(nr direct.p50) | $(nr direct.p99) | $(nr direct.cpu_us) µs | — | — |"
echo "| kernel nftables DNAT | — | — | $(nr dnat.cps) | $(nr dnat.errors) | $(nr dnat.p50) | $(nr dnat.p99) | $(nr dnat.cpu_us) µs | $(nr dnat.gwcpu) | — |"
echo "| bare TUN echo forwarder (tun-echo) | $(nr echo.pps) (offered $(nr echo.offered)) | $(nr echo.gwcpu) | $(nr echo.cps) | $(nr echo.errors) | $(nr echo.p50) | $(nr echo.p99) | $(nr echo.cpu_us) µs | $(nr echo.gwcpu_conn) | $(nr echo.pkts_conn) |"
echo "| lb-tun | $(nr lbtun.pps) (offered $(nr lbtun.offered)) | $(nr lbtun.gwcpu) | $(nr lbtun.cps) | $(nr lbtun.errors) | $(nr lbtun.p50) | $(nr lbtun.p99) | $(nr lbtun.cpu_us) µs | $(nr lbtun.gwcpu_conn) | $(nr lbtun.pkts_conn) |"
echo
echo "lb-tun / tun-echo packets/s: $(ratio lbtun.pps echo.pps) (goal ≥ 0.9×)"
echo "lb-tun / kernel DNAT conn/s: $(ratio lbtun.cps dnat.cps) (goal ≥ 1.0× at saturation, RATE=0)"
echo "lb-tun / tun-echo gateway CPU per connection: $(ratio lbtun.gwcpu_conn echo.gwcpu_conn) (goal ≤ 1.2×)"
echo "lb-tun / kernel DNAT gateway CPU per connection: $(ratio lbtun.gwcpu_conn dnat.gwcpu)"
