#!/usr/bin/env bash
# test-e2e.sh SCENARIO — end-to-end tests of lb-tun in network namespaces, with nginx real
# servers and hey (falling back to the project's lb-demo-http / lb-demo-load where noted).
# Run by lb-tun/tests/netns_e2e.rs as root; exit status 0 on success, "PASS" on the last line.
#
#   split    every request 200, wrr 3:1 split within 2 %, servers see the client's address
#            (NAT), IPv6 service, ICMP echo to the VIPs answered, live metrics pass promtool
#   seed     the seed scenario: 1,000 client ports, several times that many connections
#            without keep-alive: thousands of reuse reschedules, no SYN dropped, no more
#            >= 1 s connections than the same load straight to a real server (+ 0.1 %)
#   drain    under load, -e -w 0 drains a server while its keep-alive connection keeps
#            working; once -L shows it drained, -d removes it with no failed request;
#            deleting a server with a live connection resets it at once
#   restore  -S of a gateway restored into a fresh one (--config): same -S, -L -n,
#            --thresholds, settings, and the same scheduling decisions (wrr order, mh)
#   restart  hitless restart with --state: under keep-alive load (hey) and one held
#            connection, SIGTERM lb-tun and start it again: no request fails, the held
#            connection stays on its server, the new gateway opens no connection of its own
#            for the old ones; prints how long packets went unanswered
#   failover two gateways, master and backup, synced over their own link (IPVS sync v1,
#            multicast): under keep-alive load and a held connection through the master, the
#            backup lists the flows; the VIP and the servers' return route move to the backup;
#            no request fails, the held connection stays on its server (wrr: only sync can
#            carry that)
#   frag     a UDP service answering 4,000-byte datagrams (fragmented both ways at MTU 1500)
#            works through the VIP over IPv4 and IPv6, on both servers; an IPv6 client sending
#            with a Hop-by-Hop header is served (python3 echo server and client)
#   synflood a spoofed SYN flood (lb-demo-synflood: random sources in 10.99.0.0/16, default
#            8,000/s for 12 s) fills a 20,000-entry table while hey runs, default settings:
#            the keep-alive connections (opened before) see no error, >= 95 % of new
#            connections during the flood and all after it succeed; half-open entries
#            evicted, counted; then a flood from one /24 is held to its share (10 % of the
#            table), its other SYNs refused, counted (needs hey)
#   health   keepalived.conf checkers (HTTP_GET on the IPv4 service, TCP_CHECK on the IPv6 one,
#            delay_loop 1, connect_timeout 1, retry 1, delay_before_retry 1) from
#            --probe-source addresses routed into the TUN, under load: a server whose nginx
#            stops leaves scheduling within the bound computed from the knobs and requests
#            after that all succeed; it comes back (rise) while the other's /health turns 404
#            and is removed (reason HTTP 404 in lbadm --health, lbtun_real_server_up 0); with
#            both down the sorry server serves; a server dropping SYNs (iptables) is taken out
#            by the passive signal (--passive) before the active checker could, and its clients
#            are answered after one SYN retransmission
#   dr       direct routing on a TAP device (lb-tun --tap): client, lb-tun and two nginx real
#            servers on one Ethernet segment, the servers set up as for kernel IPVS DR (the VIP
#            on lo, arp_ignore=1, arp_announce=2, rp_filter 0): a socat echo of 4 MB through
#            the VIP comes back with the same sha256 both ways; hey over wrr 3:1 -g servers:
#            every request 200, the split 3:1, and the director saw only client->server (its
#            servers' OutPkts 0, no server->client packet on the TAP); IPv6 DR (NDP) too; a NAT
#            service on the same TAP gateway works, its replies through the director; TCP_CHECK
#            probes over the TAP (keepalived.conf, lb_kind DR) take a stopped server out
#   decap    lb-decap on a real server whose kernel has no tunnel module: a director
#            (scripts/tun-encap.py in gw, reading the VIP traffic from lb0, written apart from
#            lb-core) sends IPIP, GRE (with and without checksum) and GUE (no checksum,
#            checksum, remote checksum offload) over IPv4 and IPv6 to s1, where the VIPs are on
#            lo: HTTP (nginx) and UDP to both VIPs are answered, the replies leave s1 plain,
#            straight to the client; without lb-decap the kernel answers protocol unreachable,
#            with it not; damaged packets are counted per reason
#   offload  lb-tun with the TUN device's offloads (the default), the gateway's ports finishing
#            checksums in software so the far ends verify what lb-tun wrote: iperf3 (4
#            streams) moves its bytes in 64 KB segments (bytes per packet read), without a
#            retransmission storm, and steering leaves each of the 2 queues at least 30 % of
#            the bytes; 8 MB echoed through each VIP (IPv4, IPv6) to each server
#            comes back with the same sha256; no offloaded packet dropped
#   tunnel   lb-tun forwarding by tunnel (-i) to two real servers running lb-decap and nginx,
#            for each of ipip, gue and gre (checksum on over one family, off over the other):
#            hey with no failure and the wrr 3:1 split within 2 % (IPv4), IPv6 requests, a
#            1 MB socat echo over each family compared byte for byte, replies straight from the
#            servers to the client, and the outer headers captured on s1's link checked field by
#            field (scripts/check-tunnel-pcap.py); PMTU discovery: on 1,500-byte links the
#            client's first segments get lb-tun's ICMP fragmentation needed / packet too big
#            from the VIPs with the MTU left in the tunnel (captured on the client's link,
#            learnt by its routes, counted in too_big_replies and the metrics). Then the same
#            checks with the kernel's decapsulation (ipip/ip6tnl, fou, gre/ip6gre) for each kind
#            the kernel can set up; "skip: kernel decapsulation of KIND: WHY" for the others
#   announce --announce without BGP: lb-tun creates its TUN device, and its VIP host routes
#            (proto 76) appear once the TCP_CHECKs pass; both IPv4 servers failing their checks
#            withdraw the IPv4 VIP only, their return brings it back; NAT is warned about;
#            lbadm --drain-gateway withdraws the routes at once while a held keep-alive
#            connection keeps being served (through the held routes, proto 77), and the gateway
#            exits when it has ended (or at --timeout with a flow left); SIGKILL takes the
#            routes away with the TUN device. When BIRD 2 is installed, it runs in the gateway's
#            namespace with lb-tun/README.md's bird.conf and must hold exactly the announced
#            routes at each step (no BGP session: what it learns from the kernel)
#
# Env: LBT (namespace prefix, unique per run), LBT_BIN_DIR (lb-tun, lbadm, lb-demo-load,
# lb-demo-http, lb-demo-synflood), LBT_SEED_N (seed scenario connections, default 6000),
# LBT_FLOOD_RATE / LBT_FLOOD_SECS (synflood: SYNs a second, seconds; default 8000, 12).
set -u
. "$(dirname "$0")/netns-lib.sh"
trap topo_down EXIT
trap 'exit 130' INT TERM

SCENARIO="${1:-}"
fail() {
	echo "FAIL: $*" >&2
	if [ -S "$sock" ]; then
		echo "--- gateway counters (lbadm --stats-gateway)" >&2
		lbadm --stats-gateway | grep -v ' 0$' >&2
		echo "client sockets in TIME_WAIT: $(nsx client ss -tan state time-wait 2>/dev/null | tail -n +2 | wc -l)" >&2
	fi
	exit 1
}
ok() { echo "ok: $*"; }
lbt_tmpdir >/dev/null # sets LBT_TMP in this shell
tmp="$LBT_TMP"
sock="$tmp/lb-tun.sock"
lbadm() { "$(lbt_bin lbadm)" --control "$sock" "$@"; }
have_hey() { [ "${LBT_LOADER:-}" != own ] && command -v hey >/dev/null 2>&1; }

# all_ok CSV N — the CSV has N rows and all are 200.
all_ok() {
	local csv="$1" n="$2" rows good
	rows=$(($(wc -l <"$csv") - 1))
	good=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next } $c["status-code"] == 200' "$csv" | wc -l)
	[ "$rows" -eq "$n" ] || fail "$csv: $rows rows recorded, want $n (failed requests are left out by hey)"
	[ "$good" -eq "$n" ] || fail "$csv: $good of $n requests got 200"
}

# slow CSV — requests that took 1 s or more.
slow() {
	awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next } $c["response-time"] >= 1.0' "$1" | wc -l
}

# gwstat NAME — a counter from lbadm --stats-gateway.
gwstat() { lbadm --stats-gateway | awk -v k="$1" '$1 == k { print $2 }'; }

# server_line ADDR:PORT — ActiveConn and InActConn of that real server in -L -n.
server_conns() { lbadm -L -n | awk -v a="$1" '$1 == "->" && $2 == a { print $5, $6 }'; }

# metrics — the gateway's /metrics body, fetched from the client namespace.
metrics() {
	nsx client bash -c 'exec 3<>/dev/tcp/10.40.0.1/9100 && printf "GET /metrics HTTP/1.0\r\n\r\n" >&3 && cat <&3' |
		tr -d '\r' | awk 'body { print } /^$/ { body = 1 }'
}

scenario_split() {
	LBT_NSERVERS=2
	topo_up || fail topo_up
	start_servers || fail "servers did not start"
	cat >"$tmp/lb.conf" <<CONF
-A -t $LBT_VIP4:80 -s wrr
-a -t $LBT_VIP4:80 -r $(server_addr4 1):80 -m -w 3
-a -t $LBT_VIP4:80 -r $(server_addr4 2):80 -m -w 1
-A -t [$LBT_VIP6]:80 -s rr
-a -t [$LBT_VIP6]:80 -r [$(server_addr6 1)]:80 -m -w 1
-a -t [$LBT_VIP6]:80 -r [$(server_addr6 2)]:80 -m -w 1
CONF
	start_gateway "$tmp/lb.conf" || fail "gateway did not start"
	local n=4000 s1 s2
	load_run "http://$LBT_VIP4/" "$n" 20 "$tmp/v4.csv" || fail "load v4"
	all_ok "$tmp/v4.csv" "$n"
	ok "$n/$n requests to $LBT_VIP4 got 200"
	local q queues
	queues=$(gwstat tun.queues)
	[ "$queues" = "${LBT_QUEUES:-2}" ] || fail "tun.queues $queues, want ${LBT_QUEUES:-2}"
	for q in $(seq 0 $((queues - 1))); do
		[ "$(gwstat "tun.queue.$q.rx_packets")" -gt 0 ] || fail "queue $q read no packet: $(lbadm --stats-gateway | grep '^tun\.')"
	done
	ok "$queues queues, each read packets: $(lbadm --stats-gateway | awk '$1 ~ /^tun\.queue\..*rx/ { printf "%s %s  ", $1, $2 }')"
	s1=$(wc -l <"$tmp/s1.access.log")
	s2=$(wc -l <"$tmp/s2.access.log")
	awk -v a="$s1" -v b="$s2" 'BEGIN { if (a + b == 0) exit 1; f = a / (a + b); d = f - 0.75; if (d < 0) d = -d; exit !(d <= 0.02 * 0.75) }' ||
		fail "split s1 $s1 s2 $s2 is not 3:1 within 2 %"
	ok "split s1 $s1 s2 $s2 (wrr 3:1)"
	lbadm -L -n --stats | grep -q "^  -> $(server_addr4 1):80 *3000 " || fail "-L --stats does not show 3000 connections to s1: $(lbadm -L -n --stats)"

	load_run "http://[$LBT_VIP6]/" 200 10 "$tmp/v6.csv" || fail "load v6"
	all_ok "$tmp/v6.csv" 200
	ok "200/200 requests to [$LBT_VIP6] got 200"

	local others
	others=$(awk '$1 != "10.40.0.2" && $1 != "fd00:40::2"' "$tmp/s1.access.log" "$tmp/s2.access.log" | wc -l)
	[ "$others" -eq 0 ] || fail "$others requests logged from an address other than the client's"
	grep -q '^fd00:40::2 ' "$tmp/s1.access.log" || fail "no IPv6 request logged with the client's address"
	ok "real servers logged the client's own address for all $((n + 200)) requests (NAT)"

	local load
	load="$(lbt_bin lb-demo-load)"
	nsx client "$load" --ping --timeout 1 "http://$LBT_VIP4/" || fail "ping $LBT_VIP4 not answered"
	nsx client "$load" --ping --timeout 1 "http://[$LBT_VIP6]/" || fail "ping $LBT_VIP6 not answered"
	nsx client "$load" --ping --timeout 0.5 "http://10.30.0.77/" && fail "the ping check is broken: an unrouted address answered"
	ok "ICMP echo to both VIPs answered by the gateway"
	sleep 1.2
	metrics >"$tmp/metrics.txt"
	grep -q "^node_ipvs_connections_total $((n + 200))$" "$tmp/metrics.txt" || fail "node_ipvs_connections_total: $(grep connections_total "$tmp/metrics.txt")"
	[ "$(grep -c '^node_ipvs_backend_weight{' "$tmp/metrics.txt")" -eq 4 ] || fail "want 4 backend_weight series"
	grep -q '^node_ipvs_backend_weight{local_address="10.30.0.10",local_mark="",local_port="80",proto="TCP",remote_address="10.20.1.2",remote_port="80"} 3$' "$tmp/metrics.txt" ||
		fail "backend_weight of s1 missing"
	if command -v promtool >/dev/null 2>&1; then
		promtool check metrics <"$tmp/metrics.txt" || fail "promtool check metrics"
		ok "live /metrics passes promtool check metrics"
	else
		echo "skip: promtool not installed (apt-get install prometheus)"
	fi
}

# up_rr_pair — topology, two real servers, and the gateway balancing them rr on the VIP:80.
up_rr_pair() {
	topo_up || fail topo_up
	start_servers || fail "servers did not start"
	cat >"$tmp/lb.conf" <<CONF
-A -t $LBT_VIP4:80 -s rr
-a -t $LBT_VIP4:80 -r $(server_addr4 1):80 -m -w 1
-a -t $LBT_VIP4:80 -r $(server_addr4 2):80 -m -w 1
CONF
	start_gateway "$tmp/lb.conf" || fail "gateway did not start"
}

scenario_seed() {
	LBT_NSERVERS=2
	local n="${LBT_SEED_N:-6000}" sd sv reuse syn allowed
	up_rr_pair
	client_narrow_ports 40000 40999
	# Straight to a real server first (its replies cross the TUN as passed packets), so no
	# gateway entry exists that could claim them.
	load_run "http://$(server_addr4 1)/" "$n" 20 "$tmp/direct.csv" || fail "direct load"
	all_ok "$tmp/direct.csv" "$n"
	load_run "http://$LBT_VIP4/" "$n" 20 "$tmp/vip.csv" || fail "VIP load"
	all_ok "$tmp/vip.csv" "$n"
	sd=$(slow "$tmp/direct.csv")
	sv=$(slow "$tmp/vip.csv")
	reuse=$(gwstat reuse_reschedules)
	syn=$(gwstat syn_drops)
	echo "seed: $n connections from 1,000 client ports; >= 1 s: direct $sd, through the VIP $sv; reuse reschedules $reuse; SYN drops $syn"
	csv_summary "$tmp/vip.csv" "$n"
	[ "${reuse:-0}" -ge 2000 ] || fail "only ${reuse:-0} reuse reschedules"
	[ "$syn" = 0 ] || fail "$syn SYNs dropped"
	allowed=$((sd + (n + 999) / 1000))
	[ "$sv" -le "$allowed" ] || fail "$sv connections took >= 1 s through the VIP, direct $sd (allowed $allowed)"
	ok "thousands of reuse reschedules, no SYN dropped, >= 1 s: $sv <= $allowed"
}

scenario_drain() {
	LBT_NSERVERS=2
	have_hey || { echo "SKIP drain: needs hey (apt-get install hey)"; echo PASS; exit 0; }
	up_rr_pair
	# A narrow port range: the load reuses the drained server's TIME_WAIT entries' ports, and
	# reuse expires them, so the server drains in seconds instead of TIME_WAIT's 2 minutes.
	client_narrow_ports 40000 40199
	local load="$(lbt_bin lb-demo-load)" x xaddr y yaddr hport mark hey_pid h1 i st
	nsx client "$load" --hold --interval 0.25 --count 16 --timeout 5 "http://$LBT_VIP4/" >"$tmp/h1.out" &
	h1=$!
	for _ in $(seq 50); do [ -s "$tmp/h1.out" ] && break; sleep 0.1; done
	read -r _ hport st x _ <"$tmp/h1.out" || fail "held connection: no answer"
	[ "$st" = 200 ] || fail "held connection: $(cat "$tmp/h1.out")"
	case "$x" in s1) y=s2 ;; s2) y=s1 ;; *) fail "held connection answered by '$x'" ;; esac
	xaddr="$(server_addr4 "${x#s}"):80"
	yaddr="$(server_addr4 "${y#s}"):80"
	echo "held keep-alive connection from port $hport is on $x ($xaddr)"
	nsx client hey -z 9s -q 30 -c 6 -disable-keepalive -t 5 "http://$LBT_VIP4/" >"$tmp/hey.txt" 2>&1 &
	hey_pid=$!
	sleep 1
	lbadm -e -t "$LBT_VIP4:80" -r "$xaddr" -m -w 0 || fail "lbadm -e -w 0"
	sleep 0.3
	mark=$(wc -l <"$tmp/$x.access.log")
	ok "$x quiesced (weight 0) under load"
	wait "$h1" || fail "held connection failed while $x drained: $(cat "$tmp/h1.out")"
	[ "$(awk -v s="$x" '$3 == 200 && $4 == s' "$tmp/h1.out" | wc -l)" -eq 16 ] || fail "held connection: $(cat "$tmp/h1.out")"
	ok "the held keep-alive connection kept working on $x (16/16 requests)"
	for i in $(seq 100); do
		[ "$(server_conns "$xaddr")" = "0 0" ] && break
		sleep 0.1
	done
	[ "$(server_conns "$xaddr")" = "0 0" ] || fail "$x not drained after 10 s: $(lbadm -L -n; lbadm -L -n -c | grep -v " $yaddr$")"
	lbadm --stats-gateway | grep -q "^drained -t $LBT_VIP4:80 -r $xaddr$" || fail "--stats-gateway does not list $x drained"
	ok "-L shows $x drained (ActiveConn 0 InActConn 0) after $((i / 10)).$((i % 10)) s"
	lbadm -d -t "$LBT_VIP4:80" -r "$xaddr" || fail "lbadm -d"
	kill -0 "$hey_pid" 2>/dev/null || fail "the load ended before the delete: make it longer"
	ok "$x deleted while the load runs"
	wait "$hey_pid"
	grep -q "Error distribution" "$tmp/hey.txt" && fail "requests failed: $(cat "$tmp/hey.txt")"
	grep -E '^\s+\[[0-9]+\]\s+[0-9]+ responses' "$tmp/hey.txt" | grep -qv '\[200\]' && fail "non-200 answers: $(cat "$tmp/hey.txt")"
	ok "no failed request: $(grep -E '\[200\]' "$tmp/hey.txt" | xargs)"
	local strays
	strays=$(tail -n +"$((mark + 1))" "$tmp/$x.access.log" | awk -v p="$hport" '$2 != p' | wc -l)
	[ "$strays" -eq 0 ] || fail "$strays new connections reached $x after it was quiesced"
	ok "no new connection reached $x after -w 0 (only the held one: $(($(wc -l <"$tmp/$x.access.log") - mark)) requests)"

	# A server deleted while a connection is open: the client gets a RST at once.
	nsx client "$load" --hold --interval 0.5 --count 8 --timeout 5 "http://$LBT_VIP4/" >"$tmp/h2.out" &
	local h2=$!
	for _ in $(seq 50); do [ -s "$tmp/h2.out" ] && break; sleep 0.1; done
	grep -q " 200 $y " "$tmp/h2.out" || fail "second held connection: $(cat "$tmp/h2.out")"
	lbadm -d -t "$LBT_VIP4:80" -r "$yaddr" || fail "lbadm -d $y"
	wait "$h2" && fail "the held connection survived the deletion of its server: $(cat "$tmp/h2.out")"
	tail -1 "$tmp/h2.out" | awk '$3 == "ERR" && $4 == "reset" && $5 < 1000 { ok = 1 } END { exit !ok }' ||
		fail "want a fast reset, got: $(tail -1 "$tmp/h2.out")"
	ok "deleting $y with a live connection reset it at once: $(tail -1 "$tmp/h2.out")"
}

# sequence PORT URL — the servers that answer 60 sequential requests from local ports PORT...
sequence() {
	nsx client "$(lbt_bin lb-demo-load)" -n 60 -c 1 --local-port "$1" --timeout 5 "$2" |
		awk -F, 'NR > 1 { printf "%s ", $9 } END { print "" }'
}

scenario_restore() {
	LBT_NSERVERS=3
	topo_up || fail topo_up
	start_servers || fail "servers did not start"
	local s1 s2 s3 v
	s1=$(server_addr4 1) s2=$(server_addr4 2) s3=$(server_addr4 3)
	cat >"$tmp/a.conf" <<CONF
-A -t $LBT_VIP4:80 -s wrr
-a -t $LBT_VIP4:80 -r $s1:80 -m -w 3
-a -t $LBT_VIP4:80 -r $s2:80 -m -w 2 -x 500 -y 50
-a -t $LBT_VIP4:80 -r $s3:80 -m -w 1
-A -t $LBT_VIP4:81 -s mh -b mh-port
-a -t $LBT_VIP4:81 -r $s3:80 -m -w 1
-a -t $LBT_VIP4:81 -r $s1:80 -m -w 2
-a -t $LBT_VIP4:81 -r $s2:80 -m -w 1
CONF
	start_gateway "$tmp/a.conf" || fail "gateway A did not start"
	lbadm -e -t "$LBT_VIP4:80" -r "$s3:80" -m -w 2 -x 9 || fail "-e"
	lbadm -a -t "$LBT_VIP4:81" -r "$s1:8080" -m -w 0 || fail "-a"
	lbadm --set 600 60 100 || fail "--set"
	lbadm --conn-reuse-mode 2 || fail "--conn-reuse-mode"
	lbadm -S -n >"$tmp/saved.conf" || fail "-S"
	for v in "-L -n" "-L -n --thresholds" "-L --timeout" "--show-settings"; do
		# shellcheck disable=SC2086
		lbadm $v >"$tmp/a$(echo $v | tr -d ' -').txt"
	done
	sequence 42000 "http://$LBT_VIP4/" >"$tmp/a.wrr"
	sequence 43000 "http://$LBT_VIP4:81/" >"$tmp/a.mh"
	kill "$LBT_GW_PID"
	for _ in $(seq 50); do [ -S "$sock" ] || break; sleep 0.1; done
	[ -S "$sock" ] && fail "gateway A did not stop"
	mv "$tmp/lb-tun.log" "$tmp/lb-tun-a.log"

	start_gateway "$tmp/saved.conf" || fail "gateway B did not start from the saved configuration"
	lbadm -S -n >"$tmp/saved-b.conf"
	cmp "$tmp/saved.conf" "$tmp/saved-b.conf" || fail "-S differs after restore: $(diff "$tmp/saved.conf" "$tmp/saved-b.conf")"
	for v in "-L -n" "-L -n --thresholds" "-L --timeout" "--show-settings"; do
		# shellcheck disable=SC2086
		lbadm $v >"$tmp/b.txt"
		cmp "$tmp/a$(echo $v | tr -d ' -').txt" "$tmp/b.txt" || fail "lbadm $v differs: $(diff "$tmp/a$(echo $v | tr -d ' -').txt" "$tmp/b.txt")"
	done
	ok "-S, -L -n, -L --thresholds, -L --timeout and --show-settings identical after restore"
	sequence 42000 "http://$LBT_VIP4/" >"$tmp/b.wrr"
	sequence 43000 "http://$LBT_VIP4:81/" >"$tmp/b.mh"
	cmp "$tmp/a.wrr" "$tmp/b.wrr" || fail "wrr order differs: A $(cat "$tmp/a.wrr") B $(cat "$tmp/b.wrr")"
	cmp "$tmp/a.mh" "$tmp/b.mh" || fail "mh decisions differ: A $(cat "$tmp/a.mh") B $(cat "$tmp/b.mh")"
	grep -q -- "-" "$tmp/a.wrr" "$tmp/a.mh" && fail "failed requests in the sequences"
	[ "$(tr ' ' '\n' <"$tmp/a.mh" | sort -u | grep -c .)" -ge 2 ] || fail "mh sent every port to one server: $(cat "$tmp/a.mh")"
	ok "same scheduling: wrr $(cut -c1-48 "$tmp/a.wrr")..."
	ok "same scheduling: mh  $(cut -c1-48 "$tmp/a.mh")..."
	echo "--- saved configuration"
	cat "$tmp/saved.conf"
}

# carried_over H1_PID HEY_PID N EVENT WHO — after EVENT (a restart, a failover): the held
# connection (lb-demo-load --hold, output $tmp/h1.out) answered all N requests on one server,
# hey ($tmp/hey.txt) had no failed or non-200 request, and WHO (the gateway $sock names now)
# created no connection: the flows were carried over, not opened again.
carried_over() {
	local h1="$1" hey_pid="$2" n="$3" event="$4" who="$5" st created
	wait "$hey_pid"
	wait "$h1" || fail "held connection failed across $event: $(cat "$tmp/h1.out")"
	st=$(awk '$3 == 200 { print $4 }' "$tmp/h1.out" | sort | uniq -c | xargs)
	[ "$(awk '$3 == 200' "$tmp/h1.out" | wc -l)" -eq "$n" ] || fail "held connection: $(cat "$tmp/h1.out")"
	[ "$(awk '{ print $4 }' "$tmp/h1.out" | sort -u | wc -l)" -eq 1 ] || fail "held connection changed server: $st"
	ok "the held keep-alive connection answered $n/$n requests across $event, all on one server ($st)"
	grep -q "Error distribution" "$tmp/hey.txt" && fail "requests failed: $(cat "$tmp/hey.txt")"
	grep -E '^\s+\[[0-9]+\]\s+[0-9]+ responses' "$tmp/hey.txt" | grep -qv '\[200\]' && fail "non-200 answers: $(cat "$tmp/hey.txt")"
	created=$(gwstat conns_created)
	[ "$created" -eq 0 ] || fail "$who created $created connections: the old ones were not carried over"
	ok "no failed request ($(grep -E '\[200\]' "$tmp/hey.txt" | xargs)); $who created no connection"
}

# gateway_restart ARGS... — SIGTERM the gateway, wait until it has exited (it writes --state
# then), and start it again with ARGS (start_gateway's). Sets STOP_MS (signal → state written,
# control socket gone) and
# GAP_MS (signal → the new gateway's control socket).
gateway_restart() {
	local t0 t1 pid="$LBT_GW_PID"
	t0=$(date +%s%N)
	kill -TERM "$pid"
	# The gateway writes its state, then removes its control socket. (Not `kill -0`: the
	# process, reparented, may stay a zombie for a while after it has exited.)
	for _ in $(seq 500); do [ -S "$sock" ] || break; sleep 0.01; done
	[ -S "$sock" ] && fail "gateway did not stop on SIGTERM"
	t1=$(date +%s%N)
	STOP_MS=$(((t1 - t0) / 1000000))
	mv "$tmp/lb-tun.log" "$tmp/lb-tun-a.log"
	start_gateway "$@" || fail "gateway did not start again"
	t1=$(date +%s%N)
	GAP_MS=$(((t1 - t0) / 1000000))
}

scenario_restart() {
	LBT_NSERVERS=2
	have_hey || { echo "SKIP restart: needs hey (apt-get install hey)"; echo PASS; exit 0; }
	topo_up || fail topo_up
	start_servers || fail "servers did not start"
	cat >"$tmp/lb.conf" <<CONF
-A -t $LBT_VIP4:80 -s wrr
-a -t $LBT_VIP4:80 -r $(server_addr4 1):80 -m -w 2
-a -t $LBT_VIP4:80 -r $(server_addr4 2):80 -m -w 1
CONF
	local load="$(lbt_bin lb-demo-load)" h1 hey_pid before after restored
	start_gateway "$tmp/lb.conf" --state "$tmp/table.state" || fail "gateway did not start"
	# One held keep-alive connection (a request every 0.2 s for 8 s), and keep-alive load.
	nsx client "$load" --hold --interval 0.2 --count 40 --timeout 5 "http://$LBT_VIP4/" >"$tmp/h1.out" &
	h1=$!
	nsx client hey -z 8s -q 25 -c 6 -t 5 "http://$LBT_VIP4/" >"$tmp/hey.txt" 2>&1 &
	hey_pid=$!
	sleep 3
	before=$(gwstat connections)
	[ "$before" -ge 7 ] || fail "want >= 7 connections before the restart, have $before"
	gateway_restart "$tmp/lb.conf" --state "$tmp/table.state"
	grep -q "entries, .* bytes written to $tmp/table.state" "$tmp/lb-tun-a.log" ||
		fail "the stopping gateway did not write its state: $(tail -3 "$tmp/lb-tun-a.log")"
	restored=$(grep -o "[0-9]* entries restored" "$tmp/lb-tun.log" | awk '{ print $1 }')
	[ "${restored:-0}" -ge 7 ] || fail "restored ${restored:-no} entries: $(cat "$tmp/lb-tun.log")"
	ok "restart: SIGTERM to exit ${STOP_MS} ms, to the new gateway's control socket ${GAP_MS} ms; $restored of $before entries restored"
	carried_over "$h1" "$hey_pid" 40 "the restart" "the new gateway"
	after=$(grep -E "Slowest:" "$tmp/hey.txt" | awk '{ printf "%.0f", $2 * 1000 }')
	ok "packets went unanswered for about ${GAP_MS} ms; hey's slowest request ${after} ms"
}

# topo_pair_up — the failover topology: a client with a link to each gateway, the servers on
# a LAN (a bridge in the "lan" namespace) with both gateways, and a sync link between them.
#
#   client c0 10.40.0.2 ── gc 10.40.0.1  gwa  ga 10.20.1.1   ─┐
#          c1 10.41.0.2 ── gc 10.41.0.1  gwb  gb 10.20.1.254 ─┤ lan: br0 ── s1 10.20.1.2, s2 10.20.1.3
#                            gwa sy0 10.50.0.1 ── gwb sy0 10.50.0.2 (sync, 224.0.0.81)
#
# The VIP is routed by the client to gwa and the servers' default route is gwa: a failover
# moves both to gwb, as VRRP moving the VIP and the servers' gateway address would.
topo_pair_up() {
	local ns g i
	lbt_tmpdir >/dev/null
	for ns in client gwa gwb lan $(seq -f 's%g' 1 "$LBT_NSERVERS"); do
		ip netns add "${LBT}-$ns" || return 1
		ip -n "${LBT}-$ns" link set lo up
	done
	ip -n "${LBT}-lan" link add br0 type bridge
	ip -n "${LBT}-lan" link set br0 up
	for i in $(seq 1 "$LBT_NSERVERS"); do
		ip -n "${LBT}-s$i" link add eth0 type veth peer name "p$i" netns "${LBT}-lan" || return 1
		ip -n "${LBT}-s$i" addr add "$(server_addr4 "$i")/24" dev eth0
		ip -n "${LBT}-s$i" addr add "$(server_addr6 "$i")/64" dev eth0 nodad
		ip -n "${LBT}-s$i" link set eth0 up
		ip -n "${LBT}-s$i" route add default via 10.20.1.1
		ip -n "${LBT}-lan" link set "p$i" master br0 up
	done
	ip -n "${LBT}-gwa" link add ga type veth peer name pa netns "${LBT}-lan" || return 1
	ip -n "${LBT}-gwb" link add gb type veth peer name pb netns "${LBT}-lan" || return 1
	ip -n "${LBT}-lan" link set pa master br0 up
	ip -n "${LBT}-lan" link set pb master br0 up
	ip -n "${LBT}-gwa" addr add 10.20.1.1/24 dev ga
	ip -n "${LBT}-gwb" addr add 10.20.1.254/24 dev gb
	ip -n "${LBT}-client" link add c0 type veth peer name gc netns "${LBT}-gwa" || return 1
	ip -n "${LBT}-client" link add c1 type veth peer name gc netns "${LBT}-gwb" || return 1
	ip -n "${LBT}-client" addr add 10.40.0.2/24 dev c0
	ip -n "${LBT}-client" addr add 10.41.0.2/24 dev c1
	ip -n "${LBT}-client" link set c0 up
	ip -n "${LBT}-client" link set c1 up
	ip -n "${LBT}-client" route add "$LBT_VIP4/32" via 10.40.0.1
	nsx client sysctl -qw net.ipv4.conf.all.rp_filter=0
	nsx client sysctl -qw net.ipv4.conf.c1.rp_filter=0
	ip -n "${LBT}-gwa" addr add 10.40.0.1/24 dev gc
	ip -n "${LBT}-gwb" addr add 10.41.0.1/24 dev gc
	ip -n "${LBT}-gwa" link add sy0 type veth peer name sy0 netns "${LBT}-gwb" || return 1
	ip -n "${LBT}-gwa" addr add 10.50.0.1/24 dev sy0
	ip -n "${LBT}-gwb" addr add 10.50.0.2/24 dev sy0
	for g in gwa gwb; do
		local lanif=ga
		[ "$g" = gwb ] && lanif=gb
		ip -n "${LBT}-$g" link set "$lanif" up
		ip -n "${LBT}-$g" link set gc up
		ip -n "${LBT}-$g" link set sy0 up
		nsx "$g" sysctl -qw net.ipv4.ip_forward=1
		nsx "$g" sysctl -qw net.ipv4.conf.all.rp_filter=0
		nsx "$g" sysctl -qw net.ipv4.conf.default.rp_filter=0
		nsx "$g" sysctl -qw net.ipv4.conf.all.send_redirects=0
		ip -n "${LBT}-$g" tuntap add dev "$LBT_TUN" mode tun multi_queue || return 1
		nsx "$g" sysctl -qw "net.ipv4.conf.$LBT_TUN.rp_filter=0"
		ip -n "${LBT}-$g" link set "$LBT_TUN" up
		ip -n "${LBT}-$g" route add "$LBT_VIP4/32" dev "$LBT_TUN"
		ip -n "${LBT}-$g" route add default dev "$LBT_TUN" table 100
		ip -n "${LBT}-$g" rule add iif "$lanif" from 10.20.1.0/24 lookup 100 pref 100
	done
	ip -n "${LBT}-gwb" route add 10.40.0.0/24 via 10.41.0.2
	lbt_log "pair topology up: client, gwa (master), gwb (backup), lan, s1..s$LBT_NSERVERS"
}

# start_gw ROLE CONF — lb-tun in namespace ROLE with its own control socket
# ($tmp/ROLE.sock) and log ($tmp/lb-tun-ROLE.log).
start_gw() {
	local role="$1" conf="$2" s="$tmp/$1.sock" pid
	pid=$(start_in_ns "$role" "lb-tun-$role" "$(lbt_bin lb-tun)" --tun "$LBT_TUN" --config "$conf" --control "$s")
	for _ in $(seq 1 250); do
		[ -S "$s" ] && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.02
	done
	cat "$tmp/lb-tun-$role.log" >&2
	return 1
}

scenario_failover() {
	LBT_NSERVERS=2
	have_hey || { echo "SKIP failover: needs hey (apt-get install hey)"; echo PASS; exit 0; }
	topo_pair_up || fail topo_pair_up
	start_servers || fail "servers did not start"
	local base="-A -t $LBT_VIP4:80 -s wrr
-a -t $LBT_VIP4:80 -r $(server_addr4 1):80 -m -w 2
-a -t $LBT_VIP4:80 -r $(server_addr4 2):80 -m -w 1"
	printf '%s\n--start-daemon master --mcast-interface sy0 --syncid 7\n' "$base" >"$tmp/a.conf"
	printf '%s\n--start-daemon backup --mcast-interface sy0 --syncid 7\n' "$base" >"$tmp/b.conf"
	start_gw gwa "$tmp/a.conf" || fail "master gateway did not start"
	start_gw gwb "$tmp/b.conf" || fail "backup gateway did not start"
	sock="$tmp/gwa.sock"
	lbadm -L --daemon | grep -q "^master sync daemon (mcast=sy0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)$" ||
		fail "master -L --daemon: $(lbadm -L --daemon)"
	local load="$(lbt_bin lb-demo-load)" h1 hey_pid listed n_a
	nsx client "$load" --hold --interval 0.2 --count 50 --timeout 5 "http://$LBT_VIP4/" >"$tmp/h1.out" &
	h1=$!
	nsx client hey -z 10s -q 20 -c 6 -t 5 "http://$LBT_VIP4/" >"$tmp/hey.txt" 2>&1 &
	hey_pid=$!
	# The master sends a connection at its third client packet; a partly filled message waits
	# at most 2 s.
	sleep 4
	n_a=$(lbadm -L -n -c | grep -c ESTABLISHED)
	sock="$tmp/gwb.sock"
	lbadm -L -n -c >"$tmp/b-before.txt"
	listed=$(grep -c ESTABLISHED "$tmp/b-before.txt")
	[ "$listed" -ge 7 ] || fail "the backup lists $listed ESTABLISHED entries (master: $n_a): $(cat "$tmp/b-before.txt"; lbadm --stats-gateway | grep sync)"
	ok "before the move the backup lists $listed of the master's $n_a established connections"
	# Failover: the client reaches the VIP through gwb, the servers answer through gwb.
	ip -n "${LBT}-client" route replace "$LBT_VIP4/32" via 10.41.0.1
	for i in 1 2; do ip -n "${LBT}-s$i" route replace default via 10.20.1.254; done
	ok "VIP and return route moved to the backup"
	carried_over "$h1" "$hey_pid" 50 "the failover" "the backup"
	[ "$(gwstat tun.rx_packets)" -gt 100 ] || fail "the backup carried no traffic after the move"
	ok "the backup carried $(gwstat tun.rx_packets) packets"
	ok "sync: $(lbadm --stats-gateway | grep '^sync\.' | xargs)"
}

# A UDP echo server (dual-stack, port 5300) that answers each datagram with itself, its
# first two bytes replaced by the server's name; and a client that sends N datagrams of SIZE
# bytes to VIP:53, each from a new socket (a new flow), optionally with an IPv6 Hop-by-Hop
# header (IPV6_HOPOPTS, a PadN option), and prints "<answered> <servers seen>".
write_udp_tools() {
	cat >"$tmp/udp_echo.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 5300))
name = sys.argv[1].encode()[:2]
while True:
    d, a = s.recvfrom(65535)
    s.sendto(name + d[2:], a)
PY
	cat >"$tmp/udp_ask.py" <<'PY'
import os, socket, sys
vip, n, size, hbh = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "hbh"
fam = socket.AF_INET6 if ":" in vip else socket.AF_INET
ok, servers = 0, set()
for i in range(n):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if hbh:
        # Next header (filled in by the kernel), length 0 (8 bytes), PadN of 4 bytes.
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_HOPOPTS, bytes([0, 0, 1, 4, 0, 0, 0, 0]))
    s.settimeout(2)
    d = os.urandom(size)
    s.sendto(d, (vip, 53))
    try:
        r, a = s.recvfrom(65535)
    except socket.timeout:
        continue
    finally:
        s.close()
    if len(r) == size and r[2:] == d[2:] and a[0] == vip:
        ok += 1
        servers.add(r[:2])
print(ok, len(servers))
PY
}

scenario_frag() {
	LBT_NSERVERS=2
	topo_up || fail topo_up
	command -v python3 >/dev/null || fail "python3 not found"
	write_udp_tools
	local i
	for i in 1 2; do
		start_in_ns "s$i" "udp-echo-$i" python3 "$tmp/udp_echo.py" "s$i" >/dev/null
	done
	cat >"$tmp/lb.conf" <<CONF
-A -u $LBT_VIP4:53 -s rr
-a -u $LBT_VIP4:53 -r $(server_addr4 1):5300 -m
-a -u $LBT_VIP4:53 -r $(server_addr4 2):5300 -m
-A -u [$LBT_VIP6]:53 -s rr
-a -u [$LBT_VIP6]:53 -r [$(server_addr6 1)]:5300 -m
-a -u [$LBT_VIP6]:53 -r [$(server_addr6 2)]:5300 -m
CONF
	start_gateway "$tmp/lb.conf" || fail "gateway did not start"
	sleep 0.5 # the echo servers bind
	local n=20 got before after
	for vip in "$LBT_VIP4" "$LBT_VIP6"; do
		before=$(gwstat fragments_forwarded)
		got=$(nsx client python3 "$tmp/udp_ask.py" "$vip" "$n" 4000 plain) || fail "client failed"
		after=$(gwstat fragments_forwarded)
		[ "$got" = "$n 2" ] || fail "$vip: 4,000-byte datagrams answered / servers: $got, want $n 2"
		# 4,000 bytes at MTU 1500: three fragments each way, two of them later fragments.
		[ $((after - before)) -ge $((4 * n)) ] || fail "$vip: $((after - before)) later fragments forwarded, want >= $((4 * n))"
		ok "$vip: $n datagrams of 4,000 bytes answered by both servers, fragmented both ways ($((after - before)) later fragments forwarded)"
	done
	for size in 100 4000; do
		got=$(nsx client python3 "$tmp/udp_ask.py" "$LBT_VIP6" 10 "$size" hbh) || fail "client failed"
		[ "${got%% *}" = 10 ] || fail "Hop-by-Hop client, $size bytes: $got answered of 10"
		ok "IPv6 client with a Hop-by-Hop header served ($size-byte datagrams)"
	done
	[ "$(gwstat drops.fragment)" = 0 ] || fail "fragments dropped: $(gwstat drops.fragment)"
	[ "$(gwstat drops.ipv6_extension_headers)" = 0 ] || fail "extension headers dropped"
}

# hey_count FILE — "OK ERRORS" from hey's summary: 200 responses, and errors (the requests
# hey reports under "Error distribution", plus any other status).
hey_count() {
	awk '
		/^Status code distribution:/ { s = 1; e = 0; next }
		/^Error distribution:/ { e = 1; s = 0; next }
		s && $1 ~ /^\[[0-9]+\]$/ { if ($1 == "[200]") ok += $2; else bad += $2; next }
		e && $1 ~ /^\[[0-9]+\]$/ { n = $1; gsub(/[][]/, "", n); bad += n; next }
		END { print ok + 0, bad + 0 }' "$1"
}

scenario_synflood() {
	LBT_NSERVERS=2
	have_hey || { echo "SKIP synflood: needs hey (apt-get install hey)"; echo PASS; exit 0; }
	local cap=20000 rate="${LBT_FLOOD_RATE:-8000}" secs="${LBT_FLOOD_SECS:-12}"
	local flood flood_pid ka_pid t0 full_at i conns good bad n=2000 sent
	topo_up || fail topo_up
	start_servers || fail "servers did not start"
	cat >"$tmp/lb.conf" <<CONF
-A -t $LBT_VIP4:80 -s rr
-a -t $LBT_VIP4:80 -r $(server_addr4 1):80 -m -w 1
-a -t $LBT_VIP4:80 -r $(server_addr4 2):80 -m -w 1
CONF
	# Default settings: only the table is small, so the flood fills it.
	start_gateway "$tmp/lb.conf" --conns "$cap" || fail "gateway did not start"
	# The spoofed sources' replies (the servers' SYN+ACKs, through the gateway) go to the
	# client namespace, which does not forward: they are dropped, as for hosts that never sent
	# the SYN. No reverse-path filter on the way in.
	ip -n "${LBT}-gw" route add 10.99.0.0/16 via "$LBT_CLIENT4" dev gc
	ip -n "${LBT}-gw" route add 10.98.7.0/24 via "$LBT_CLIENT4" dev gc
	nsx gw sysctl -qw net.ipv4.conf.gc.rp_filter=0
	flood="$(lbt_bin lb-demo-synflood)" || fail "lb-demo-synflood not built"

	# Keep-alive connections, opened before the flood and used all through it.
	nsx client hey -z "$((secs + 6))s" -c 4 -q 50 -t 5 "http://$LBT_VIP4/" >"$tmp/keepalive.txt" 2>&1 &
	ka_pid=$!
	sleep 1
	t0=$(date +%s.%N)
	nsx client "$flood" --target "$LBT_VIP4:80" --sources 10.99.0.0/16 --rate "$rate" \
		--seconds "$secs" >"$tmp/flood.txt" 2>&1 &
	flood_pid=$!
	full_at=""
	for i in $(seq 1 100); do
		conns=$(gwstat connections)
		if [ "${conns:-0}" -ge "$cap" ]; then
			full_at=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
			break
		fi
		sleep 0.1
	done
	[ -n "$full_at" ] || fail "the flood did not fill the table in 10 s (connections ${conns:-?} of $cap)"
	ok "the flood filled the table ($cap entries) after ${full_at} s"

	# New connections during the flood.
	nsx client hey -n "$n" -c 10 -disable-keepalive -t 5 "http://$LBT_VIP4/" >"$tmp/during.txt" 2>&1
	read -r good bad < <(hey_count "$tmp/during.txt")
	echo "during the flood: $good of $n new connections got 200, $bad failed; table $(gwstat connections)/$cap;" \
		"$(awk '$1 == "Average:" || $1 == "Slowest:" { printf "%s %.1f ms  ", $1, $2 * 1000 }' "$tmp/during.txt")"
	[ "$((good * 100))" -ge "$((n * 95))" ] || fail "only $good of $n new connections succeeded during the flood"
	kill -0 "$flood_pid" 2>/dev/null || fail "the flood ended before the run of new connections did (raise LBT_FLOOD_SECS)"
	ok "$good/$n new connections during the flood (>= 95 %)"

	wait "$flood_pid" || fail "lb-demo-synflood failed: $(cat "$tmp/flood.txt")"
	sent=$(awk '$1 == "sent" { print $2 }' "$tmp/flood.txt")
	echo "flood: $sent spoofed SYNs in ${secs} s"
	[ "${sent:-0}" -ge "$((rate * secs * 9 / 10))" ] || fail "the flood sent only ${sent:-0} SYNs"

	# New connections after it (the table is still full of its half-open entries).
	nsx client hey -n "$n" -c 10 -disable-keepalive -t 5 "http://$LBT_VIP4/" >"$tmp/after.txt" 2>&1
	read -r good bad < <(hey_count "$tmp/after.txt")
	echo "after the flood: $good of $n new connections got 200, $bad failed; table $(gwstat connections)/$cap"
	[ "$good" -eq "$n" ] || fail "$((n - good)) of $n new connections failed after the flood"
	ok "$n/$n new connections after the flood"

	# A flood from one /24: it may hold 10 % of the table (2,000) in half-open entries; the
	# rest of its SYNs are refused (drops.embryonic_prefix_limit), new connections still work.
	nsx client "$flood" --target "$LBT_VIP4:80" --sources 10.98.7.0/24 --rate 4000 \
		--seconds 3 >"$tmp/flood24.txt" 2>&1 &
	flood_pid=$!
	sleep 1
	nsx client hey -n 500 -c 10 -disable-keepalive -t 5 "http://$LBT_VIP4/" >"$tmp/during24.txt" 2>&1
	wait "$flood_pid" || fail "lb-demo-synflood failed: $(cat "$tmp/flood24.txt")"
	sent=$(awk '$1 == "sent" { print $2 }' "$tmp/flood24.txt")
	read -r good bad < <(hey_count "$tmp/during24.txt")
	local refused
	refused=$(gwstat drops.embryonic_prefix_limit)
	echo "one /24: $sent SYNs, $refused refused over its share; $good of 500 new connections got 200, $bad failed"
	[ "$((refused * 2))" -ge "${sent:-0}" ] || fail "only $refused of ${sent:-0} SYNs from one /24 refused"
	[ "$((good * 100))" -ge "$((500 * 95))" ] || fail "only $good of 500 new connections succeeded during the /24 flood"
	ok "one /24 held to its share ($refused SYNs refused), new connections unaffected"

	wait "$ka_pid"
	read -r good bad < <(hey_count "$tmp/keepalive.txt")
	echo "keep-alive: $good requests got 200 on 4 connections, $bad failed"
	[ "$good" -gt 0 ] && [ "$bad" -eq 0 ] || fail "keep-alive run: $good ok, $bad failed: $(cat "$tmp/keepalive.txt")"
	ok "the keep-alive connections saw no error through the flood"

	echo "--- gateway counters"
	lbadm --stats-gateway | grep -E '^(connections|conns_created|evictions|embryonic_evictions|syn_drops|drops\.(table_full|embryonic_prefix_limit)) '
	[ "$(gwstat embryonic_evictions)" -gt 0 ] || fail "no half-open entry was evicted"
	[ "$(gwstat drops.table_full)" -eq 0 ] || fail "$(gwstat drops.table_full) table_full drops"
	ok "half-open entries evicted ($(gwstat embryonic_evictions)), no table_full drop"
}

# health_loc NAME CODE — nginx NAME answers CODE on /health (from its next start or reload).
health_loc() {
	mkdir -p "$tmp/nginx-$1"
	echo "location = /health { return $2 \"health $2\\n\"; }" >"$tmp/nginx-$1/extra-health.conf"
}
nginx_signal() { nsx "$1" nginx -p "$tmp/nginx-$1" -c "$tmp/nginx-$1/nginx.conf" -s "$2" 2>/dev/null; }

# listed ADDR — whether -L -n lists real server ADDR.
listed() { lbadm -L -n | awk -v a="$1" '$1 == "->" && $2 == a { f = 1 } END { exit !f }'; }

# wait_listed ADDR yes|no T0_NS MAX_MS — wait until ADDR is (not) listed; echoes the ms since
# T0_NS (date +%s%N); fails after MAX_MS.
wait_listed() {
	local addr="$1" want="$2" t0="$3" max="$4" got ms
	while :; do
		if listed "$addr"; then got=yes; else got=no; fi
		ms=$((($(date +%s%N) - t0) / 1000000))
		[ "$got" = "$want" ] && { echo "$ms"; return 0; }
		[ "$ms" -gt "$max" ] && { echo "$ms"; return 1; }
		sleep 0.05
	done
}

# client_requests NAME — requests from the client that nginx NAME logged.
client_requests() { awk '$1 == "10.40.0.2"' "$tmp/$1.access.log" | wc -l; }

scenario_health() {
	LBT_NSERVERS=3
	topo_up || fail topo_up
	# The probe sources are routed into the TUN: the servers' answers to them come back there
	# (here the policy rule of the servers' replies already does; the routes say it for any
	# topology).
	ip -n "${LBT}-gw" route add 10.20.9.1/32 dev "$LBT_TUN"
	ip -n "${LBT}-gw" -6 route add fd00:99::1/128 dev "$LBT_TUN"
	health_loc s1 200
	health_loc s2 200
	start_servers || fail "servers did not start"
	local s1 s2 s1v6 sorry
	s1="$(server_addr4 1):80"
	s2="$(server_addr4 2):80"
	s1v6="[$(server_addr6 1)]:80"
	sorry="$(server_addr4 3):80"
	# delay_loop 1, connect_timeout 1, retry 1, delay_before_retry 1: a server that dies is
	# DOWN within delay_loop + (retry + 1) * connect_timeout + retry * delay_before_retry = 4 s
	# (docs/health-checks.md §2; a refused port takes about 2 s); a server back is UP within
	# delay_loop + (rise - 1) * delay_before_retry = 1 s. Slack for the loop and this polling: 1 s.
	local knobs="connect_timeout 1
            retry 1
            delay_before_retry 1"
	cat >"$tmp/keepalived.conf" <<CONF
virtual_server $LBT_VIP4 80 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    sorry_server $(server_addr4 3) 80
    real_server $(server_addr4 1) 80 {
        HTTP_GET {
            url { path /health }
            $knobs
        }
    }
    real_server $(server_addr4 2) 80 {
        HTTP_GET {
            url { path /health }
            $knobs
        }
    }
}
virtual_server $LBT_VIP6 80 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server $(server_addr6 1) 80 {
        TCP_CHECK {
            $knobs
        }
    }
    real_server $(server_addr6 2) 80 {
        TCP_CHECK {
            $knobs
        }
    }
}
CONF
	: >"$tmp/lb.conf"
	# Passive signals: 2 unanswered SYNs in a row, 0.5 s after the second, take a server DOWN.
	start_gateway "$tmp/lb.conf" --keepalived "$tmp/keepalived.conf" \
		--probe-source 10.20.9.1 --probe-source fd00:99::1 \
		--passive unanswered=2,syn-deadline=0.5,action=down || fail "gateway did not start"
	local down_max=5000 up_max=2000 i t0 ms
	for i in $(seq 60); do
		[ "$(lbadm --health | awk '$5 == "UP" && $7 == "ok"' | wc -l)" -eq 4 ] && break
		sleep 0.1
	done
	[ "$(lbadm --health | awk '$5 == "UP" && $7 == "ok"' | wc -l)" -eq 4 ] || fail "want 4 checks UP with a passed probe: $(lbadm --health)"
	grep -q '^10.20.9.1 [0-9]* 200$' "$tmp/s1.access.log" || fail "no probe from 10.20.9.1 in s1's log"
	ok "4 checks UP after the warm-up (HTTP_GET from 10.20.9.1, TCP_CHECK from fd00:99::1)"
	lbadm --health

	# Continuous load through the whole scenario (requests to a server between its death and
	# its detection may fail; the checks below run their own load after each detection).
	nsx client hey -z 30s -q 20 -c 4 -disable-keepalive -t 3 "http://$LBT_VIP4/" >"$tmp/hey.txt" 2>&1 &
	local hey_pid=$!
	sleep 1

	# 1. s1's nginx stops: the port refuses; s1 leaves both services within the bound.
	t0=$(date +%s%N)
	nginx_signal s1 stop
	ms=$(wait_listed "$s1" no "$t0" "$down_max") || fail "$s1 still listed ${ms} ms after its nginx stopped: $(lbadm --health)"
	ok "$s1 left scheduling ${ms} ms after its nginx stopped (bound 4 s + 1 s)"
	ms=$(wait_listed "$s1v6" no "$t0" "$down_max") || fail "$s1v6 still listed ${ms} ms after its nginx stopped"
	ok "$s1v6 (TCP_CHECK) left scheduling ${ms} ms after"
	# Refused: by the active probe, or by the passive signal (3 refused SYNs) if the load got
	# there first.
	lbadm --health | grep "$s1 " | grep -Eq "DOWN.*(connect refused|passive: [0-9]+ SYNs refused)" || fail "--health: $(lbadm --health)"
	load_run "http://$LBT_VIP4/" 200 4 "$tmp/after1.csv" || fail "load after s1 down"
	all_ok "$tmp/after1.csv" 200
	ok "200/200 requests started after the detection got 200"

	# 2. s1 comes back (rise), s2's health URL answers 404 (removed with reason HTTP 404).
	start_nginx s1 "$(server_addr4 1)" s1 "$(server_addr6 1)"
	wait_http s1 "http://$(server_addr4 1)/" || fail "s1 did not restart"
	t0=$(date +%s%N)
	health_loc s2 404
	nginx_signal s2 reload
	ms=$(wait_listed "$s1" yes "$t0" "$up_max") || fail "$s1 not back ${ms} ms after its nginx answered: $(lbadm --health)"
	ok "$s1 back in scheduling ${ms} ms after its nginx answered (bound 1 s + 1 s)"
	ms=$(wait_listed "$s2" no "$t0" "$down_max") || fail "$s2 still listed ${ms} ms after /health turned 404: $(lbadm --health)"
	ok "$s2 left scheduling ${ms} ms after its /health turned 404"
	lbadm --health | grep "$s2 " | grep -q "DOWN.*HTTP 404" || fail "--health: $(lbadm --health)"
	lbadm --health | grep "$s1 " | grep -q "UP.*check passed" || fail "--health: $(lbadm --health)"
	listed "$s1v6" || fail "$s1v6 not back (TCP_CHECK)"
	local before
	before=$(client_requests s2)
	load_run "http://$LBT_VIP4/" 200 4 "$tmp/after2.csv" || fail "load after s2 down"
	all_ok "$tmp/after2.csv" 200
	[ "$(client_requests s2)" -eq "$before" ] || fail "requests reached $s2 after it was removed"
	ok "200/200 requests got 200, none reached $s2"
	lbadm --health
	sleep 1.1
	metrics >"$tmp/metrics.txt"
	grep -q "^lbtun_real_server_up{local_address=\"$LBT_VIP4\",local_mark=\"\",local_port=\"80\",proto=\"TCP\",remote_address=\"$(server_addr4 2)\",remote_port=\"80\"} 0$" "$tmp/metrics.txt" ||
		fail "lbtun_real_server_up of s2: $(grep real_server_up "$tmp/metrics.txt")"
	grep -q "^lbtun_health_checks_total{.*remote_address=\"$(server_addr4 2)\",remote_port=\"80\",result=\"http_status\"} [1-9]" "$tmp/metrics.txt" ||
		fail "lbtun_health_checks_total of s2: $(grep checks_total "$tmp/metrics.txt")"
	if command -v promtool >/dev/null 2>&1; then
		promtool check metrics <"$tmp/metrics.txt" || fail "promtool check metrics"
	fi
	ok "metrics: s2 down (lbtun_real_server_up 0, http_status results counted)"

	# 3. Both down: the quorum is lost and the sorry server serves.
	t0=$(date +%s%N)
	nginx_signal s1 stop
	ms=$(wait_listed "$sorry" yes "$t0" "$down_max") || fail "sorry server not listed ${ms} ms after s1 stopped: $(lbadm -L -n)"
	ok "sorry server $sorry in ${ms} ms once both were down"
	before=$(client_requests s3)
	load_run "http://$LBT_VIP4/" 100 4 "$tmp/sorry.csv" || fail "load to the sorry server"
	all_ok "$tmp/sorry.csv" 100
	# (the background load reaches it too)
	[ "$(client_requests s3)" -ge $((before + 100)) ] || fail "the sorry server did not serve the 100 requests"
	ok "100/100 requests served by the sorry server"
	kill "$hey_pid" 2>/dev/null
	wait "$hey_pid" 2>/dev/null

	# 4. A server that drops SYNs silently is caught by the passive signal before the active
	# checker could (its fastest: 2 connect_timeouts + delay_before_retry = 3 s), and clients
	# whose SYN it dropped are answered after one retransmission (rescheduled to s1).
	start_nginx s1 "$(server_addr4 1)" s1 "$(server_addr6 1)"
	wait_http s1 "http://$(server_addr4 1)/" || fail "s1 did not restart"
	health_loc s2 200
	nginx_signal s2 reload
	t0=$(date +%s%N)
	wait_listed "$s1" yes "$t0" 4000 >/dev/null || fail "$s1 not back: $(lbadm --health)"
	wait_listed "$s2" yes "$t0" 4000 >/dev/null || fail "$s2 not back: $(lbadm --health)"
	wait_listed "$sorry" no "$t0" 4000 >/dev/null || fail "the sorry server is still listed"
	ok "both servers back, the sorry server gone"
	if ! command -v iptables >/dev/null 2>&1; then
		echo "skip: the silent-server case needs iptables (apt-get install iptables)"
		return
	fi
	nsx s2 iptables -A INPUT -p tcp --dport 80 -j DROP || fail "iptables in s2"
	t0=$(date +%s%N)
	load_run "http://$LBT_VIP4/" 60 3 "$tmp/silent.csv" &
	local load_pid=$!
	ms=$(wait_listed "$s2" no "$t0" 2900) || fail "$s2 (dropping SYNs) still listed ${ms} ms later: $(lbadm --health)"
	wait "$load_pid" || fail "load during the silent server"
	lbadm --health | grep "$s2 " | grep -q "DOWN.*passive: [0-9]* SYNs unanswered" || fail "--health: $(lbadm --health)"
	ok "$s2 dropping SYNs left scheduling ${ms} ms after, by the passive signal ($(lbadm --health | grep "$s2 " | sed 's/.*  //'))"
	all_ok "$tmp/silent.csv" 60
	local slowest retried
	slowest=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next } { if ($c["response-time"] > m) m = $c["response-time"] } END { printf "%.2f", m }' "$tmp/silent.csv")
	retried=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next } $c["response-time"] >= 0.9' "$tmp/silent.csv" | wc -l)
	awk -v m="$slowest" 'BEGIN { exit !(m < 2.5) }' || fail "the slowest request took ${slowest} s: more than one SYN retransmission"
	ok "60/60 requests got 200; $retried waited for one SYN retransmission, the slowest ${slowest} s"
	nsx s2 iptables -D INPUT -p tcp --dport 80 -j DROP
	t0=$(date +%s%N)
	ms=$(wait_listed "$s2" yes "$t0" 3000) || fail "$s2 not back ${ms} ms after it answered again"
	ok "$s2 back ${ms} ms after it answered again (the active checker brings it back)"
	grep -q "health checkers parsed but not run" "$tmp/lb-tun.log" && fail "the not-run warning is still logged"
	grep -E "is (UP|DOWN)|quorum" "$tmp/lb-tun.log" | sed 's/^/  log: /'
}

# The dr scenario's segment: everything on one bridge in the gw namespace, whose kernel only
# bridges (br0 and the TAP carry no address of the host; lb-tun is the director on the TAP).
#
#   client c0 10.50.0.1/24 fd00:50::1/64 ──┐
#   s1 eth0 10.50.0.11/24 fd00:50::11/64 ──┤ br0 (gw ns) ── lt0 (TAP) ── lb-tun 10.50.0.2/24,
#           10.51.0.11/24 (NAT)            │                            10.51.0.2/24, fd00:50::2/64
#   s2 eth0 10.50.0.12/24 fd00:50::12/64 ──┘
#           10.51.0.12/24 (NAT)
#
# The client is on the segment, not routed: DR replies go from the real server to the client
# by the server's own on-link route, which no router in between could divert through the
# director. The NAT addresses (10.51.0.0/24) answer through lb-tun by policy routing (from
# 10.51.0.X, default via 10.51.0.2), as a real server in both methods is set up.
DR_VIP4=10.50.0.100
DR_VIP6=fd00:50::100
dr_server4() { echo "10.50.0.$((10 + $1))"; }
dr_server6() { echo "fd00:50::$((10 + $1))"; }
dr_nat4() { echo "10.51.0.$((10 + $1))"; }

topo_dr_up() {
	local ns i s
	lbt_tmpdir >/dev/null
	for ns in client gw s1 s2; do
		ip netns add "${LBT}-$ns" || return 1
		ip -n "${LBT}-$ns" link set lo up
	done
	nsx gw sysctl -qw net.ipv6.conf.all.disable_ipv6=1
	nsx gw sysctl -qw net.ipv6.conf.default.disable_ipv6=1
	# No multicast snooping: lb-tun joins no group, and neighbour solicitations for the VIP
	# go to a solicited-node group.
	ip -n "${LBT}-gw" link add br0 type bridge mcast_snooping 0 || return 1
	ip -n "${LBT}-gw" link set br0 up
	ip -n "${LBT}-gw" tuntap add dev lt0 mode tap || return 1
	ip -n "${LBT}-gw" link set lt0 master br0
	ip -n "${LBT}-gw" link set lt0 up
	ip -n "${LBT}-client" link add c0 type veth peer name gc netns "${LBT}-gw" || return 1
	ip -n "${LBT}-client" addr add 10.50.0.1/24 dev c0
	ip -n "${LBT}-client" addr add fd00:50::1/64 dev c0 nodad
	ip -n "${LBT}-client" link set c0 up
	ip -n "${LBT}-gw" link set gc master br0
	ip -n "${LBT}-gw" link set gc up
	for i in 1 2; do
		s="${LBT}-s$i"
		ip -n "$s" link add eth0 type veth peer name "gs$i" netns "${LBT}-gw" || return 1
		ip -n "${LBT}-gw" link set "gs$i" master br0
		ip -n "${LBT}-gw" link set "gs$i" up
		ip -n "$s" addr add "$(dr_server4 "$i")/24" dev eth0
		ip -n "$s" addr add "$(dr_nat4 "$i")/24" dev eth0
		ip -n "$s" addr add "$(dr_server6 "$i")/64" dev eth0 nodad
		ip -n "$s" link set eth0 up
		# The real server as the kernel's IPVS selftests and the ipvsadm documentation set it
		# up for DR: the VIP on lo, never answered or announced on eth0, no reverse-path filter.
		ip -n "$s" addr add "$DR_VIP4/32" dev lo
		ip -n "$s" addr add "$DR_VIP6/128" dev lo nodad
		nsx "s$i" sysctl -qw net.ipv4.conf.all.arp_ignore=1
		nsx "s$i" sysctl -qw net.ipv4.conf.all.arp_announce=2
		nsx "s$i" sysctl -qw net.ipv4.conf.eth0.arp_ignore=1
		nsx "s$i" sysctl -qw net.ipv4.conf.eth0.arp_announce=2
		nsx "s$i" sysctl -qw net.ipv4.conf.all.rp_filter=0
		nsx "s$i" sysctl -qw net.ipv4.conf.default.rp_filter=0
		nsx "s$i" sysctl -qw net.ipv4.conf.eth0.rp_filter=0
		nsx "s$i" sysctl -qw net.ipv4.conf.lo.rp_filter=0
		# NAT replies (from the NAT address) go back through the director.
		ip -n "$s" route add default via 10.51.0.2 table 51
		ip -n "$s" rule add from "$(dr_nat4 "$i")" lookup 51 pref 51
	done
	lbt_log "topology up: client, s1, s2 and TAP lt0 on br0 in ${LBT}-gw"
}

# dr_stats ADDR:PORT — Conns InPkts OutPkts of that real server (lbadm -L -n --stats --exact).
dr_stats() { lbadm -L -n --stats --exact | awk -v a="$1" '$1 == "->" && $2 == a { print $3, $4, $5 }'; }

scenario_dr() {
	topo_dr_up || fail topo_dr_up
	local i
	for i in 1 2; do
		# nginx on every address (the VIP on lo included), IPv4 and IPv6.
		start_nginx "s$i" 0.0.0.0 "s$i" "::"
		if command -v socat >/dev/null 2>&1; then
			eval "socat_s$i=\$(start_in_ns s$i socat-s$i socat TCP-LISTEN:5001,reuseaddr,fork EXEC:cat)"
		fi
	done
	for i in 1 2; do wait_http "s$i" "http://$(dr_server4 "$i")/" || fail "s$i did not start"; done
	# conn_reuse_mode 2: a SYN that reuses the port of a connection whose FIN the director saw
	# (FIN_WAIT: it never sees the server's) is scheduled afresh, as the sysctl's documentation
	# advises for DR; with the default 1 it would stick to its former server (some hundred of
	# 4,000 random client ports repeat) and the split would be off by those.
	cat >"$tmp/lb.conf" <<CONF
--conn-reuse-mode 2
-A -t $DR_VIP4:80 -s wrr
-a -t $DR_VIP4:80 -r $(dr_server4 1):80 -g -w 3
-a -t $DR_VIP4:80 -r $(dr_server4 2):80 -g -w 1
-A -t [$DR_VIP6]:80 -s rr
-a -t [$DR_VIP6]:80 -r [$(dr_server6 1)]:80 -g -w 1
-a -t [$DR_VIP6]:80 -r [$(dr_server6 2)]:80 -g -w 1
-A -t $DR_VIP4:8080 -s rr
-a -t $DR_VIP4:8080 -r $(dr_nat4 1):80 -m -w 1
-a -t $DR_VIP4:8080 -r $(dr_nat4 2):80 -m -w 1
CONF
	# The echo service (5001) from a keepalived.conf, TCP_CHECK on both DR servers from the
	# probe source 10.50.0.3, which lb-tun answers ARP for on the segment.
	cat >"$tmp/keepalived.conf" <<CONF
virtual_server $DR_VIP4 5001 {
    delay_loop 1
    lb_algo rr
    lb_kind DR
    protocol TCP
    real_server $(dr_server4 1) 5001 {
        TCP_CHECK {
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }
    }
    real_server $(dr_server4 2) 5001 {
        TCP_CHECK {
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }
    }
}
CONF
	LBT_GW_PID=$(start_in_ns gw lb-tun "$(lbt_bin lb-tun)" --tap lt0 --address 10.50.0.2/24 \
		--address 10.51.0.2/24 --address fd00:50::2/64 --config "$tmp/lb.conf" \
		--keepalived "$tmp/keepalived.conf" --probe-source 10.50.0.3 --control "$sock" \
		--metrics 127.0.0.1:9100)
	for _ in $(seq 1 250); do
		[ -S "$sock" ] && break
		kill -0 "$LBT_GW_PID" 2>/dev/null || break
		sleep 0.02
	done
	[ -S "$sock" ] || fail "lb-tun did not start: $(cat "$tmp/lb-tun.log")"
	ok "lb-tun on TAP lt0: $(grep -o 'hardware address [^,]*' "$tmp/lb-tun.log")"
	nsx gw tcpdump -i lt0 -nn -U -w "$tmp/lt0.pcap" "tcp and (host $DR_VIP4 or host $DR_VIP6)" \
		>"$tmp/tcpdump.log" 2>&1 &
	local tcpdump_pid=$!
	sleep 0.5

	# 1. socat: 4 MB echoed by a real server through the VIP, the same bytes both ways.
	if command -v socat >/dev/null 2>&1; then
		head -c 4194304 /dev/urandom >"$tmp/blob"
		nsx client socat -t 10 -T 20 "TCP:$DR_VIP4:5001" "OPEN:$tmp/blob,rdonly!!CREATE:$tmp/echo" ||
			fail "socat through $DR_VIP4:5001"
		local want got
		want=$(sha256sum <"$tmp/blob" | cut -c1-64)
		got=$(sha256sum <"$tmp/echo" | cut -c1-64)
		[ "$want" = "$got" ] || fail "socat echo: sent $want, got back $got ($(wc -c <"$tmp/echo") bytes)"
		ok "socat: 4194304 bytes to $DR_VIP4:5001 and back from a real server, sha256 $want both ways"
	else
		echo "skip: the socat transfer needs socat (apt-get install socat)"
	fi

	# 2. hey over wrr 3:1: every request 200, the split 3:1, replies straight to the client.
	local n=4000 s1 s2
	load_run "http://$DR_VIP4/" "$n" 20 "$tmp/v4.csv" || fail "load v4"
	all_ok "$tmp/v4.csv" "$n"
	ok "$n/$n requests to $DR_VIP4 got 200 (hey, no keep-alive)"
	csv_summary "$tmp/v4.csv" "$n" | sed 's/^/   /'
	s1=$(awk '$1 == "10.50.0.1"' "$tmp/s1.access.log" | wc -l)
	s2=$(awk '$1 == "10.50.0.1"' "$tmp/s2.access.log" | wc -l)
	[ "$s1" -eq 3000 ] && [ "$s2" -eq 1000 ] || fail "split s1 $s1 s2 $s2, want 3000 and 1000 (wrr 3:1)"
	ok "split s1 $s1 s2 $s2 (wrr 3:1), each logged with the client's own address"
	local st1 st2
	st1=$(dr_stats "$(dr_server4 1):80")
	st2=$(dr_stats "$(dr_server4 2):80")
	set -- $st1
	[ "$1" -eq 3000 ] && [ "$2" -gt 0 ] && [ "$3" -eq 0 ] || fail "s1 Conns InPkts OutPkts: $st1"
	set -- $st2
	[ "$1" -eq 1000 ] && [ "$2" -gt 0 ] && [ "$3" -eq 0 ] || fail "s2 Conns InPkts OutPkts: $st2"
	ok "lbadm -L --stats: s1 Conns InPkts OutPkts $st1, s2 $st2: no reply passed the director"

	# 3. IPv6: neighbour discovery for the VIP answered by lb-tun, DR to the servers' MACs.
	load_run "http://[$DR_VIP6]/" 200 10 "$tmp/v6.csv" || fail "load v6"
	all_ok "$tmp/v6.csv" 200
	s1=$(awk '$1 == "fd00:50::1"' "$tmp/s1.access.log" | wc -l)
	s2=$(awk '$1 == "fd00:50::1"' "$tmp/s2.access.log" | wc -l)
	[ "$s1" -eq 100 ] && [ "$s2" -eq 100 ] || fail "IPv6 split s1 $s1 s2 $s2, want 100 each (rr)"
	set -- $(dr_stats "[$(dr_server6 1)]:80")
	[ "${3:-x}" = 0 ] || fail "IPv6 s1 OutPkts ${3:-missing}"
	ok "200/200 requests to [$DR_VIP6] got 200, 100 on each server, OutPkts 0"

	# 4. NAT on the same TAP gateway: the servers' NAT addresses, replies through lb-tun.
	load_run "http://$DR_VIP4:8080/" 400 10 "$tmp/nat.csv" || fail "load NAT"
	all_ok "$tmp/nat.csv" 400
	set -- $(dr_stats "$(dr_nat4 1):80")
	[ "${1:-0}" -eq 200 ] && [ "${3:-0}" -gt 0 ] || fail "NAT s1 Conns InPkts OutPkts: $*"
	ok "NAT: 400/400 requests to $DR_VIP4:8080 got 200; s1 Conns InPkts OutPkts $* (replies through lb-tun)"

	# 5. What crossed the TAP, by port: the DR services (5001, 80) one way, NAT (8080) both.
	sleep 0.5
	kill "$tcpdump_pid" 2>/dev/null
	wait "$tcpdump_pid" 2>/dev/null
	grep -q "listening on lt0" "$tmp/tcpdump.log" || fail "tcpdump on lt0 did not run: $(cat "$tmp/tcpdump.log")"
	local to from nat_back
	pcap_count() { tcpdump -nn -r "$tmp/lt0.pcap" "$1" 2>/dev/null | wc -l; }
	# A DR reply comes from the VIP's port (the server answers as the VIP). The client's
	# packets to the VIP cross lt0 twice (to lb-tun, then from it to the server's MAC).
	to=$(pcap_count "dst port 80 or dst port 5001")
	from=$(pcap_count "src port 80 or src port 5001")
	nat_back=$(pcap_count "src port 8080")
	# The NAT replies (from the VIP's 8080 after lb-tun's rewrite) show the capture sees
	# that direction when it happens.
	[ "$to" -gt 0 ] && [ "$nat_back" -gt 0 ] || fail "tcpdump on lt0 is blind: to DR $to, NAT replies $nat_back"
	[ "$from" -eq 0 ] || fail "$from server->client DR packets reached the TAP: $(tcpdump -nn -r "$tmp/lt0.pcap" "src port 80 or src port 5001" 2>/dev/null | head -3)"
	ok "tcpdump on lt0: DR (socat, hey v4 and v6) $to client->server packets, 0 server->client; NAT $nat_back replies through lb-tun"

	# 6. Health checks over the TAP: both echo servers UP by TCP_CHECK from the probe source;
	# one whose socat stops leaves the service (DOWN within 4 s, as in the health scenario).
	if command -v socat >/dev/null 2>&1; then
		local e1 e2 t0 ms
		e1="$(dr_server4 1):5001" e2="$(dr_server4 2):5001"
		# "UP  nP ok": the last n probes passed, so the probes and their answers crossed the TAP.
		lbadm --health | grep "$e1 " | grep -Eq 'UP +[1-9][0-9]*P ok' || fail "--health: $(lbadm --health)"
		lbadm --health | grep "$e2 " | grep -Eq 'UP +[1-9][0-9]*P ok' || fail "--health: $(lbadm --health)"
		# shellcheck disable=SC2154
		kill "$socat_s2"
		t0=$(date +%s%N)
		ms=$(wait_listed "$e2" no "$t0" 5000) || fail "$e2 still listed ${ms} ms after its socat stopped: $(lbadm --health)"
		lbadm --health | grep "$e2 " | grep -q DOWN || fail "--health: $(lbadm --health)"
		listed "$e1" || fail "$e1 left the service too"
		ok "health over the TAP: TCP_CHECK from 10.50.0.3 had both echo servers UP; $e2 left ${ms} ms after its socat stopped"
	fi

	# 7. The metrics, as on a TUN device.
	sleep 1.1
	nsx gw bash -c 'exec 3<>/dev/tcp/127.0.0.1/9100 && printf "GET /metrics HTTP/1.0\r\n\r\n" >&3 && cat <&3' |
		tr -d '\r' | awk 'body { print } /^$/ { body = 1 }' >"$tmp/metrics.txt"
	local conns=4600 out nat_out
	command -v socat >/dev/null 2>&1 && conns=4601
	grep -q "^node_ipvs_connections_total $conns$" "$tmp/metrics.txt" ||
		fail "metrics: $(grep '^node_ipvs_connections_total' "$tmp/metrics.txt"), want $conns"
	# Outgoing packets (server -> client through the director): the NAT service's only.
	out=$(awk '$1 == "node_ipvs_outgoing_packets_total" { print $2 }' "$tmp/metrics.txt")
	nat_out=$(($(dr_stats "$(dr_nat4 1):80" | cut -d' ' -f3) + $(dr_stats "$(dr_nat4 2):80" | cut -d' ' -f3)))
	[ "${out:-x}" = "$nat_out" ] || fail "node_ipvs_outgoing_packets_total ${out:-missing}, the NAT servers' OutPkts $nat_out"
	ok "metrics on the TAP gateway: node_ipvs_connections_total $conns, outgoing packets $out (all NAT)"

	lbadm --stats-gateway | grep -E '^tap\.(arp_answers|ndp_answers|requests_sent|held|rx_ignored|tx_errors|no_route|loop_drops) ' | xargs echo "  "
	[ "$(gwstat tap.tx_errors)" = 0 ] || fail "tap.tx_errors $(gwstat tap.tx_errors)"
}

# http_body VIP — the body of GET / from the client (one connection, 5 s at most).
http_body() {
	local host="$1"
	nsx client timeout 5 bash -c "exec 3<>/dev/tcp/$host/80 && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && cat <&3" 2>/dev/null |
		tr -d '\r' | tail -n 1
}

# decap_stat NAME — a counter lb-decap printed on exit (the last block of its log).
decap_stat() { awk -v k="$1" '$1 == k { v = $2 } END { print v + 0 }' "$tmp/lb-decap.log"; }

# send_damaged SERVER — from gw: an IPIP packet whose inner packet is cut (20 bytes announcing
# 40) and a GRE packet with a wrong checksum. Not a valid tunnel packet either way.
send_damaged() {
	nsx gw python3 -c '
import socket, struct, sys
ipip = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
ipip.sendto(bytes([0x45, 0, 0, 40]) + bytes(16), (sys.argv[1], 0))
gre = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
gre.sendto(struct.pack("!HHHH", 0x8000, 0x0800, 0x1234, 0) + bytes([0x45, 0, 0, 20]) + bytes(16), (sys.argv[1], 0))
' "$1"
}

# proto_unreachables SERVER — send_damaged to SERVER; how many ICMP "protocol unreachable"
# came back to gw within a second.
proto_unreachables() {
	nsx gw timeout 1.5 tcpdump -lni br0 'icmp[0] == 3 and icmp[1] == 2' >"$tmp/icmp.txt" 2>/dev/null &
	local pid=$!
	sleep 0.5
	send_damaged "$1"
	wait "$pid"
	grep -c 'protocol [0-9]* unreachable' "$tmp/icmp.txt"
}

scenario_decap() {
	LBT_NSERVERS=1
	topo_up || fail topo_up
	command -v python3 >/dev/null || fail "python3 not found"
	command -v tcpdump >/dev/null || fail "tcpdump not found"
	write_udp_tools
	local s1 s16 decap n
	s1=$(server_addr4 1)
	s16=$(server_addr6 1)
	decap="$(lbt_bin lb-decap)" || fail "lb-decap not built"
	# The real server: the VIPs on lo, no reverse-path filter (the inner packets arrive on
	# the TUN device from clients routed via eth0), ARP answered for its own addresses only.
	nsx s1 ip addr add "$LBT_VIP4/32" dev lo
	nsx s1 ip -6 addr add "$LBT_VIP6/128" dev lo
	nsx s1 sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
		net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
	n=$(proto_unreachables "$s1")
	[ "$n" = 2 ] || fail "without lb-decap: $n ICMP protocol unreachable for IPIP and GRE, want 2"
	ok "without lb-decap s1's kernel answers IPIP and GRE with protocol unreachable (no tunnel module)"

	local cap
	cap=$(start_in_ns s1 tcpdump-s1 tcpdump --immediate-mode -Uni eth0 -w "$tmp/s1.pcap")
	local dpid
	dpid=$(start_in_ns s1 lb-decap "$decap" --tun dc0 --gue-port 6080 --ipip --gre)
	for _ in $(seq 1 50); do
		nsx s1 ip link show dc0 2>/dev/null | grep -q ',UP' && break
		sleep 0.1
	done
	nsx s1 ip link show dc0 | grep -q ',UP' || fail "lb-decap did not bring dc0 up: $(cat "$tmp/lb-decap.log")"
	start_nginx s1 "$LBT_VIP4" s1 "$LBT_VIP6"
	cat >"$tmp/vip_echo.py" <<'PY'
import socket, sys, threading
def serve(fam, addr):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((addr, 53))
    while True:
        d, a = s.recvfrom(65535)
        s.sendto(b"s1" + d[2:], a)
threading.Thread(target=serve, args=(socket.AF_INET6, sys.argv[2]), daemon=True).start()
serve(socket.AF_INET, sys.argv[1])
PY
	start_in_ns s1 vip-echo python3 "$tmp/vip_echo.py" "$LBT_VIP4" "$LBT_VIP6" >/dev/null
	wait_http s1 "http://$LBT_VIP4/" || fail "nginx on the VIP did not start"
	n=$(proto_unreachables "$s1")
	[ "$n" = 0 ] || fail "with lb-decap: $n ICMP protocol unreachable, want 0"
	ok "with lb-decap's raw sockets bound, no protocol unreachable"

	local cfg kind outer pid body vip got
	for cfg in "ipip $s1" "ipip $s16" "gre $s1" "gre-csum $s1" "gre-csum $s16" \
		"gue $s1" "gue-csum $s1" "gue-csum $s16" "gue-remcsum $s1" "gue-remcsum $s16"; do
		read -r kind outer <<<"$cfg"
		pid=$(start_in_ns gw "encap-$kind-$outer" python3 "$LBT_REPO/scripts/tun-encap.py" \
			"$LBT_TUN" "$kind" "$outer" "$LBT_VIP4" "$LBT_VIP6")
		sleep 0.3
		for vip in "$LBT_VIP4" "$LBT_VIP6"; do
			body=$(http_body "$vip")
			[ "$body" = s1 ] || fail "$kind to $outer: GET http://$vip/ gave '$body', want s1 ($(tail -n 3 "$tmp/encap-$kind-$outer.log"))"
			got=$(nsx client python3 "$tmp/udp_ask.py" "$vip" 5 300 plain) || fail "UDP client failed"
			[ "$got" = "5 1" ] || fail "$kind to $outer: UDP to $vip answered/servers $got, want 5 1"
		done
		kill "$pid" 2>/dev/null
		ok "$kind over IPv$(case $outer in *:*) echo 6 ;; *) echo 4 ;; esac): HTTP and UDP to both VIPs answered"
	done
	kill "$dpid" "$cap" 2>/dev/null
	for _ in $(seq 1 50); do
		kill -0 "$dpid" 2>/dev/null || kill -0 "$cap" 2>/dev/null || break
		sleep 0.1
	done
	sed 's/^/  lb-decap: /' "$tmp/lb-decap.log" | grep -v ' 0$'

	# The replies left s1 on eth0 unencapsulated, from the VIP to the client: every UDP answer
	# (10 tunnels x 5 per VIP) and the TCP segments.
	local udp4 udp6 tcp4 tcp6 tunnelled
	pcap_count() { tcpdump -nr "$tmp/s1.pcap" "$1" 2>/dev/null | wc -l; }
	udp4=$(pcap_count "udp and src host $LBT_VIP4 and dst host $LBT_CLIENT4")
	udp6=$(pcap_count "udp and src host $LBT_VIP6 and dst host $LBT_CLIENT6")
	tcp4=$(pcap_count "tcp and src host $LBT_VIP4 and dst host $LBT_CLIENT4")
	tcp6=$(pcap_count "tcp and src host $LBT_VIP6 and dst host $LBT_CLIENT6")
	tunnelled=$(pcap_count "(src host $s1 or src host $s16) and (ip proto 4 or ip proto 47 or ip6 proto 4 or ip6 proto 41 or ip6 proto 47 or udp port 6080)")
	[ "$udp4" = 50 ] && [ "$udp6" = 50 ] || fail "UDP answers from the VIPs on s1's eth0: $udp4 IPv4, $udp6 IPv6, want 50 each"
	[ "$tcp4" -ge 30 ] && [ "$tcp6" -ge 30 ] || fail "TCP segments from the VIPs on s1's eth0: $tcp4 IPv4, $tcp6 IPv6, want >= 30 each"
	[ "$tunnelled" = 0 ] || fail "$tunnelled tunnelled packets sent by s1"
	ok "replies straight from s1 to the client: $udp4 + $tcp4 IPv4 and $udp6 + $tcp6 IPv6 packets from the VIPs, none tunnelled"

	local k
	for k in decoded_ipip decoded_gre decoded_gue remcsum; do
		[ "$(decap_stat "$k")" -gt 0 ] || fail "lb-decap counted no $k"
	done
	[ "$(decap_stat drop_inner_length)" = 1 ] || fail "drop_inner_length $(decap_stat drop_inner_length), want 1 (the cut IPIP packet)"
	[ "$(decap_stat drop_gre_checksum)" = 1 ] || fail "drop_gre_checksum $(decap_stat drop_gre_checksum), want 1"
	local dropped decoded
	dropped=$(awk '$1 ~ /^drop_/ { t += $2 } END { print t + 0 }' "$tmp/lb-decap.log")
	decoded=$(($(decap_stat decoded_ipip) + $(decap_stat decoded_gre) + $(decap_stat decoded_gue)))
	[ "$dropped" = 2 ] || fail "lb-decap dropped $dropped packets, want the 2 damaged ones"
	[ "$(decap_stat tx)" = "$decoded" ] && [ "$(decap_stat tx_errors)" = 0 ] ||
		fail "tx $(decap_stat tx) tx_errors $(decap_stat tx_errors) for $decoded decoded"
	ok "lb-decap: $decoded packets decoded and written to the TUN device, the 2 damaged ones counted by reason"
}

# tunnel_server I — real server I for tunnels, whatever takes the outer headers off: the VIPs
# on lo, no reverse-path filter, ARP for its own addresses only, nginx on the VIPs, a TCP echo
# on VIP4:9000 and [VIP6]:9000 (python3: socat's PIPE echo can deadlock on its own pipe when
# the echo falls behind, a blocking write of 8 KiB into a pipe with less room that only it reads).
tunnel_server() {
	local role="s$1"
	# One copy per server: rewriting a shared file while the other server's python3 still
	# reads it left that server without an echo (a truncated script).
	cat >"$tmp/tcp_echo-$role.py" <<'PY'
import socket, sys, threading
def echo(c):
    with c:
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
        c.shutdown(socket.SHUT_WR)
def serve(fam, addr):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 9000))
    s.listen(16)
    while True:
        threading.Thread(target=echo, args=(s.accept()[0],), daemon=True).start()
threading.Thread(target=serve, args=(socket.AF_INET6, sys.argv[2]), daemon=True).start()
serve(socket.AF_INET, sys.argv[1])
PY
	nsx "$role" ip addr add "$LBT_VIP4/32" dev lo
	nsx "$role" ip -6 addr add "$LBT_VIP6/128" dev lo
	nsx "$role" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
		net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
	start_nginx "$role" "$LBT_VIP4" "$role" "$LBT_VIP6"
	start_in_ns "$role" "tcp-echo-$role" python3 "$tmp/tcp_echo-$role.py" "$LBT_VIP4" "$LBT_VIP6" >/dev/null
	wait_http "$role" "http://$LBT_VIP4/" || return 1
	# The echo listens on both VIPs before anything connects to it.
	local _i
	for _i in $(seq 1 100); do
		nsx "$role" ss -Htln "sport = :9000" | grep -q . && [ "$(nsx "$role" ss -Htln "sport = :9000" | wc -l)" -ge 2 ] && return 0
		sleep 0.05
	done
	cat "$(lbt_tmpdir)/tcp-echo-$role.log" >&2
	return 1
}

# tunnel_opts KIND — sets opts4/opts6 (the -a options of the IPv4 and the IPv6 service),
# csum4/csum6 (GUE: UDP checksum, GRE: GRE checksum, over an IPv4/IPv6 outer header) and
# mtu4/mtu6 (the MTU left inside the tunnel on a 1,500-byte path: what lb-tun's
# "fragmentation needed" / "packet too big" must carry).
tunnel_opts() {
	case $1 in
	ipip) opts4="--tun-type ipip" opts6="--tun-type ipip" csum4=0 csum6=0 mtu4=1480 mtu6=1460 ;;
	# IPv6 GUE needs a UDP checksum (a socket takes no zero checksum over IPv6).
	gue)
		opts4="--tun-type gue --tun-port 6080 --tun-nocsum" opts6="--tun-type gue --tun-port 6080 --tun-csum"
		csum4=0 csum6=1 mtu4=1468 mtu6=1448
		;;
	gre) opts4="--tun-type gre --tun-csum" opts6="--tun-type gre --tun-nocsum" csum4=1 csum6=0 mtu4=1472 mtu6=1456 ;;
	*) fail "tunnel kind $1" ;;
	esac
}

# kip NS ARGS... — ip -n NS ARGS; on failure one line "ip ARGS: ERROR" on stderr.
kip() {
	local ns="$1" out
	shift
	out=$(ip -n "$ns" "$@" 2>&1) && return 0
	echo "ip $*: $(echo "$out" | head -n 1)" >&2
	return 1
}

# kernel_devices NS LOCAL4 LOCAL6 KIND... — the kernel's decapsulation of KINDs in namespace NS
# (full name) whose addresses are LOCAL4 and LOCAL6, as a real server of kernel IPVS has it:
# IPIP an ipip device (IPv4 in IPv4) and an ip6tnl ip6ip6 one (IPv6 in IPv6); GUE fou on the
# port for both families, into those same devices; GRE a gre and an ip6gre device, icsum
# (checksum required) where the director sends one. Every device up, rp_filter 0.
kernel_devices() {
	local ns="$1" a4="$2" a6="$3" k ipip=0 fou=0 gre=0 dev
	shift 3
	for k in "$@"; do
		case $k in
		ipip) ipip=1 ;;
		gue) ipip=1 fou=1 ;;
		gre) gre=1 ;;
		*) echo "kernel decapsulation: unknown kind $k" >&2 && return 1 ;;
		esac
	done
	if [ "$fou" = 1 ]; then
		kip "$ns" fou add port 6080 gue || return 1
		kip "$ns" fou add port 6080 gue -6 || return 1
	fi
	if [ "$ipip" = 1 ]; then
		kip "$ns" link add name kip4 type ipip local "$a4" || return 1
		kip "$ns" link add name kip6 type ip6tnl mode ip6ip6 local "$a6" || return 1
	fi
	if [ "$gre" = 1 ]; then
		local csum4 csum6 opts4 opts6 mtu4 mtu6 ic4=() ic6=()
		tunnel_opts gre
		[ "$csum4" = 1 ] && ic4=(icsum)
		[ "$csum6" = 1 ] && ic6=(icsum)
		kip "$ns" link add name kgre4 type gre local "$a4" "${ic4[@]}" || return 1
		kip "$ns" link add name kgre6 type ip6gre local "$a6" "${ic6[@]}" || return 1
	fi
	for dev in kip4 kip6 kgre4 kgre6; do
		ip -n "$ns" link show "$dev" >/dev/null 2>&1 || continue
		kip "$ns" link set "$dev" up || return 1
		case $dev in
		*4) ip netns exec "$ns" sysctl -qw "net.ipv4.conf.$dev.rp_filter=0" || return 1 ;;
		esac
	done
}

# decap_kernel I KIND... — server I takes the outer headers of KINDs off in its kernel.
decap_kernel() {
	local i="$1"
	shift
	kernel_devices "${LBT}-s$i" "$(server_addr4 "$i")" "$(server_addr6 "$i")" "$@"
}

# kernel_kinds — sets KERNEL_KINDS to the kinds this kernel can decapsulate, trying
# kernel_devices for each in a scratch namespace; prints one skip line for each other kind.
kernel_kinds() {
	local kind ns="${LBT}-kprobe" why
	KERNEL_KINDS=""
	for kind in ipip gue gre; do
		ip netns add "$ns" || fail "scratch namespace $ns"
		if why=$(kernel_devices "$ns" 10.0.0.1 fd00::1 "$kind" 2>&1); then
			KERNEL_KINDS="$KERNEL_KINDS $kind"
		else
			echo "skip: kernel decapsulation of $kind: $(echo "$why" | head -n 1)"
		fi
		ip netns del "$ns"
	done
}

# tunnel_suite DECAP KIND... — both servers take the outer headers off the DECAP way
# (decap_DECAP I KIND...), then tunnel_checks DECAP KIND for each KIND.
tunnel_suite() {
	local decap="$1" i kind
	shift
	for i in 1 2; do
		"decap_$decap" "$i" "$@" || fail "s$i: $decap decapsulation not set up"
	done
	for kind in "$@"; do
		tunnel_checks "$decap" "$kind"
	done
}

# tunnel_checks DECAP KIND — lb-tun tunnelling KIND to the two real servers (decapsulating the
# DECAP way): hey (wrr 3:1 split) over IPv4, IPv6 requests, a 1 MB socat echo over each family
# with the client's path MTU answers checked (client's link), the counters, and the outer
# headers on s1's link.
tunnel_checks() {
	local decap="$1" kind="$2" what="$1 $2" n=2000
	local a1 a2 b1 b2 opts4 opts6 csum4 csum6 mtu4 mtu6 c1 c2 d1 d2 cap ccap got
	a1=$(server_addr4 1)
	a2=$(server_addr4 2)
	b1=$(server_addr6 1)
	b2=$(server_addr6 2)
	tunnel_opts "$kind"
	cat >"$tmp/lb-$kind.conf" <<CONF
-A -t $LBT_VIP4:80 -s wrr
-a -t $LBT_VIP4:80 -r $a1:80 -i -w 3 $opts4
-a -t $LBT_VIP4:80 -r $a2:80 -i -w 1 $opts4
-A -t [$LBT_VIP6]:80 -s rr
-a -t [$LBT_VIP6]:80 -r [$b1]:80 -i -w 1 $opts6
-a -t [$LBT_VIP6]:80 -r [$b2]:80 -i -w 1 $opts6
-A -t $LBT_VIP4:9000 -s rr
-a -t $LBT_VIP4:9000 -r $a1:9000 -i -w 1 $opts4
-A -t [$LBT_VIP6]:9000 -s rr
-a -t [$LBT_VIP6]:9000 -r [$b1]:9000 -i -w 1 $opts6
CONF
	cap=$(start_in_ns s1 "tcpdump-$decap-$kind" tcpdump --immediate-mode -Uni eth0 -w "$tmp/s1-$decap-$kind.pcap" \
		"src host 10.20.9.1 or src host fd00:99::1 or src host $LBT_VIP4 or src host $LBT_VIP6")
	start_gateway "$tmp/lb-$kind.conf" --tunnel-source 10.20.9.1 --tunnel-source fd00:99::1 ||
		fail "$what: gateway did not start"
	sleep 0.5 # tcpdump attaches
	c1=$(wc -l <"$tmp/s1.access.log")
	c2=$(wc -l <"$tmp/s2.access.log")
	load_run "http://$LBT_VIP4/" "$n" 20 "$tmp/$kind-v4.csv" || fail "$what: load v4"
	all_ok "$tmp/$kind-v4.csv" "$n"
	d1=$(($(wc -l <"$tmp/s1.access.log") - c1))
	d2=$(($(wc -l <"$tmp/s2.access.log") - c2))
	awk -v a="$d1" -v b="$d2" 'BEGIN { if (a + b == 0) exit 1; f = a / (a + b); d = f - 0.75; if (d < 0) d = -d; exit !(d <= 0.02 * 0.75) }' ||
		fail "$what: split s1 $d1 s2 $d2 is not 3:1 within 2 %"
	ok "$what: $n/$n requests to $LBT_VIP4 got 200, split s1 $d1 s2 $d2 (wrr 3:1)"
	# The replies went from the servers straight to the client: the director counted none.
	local st passed
	st=$(dr_stats "$a1:80")
	passed=$(gwstat passed)
	# shellcheck disable=SC2086
	set -- $st
	# (Conns may be fewer than requests: a SYN that reuses a client port whose tunnel entry
	# is in FIN_WAIT follows that entry under conn_reuse_mode 1, as in IPVS, and counts no
	# new connection.)
	[ "${1:-0}" -gt 0 ] && [ "${1:-0}" -le "$d1" ] && [ "${2:-0}" -gt "$d1" ] && [ "${3:-x}" = 0 ] ||
		fail "$what: s1 Conns InPkts OutPkts: ${st:-missing}, want at most $d1 connections, more packets and no OutPkts"
	[ "${passed:-x}" -lt 100 ] || fail "$what: $passed packets passed the director (replies crossing it?)"
	ok "$what: only the client's half crossed the director: s1 Conns InPkts OutPkts $st, $passed packets passed"
	load_run "http://[$LBT_VIP6]/" 200 10 "$tmp/$kind-v6.csv" || fail "$what: load v6"
	all_ok "$tmp/$kind-v6.csv" 200
	ok "$what: 200/200 requests to [$LBT_VIP6] got 200"

	# PMTU discovery: the client forgets what an earlier run taught it, sends 1,500-byte
	# segments, gets lb-tun's answers with the MTU left inside the tunnel and goes on smaller.
	local big0 big1 limited icmp v4 v6 m4 m6 q4 q6 mbig mtun
	nsx client ip route flush cache
	nsx client ip -6 route flush cache
	nsx client ip -6 route show cache | grep -q . && fail "$what: the client's IPv6 route cache survived the flush: $(nsx client ip -6 route show cache)"
	big0=$(gwstat too_big_replies)
	local rep0 rep1
	rep0=$(gwstat replies)
	local gcap
	gcap=$(start_in_ns gw "tcpdump-gw-$decap-$kind" tcpdump --immediate-mode -Uni "$LBT_TUN" \
		-w "$tmp/gw-icmp-$decap-$kind.pcap" "icmp or icmp6")
	ccap=$(start_in_ns client "tcpdump-client-$decap-$kind" tcpdump --immediate-mode -Uni c0 \
		-w "$tmp/client-$decap-$kind.pcap" "icmp or icmp6")
	sleep 0.5 # tcpdump attaches
	local cut0 pieces0
	cut0=$(gwstat segmented)
	pieces0=$(gwstat segments)
	nsx client timeout 30 socat -T 10 -t 10 - "TCP4:$LBT_VIP4:9000" <"$tmp/payload" >"$tmp/echoed" ||
		fail "$what: socat transfer over IPv4 failed"
	cmp -s "$tmp/payload" "$tmp/echoed" || fail "$what: the echoed 1 MB differs over IPv4 ($(wc -c <"$tmp/echoed") bytes back)"
	nsx client timeout 30 socat -T 10 -t 10 - "TCP6:[$LBT_VIP6]:9000" <"$tmp/payload" >"$tmp/echoed" ||
		fail "$what: socat transfer over IPv6 failed"
	cmp -s "$tmp/payload" "$tmp/echoed" || fail "$what: the echoed 1 MB differs over IPv6 ($(wc -c <"$tmp/echoed") bytes back)"
	ok "$what: 1,000,000 bytes echoed through $LBT_VIP4:9000 and [$LBT_VIP6]:9000, identical"
	# The client's stack sends 64 KB segments (TSO on its veth); lb-tun, with offloads, must
	# have cut those bound for the tunnel into packets.
	[ "$(gwstat segmented)" -gt "$cut0" ] || fail "$what: no offloaded segment was cut for the tunnel (segmented $(gwstat segmented))"
	ok "$what: $(($(gwstat segmented) - cut0)) offloaded TCP segments cut into $(($(gwstat segments) - pieces0)) packets for the tunnel"
	sleep 0.3
	kill "$ccap" "$gcap" 2>/dev/null
	wait "$ccap" "$gcap" 2>/dev/null
	tcpdump -nr "$tmp/gw-icmp-$decap-$kind.pcap" 2>/dev/null | awk '{ $1 = ""; print }' | sort | uniq -c | sort -rn | head -8 | sed 's/^/  lb0 icmp: /'
	icmp=$(python3 "$LBT_REPO/scripts/check-tunnel-pcap.py" too-big "$tmp/client-$decap-$kind.pcap" \
		vip4="$LBT_VIP4" vip6="$LBT_VIP6" client4="$LBT_CLIENT4" client6="$LBT_CLIENT6" \
		mtu4="$mtu4" mtu6="$mtu6" port=9000) || fail "$what: path MTU answers on the client's link"
	read -r _ v4 _ m4 _ q4 _ v6 _ m6 _ q6 <<<"$icmp"
	[ "$v4" -ge 1 ] && [ "$v6" -ge 1 ] || fail "$what: path MTU answers on the client's link: $icmp"
	[ "$m4" = "$mtu4" ] && [ "$m6" = "$mtu6" ] && [ "$q4" = 1500 ] && [ "$q6" = 1500 ] ||
		fail "$what: path MTU answers on the client's link: $icmp, want mtu $mtu4 / $mtu6 about 1,500-byte packets"
	nsx client ip route get "$LBT_VIP4" | grep -Eq " mtu $mtu4( |\$)" ||
		fail "$what: the client's route to $LBT_VIP4 learnt no MTU $mtu4: $(nsx client ip route get "$LBT_VIP4")"
	nsx client ip -6 route get "$LBT_VIP6" | grep -Eq " mtu $mtu6( |\$)" ||
		fail "$what: the client's route to $LBT_VIP6 learnt no MTU $mtu6: $(nsx client ip -6 route get "$LBT_VIP6")"
	# Every answer sent reached the client, and it got nothing else (above): the replies
	# lb-tun counted are the client's ICMPs.
	big1=$(gwstat too_big_replies)
	limited=$(gwstat drops.reply_rate_limited)
	rep1=$(gwstat replies)
	[ "$big1" -gt "$big0" ] && [ "$((rep1 - rep0))" = "$((v4 + v6))" ] ||
		fail "$what: too_big_replies went from $big0 to $big1, replies from $rep0 to $rep1 ($limited rate-limited), the client got $((v4 + v6)) answers"
	sleep 1.2 # the metrics are published once a second
	metrics >"$tmp/metrics-$kind.txt"
	mbig=$(awk '$1 == "lbtun_too_big_replies_total" { print $2 }' "$tmp/metrics-$kind.txt")
	mtun=$(awk '$1 == "lbtun_tunnelled_total" { print $2 }' "$tmp/metrics-$kind.txt")
	[ "${mbig:-x}" = "$(gwstat too_big_replies)" ] || fail "$what: lbtun_too_big_replies_total ${mbig:-missing}, --stats-gateway $(gwstat too_big_replies)"
	[ "${mtun:-0}" -gt $((2 * n)) ] && [ "$mtun" = "$(gwstat tunnelled)" ] ||
		fail "$what: lbtun_tunnelled_total ${mtun:-missing}, --stats-gateway $(gwstat tunnelled)"
	ok "$what: PMTU: the client got $v4 ICMP fragmentation needed (mtu $m4) and $v6 ICMPv6 packet too big (mtu $m6) from the VIPs about its 1,500-byte segments, its routes learnt them; too_big_replies $big1 ($limited held back by the reply rate limit), lbtun_tunnelled_total $mtun"

	kill "$LBT_GW_PID" "$cap" 2>/dev/null
	for _ in $(seq 1 50); do
		kill -0 "$LBT_GW_PID" 2>/dev/null || kill -0 "$cap" 2>/dev/null || break
		sleep 0.1
	done
	got=$(python3 "$LBT_REPO/scripts/check-tunnel-pcap.py" "$tmp/s1-$decap-$kind.pcap" "$kind" \
		src4=10.20.9.1 src6=fd00:99::1 server4="$a1" server6="$b1" vip4="$LBT_VIP4" \
		vip6="$LBT_VIP6" client4="$LBT_CLIENT4" client6="$LBT_CLIENT6" \
		csum4="$csum4" csum6="$csum6" port=6080) || fail "$what: outer headers on s1's link"
	read -r _ outer _ v4 _ v6 _ replies <<<"${got//[(),]/ }"
	[ "$v4" -gt 1000 ] && [ "$v6" -gt 300 ] && [ "$replies" -gt 1000 ] ||
		fail "$what: too few packets on s1's link to judge: $got"
	ok "$what: s1's link: $got, every field as IPVS writes it; replies plain, from the VIPs"
}

# tunnel_narrow_path — a link on the path narrower than lb-tun's --path-mtu: the gateway's own
# kernel, forwarding the outer packets to s1, answers "fragmentation needed" / "packet too big"
# to the tunnel source (routed into the TUN); lb-tun relays it to the client from the VIP with
# the MTU less the tunnel headers (IPIP: 1,400 - 20 and - 40), and the transfers complete.
tunnel_narrow_path() {
	local a1 b1 opts4 opts6 csum4 csum6 mtu4 mtu6 r0 r1 m4 m6
	a1=$(server_addr4 1)
	b1=$(server_addr6 1)
	tunnel_opts ipip
	cat >"$tmp/lb-narrow.conf" <<CONF
-A -t $LBT_VIP4:9000 -s rr
-a -t $LBT_VIP4:9000 -r $a1:9000 -i $opts4
-A -t [$LBT_VIP6]:9000 -s rr
-a -t [$LBT_VIP6]:9000 -r [$b1]:9000 -i $opts6
CONF
	start_gateway "$tmp/lb-narrow.conf" --tunnel-source 10.20.9.1 --tunnel-source fd00:99::1 ||
		fail "narrow path: gateway did not start"
	ip -n "${LBT}-gw" route add "$a1/32" dev br0 mtu lock 1400
	ip -n "${LBT}-gw" -6 route add "$b1/128" dev br0 mtu 1400
	nsx client ip route flush cache
	nsx client ip -6 route flush cache
	r0=$(gwstat tunnel_icmp_relayed)
	nsx client timeout 30 socat -T 10 -t 10 - "TCP4:$LBT_VIP4:9000" <"$tmp/payload" >"$tmp/echoed" ||
		fail "narrow path: socat transfer over IPv4 failed"
	cmp -s "$tmp/payload" "$tmp/echoed" || fail "narrow path: the echoed 1 MB differs over IPv4"
	nsx client timeout 30 socat -T 10 -t 10 - "TCP6:[$LBT_VIP6]:9000" <"$tmp/payload" >"$tmp/echoed" ||
		fail "narrow path: socat transfer over IPv6 failed"
	cmp -s "$tmp/payload" "$tmp/echoed" || fail "narrow path: the echoed 1 MB differs over IPv6"
	r1=$(gwstat tunnel_icmp_relayed)
	m4=$(nsx client ip route get "$LBT_VIP4" | grep -Eo ' mtu [0-9]+' | awk '{ print $2 }')
	m6=$(nsx client ip -6 route get "$LBT_VIP6" | grep -Eo ' mtu [0-9]+' | awk '{ print $2 }')
	[ "$((r1 - r0))" -ge 2 ] || fail "narrow path: tunnel_icmp_relayed went from $r0 to $r1"
	[ "${m4:-}" = 1380 ] && [ "${m6:-}" = 1360 ] ||
		fail "narrow path: the client learnt mtu ${m4:-none} / ${m6:-none}, want 1380 / 1360"
	ip -n "${LBT}-gw" route del "$a1/32" dev br0
	ip -n "${LBT}-gw" -6 route del "$b1/128" dev br0
	kill "$LBT_GW_PID" 2>/dev/null
	for _ in $(seq 1 50); do
		kill -0 "$LBT_GW_PID" 2>/dev/null || break
		sleep 0.1
	done
	ok "narrow path (1,400 bytes to s1): the path's $((r1 - r0)) ICMP errors relayed to the client, which learnt mtu $m4 / $m6; 1 MB echoed both families, identical"
}

scenario_tunnel() {
	LBT_NSERVERS=2
	topo_up || fail topo_up
	command -v socat >/dev/null || fail "socat not found"
	command -v tcpdump >/dev/null || fail "tcpdump not found"
	command -v python3 >/dev/null || fail "python3 not found"
	# 1,500-byte links from the client to the servers: the client's first segments are 1,500
	# bytes, too big for any tunnel on a 1,500-byte path (lb-tun's --path-mtu, default 1500).
	local l
	for l in "client c0" "gw gc" "gw br0" "gw $LBT_TUN" "s1 eth0" "s2 eth0"; do
		# shellcheck disable=SC2086
		nsx ${l% *} ip link show "${l#* }" | grep -q ' mtu 1500 ' || fail "MTU of ${l#* } in ${l% *}: $(nsx ${l% *} ip link show "${l#* }")"
	done
	# The tunnel sources are routed into the TUN: lb-tun writes the tunnelled packets there and
	# the kernel forwards them to the servers; anything sent back to them returns to lb-tun.
	ip -n "${LBT}-gw" route add 10.20.9.1/32 dev "$LBT_TUN"
	ip -n "${LBT}-gw" -6 route add fd00:99::1/128 dev "$LBT_TUN"
	tunnel_server 1 || fail "s1 did not start"
	tunnel_server 2 || fail "s2 did not start"
	head -c 1000000 /dev/urandom >"$tmp/payload"

	tunnel_suite lbdecap ipip gue gre
	tunnel_narrow_path
	local i pid k
	# shellcheck disable=SC2086
	kill $LBT_DECAP_PIDS 2>/dev/null
	for pid in $LBT_DECAP_PIDS; do
		for _ in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
	done
	for i in 1 2; do
		grep -v ' 0$' "$tmp/lb-decap-s$i.log" | grep -v INFO | sed "s/^/  lb-decap s$i: /"
		for k in decoded_ipip decoded_gue decoded_gre; do
			awk -v k="$k" '$1 == k && $2 > 0 { n++ } END { exit n != 1 }' "$tmp/lb-decap-s$i.log" ||
				fail "lb-decap on s$i: no $k counted"
		done
		awk '$1 ~ /^drop_/ && $2 != 0 { bad = 1 } END { exit bad }' "$tmp/lb-decap-s$i.log" ||
			fail "lb-decap on s$i refused packets"
	done
	ok "lb-decap on both servers decoded every tunnel and refused nothing"

	# The same checks with the kernel taking the outer headers off, where it can.
	kernel_kinds
	if [ -n "$KERNEL_KINDS" ]; then
		# shellcheck disable=SC2086
		tunnel_suite kernel $KERNEL_KINDS
		local dev rx
		for i in 1 2; do
			for dev in kip4 kip6 kgre4 kgre6; do
				nsx "s$i" test -e "/sys/class/net/$dev" || continue
				rx=$(nsx "s$i" cat "/sys/class/net/$dev/statistics/rx_packets")
				[ "$rx" -gt 0 ] || fail "kernel decapsulation: $dev on s$i received nothing"
				echo "  kernel s$i: $dev rx_packets $rx"
			done
		done
		ok "kernel decapsulation of$KERNEL_KINDS: the same checks passed, every tunnel device received"
	fi
}

# gw_routes PROTO — destinations of the gw's routes with that protocol number (IPv4, then
# IPv6), on one line.
gw_routes() {
	{
		ip -n "${LBT}-gw" route show proto "$1"
		ip -n "${LBT}-gw" -6 route show proto "$1"
	} | awk '{ print $1 }' | xargs
}

# wait_routes PROTO "WANT" MS — wait until gw_routes PROTO is WANT; echoes the milliseconds
# it took (or what it is after MS, failing).
wait_routes() {
	local t0 now
	t0=$(date +%s%N)
	while :; do
		now=$(date +%s%N)
		if [ "$(gw_routes "$1")" = "$2" ]; then
			echo $(((now - t0) / 1000000))
			return 0
		fi
		[ $(((now - t0) / 1000000)) -ge "$3" ] && break
		sleep 0.05
	done
	echo "'$(gw_routes "$1")' after $3 ms"
	return 1
}

# bird_start — when BIRD 2 is installed, run it in gw with the bird.conf of lb-tun/README.md
# (its BGP neighbour does not exist: only what BIRD learns from the kernel is checked). Sets
# BIRD to its control socket ("" without BIRD).
BIRD=""
bird_start() {
	command -v bird >/dev/null 2>&1 && command -v birdc >/dev/null 2>&1 || {
		echo "skipped: BIRD 2 is not installed (apt-get install bird2), its part is not run"
		return 0
	}
	awk '/^# \/etc\/bird\/bird.conf/,/^```$/' "$LBT_REPO/lb-tun/README.md" | grep -v '^```' >"$tmp/bird.conf"
	grep -q "krt_source = 76" "$tmp/bird.conf" || fail "no bird.conf in lb-tun/README.md"
	BIRD="$tmp/bird.ctl"
	start_in_ns gw bird bird -f -c "$tmp/bird.conf" -s "$BIRD" >/dev/null
	for _ in $(seq 50); do [ -S "$BIRD" ] && return 0; sleep 0.1; done
	fail "bird did not start: $(cat "$tmp/bird.log")"
}

# bird_routes_now — the prefixes BIRD's lbtun4 and lbtun6 protocols hold, addresses only.
bird_routes_now() {
	local p
	for p in lbtun4 lbtun6; do
		birdc -s "$BIRD" show route protocol "$p" | awk '$1 ~ /\/(32|128)$/ { sub(/\/.*/, "", $1); print $1 }'
	done | xargs
}

# bird_routes "WANT" — wait (2 s at most) until BIRD holds WANT; true without BIRD.
bird_routes() {
	[ -z "$BIRD" ] && return 0
	for _ in $(seq 40); do
		[ "$(bird_routes_now)" = "$1" ] && return 0
		sleep 0.05
	done
	return 1
}

# announce_gateway — start lb-tun with --announce (it creates the TUN device), then steer the
# servers' replies into that device (table 100 of topo_up's rules).
announce_gateway() {
	start_gateway "$tmp/lb.conf" --keepalived "$tmp/keepalived.conf" \
		--probe-source 10.20.9.1 --probe-source fd00:99::1 --announce || return 1
	ip -n "${LBT}-gw" -d link show "$LBT_TUN" | grep -q "persist off" ||
		{ lbt_log "$LBT_TUN is not lb-tun's own: $(ip -n "${LBT}-gw" -d link show "$LBT_TUN")"; return 1; }
	ip -n "${LBT}-gw" route add default dev "$LBT_TUN" table 100
	ip -n "${LBT}-gw" -6 route add default dev "$LBT_TUN" table 100
}

scenario_announce() {
	LBT_NSERVERS=2
	topo_up || fail topo_up
	# With --announce lb-tun creates its own device: drop topo_up's persistent one (its VIP
	# and table-100 routes go with it).
	ip -n "${LBT}-gw" link del "$LBT_TUN" || fail "cannot delete the persistent $LBT_TUN"
	start_servers || fail "servers did not start"
	local knobs="connect_timeout 1
            retry 1
            delay_before_retry 1"
	cat >"$tmp/keepalived.conf" <<CONF
virtual_server $LBT_VIP4 80 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    alpha
    real_server $(server_addr4 1) 80 {
        TCP_CHECK {
            $knobs
        }
    }
    real_server $(server_addr4 2) 80 {
        TCP_CHECK {
            $knobs
        }
    }
}
virtual_server $LBT_VIP6 80 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server $(server_addr6 1) 80 {
        TCP_CHECK {
            $knobs
        }
    }
}
CONF
	: >"$tmp/lb.conf"
	local both="$LBT_VIP4 $LBT_VIP6" ms i h1 load
	announce_gateway || fail "gateway did not start"
	# alpha: the servers start DOWN, so the IPv4 VIP is announced only after a check passed.
	ms=$(wait_routes 76 "$both" 6000) || fail "announced routes: $ms"
	awk -v vip="$LBT_VIP4" '
		index($0, "-t " vip ":80: real server") && /is UP: check passed/ { up = 1 }
		index($0, "announce: " vip " announced") { exit !up }' "$tmp/lb-tun.log" ||
		fail "$LBT_VIP4 announced before a check passed: $(cat "$tmp/lb-tun.log")"
	ok "announced once the checks passed, $ms ms after the control socket: $(ip -n "${LBT}-gw" route show proto 76) / $(ip -n "${LBT}-gw" -6 route show proto 76)"
	[ "$(gw_routes 77)" = "$both" ] || fail "held routes: '$(gw_routes 77)'"
	bird_start
	bird_routes "$both" || fail "BIRD learned '$(bird_routes_now)', want '$both'"
	[ -n "$BIRD" ] && ok "BIRD 2 (lb-tun/README.md's bird.conf) learned exactly the announced routes: $(bird_routes_now)"
	grep -q "announce: 3 real servers use NAT" "$tmp/lb-tun.log" || fail "no NAT warning: $(cat "$tmp/lb-tun.log")"
	ok "NAT with --announce is warned about: $(grep -o 'announce: [0-9]* real servers use NAT[^(]*' "$tmp/lb-tun.log")"
	load_run "http://$LBT_VIP4/" 20 2 "$tmp/a.csv" || fail "load"
	all_ok "$tmp/a.csv" 20
	ok "20/20 requests through the announced VIP"

	# Both IPv4 servers fail their checks: the IPv4 VIP is withdrawn, the IPv6 one stays.
	for i in 1 2; do nsx "s$i" iptables -I INPUT -p tcp --dport 80 -j REJECT --reject-with tcp-reset; done
	ms=$(wait_routes 76 "$LBT_VIP6" 8000) || fail "after both IPv4 servers failed: $ms"
	ok "both IPv4 servers DOWN: $LBT_VIP4 withdrawn within $ms ms, $LBT_VIP6 still announced"
	bird_routes "$LBT_VIP6" || fail "BIRD still has '$(bird_routes_now)' after the withdrawal"
	[ "$(gw_routes 77)" = "$both" ] || fail "held routes changed: '$(gw_routes 77)'"
	for i in 1 2; do nsx "s$i" iptables -D INPUT -p tcp --dport 80 -j REJECT --reject-with tcp-reset; done
	ms=$(wait_routes 76 "$both" 5000) || fail "after the servers came back: $ms"
	ok "servers UP again: $LBT_VIP4 announced again within $ms ms"
	bird_routes "$both" || fail "BIRD has '$(bird_routes_now)' after the servers came back"

	# Graceful leave: routes withdrawn at once, the held connection still served, then exit.
	load="$(lbt_bin lb-demo-load)"
	nsx client "$load" --hold --interval 0.2 --count 25 --timeout 5 "http://$LBT_VIP4/" >"$tmp/h1.out" &
	h1=$!
	sleep 1
	lbadm --drain-gateway --timeout 30 >"$tmp/drain.out" || fail "--drain-gateway: $(cat "$tmp/drain.out")"
	[ "$(gw_routes 76)" = "" ] || fail "announced routes left after --drain-gateway: '$(gw_routes 76)'"
	grep -q "draining: 1 flows" "$tmp/drain.out" || fail "drain reply: $(cat "$tmp/drain.out")"
	ok "--drain-gateway: $(head -1 "$tmp/drain.out"); held routes kept: $(gw_routes 77)"
	bird_routes "" || fail "BIRD still has '$(bird_routes_now)' after the drain"
	[ -n "$BIRD" ] && ok "BIRD dropped them too"
	wait "$h1" || fail "the held connection failed during the drain: $(cat "$tmp/h1.out")"
	[ "$(awk '$3 == 200' "$tmp/h1.out" | wc -l)" -eq 25 ] || fail "held connection: $(cat "$tmp/h1.out")"
	ok "the held keep-alive connection got 25/25 answers while draining"
	for _ in $(seq 100); do [ -S "$sock" ] || break; sleep 0.05; done
	[ -S "$sock" ] && fail "the gateway did not exit after its last flow: $(tail -3 "$tmp/lb-tun.log")"
	grep -q "drain: no flow left, exiting" "$tmp/lb-tun.log" || fail "no drain exit logged: $(tail -5 "$tmp/lb-tun.log")"
	[ "$(gw_routes 76) $(gw_routes 77)" = " " ] || fail "routes left after the exit: $(gw_routes 76) / $(gw_routes 77)"
	ok "the gateway exited once its last flow ended, its routes removed"

	# A drain that times out: a connection held longer than the timeout; the gateway exits.
	cp "$tmp/lb-tun.log" "$tmp/lb-tun-a.log"
	announce_gateway || fail "gateway did not start again"
	ms=$(wait_routes 76 "$both" 6000) || fail "announced routes after the restart: $ms"
	nsx client "$load" --hold --interval 0.5 --count 20 --timeout 5 "http://$LBT_VIP4/" >"$tmp/h2.out" &
	h1=$!
	sleep 1
	t0=$(date +%s%N)
	lbadm --drain-gateway --timeout 2 >"$tmp/drain.out" || fail "--drain-gateway: $(cat "$tmp/drain.out")"
	for _ in $(seq 100); do [ -S "$sock" ] || break; sleep 0.05; done
	ms=$((($(date +%s%N) - t0) / 1000000))
	[ -S "$sock" ] && fail "the gateway did not exit at the drain's timeout: $(tail -3 "$tmp/lb-tun.log")"
	grep -q "drain: timeout with 1 flows left, exiting" "$tmp/lb-tun.log" || fail "no timeout logged: $(tail -5 "$tmp/lb-tun.log")"
	[ "$ms" -ge 2000 ] && [ "$ms" -lt 3500 ] || fail "exited $ms ms after a 2 s drain"
	ok "a drain with --timeout 2 and a flow left: exited after $ms ms"
	kill "$h1" 2>/dev/null
	wait "$h1" 2>/dev/null

	# A gateway killed outright: its routes go with its TUN device.
	cp "$tmp/lb-tun.log" "$tmp/lb-tun-b.log"
	announce_gateway || fail "gateway did not start a third time"
	ms=$(wait_routes 76 "$both" 6000) || fail "announced routes after the restart: $ms"
	kill -9 "$LBT_GW_PID"
	for _ in $(seq 100); do ip -n "${LBT}-gw" link show "$LBT_TUN" >/dev/null 2>&1 || break; sleep 0.05; done
	ip -n "${LBT}-gw" link show "$LBT_TUN" >/dev/null 2>&1 && fail "$LBT_TUN still there after SIGKILL"
	[ "$(gw_routes 76) $(gw_routes 77)" = " " ] || fail "routes left after SIGKILL: $(gw_routes 76) / $(gw_routes 77)"
	bird_routes "" || fail "BIRD still has '$(bird_routes_now)' after SIGKILL"
	ok "SIGKILL: the TUN device and every route through it are gone${BIRD:+, from BIRD too}"
}

# offload — see the header.
scenario_offload() {
	LBT_NSERVERS=2
	local t
	for t in iperf3 ethtool python3; do
		command -v "$t" >/dev/null || fail "$t not installed (apt-get install -y iperf3 ethtool python3)"
	done
	topo_up || fail topo_up
	# The gateway's ports finish checksums in software (no tx checksum, so no TSO either): a
	# wrong partial checksum from lb-tun reaches the far end as a wrong checksum, which it drops.
	for t in gs1 gs2 gc; do
		nsx gw ethtool -K "$t" tx off >/dev/null 2>&1 || fail "ethtool -K $t tx off"
	done
	cat >"$tmp/hash_echo.py" <<'PY'
import hashlib, socket, sys, threading
# Echoes every byte of each connection back; the client compares what it got.
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 9000))
s.listen(16)
def serve(c):
    with c:
        while True:
            d = c.recv(1 << 20)
            if not d:
                break
            c.sendall(d)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
	cat >"$tmp/hash_send.py" <<'PY'
import hashlib, os, socket, sys, threading
# Sends N random bytes to HOST:9000, reads the echo back; prints "ok SHA" when they match.
host, n = sys.argv[1], int(sys.argv[2])
data = os.urandom(n)
c = socket.create_connection((host, 9000), timeout=20)
got = bytearray()
def rd():
    while True:
        d = c.recv(1 << 20)
        if not d:
            break
        got.extend(d)
t = threading.Thread(target=rd)
t.start()
c.sendall(data)
c.shutdown(socket.SHUT_WR)
t.join(30)
a, b = hashlib.sha256(data).hexdigest(), hashlib.sha256(bytes(got)).hexdigest()
print("ok" if a == b else "MISMATCH", len(got), a[:16], b[:16])
sys.exit(0 if a == b else 1)
PY
	start_in_ns s1 echo-s1 python3 "$tmp/hash_echo.py" >/dev/null
	start_in_ns s2 echo-s2 python3 "$tmp/hash_echo.py" >/dev/null
	start_in_ns s1 iperf3-s1 iperf3 -s -B "$(server_addr4 1)" >/dev/null
	cat >"$tmp/lb.conf" <<CONF
-A -t $LBT_VIP4:9000 -s rr
-a -t $LBT_VIP4:9000 -r $(server_addr4 1):9000 -m
-a -t $LBT_VIP4:9000 -r $(server_addr4 2):9000 -m
-A -t [$LBT_VIP6]:9000 -s rr
-a -t [$LBT_VIP6]:9000 -r [$(server_addr6 1)]:9000 -m
-a -t [$LBT_VIP6]:9000 -r [$(server_addr6 2)]:9000 -m
-A -t $LBT_VIP4:5201 -s rr
-a -t $LBT_VIP4:5201 -r $(server_addr4 1):5201 -m
CONF
	# Every connection starts pinned to queue 0 (lb-tun's hidden --steer-start-queue): the
	# steering must move half of the streams to queue 1.
	local start=()
	[ "${LBT_QUEUES:-2}" = 2 ] && start=(--steer-start-queue 0)
	start_gateway "$tmp/lb.conf" "${start[@]}" || fail "gateway did not start"
	grep -q "offloads on" "$tmp/lb-tun.log" || fail "lb-tun did not take the offloads: $(head -3 "$tmp/lb-tun.log")"
	sleep 0.5

	# Bulk: 4 streams for 4 s. The packets lb-tun reads must be 64 KB segments, not MTU-sized
	# ones, and TCP must not be retransmitting (a bad checksum stalls it).
	local rx0 rx1 line bytes retr gbps per q0a q0b q1a q1b
	rx0=$(gwstat tun.rx_packets)
	q0a=$(gwstat tun.queue.0.rx_bytes)
	q1a=$(gwstat tun.queue.1.rx_bytes)
	nsx client iperf3 -c "$LBT_VIP4" -P 4 -t 4 -J >"$tmp/iperf.json" 2>&1 || fail "iperf3: $(tail -5 "$tmp/iperf.json")"
	rx1=$(gwstat tun.rx_packets)
	q0b=$(gwstat tun.queue.0.rx_bytes)
	q1b=$(gwstat tun.queue.1.rx_bytes)
	line=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))["end"]
print(d["sum_received"]["bytes"], d["sum_sent"].get("retransmits", 0), "%.2f" % (d["sum_received"]["bits_per_second"] / 1e9))' "$tmp/iperf.json") ||
		fail "iperf3 output: $(head -c 300 "$tmp/iperf.json")"
	read -r bytes retr gbps <<<"$line"
	per=$((bytes / (rx1 - rx0 + 1)))
	[ "$bytes" -gt 100000000 ] || fail "iperf3 moved only $bytes bytes in 4 s"
	[ "$per" -gt 4000 ] || fail "lb-tun read $((rx1 - rx0)) packets for $bytes bytes ($per per packet): no 64 KB segments"
	[ "$retr" -le $((bytes / 1448 / 100)) ] || fail "$retr retransmissions for $bytes bytes (over 1 % of the segments)"
	ok "iperf3, 4 streams: $gbps Gbit/s, $retr retransmissions; lb-tun read $((rx1 - rx0)) packets, $per bytes each on average (with the client's ACKs)"
	# Steering (lb-tun/src/steer.rs): the 4 streams, all started on queue 0, end on both
	# queues (left on queue 0, queue 1 reads next to nothing).
	if [ "${LBT_QUEUES:-2}" = 2 ]; then
		local a=$((q0b - q0a)) b=$((q1b - q1a))
		[ $((a * 10)) -ge $(((a + b) * 3)) ] && [ $((b * 10)) -ge $(((a + b) * 3)) ] ||
			fail "queues read $a and $b bytes: steering left one under 30 % (moves $(gwstat tun.steer_moves))"
		ok "queues read $a and $b bytes of the streams (steering moved $(gwstat tun.steer_moves) buckets)"
	fi

	# Every byte, both ways, both families, both servers (verified by the far end's checksums).
	local host i out
	for host in "$LBT_VIP4" "$LBT_VIP6"; do
		for i in 1 2; do
			out=$(nsx client python3 "$tmp/hash_send.py" "$host" 8000000) || fail "echo of 8 MB through $host: $out"
		done
		ok "8 MB echoed through $host twice (rr: once per server), sha256 equal: $out"
	done
	[ "$(gwstat offload_drops)" = 0 ] || fail "offload_drops $(gwstat offload_drops)"
	ok "no offloaded packet dropped"
}

case "$SCENARIO" in
split | seed | drain | restore | restart | failover | frag | synflood | health | dr | decap | tunnel | announce | offload) "scenario_$SCENARIO" ;;
*) echo "usage: $0 split|seed|drain|restore|restart|failover|frag|synflood|health|dr|decap|tunnel|announce|offload" >&2; exit 2 ;;
esac
echo PASS
