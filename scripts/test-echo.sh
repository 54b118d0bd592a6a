#!/usr/bin/env bash
# test-echo.sh — proves the topology's routing with the bare TUN echo forwarder: client→servers
# and servers→client traffic is steered through lb0, tun-echo writes it back, HTTP works (IPv4
# and IPv6, with our load generator and with hey when installed), servers see the client's real
# address, and with tun-echo stopped nothing gets through. Exit status 0 on success.
# Env: LBT (namespace prefix), LBT_BIN_DIR (where tun-echo, lb-demo-load, lb-demo-http are).
set -u
. "$(dirname "$0")/netns-lib.sh"
trap topo_down EXIT
trap 'exit 130' INT TERM

fail() { echo "FAIL: $*" >&2; exit 1; }

# expect_all_ok CSV N SERVER — N rows, all 200, all answered by SERVER (when the CSV names it).
expect_all_ok() {
	local csv="$1" n="$2" server="$3" rows ok wrong
	rows=$(($(wc -l <"$csv") - 1))
	ok=$(awk -F, 'NR > 1 && $7 == 200' "$csv" | wc -l)
	[ "$rows" -eq "$n" ] || fail "$csv: $rows rows, want $n"
	[ "$ok" -eq "$n" ] || fail "$csv: $ok of $n requests got 200"
	if head -1 "$csv" | grep -q ',server$'; then
		wrong=$(awk -F, -v s="$server" 'NR > 1 && $9 != s' "$csv" | wc -l)
		[ "$wrong" -eq 0 ] || fail "$csv: $wrong answers not from $server"
	fi
	echo "ok: $csv: $n/$n requests 200"
}

topo_up || fail "topo_up"
topo_route_servers_via_tun || fail "policy rule for client traffic"
start_servers || fail "servers did not start"
echo_pid=$(start_in_ns gw tun-echo "$(lbt_bin tun-echo)" --tun "$LBT_TUN")
sleep 0.3
kill -0 "$echo_pid" 2>/dev/null || fail "tun-echo did not start: $(cat "$LBT_TMP/tun-echo.log")"

tmp="$(lbt_tmpdir)"
LBT_LOADER=own load_run "http://$(server_addr4 1)/" 200 10 "$tmp/own4.csv" || fail "load v4"
expect_all_ok "$tmp/own4.csv" 200 s1
LBT_LOADER=own load_run "http://[$(server_addr6 2)]/" 200 10 "$tmp/own6.csv" || fail "load v6"
expect_all_ok "$tmp/own6.csv" 200 s2
csv_summary "$tmp/own4.csv" 200

# The servers saw the client's own addresses (no proxying on the way).
others=$(awk '$1 != "10.40.0.2" && $1 != "fd00:40::2"' "$tmp/s1.access.log" "$tmp/s2.access.log" | wc -l)
[ "$others" -eq 0 ] || fail "$others requests logged from an address other than the client's"
echo "ok: servers logged the client's real address"

if command -v hey >/dev/null 2>&1; then
	load_run "http://$(server_addr4 2)/" 200 10 "$tmp/hey.csv" || fail "hey"
	expect_all_ok "$tmp/hey.csv" 200 s2
else
	echo "skip: hey not installed"
fi

# Packets really cross the TUN: without tun-echo nothing gets through.
kill "$echo_pid"
wait "$echo_pid" 2>/dev/null
# Not this shell's child, so `wait` returns at once: wait for its exit line (each queue's thread
# notices the signal within its 100 ms poll).
for _ in $(seq 100); do
	[ -e "/proc/$echo_pid" ] || break
	sleep 0.05
done
grep -q "rx [1-9]" "$tmp/tun-echo.log" || fail "tun-echo saw no packets: $(cat "$tmp/tun-echo.log")"
nsx client "$(lbt_bin lb-demo-load)" -n 2 -c 2 --timeout 1 "http://$(server_addr4 1)/" >"$tmp/dead.csv"
[ "$(wc -l <"$tmp/dead.csv")" -eq 3 ] || fail "the load generator did not record 2 requests"
if awk -F, 'NR > 1 && $7 == 200' "$tmp/dead.csv" | grep -q .; then
	fail "a request got through with tun-echo stopped: the route bypasses the TUN"
fi
echo "ok: with tun-echo stopped no request gets through"
echo "PASS"
