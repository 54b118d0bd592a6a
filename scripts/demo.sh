#!/usr/bin/env bash
# demo.sh — the lb-tun demo: a client, the gateway and two nginx real servers in network
# namespaces; the VIP 10.30.0.10:80 balanced wrr 3:1 in NAT (masquerade) mode from a config
# file; many short connections from a narrow client port range (so client ports are reused
# while the old connection is still in the gateway's table, in TIME_WAIT); then a summary.
#
#   scripts/demo.sh (as root) [-n REQUESTS] [-c CONCURRENCY] [--ports LO-HI] [--echo] [--no-build] [--keep]
#
#   -n N       requests (default 20000), one new connection each
#   -c C       concurrency (default 20)
#   --ports    the client's ephemeral port range (default 40000-40999: 1,000 ports)
#   --echo     validate the machinery without the balancer: tun-echo instead of lb-tun, and the
#              load goes to s1's own address (steered through the TUN) instead of the VIP.
#   --no-build use the binaries already built (target/release, else target/debug)
#   --keep     keep the temporary directory (logs, CSV) for a look afterwards
#
# Needs root, iproute2, /dev/net/tun and cargo (it builds the release binaries itself); uses
# nginx and hey when installed, else the project's own lb-demo-http and lb-demo-load.
# Everything runs in namespaces named lbt<PID>-*, removed on exit (also on Ctrl-C).
set -u
N=20000
C=20
PORTS="40000-40999"
ECHO=""
BUILD=1
while [ $# -gt 0 ]; do
	case "$1" in
	-n) N="$2"; shift 2 ;;
	-c) C="$2"; shift 2 ;;
	--ports) PORTS="$2"; shift 2 ;;
	--echo) ECHO=1; shift ;;
	--no-build) BUILD=""; shift ;;
	--keep) export LBT_KEEP_TMP=1; shift ;;
	-h | --help) sed -n '2,21p' "$0"; exit 0 ;;
	*) echo "demo.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done

. "$(dirname "$0")/netns-lib.sh"

if [ "$(id -u)" -ne 0 ]; then
	echo "demo.sh: needs root (network namespaces, a TUN device): run it as root" >&2
	exit 1
fi
if [ -n "$BUILD" ]; then
	echo "--- building release binaries (cargo build --release -p lb-tun)"
	(cd "$LBT_REPO" && cargo build --release -q -p lb-tun --bins) || exit 1
	LBT_BIN_DIR="$LBT_REPO/target/release"
fi

trap topo_down EXIT
trap 'echo; echo "interrupted"; exit 130' INT TERM

topo_up || exit 1
start_servers || exit 1
tmp="$(lbt_tmpdir)"
sock="$tmp/lb-tun.sock"
lbadm_bin="$(lbt_bin lbadm)" || exit 1
lbadm() { "$lbadm_bin" --control "$sock" "$@"; }

if [ -n "$ECHO" ]; then
	topo_route_servers_via_tun
	start_in_ns gw tun-echo "$(lbt_bin tun-echo)" --tun "$LBT_TUN" >/dev/null
	url="http://$(server_addr4 1)/"
	echo "mode: tun-echo (no balancer), load to $url through $LBT_TUN"
else
	cat >"$tmp/lb.conf" <<CONF
# ipvsadm-save -n format
-A -t $LBT_VIP4:80 -s wrr
-a -t $LBT_VIP4:80 -r $(server_addr4 1):80 -m -w 3
-a -t $LBT_VIP4:80 -r $(server_addr4 2):80 -m -w 1
CONF
	start_gateway "$tmp/lb.conf" || exit 1
	url="http://$LBT_VIP4/"
	echo "mode: lb-tun, load to the VIP $url; config $tmp/lb.conf:"
	sed 's/^/    /' "$tmp/lb.conf"
	echo "--- lbadm -L -n"
	lbadm -L -n
fi
sleep 0.2

# Preflight: one request with a short timeout, so a broken path fails fast instead of N timeouts.
nsx client "$(lbt_bin lb-demo-load)" -n 1 -c 1 --timeout 2 "$url" >"$tmp/preflight.csv"
if ! awk -F, 'NR == 2 && $7 == 200 { ok = 1 } END { exit !ok }' "$tmp/preflight.csv"; then
	echo "preflight: $url does not answer 200. Gateway log:"
	sed 's/^/  /' "$tmp/lb-tun.log" 2>/dev/null
	exit 1
fi
[ -z "$ECHO" ] && lbadm -Z
for f in "$tmp"/s*.access.log; do : >"$f"; done # count the load only, not the preflight

client_narrow_ports "${PORTS%-*}" "${PORTS#*-}"
nports=$(( ${PORTS#*-} - ${PORTS%-*} + 1 ))
echo "--- load: $N requests, concurrency $C, a new connection each, client ports $PORTS ($nports ports)"
start=$(date +%s.%N)
# In the background, so a signal to this script is handled at once (bash runs traps only
# between foreground commands); topo_down then stops the load with everything else.
load_run "$url" "$N" "$C" "$tmp/load.csv" &
wait $!
end=$(date +%s.%N)

echo "--- summary"
csv_summary "$tmp/load.csv" "$N"
echo "per server (access logs): $(server_split)"
awk -v s="$start" -v e="$end" -v n="$N" 'BEGIN { printf "wall %.1f s, %.0f requests/s\n", e - s, n / (e - s) }'
if [ -z "$ECHO" ]; then
	lbadm --stats-gateway >"$tmp/gw.stats"
	g() { awk -v k="$1" '$1 == k { print $2 }' "$tmp/gw.stats"; }
	echo "gateway: connections $(g conns_created), client ports reused and rescheduled $(g reuse_reschedules), SYN drops $(g syn_drops)"
	echo "gateway queues: $(g tun.queues), steering moves $(g tun.steer_moves)"
	echo "gateway drops by reason: $(awk '$1 ~ /^drops\./ && $2 > 0 { sub(/^drops\./, "", $1); printf "%s %s  ", $1, $2; n++ } END { if (!n) printf "none" }' "$tmp/gw.stats")"
	echo "--- lbadm -L -n --stats"
	lbadm -L -n --stats
fi
