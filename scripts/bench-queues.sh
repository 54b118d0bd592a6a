#!/usr/bin/env bash
# bench-queues.sh — issue 16's throughput figures, one table from one run in one topology
# (scripts/netns-lib.sh: client ns — gw ns (TUN lb0, multi-queue) — servers s1, s2):
#
#   packets/s (UDP, UDP_LEN-byte payloads, iperf3 at full speed with STREAMS flows, so the
#   kernel spreads them over the queues), counted where they arrive (s1's eth0):
#     bare TUN echo forwarder (tun-echo --queues 1, 2)  vs  lb-tun (--queues 1, 2; and 2 with
#     --no-steer)  vs  kernel nftables DNAT
#     → delivered packets/s, the gateway process's CPU per packet (utime+stime)
#   bulk TCP (iperf3, STREAMS streams, BULK_DURATION s, to s1 through the VIP):
#     lb-tun --no-offload  vs  lb-tun (offloads on; with and without steering)  vs  kernel
#     nftables DNAT, and the bare forwarder with offloads (tun-echo --offload, to s1's own
#     address) as the ceiling
#     → Gbit/s received, retransmissions, the gateway's CPU per GB, each queue's share of the
#       bytes lb-tun read (and the buckets steering moved)
#
# Nothing is pinned: the gateway's queues take what CPUs the kernel gives them, next to the
# load generator and the servers (on a 2-CPU machine the load competes with the second queue:
# read the CPU per packet beside the packets/s). Run as root from the repository:
#
#   scripts/bench-queues.sh
#
# Env: DURATION (s per UDP row, 10), BULK_DURATION (s per TCP row, 60), STREAMS (4), UDP_LEN
# (64), SKIP_BULK=1 (UDP rows only), SKIP_UDP=1 (bulk rows only), BULK_ROUNDS (1: the
# bulk comparison's DNAT, bare-forwarder and two lb-tun rows run that many times), LBT_BIN_DIR (where tun-echo and lb-tun are; default:
# cargo build --release -p lb-tun).
set -u
cd "$(dirname "$0")/.."
LBT_NSERVERS=2
. scripts/netns-lib.sh

DURATION="${DURATION:-10}"
BULK_DURATION="${BULK_DURATION:-60}"
STREAMS="${STREAMS:-4}"
UDP_LEN="${UDP_LEN:-64}"

fail() { echo "bench-queues: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (network namespaces)"
for t in nft iperf3 ip python3; do
	command -v "$t" >/dev/null || fail "$t not installed (apt-get install -y nftables iperf3 iproute2 python3)"
done
if [ -z "${LBT_BIN_DIR:-}" ]; then
	cargo build -q --release -p lb-tun || fail "cargo build --release -p lb-tun"
fi
TUN_ECHO="$(lbt_bin tun-echo)" || fail "tun-echo binary"
LB_TUN="$(lbt_bin lb-tun)" || fail "lb-tun binary"
LBADM="$(lbt_bin lbadm)" || fail "lbadm binary"

trap topo_down EXIT
trap 'exit 130' INT TERM
topo_up || fail "topo_up"
TMP="$(lbt_tmpdir)"
S1="$(server_addr4 1)"
S2="$(server_addr4 2)"
VIP="$LBT_VIP4"

HZ="$(getconf CLK_TCK)"
# proc_cpu PID — utime + stime of PID (all its threads), in jiffies.
proc_cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# s1_rx — packets s1 received (its end of the wire).
s1_rx() { nsx s1 cat /sys/class/net/eth0/statistics/rx_packets; }

# route_mode and stop_gw: scripts/netns-lib.sh.
GW_PID=""
start_gw() { # NAME CMD... — start a gateway process; sets GW_PID
	local name="$1"
	shift
	GW_PID=$(start_in_ns gw "$name" "$@")
	sleep 0.5
	kill -0 "$GW_PID" 2>/dev/null || fail "$name did not start: $(cat "$TMP/$name.log")"
}

cat >"$TMP/lb.conf" <<EOF
-A -t $VIP:5201 -s rr
-a -t $VIP:5201 -r $S1:5201 -m -w 1
-A -u $VIP:5201 -s rr
-a -u $VIP:5201 -r $S1:5201 -m -w 1
EOF
lbtun() { # NAME ARGS... — lb-tun on the TUN with the config above
	local name="$1"
	shift
	start_gw "$name" "$LB_TUN" --tun "$LBT_TUN" --config "$TMP/lb.conf" --control "$TMP/$name.sock" "$@"
}
dnat_on() {
	nsx gw nft -f - <<EOF || fail "nft"
table ip lbqueues {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr $VIP tcp dport 5201 dnat to $S1
		ip daddr $VIP udp dport 5201 dnat to $S1
	}
}
EOF
}
dnat_off() { nsx gw nft delete table ip lbqueues; }

declare -A R # results: R[row.field]

# udp_run ROW TARGET — iperf3 UDP at full speed, STREAMS flows, through the gateway.
udp_run() {
	local row="$1" target="$2" rx0 rx1 c0=0 c1=0
	rx0=$(s1_rx)
	[ -n "$GW_PID" ] && c0=$(proc_cpu "$GW_PID")
	nsx client iperf3 -c "$target" -u -b 0 -l "$UDP_LEN" -P "$STREAMS" -t "$DURATION" -J \
		>"$TMP/$row.json" 2>&1
	rx1=$(s1_rx)
	[ -n "$GW_PID" ] && c1=$(proc_cpu "$GW_PID")
	R[$row.pps]=$(awk -v a="$rx0" -v b="$rx1" -v d="$DURATION" 'BEGIN { printf "%.0f", (b - a) / d }')
	R[$row.offered]=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(round(d["end"]["sum"]["packets"] / float(sys.argv[2])))' \
		"$TMP/$row.json" "$DURATION" 2>/dev/null || echo "?")
	if [ -n "$GW_PID" ]; then
		R[$row.cpu]=$(awk -v c="$((c1 - c0))" -v hz="$HZ" -v n="$((rx1 - rx0))" \
			'BEGIN { if (n > 0) printf "%.2f µs", c / hz * 1e6 / n; else print "n/a" }')
		R[$row.cores]=$(awk -v c="$((c1 - c0))" -v hz="$HZ" -v d="$DURATION" 'BEGIN { printf "%.2f", c / hz / d }')
	fi
}

# bulk_run ROW — iperf3 TCP, STREAMS streams, BULK_DURATION s, to the VIP.
bulk_run() {
	local row="$1" c0=0 c1=0
	[ -n "$GW_PID" ] && c0=$(proc_cpu "$GW_PID")
	nsx client iperf3 -c "${BULK_TARGET:-$VIP}" -P "$STREAMS" -t "$BULK_DURATION" -J >"$TMP/$row.json" 2>&1
	[ -n "$GW_PID" ] && c1=$(proc_cpu "$GW_PID")
	read -r R[$row.gbps] R[$row.retr] R[$row.gb] < <(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))["end"]
print("%.2f %d %.3f" % (d["sum_received"]["bits_per_second"] / 1e9,
      d["sum_sent"].get("retransmits", 0), d["sum_received"]["bytes"] / 1e9))' "$TMP/$row.json" 2>/dev/null || echo "0 ? 0")
	if [ -n "$GW_PID" ]; then
		R[$row.cpu]=$(awk -v c="$((c1 - c0))" -v hz="$HZ" -v gb="${R[$row.gb]}" \
			'BEGIN { if (gb > 0) printf "%.2f s", c / hz / gb; else print "n/a" }')
	fi
}

# split ROW NAME — after an lb-tun bulk row: each queue's share of the bytes read, and the
# buckets steering moved (lb-tun's --stats-gateway through control socket NAME.sock).
split() {
	"$LBADM" --control "$TMP/$2.sock" --stats-gateway >"$TMP/$1.stats" 2>/dev/null
	R[$1.split]=$(awk '$1 ~ /^tun\.queue\.[0-9]+\.rx_bytes$/ { b[n++] = $2; t += $2 }
		$1 == "tun.steer_moves" { m = $2 }
		END { for (i = 0; i < n; i++) printf "%s%.0f %%", (i ? " / " : ""), t ? 100 * b[i] / t : 0
			if (m != "") printf ", %d moved", m }' "$TMP/$1.stats")
}

# --- servers ---------------------------------------------------------------------------------
start_servers || fail "servers did not start"
start_in_ns s1 iperf3-s1 iperf3 -s -B "$S1" >/dev/null
sleep 0.3

# --- packets/s -------------------------------------------------------------------------------
if [ "${SKIP_UDP:-0}" != 1 ]; then
route_mode tun-both
for q in 1 2; do
	start_gw "tun-echo-q$q" "$TUN_ECHO" --tun "$LBT_TUN" --queues "$q"
	udp_run "echo$q" "$S1"
	stop_gw
done
route_mode tun
for q in 1 2; do
	lbtun "lb-tun-q$q" --queues "$q"
	udp_run "lbtun$q" "$VIP"
	# How often a packet thread found the gateway's lock held by another.
	"$LBADM" --control "$TMP/lb-tun-q$q.sock" --stats-gateway >"$TMP/lbtun$q.stats"
	R[lbtun$q.waits]=$(awk '$1 == "tun.lock_waits" { w = $2 } $1 == "tun.rx_packets" { p = $2 }
		END { if (p > 0) printf "%d (%.2f per 1,000 packets)", w, w * 1000 / p; else print "n/a" }' "$TMP/lbtun$q.stats")
	stop_gw
done
# Two queues with the kernel's placement (--no-steer): what steering costs a small packet.
lbtun lb-tun-q2-nosteer --queues 2 --no-steer
udp_run lbtun2ns "$VIP"
stop_gw
route_mode kernel
dnat_on
udp_run dnat "$VIP"
else
	route_mode kernel
	dnat_on
fi

# --- bulk TCP --------------------------------------------------------------------------------
if [ "${SKIP_BULK:-0}" != 1 ]; then
	bulk_run dnat_bulk
	dnat_off
	route_mode tun
	lbtun lb-tun-nooff --no-offload
	bulk_run nooff
	stop_gw
	lbtun lb-tun-off
	bulk_run off
	split off lb-tun-off
	stop_gw
	lbtun lb-tun-offns --no-steer
	bulk_run offns
	split offns lb-tun-offns
	stop_gw
	route_mode tun-both
	start_gw tun-echo-off "$TUN_ECHO" --tun "$LBT_TUN" --queues 2 --offload
	BULK_TARGET="$S1" bulk_run echo_bulk
	stop_gw
	# More rounds (BULK_ROUNDS): kernel DNAT, the bare forwarder and lb-tun again, one after
	# the other — bulk TCP through a TUN device moves by a quarter from run to run (which
	# queue each stream lands on, what the machine's other tenants do), so compare in rounds.
	for r in $(seq 2 "${BULK_ROUNDS:-1}"); do
		route_mode kernel
		dnat_on
		bulk_run "dnat_bulk$r"
		dnat_off
		route_mode tun-both
		start_gw "tun-echo-off$r" "$TUN_ECHO" --tun "$LBT_TUN" --queues 2 --offload
		BULK_TARGET="$S1" bulk_run "echo_bulk$r"
		stop_gw
		route_mode tun
		lbtun "lb-tun-off$r"
		bulk_run "off$r"
		split "off$r" "lb-tun-off$r"
		stop_gw
		lbtun "lb-tun-offns$r" --no-steer
		bulk_run "offns$r"
		split "offns$r" "lb-tun-offns$r"
		stop_gw
	done
else
	dnat_off
fi

# --- the tables ------------------------------------------------------------------------------
nr() { echo "${R[$1]:-not run}"; }
ratio() { awk -v a="${R[$1]:-}" -v b="${R[$2]:-}" 'BEGIN { if (a != "" && b > 0) printf "%.2f×", a / b; else print "—" }'; }
echo
echo "Queues and offloads — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs ($(lscpu | sed -n 's/^Model name: *//p')), nothing pinned"
echo
echo "UDP $UDP_LEN-byte payloads, $STREAMS flows, ${DURATION} s per row, packets counted at s1:"
echo
echo "| path | queues | packets/s | offered | gateway CPU / packet | gateway CPUs busy |"
echo "|---|---:|---:|---:|---:|---:|"
for q in 1 2; do
	echo "| bare TUN echo forwarder (tun-echo) | $q | $(nr echo$q.pps) | $(nr echo$q.offered) | $(nr echo$q.cpu) | $(nr echo$q.cores) |"
done
for q in 1 2; do
	echo "| lb-tun | $q | $(nr lbtun$q.pps) | $(nr lbtun$q.offered) | $(nr lbtun$q.cpu) | $(nr lbtun$q.cores) |"
done
echo "| lb-tun --no-steer | 2 | $(nr lbtun2ns.pps) | $(nr lbtun2ns.offered) | $(nr lbtun2ns.cpu) | $(nr lbtun2ns.cores) |"
echo "| kernel nftables DNAT | — | $(nr dnat.pps) | $(nr dnat.offered) | — | — |"
echo
echo "lb-tun / tun-echo packets/s: 1 queue $(ratio lbtun1.pps echo1.pps), 2 queues $(ratio lbtun2.pps echo2.pps) (goal ≥ 0.9× each)"
echo "scaling 1 → 2 queues: tun-echo $(ratio echo2.pps echo1.pps), lb-tun $(ratio lbtun2.pps lbtun1.pps)"
echo "lb-tun (2 queues) / kernel DNAT packets/s: $(ratio lbtun2.pps dnat.pps)"
echo "lb-tun's lock found held by another thread: 1 queue $(nr lbtun1.waits), 2 queues $(nr lbtun2.waits)"
echo "lb-tun 2 queues, steering / --no-steer packets/s: $(ratio lbtun2.pps lbtun2ns.pps)"
if [ "${SKIP_BULK:-0}" != 1 ]; then
	echo
	echo "Bulk TCP, iperf3 $STREAMS streams, ${BULK_DURATION} s per row:"
	echo
	echo "| path | Gbit/s | retransmissions | gateway CPU per GB | queues' bytes |"
	echo "|---|---:|---:|---:|---|"
	echo "| kernel nftables DNAT | $(nr dnat_bulk.gbps) | $(nr dnat_bulk.retr) | — | — |"
	echo "| lb-tun --no-offload | $(nr nooff.gbps) | $(nr nooff.retr) | $(nr nooff.cpu) | |"
	echo "| lb-tun (offloads on) | $(nr off.gbps) | $(nr off.retr) | $(nr off.cpu) | $(nr off.split) |"
	echo "| lb-tun --no-steer (offloads on) | $(nr offns.gbps) | $(nr offns.retr) | $(nr offns.cpu) | $(nr offns.split) |"
	echo "| bare TUN echo forwarder with offloads (tun-echo --offload, to s1) | $(nr echo_bulk.gbps) | $(nr echo_bulk.retr) | $(nr echo_bulk.cpu) | |"
	echo
	echo "lb-tun with offloads / kernel DNAT Gbit/s: $(ratio off.gbps dnat_bulk.gbps) (goal ≥ 0.8×); with / without offloads: $(ratio off.gbps nooff.gbps)"
	if [ "${BULK_ROUNDS:-1}" -gt 1 ]; then
		echo
		echo "Rounds (Gbit/s; round 1 is the table above):"
		echo
		echo "| round | kernel DNAT | bare forwarder (offloads) | lb-tun (offloads) | lb-tun --no-steer | lb-tun / DNAT | --no-steer / DNAT | bare forwarder / DNAT | lb-tun / bare forwarder | lb-tun's queues | --no-steer's queues |"
		echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
		for r in $(seq 1 "$BULK_ROUNDS"); do
			sfx=$r
			[ "$r" = 1 ] && sfx=""
			echo "| $r | $(nr dnat_bulk$sfx.gbps) | $(nr echo_bulk$sfx.gbps) | $(nr off$sfx.gbps) | $(nr offns$sfx.gbps) | $(ratio off$sfx.gbps dnat_bulk$sfx.gbps) | $(ratio offns$sfx.gbps dnat_bulk$sfx.gbps) | $(ratio echo_bulk$sfx.gbps dnat_bulk$sfx.gbps) | $(ratio off$sfx.gbps echo_bulk$sfx.gbps) | $(nr off$sfx.split) | $(nr offns$sfx.split) |"
		done
	fi
fi
