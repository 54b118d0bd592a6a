#!/usr/bin/env bash
# demo-cluster.sh [--wrr] — three lb-tun gateways behind ECMP, announced by BIRD 2 (root).
#
#   client ns         router ns (BIRD, ECMP, L4 hash)            gateway ns gw1..gw3
#   c0 10.40.0.2 ──── rc 10.40.0.1
#                     rgN 10.50.N.1 ─────────────────────────── up0 10.50.N.2  BIRD (AS 6501N)
#                     br0 10.20.1.1 ─┬─ s1 10.20.1.2             lb-tun --announce on lb0,
#                                    ├─ s2 10.20.1.3             tunnel source 10.60.N.1
#                                    ├─ s3 10.20.1.4             (routed into lb0)
#                                    └─ s4 10.20.1.5
#   VIP 10.30.0.10:80, `-s mh -b mh-port --sloppy` on every gateway (the client's port hashed
#   too: one client, many servers), the four servers by IPIP tunnel (-i);
#   each server has the VIP on lo, takes the outer header off with the kernel's ipip device
#   where it can, else with lb-decap, and answers the client directly through the router.
#
# A client keeps 30 keep-alive connections, one request on each every 200 ms. After 4 s gw1's
# lb-tun is killed (SIGKILL: its TUN device and routes vanish, its BIRD withdraws the VIP);
# 4 s later gw2 is drained (lbadm --drain-gateway); 4 s later the load stops. The summary
# says, per connection, the gateway it was on before the kill, its first and last server, its
# failures and reopenings. Checks (exit 1 if one fails): the connections were spread over the
# three gateways; every connection of gw1 answered its next request through another gateway
# from the same real server; nothing failed after the drain; no request failed beyond those in
# flight at the SIGKILL.
#
# --wrr: the same run with `-s wrr` (still --sloppy, no sync): a connection the router moves to
# another gateway is scheduled there afresh, most often to another server, which resets it.
# The checks are then that this happened (connections reset and reopened on another server).
#
# nginx serves when installed, else the project's lb-demo-http (netns-lib.sh's start_nginx).
# Environment: LBT (namespace prefix), LBT_BIN_DIR, LBT_KEEP_TMP=1 keeps the temp dir (logs,
# BIRD configs); CONNS, PERIOD.
set -uo pipefail

SCHED=mh SCHED_OPTS="-s mh -b mh-port"
[ "${1:-}" = --wrr ] && SCHED=wrr SCHED_OPTS="-s wrr"
[ "$(id -u)" = 0 ] || { echo "demo-cluster.sh: run as root (network namespaces)" >&2; exit 2; }
for c in bird birdc python3; do
	command -v "$c" >/dev/null || { echo "demo-cluster.sh: $c not found (apt-get install bird2 python3)" >&2; exit 2; }
done

LBT="${LBT:-lbc$$}"
LBT_NSERVERS=4
LBT_MORE_ROLES="rtr gw1 gw2 gw3"
# shellcheck source=scripts/netns-lib.sh
source "$(dirname "$0")/netns-lib.sh"
lbt_tmpdir >/dev/null
tmp="$LBT_TMP"
CONNS="${CONNS:-30}"
PERIOD="${PERIOD:-0.2}"
VIP="$LBT_VIP4"
BIRD_PIDS=""

cleanup() {
	local p
	for p in $BIRD_PIDS; do kill "$p" 2>/dev/null; done
	topo_down
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*" >&2
	[ -n "${LBT_KEEP_TMP:-}" ] && echo "logs in $tmp" >&2
	exit 1
}
lbadm() {
	local gw="$1"
	shift
	"$(lbt_bin lbadm)" --control "$tmp/$gw.sock" "$@"
}

# --- topology --------------------------------------------------------------------------------
for ns in client rtr gw1 gw2 gw3 s1 s2 s3 s4; do
	ip netns add "${LBT}-$ns" || fail "netns add ${LBT}-$ns"
	ip -n "${LBT}-$ns" link set lo up
done
R="${LBT}-rtr"
ip -n "${LBT}-client" link add c0 type veth peer name rc netns "$R" || fail veth
ip -n "${LBT}-client" addr add "$LBT_CLIENT4/24" dev c0
ip -n "${LBT}-client" link set c0 up
ip -n "${LBT}-client" route add default via 10.40.0.1
ip -n "$R" addr add 10.40.0.1/24 dev rc
ip -n "$R" link set rc up
nsx rtr sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
	net.ipv4.conf.default.rp_filter=0 net.ipv4.fib_multipath_hash_policy=1
for n in 1 2 3; do
	g="${LBT}-gw$n"
	ip -n "$R" link add "rg$n" type veth peer name up0 netns "$g" || fail veth
	ip -n "$R" addr add "10.50.$n.1/24" dev "rg$n"
	ip -n "$R" link set "rg$n" up
	ip -n "$g" addr add "10.50.$n.2/24" dev up0
	ip -n "$g" link set up0 up
	ip -n "$g" route add default via "10.50.$n.1"
	# The tunnel source lives in gwN's lb0 (added once lb-tun created it): ICMP to it returns.
	ip -n "$R" route add "10.60.$n.1/32" via "10.50.$n.2"
	nsx "gw$n" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
		net.ipv4.conf.default.rp_filter=0 net.ipv4.conf.all.send_redirects=0
done
ip -n "$R" link add br0 type bridge
ip -n "$R" addr add 10.20.1.1/24 dev br0
ip -n "$R" link set br0 up
for i in 1 2 3 4; do
	s="${LBT}-s$i"
	ip -n "$s" link add eth0 type veth peer name "rs$i" netns "$R" || fail veth
	ip -n "$s" addr add "$(server_addr4 "$i")/24" dev eth0
	ip -n "$s" link set eth0 up
	ip -n "$s" route add default via 10.20.1.1
	ip -n "$R" link set "rs$i" master br0
	ip -n "$R" link set "rs$i" up
done

# --- real servers: VIP on lo, decapsulation, nginx --------------------------------------------
DECAP=kernel
for i in 1 2 3 4; do
	s="${LBT}-s$i"
	nsx "s$i" ip addr add "$VIP/32" dev lo
	nsx "s$i" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
		net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
	if [ "$DECAP" = kernel ] && ip -n "$s" link add name kip4 type ipip local "$(server_addr4 "$i")" 2>/dev/null; then
		ip -n "$s" link set kip4 up
		nsx "s$i" sysctl -qw net.ipv4.conf.kip4.rp_filter=0
	else
		DECAP=lb-decap
		decap_lbdecap "$i" || fail "s$i: lb-decap did not start: $(cat "$tmp/lb-decap-s$i.log")"
	fi
	start_nginx "s$i" "$VIP" "s$i" >/dev/null
done
for i in 1 2 3 4; do wait_http "s$i" "http://$VIP/" || fail "nginx on s$i"; done

# --- BIRD: the router (ECMP over the three sessions) ------------------------------------------
bird_run() {
	local role="$1" conf="$2" pid
	pid=$(start_in_ns "$role" "bird-$role" bird -f -c "$conf" -s "$tmp/bird-$role.ctl" -P "$tmp/bird-$role.pid")
	BIRD_PIDS="$BIRD_PIDS $pid"
	for _ in $(seq 50); do [ -S "$tmp/bird-$role.ctl" ] && return 0; sleep 0.1; done
	fail "bird in $role did not start: $(cat "$tmp/bird-$role.log")"
}
{
	echo "router id 10.40.0.1;"
	echo "protocol device { }"
	echo "protocol kernel { ipv4 { import none; export all; }; merge paths on; }"
	for n in 1 2 3; do
		cat <<EOF
protocol bgp gw$n {
    local 10.50.$n.1 as 65000;
    neighbor 10.50.$n.2 as 6501$n;
    hold time 3; keepalive time 1; connect delay time 1; connect retry time 1;
    ipv4 { import all; export none; };
}
EOF
	done
} >"$tmp/bird-rtr.conf"
bird_run rtr "$tmp/bird-rtr.conf"

# --- gateways: lb-tun --announce, then BIRD with lb-tun/README.md's bird.conf ------------------
cat >"$tmp/lb.conf" <<EOF
-A -t $VIP:80 $SCHED_OPTS --sloppy
EOF
for i in 1 2 3 4; do echo "-a -t $VIP:80 -r $(server_addr4 "$i"):80 -i --tun-type ipip -w 1" >>"$tmp/lb.conf"; done
awk '/^# \/etc\/bird\/bird.conf/,/^```$/' "$LBT_REPO/lb-tun/README.md" | grep -v '^```' >"$tmp/bird-readme.conf"
grep -q "krt_source = 76" "$tmp/bird-readme.conf" || fail "no bird.conf in lb-tun/README.md"
for n in 1 2 3; do
	LBT_GW_PIDS[n]=$(start_in_ns "gw$n" "lb-tun-gw$n" "$(lbt_bin lb-tun)" --tun lb0 --config "$tmp/lb.conf" \
		--control "$tmp/gw$n.sock" --announce --tunnel-source "10.60.$n.1")
	for _ in $(seq 250); do [ -S "$tmp/gw$n.sock" ] && break; sleep 0.02; done
	[ -S "$tmp/gw$n.sock" ] || fail "lb-tun in gw$n did not start: $(cat "$tmp/lb-tun-gw$n.log")"
	ip -n "${LBT}-gw$n" route add "10.60.$n.1/32" dev lb0 || fail "tunnel source route in gw$n"
	# The README's bird.conf with this gateway's addresses and AS, and short BGP timers.
	sed -e "s/192\.0\.2\.11/10.50.$n.2/g" -e "s/65011/6501$n/" -e "s/neighbor 192\.0\.2\.1 /neighbor 10.50.$n.1 /" \
		-e "s/^\(    neighbor .*\)$/\1\n    hold time 3; keepalive time 1; connect delay time 1; connect retry time 1;/" \
		"$tmp/bird-readme.conf" >"$tmp/bird-gw$n.conf"
	bird_run "gw$n" "$tmp/bird-gw$n.conf"
done

# Wait for the router's ECMP route over the three gateways.
nexthops() { ip -n "$R" route show "$VIP/32" | grep -c 'nexthop via'; }
for _ in $(seq 150); do [ "$(nexthops)" = 3 ] && break; sleep 0.1; done
[ "$(nexthops)" = 3 ] || fail "router: no ECMP route over 3 gateways: $(ip -n "$R" route show "$VIP/32"); $(birdc -s "$tmp/bird-rtr.ctl" show protocols)"
echo "router: $(ip -n "$R" route show "$VIP/32" | tr -s ' \n' ' ')"
echo "scheduler $SCHED_OPTS --sloppy, decapsulation on the servers: $DECAP"

# --- the run ---------------------------------------------------------------------------------
tun_rx() { lbadm "$1" --stats-gateway | awk '$1 == "tun.rx_packets" { print $2 }'; }
now() { date +%s.%N; }
# held GW — the client ports of the ESTABLISHED entries of gateway GW.
held() { lbadm "$1" -L -c -n | awk '$3 == "ESTABLISHED" { sub(/.*:/, "", $4); print $4 }' | xargs; }
nsx client python3 "$LBT_REPO/scripts/keepalive-client.py" run "$VIP" 12 "$CONNS" "$PERIOD" "$tmp/requests.log" &
client=$!
sleep 4
: >"$tmp/events"
for n in 1 2 3; do
	echo "on gw$n $(held "gw$n")" >>"$tmp/events"
	rx[n]=$(tun_rx "gw$n")
done
echo "kill $(now)" >>"$tmp/events"
kill -9 "${LBT_GW_PIDS[1]}"
t0=$(date +%s%N)
for _ in $(seq 100); do [ "$(nexthops)" = 2 ] && break; sleep 0.01; done
echo "SIGKILL gw1's lb-tun: the router has $(nexthops) next hops after $((($(date +%s%N) - t0) / 1000000)) ms"
sleep 4
for n in 2 3; do echo "later gw$n $(held "gw$n")" >>"$tmp/events"; done
echo "drain $(now)" >>"$tmp/events"
lbadm gw2 --drain-gateway --timeout 3 | sed 's/^/gw2 drain: /'
t0=$(date +%s%N)
for _ in $(seq 100); do [ "$(ip -n "$R" route show "$VIP/32" | grep -c 'via 10.50')" = 1 ] && break; sleep 0.01; done
echo "router route after $((($(date +%s%N) - t0) / 1000000)) ms: $(ip -n "$R" route show "$VIP/32" | tr -s ' \n' ' ')"
wait "$client"

echo
echo "== summary ($SCHED, $CONNS keep-alive connections, a request on each every ${PERIOD}s) =="
echo "packets into each gateway's TUN in the first 4 s (before the kill): gw1 ${rx[1]} gw2 ${rx[2]} gw3 ${rx[3]}"
python3 "$LBT_REPO/scripts/keepalive-client.py" report "$tmp/requests.log" "$tmp/events" | tee "$tmp/report"
figures=$(sed -n 's/^FIGURES //p' "$tmp/report")
fig() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$figures" "$1"; }
spread_ok=$(python3 -c 'import json,sys; s=json.loads(sys.argv[1])["spread"]; print(int(all(s.get(g,0)>0 for g in ("gw1","gw2","gw3"))))' "$figures")
[ "$spread_ok" = 1 ] || fail "the connections were not spread over the three gateways"
if [ "$SCHED" = mh ]; then
	[ "$(fig on_killed)" -gt 0 ] || fail "no connection was on gw1"
	[ "$(fig same_server_next_request)" = True ] ||
		fail "a connection of gw1 did not answer its next request from the same server"
	[ "$(fig moved)" = 0 ] || fail "$(fig moved) connections changed server or were reopened"
	[ "$(fig failed_after_drain)" = 0 ] || fail "requests failed after the drain"
	[ "$(fig failed)" = "$(fig failed_at_kill)" ] || fail "requests failed beyond those in flight at the SIGKILL"
	echo "PASS: ECMP over 3 gateways; gw1's $(fig on_killed) connections answered their next request through another gateway from the same server (the last $(fig last_recovered_ms) ms after the SIGKILL); the drain failed nothing; $(fig failed) of $(fig requests) requests failed ($(fig in_flight_at_kill) in flight at the SIGKILL), $(fig slow) took >= 100 ms (a retransmission)"
else
	[ "$(fig moved)" -gt 0 ] || fail "with wrr no connection changed server: nothing shown"
	echo "SHOWN (wrr, no sync): $(fig moved) of $CONNS connections were reset and reopened (or answered by another server) after the router moved them to another gateway; $(fig failed) of $(fig requests) requests failed"
fi
