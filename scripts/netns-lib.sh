# shellcheck shell=bash
# netns-lib.sh — the lb-tun test/demo topology in network namespaces. Source it; it runs nothing.
#
#   client ns                  gw ns                                   server ns (s1, s2, s3)
#   c0 10.40.0.2/24 ── veth ── gc 10.40.0.1/24
#      fd00:40::2/64             fd00:40::1/64
#                              br0 10.20.1.1/24 ─┬─ veth gs1 ── eth0 10.20.1.2/24  fd00:20::2/64
#                                  fd00:20::1/64 ├─ veth gs2 ── eth0 10.20.1.3/24  fd00:20::3/64
#                                                └─ veth gs3 ── eth0 10.20.1.4/24  fd00:20::4/64
#                              lb0 (persistent TUN, attached by lb-tun or tun-echo)
#   VIP 10.30.0.10 and fd00:30::10 are routed into lb0 (main table); replies from the servers
#   (iif br0, from 10.20.1.0/24 / fd00:20::/64) are steered into lb0 by policy routing (table 100).
#   With LBT_VIA_TUN=1 (topo_route_servers_via_tun), client→servers traffic is steered into lb0
#   too, so a plain echo forwarder (tun-echo) carries both directions: the routing proof.
#
# Everything lives in namespaces named "${LBT}-<role>", LBT=lbt<PID> by default (the sourcing
# script's PID), so concurrent runs never collide; topo_down removes them by name only.
#
# Functions: topo_up, topo_route_servers_via_tun, topo_down, nsx ROLE CMD..., start_gateway CONF,
#   start_nginx ROLE ADDR [NAME [ADDR...]], start_servers, wait_http NS URL, load_run URL N C CSV,
#   client_narrow_ports LO HI, csv_summary CSV, server_split, decap_lbdecap I KIND..., lbt_bin NAME.

LBT="${LBT:-lbt$$}"
LBT_TMP="${LBT_TMP:-}"
LBT_NSERVERS="${LBT_NSERVERS:-2}"
LBT_TUN="${LBT_TUN:-lb0}"
LBT_VIP4="10.30.0.10"
LBT_VIP6="fd00:30::10"
LBT_CLIENT4="10.40.0.2"
LBT_CLIENT6="fd00:40::2"
LBT_REPO="${LBT_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"

lbt_log() { echo "[$LBT] $*" >&2; }

# nsx ROLE CMD... — run CMD inside namespace ${LBT}-ROLE.
nsx() {
	local role="$1"
	shift
	ip netns exec "${LBT}-${role}" "$@"
}

# server_addr4 I / server_addr6 I — the address of server I (1-based).
server_addr4() { echo "10.20.1.$(($1 + 1))"; }
server_addr6() { echo "fd00:20::$(($1 + 1))"; }

# lbt_bin NAME — path of a project binary: $LBT_BIN_DIR, else target/release, else target/debug.
lbt_bin() {
	local d
	for d in "${LBT_BIN_DIR:-}" "$LBT_REPO/target/release" "$LBT_REPO/target/debug"; do
		if [ -n "$d" ] && [ -x "$d/$1" ]; then
			echo "$d/$1"
			return 0
		fi
	done
	lbt_log "binary $1 not found (build with: cargo build --release -p lb-tun)"
	return 1
}

lbt_tmpdir() {
	if [ -z "$LBT_TMP" ]; then
		LBT_TMP="$(mktemp -d "/tmp/${LBT}.XXXXXX")"
	fi
	echo "$LBT_TMP"
}

# topo_up — create the namespaces, links, addresses, routes and the persistent TUN lb0 in gw.
topo_up() {
	local ns i s
	lbt_tmpdir >/dev/null
	for ns in client gw; do ip netns add "${LBT}-$ns" || return 1; done
	for i in $(seq 1 "$LBT_NSERVERS"); do ip netns add "${LBT}-s$i" || return 1; done
	for ns in client gw $(seq -f 's%g' 1 "$LBT_NSERVERS"); do
		ip -n "${LBT}-$ns" link set lo up
	done

	# client <-> gw
	ip -n "${LBT}-client" link add c0 type veth peer name gc netns "${LBT}-gw" || return 1
	ip -n "${LBT}-client" addr add "$LBT_CLIENT4/24" dev c0
	ip -n "${LBT}-client" addr add "$LBT_CLIENT6/64" dev c0 nodad
	ip -n "${LBT}-client" link set c0 up
	ip -n "${LBT}-client" route add default via 10.40.0.1
	ip -n "${LBT}-client" -6 route add default via fd00:40::1
	ip -n "${LBT}-gw" addr add 10.40.0.1/24 dev gc
	ip -n "${LBT}-gw" addr add fd00:40::1/64 dev gc nodad
	ip -n "${LBT}-gw" link set gc up

	# gw bridge <-> servers
	ip -n "${LBT}-gw" link add br0 type bridge
	ip -n "${LBT}-gw" addr add 10.20.1.1/24 dev br0
	ip -n "${LBT}-gw" addr add fd00:20::1/64 dev br0 nodad
	ip -n "${LBT}-gw" link set br0 up
	for i in $(seq 1 "$LBT_NSERVERS"); do
		s="${LBT}-s$i"
		ip -n "$s" link add eth0 type veth peer name "gs$i" netns "${LBT}-gw" || return 1
		ip -n "$s" addr add "$(server_addr4 "$i")/24" dev eth0
		ip -n "$s" addr add "$(server_addr6 "$i")/64" dev eth0 nodad
		ip -n "$s" link set eth0 up
		ip -n "$s" route add default via 10.20.1.1
		ip -n "$s" -6 route add default via fd00:20::1
		ip -n "${LBT}-gw" link set "gs$i" master br0
		ip -n "${LBT}-gw" link set "gs$i" up
	done

	# gw: forwarding, no reverse-path filter (packets from clients re-enter on lb0), the TUN.
	nsx gw sysctl -qw net.ipv4.ip_forward=1
	nsx gw sysctl -qw net.ipv6.conf.all.forwarding=1
	nsx gw sysctl -qw net.ipv4.conf.all.rp_filter=0
	nsx gw sysctl -qw net.ipv4.conf.default.rp_filter=0
	nsx gw sysctl -qw net.ipv4.conf.all.send_redirects=0
	ip -n "${LBT}-gw" tuntap add dev "$LBT_TUN" mode tun multi_queue || return 1
	nsx gw sysctl -qw "net.ipv4.conf.$LBT_TUN.rp_filter=0"
	ip -n "${LBT}-gw" link set "$LBT_TUN" up
	# The VIPs go into the TUN.
	ip -n "${LBT}-gw" route add "$LBT_VIP4/32" dev "$LBT_TUN"
	ip -n "${LBT}-gw" -6 route add "$LBT_VIP6/128" dev "$LBT_TUN"
	# Replies from the real servers go into the TUN (table 100) instead of straight to the client.
	ip -n "${LBT}-gw" route add default dev "$LBT_TUN" table 100
	ip -n "${LBT}-gw" -6 route add default dev "$LBT_TUN" table 100
	ip -n "${LBT}-gw" rule add iif br0 from 10.20.1.0/24 lookup 100 pref 100
	ip -n "${LBT}-gw" -6 rule add iif br0 from fd00:20::/64 lookup 100 pref 100
	lbt_log "topology up: client, gw, s1..s$LBT_NSERVERS; TUN $LBT_TUN in ${LBT}-gw"
}

# topo_route_servers_via_tun — also send client→servers traffic into lb0 (for tun-echo tests).
topo_route_servers_via_tun() {
	ip -n "${LBT}-gw" rule add iif gc to 10.20.1.0/24 lookup 100 pref 101
	ip -n "${LBT}-gw" -6 rule add iif gc to fd00:20::/64 lookup 100 pref 101
}

# topo_down — stop what runs in our namespaces (the roles above, scripts/test-e2e.sh's and those
# in LBT_MORE_ROLES) by PID: SIGTERM, then SIGKILL after 2 s; then delete the namespaces (by
# name). Processes go first, so none loses an address mid-shutdown.
topo_down() {
	local ns pids all=""
	for ns in client gw gwa gwb lan s1 s2 s3 s4 ${LBT_MORE_ROLES:-}; do
		ip netns list 2>/dev/null | grep -qw "^${LBT}-$ns" || continue
		all="$all ${LBT}-$ns"
		pids="$(ip netns pids "${LBT}-$ns" 2>/dev/null)"
		# shellcheck disable=SC2086
		[ -n "$pids" ] && kill $pids 2>/dev/null
	done
	for _ in $(seq 1 20); do
		pids=""
		for ns in $all; do pids="$pids $(ip netns pids "$ns" 2>/dev/null)"; done
		[ -z "${pids// /}" ] && break
		sleep 0.1
	done
	if [ -n "${pids// /}" ]; then
		# shellcheck disable=SC2086
		lbt_log "still running after SIGTERM, killing:" $(ps -o comm= -p "$(echo $pids | tr ' ' ,)" 2>/dev/null)
		# shellcheck disable=SC2086
		kill -9 $pids 2>/dev/null
	fi
	for ns in $all; do ip netns del "$ns" 2>/dev/null; done
	if [ -n "$LBT_TMP" ] && [ -d "$LBT_TMP" ] && [ -z "${LBT_KEEP_TMP:-}" ]; then
		rm -rf "$LBT_TMP"
	fi
	lbt_log "topology down"
}

# start_gateway CONF [ARGS...] — lb-tun in gw on the TUN with config CONF, control socket
# $LBT_TMP/lb-tun.sock and metrics on 10.40.0.1:9100, with $LBT_QUEUES queues (default 2: the
# suites run the multi-queue path whatever the machine's CPU count); waits for its socket.
# Sets LBT_GW_PID.
start_gateway() {
	local conf="$1" sock
	shift
	sock="$(lbt_tmpdir)/lb-tun.sock"
	LBT_GW_PID=$(start_in_ns gw lb-tun "$(lbt_bin lb-tun)" --tun "$LBT_TUN" --config "$conf" \
		--control "$sock" --metrics 10.40.0.1:9100 --queues "${LBT_QUEUES:-2}" "$@")
	for _ in $(seq 1 250); do
		[ -S "$sock" ] && return 0
		kill -0 "$LBT_GW_PID" 2>/dev/null || break
		sleep 0.02
	done
	lbt_log "lb-tun did not start:"
	cat "$(lbt_tmpdir)/lb-tun.log" >&2
	return 1
}

# start_in_ns ROLE LOGNAME CMD... — run CMD in the background inside ROLE; echoes its PID.
start_in_ns() {
	local role="$1" name="$2"
	shift 2
	ip netns exec "${LBT}-${role}" "$@" >"$(lbt_tmpdir)/$name.log" 2>&1 &
	echo $!
}

# listen_spec ADDR — ADDR:80, with brackets for IPv6.
listen_spec() {
	case "$1" in *:*) echo "[$1]:80" ;; *) echo "$1:80" ;; esac
}

# start_nginx ROLE ADDR [NAME [ADDR...]] — an nginx in ROLE on ADDR:80 (and each further ADDR)
# answering 200 "NAME\n" (NAME defaults to ROLE), with keep-alive, logging
# "$remote_addr $remote_port $status" per request to $LBT_TMP/NAME.access.log. Files
# $LBT_TMP/nginx-NAME/extra-*.conf, if any, are included in its server block (more locations).
# Falls back to the project's lb-demo-http when nginx is not installed (or LBT_NO_NGINX=1).
start_nginx() {
	local role="$1" addr="$2" name="${3:-$1}" dir a listens=""
	shift 2
	[ $# -gt 0 ] && shift
	if [ -n "${LBT_NO_NGINX:-}" ] || ! command -v nginx >/dev/null 2>&1; then
		[ -n "${LBT_NO_NGINX:-}" ] || lbt_log "nginx not installed: using lb-demo-http for $name"
		start_http_fallback "$role" "$name" "$addr" "$@"
		return
	fi
	dir="$(lbt_tmpdir)/nginx-$name"
	mkdir -p "$dir"
	for a in "$addr" "$@"; do
		listens="$listens        listen $(listen_spec "$a") backlog=4096;"$'\n'
	done
	cat >"$dir/nginx.conf" <<EOF
daemon off;
master_process on;
user root;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    log_format lbt '\$remote_addr \$remote_port \$status';
    access_log $(lbt_tmpdir)/$name.access.log lbt;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    keepalive_timeout 65s;
    keepalive_requests 100000;
    default_type text/plain;
    server {
$listens        include $dir/extra-*.conf;
        location / { return 200 "$name\n"; }
    }
}
EOF
	start_in_ns "$role" "nginx-$name" nginx -p "$dir" -c "$dir/nginx.conf" >/dev/null
}

# start_http_fallback ROLE NAME ADDR... — the project's own HTTP server, same body and log.
start_http_fallback() {
	local role="$1" name="$2" bin a args=()
	shift 2
	bin="$(lbt_bin lb-demo-http)" || return 1
	for a in "$@"; do args+=(--listen "$(listen_spec "$a")"); done
	start_in_ns "$role" "http-$name" "$bin" "${args[@]}" --body "$name" \
		--access-log "$(lbt_tmpdir)/$name.access.log" >/dev/null
}

# start_servers — a web server in each server namespace, named s1, s2, ..., on IPv4 and IPv6.
start_servers() {
	local i
	for i in $(seq 1 "$LBT_NSERVERS"); do
		start_nginx "s$i" "$(server_addr4 "$i")" "s$i" "$(server_addr6 "$i")"
	done
	for i in $(seq 1 "$LBT_NSERVERS"); do
		wait_http "s$i" "http://$(server_addr4 "$i")/" || return 1
	done
}

# wait_http ROLE URL [TRIES] — wait until URL answers from inside ROLE (0.1 s steps).
wait_http() {
	local role="$1" url="$2" tries="${3:-50}" host port
	host="${url#http://}"
	host="${host%%/*}"
	port=80
	for _ in $(seq 1 "$tries"); do
		if nsx "$role" bash -c "exec 3<>/dev/tcp/${host}/${port}" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	lbt_log "no answer from $url in $role"
	return 1
}

# client_narrow_ports LO HI — narrow the client's ephemeral port range (forces port reuse).
# Also lets the client reuse a port it holds in TIME_WAIT after 1 s (tcp_tw_reuse=1), as busy
# clients do: when the client happens to close first, its own TIME_WAIT (60 s) would otherwise
# use up the few ports and connect() would fail with EADDRNOTAVAIL, whatever the gateway does.
client_narrow_ports() {
	nsx client sysctl -qw net.ipv4.ip_local_port_range="$1 $2"
	nsx client sysctl -qw net.ipv4.tcp_tw_reuse=1
}

# load_run URL N C CSV — N requests, C concurrent, one connection per request, from the client;
# per-request CSV (hey's columns) into CSV. Uses hey when installed (LBT_LOADER=own forces ours).
load_run() {
	local url="$1" n="$2" c="$3" csv="$4" bin
	if [ "${LBT_LOADER:-}" != own ] && command -v hey >/dev/null 2>&1; then
		nsx client hey -n "$n" -c "$c" -disable-keepalive -t 10 -o csv "$url" >"$csv"
	else
		bin="$(lbt_bin lb-demo-load)" || return 1
		nsx client "$bin" -n "$n" -c "$c" --timeout 10 "$url" >"$csv"
	fi
}

# csv_summary CSV [N] — requests, non-200, latency p50/p99/max, requests taking >= 1 s.
# Requests missing from the CSV (hey leaves out failed ones) count as non-200 when N is given.
csv_summary() {
	local csv="$1" n="${2:-}"
	awk -F, '
		NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
		{ print $col["response-time"] + 0, $col["status-code"] }' "$csv" |
		sort -g | awk -v want="$n" '
		{ t[++k] = $1; if ($2 == 200) ok++; if ($1 >= 1.0) slow++ }
		function at(q,  i) { i = int(k * q + 0.5); if (i < 1) i = 1; if (i > k) i = k; return t[i] * 1000 }
		END {
			total = (want != "" && want > k) ? want : k
			printf "requests %d  recorded %d  non-200 %d\n", total, k, total - ok
			if (k == 0) { print "latency n/a"; exit }
			printf "latency p50 %.1f ms  p99 %.1f ms  max %.1f ms\n", at(0.50), at(0.99), t[k] * 1000
			printf "requests >= 1 s: %d\n", slow + 0
		}'
}

# server_split — requests each server logged (from the access logs).
server_split() {
	local i f
	for i in $(seq 1 "$LBT_NSERVERS"); do
		f="$(lbt_tmpdir)/s$i.access.log"
		printf "s%d %s  " "$i" "$( [ -f "$f" ] && wc -l <"$f" || echo 0)"
	done
	echo
}

# decap_lbdecap I KIND... — server I takes the outer headers off with lb-decap on dc0 (every
# kind at once).
decap_lbdecap() {
	local role="s$1"
	LBT_DECAP_PIDS="${LBT_DECAP_PIDS:-} $(start_in_ns "$role" "lb-decap-$role" "$(lbt_bin lb-decap)" \
		--tun dc0 --gue-port 6080 --ipip --gre)"
	for _ in $(seq 1 50); do
		nsx "$role" ip link show dc0 2>/dev/null | grep -q ',UP' && return 0
		sleep 0.1
	done
	return 1
}

# --- benchmarks (scripts/bench-gateway.sh, scripts/bench-queues.sh) ----------------------------

# route_mode MODE — how gw routes through lb0: "tun" — the VIP and the servers' replies
# (topo_up's rules); "tun-both" — client→server traffic too (tun-echo forwards it unchanged);
# "kernel" — none (kernel DNAT, or straight to a server).
route_mode() {
	nsx gw ip rule del pref 100 2>/dev/null
	nsx gw ip rule del pref 101 2>/dev/null
	case "$1" in
	tun) nsx gw ip rule add iif br0 from 10.20.1.0/24 lookup 100 pref 100 ;;
	tun-both)
		nsx gw ip rule add iif br0 from 10.20.1.0/24 lookup 100 pref 100
		nsx gw ip rule add iif gc to 10.20.1.0/24 lookup 100 pref 101
		;;
	kernel) ;;
	esac
	nsx gw ip route flush cache 2>/dev/null
}

# stop_gw — stops the gateway GW_PID and waits until it is gone: it was started in a command
# substitution, so it is not this shell's child and `wait` alone returns at once; a gateway
# still exiting would be counted by the next row's CPU sums and then vanish from them (a
# negative CPU figure).
stop_gw() {
	[ -n "${GW_PID:-}" ] || return 0
	kill "$GW_PID" 2>/dev/null
	wait "$GW_PID" 2>/dev/null
	local i
	for i in $(seq 100); do
		[ -e "/proc/$GW_PID" ] || break
		sleep 0.05
	done
	[ -e "/proc/$GW_PID" ] && kill -9 "$GW_PID" 2>/dev/null
	GW_PID=""
}
