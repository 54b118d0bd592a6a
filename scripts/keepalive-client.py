#!/usr/bin/env python3
"""Keep-alive HTTP client and report of scripts/demo-cluster.sh.

  keepalive-client.py run HOST SECONDS CONNS PERIOD LOG
      CONNS keep-alive connections to HOST:80, one request on each every PERIOD seconds for
      SECONDS; a connection that fails (timeout, reset, closed) is counted and opened again.
      One line per request into LOG: conn, generation, local port, sent, done, ok, server/error.
  keepalive-client.py report LOG EVENTS
      EVENTS: lines "NAME UNIX_TIME" (kill, drain), "on GATEWAY PORT..." (the client ports
      each gateway held just before the kill) and "later GATEWAY PORT..." (just before the
      drain). A connection of gw1 must be held by gw2 or gw3 later. Prints the summary; JSON of the figures last.
"""
import json
import socket
import sys
import threading
import time

TIMEOUT = 5.0


def request(sock, host):
    sock.sendall(b"GET / HTTP/1.1\r\nHost: " + host.encode() + b"\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = sock.recv(4096)
        if not d:
            raise ConnectionError("closed by peer")
        buf += d
    head, body = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        d = sock.recv(4096)
        if not d:
            raise ConnectionError("closed by peer mid-body")
        body += d
    status = head.split(b" ", 2)[1]
    if status != b"200":
        raise ConnectionError("status " + status.decode())
    return body.decode().strip()


def worker(i, host, end, period, out, lock):
    gen = 0
    sock = None
    port = 0
    nxt = time.time() + (i % 20) * period / 20
    while True:
        now = time.time()
        if now >= end:
            break
        if nxt > now:
            time.sleep(nxt - now)
        nxt += period
        t0 = time.time()
        try:
            if sock is None:
                gen += 1
                sock = socket.create_connection((host, 80), timeout=TIMEOUT)
                port = sock.getsockname()[1]
            server, ok = request(sock, host), 1
        except (OSError, ConnectionError, ValueError, IndexError) as e:
            server, ok = type(e).__name__ + ":" + str(e).replace(" ", "_"), 0
            if sock is not None:
                sock.close()
            sock = None
        with lock:
            out.write(f"{i} {gen} {port} {t0:.6f} {time.time():.6f} {ok} {server}\n")
    if sock is not None:
        sock.close()


def run(host, seconds, conns, period, log):
    end = time.time() + float(seconds)
    lock = threading.Lock()
    with open(log, "w", buffering=1) as out:
        ts = [threading.Thread(target=worker, args=(i, host, end, float(period), out, lock))
              for i in range(int(conns))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()


def report(log, events):
    ev, on, later = {}, {}, {}
    for line in open(events):
        f = line.split()
        if f[0] == "on":
            for p in f[2:]:
                on[int(p)] = f[1]
        elif f[0] == "later":
            for p in f[2:]:
                later.setdefault(int(p), []).append(f[1])
        elif f:
            ev[f[0]] = float(f[1])
    reqs = []
    for line in open(log):
        c, g, p, t0, t1, ok, what = line.split()
        reqs.append((int(c), int(g), int(p), float(t0), float(t1), int(ok), what))
    kill, drain = ev["kill"], ev["drain"]
    conns = {}
    for r in reqs:
        conns.setdefault(r[0], []).append(r)
    failed = [r for r in reqs if not r[5]]
    in_flight = [r for r in reqs if r[3] <= kill < r[4]]
    failed_kill = [r for r in failed if r[3] <= kill < r[4]]
    failed_after_drain = [r for r in failed if r[4] >= drain]
    slow = [r for r in reqs if r[5] and r[4] - r[3] >= 0.1]
    print(f"requests {len(reqs)}  failed {len(failed)}  in flight at the SIGKILL {len(in_flight)} "
          f"(failed of those {len(failed_kill)})  failed after the drain {len(failed_after_drain)}  "
          f"answered after >= 100 ms {len(slow)}"
          + (" (sent at the kill " + ",".join(f"{(r[3] - kill) * 1000:+.0f}" for r in slow) + " ms)"
             if slow else ""))
    print(f"{'conn':>4} {'port':>6} {'gateway':>8} {'then':>8} {'first':>6} {'last':>6} {'servers':>8} {'failed':>6} "
          f"{'reopened':>8}  recovered after the kill")
    spread, moved, recovered, same, slowest = {}, 0, [], True, 0.0
    for c in sorted(conns):
        rs = conns[c]
        first_port = rs[0][2]
        gw = on.get(first_port, "?")
        spread[gw] = spread.get(gw, 0) + 1
        servers = [r[6] for r in rs if r[5]]
        distinct = sorted(set(servers))
        nfail = sum(1 for r in rs if not r[5])
        reopened = rs[-1][1] - 1
        if len(distinct) > 1 or reopened:
            moved += 1
        rec = ""
        if gw == "gw1":
            after = [r for r in rs if r[4] > kill]
            ok_after = [r for r in after if r[5]]
            if ok_after:
                rec = f"{(ok_after[0][4] - kill) * 1000:.0f} ms"
                recovered.append(ok_after[0][4] - kill)
                slowest = max(slowest, ok_after[0][4] - ok_after[0][3])
                if after[0] is not ok_after[0] or ok_after[0][1] != 1 or ok_after[0][6] != servers[0]:
                    same = False
                    rec += f" (after {sum(1 for r in after if r[4] <= ok_after[0][4] and not r[5])}" \
                        f" failures, connection {ok_after[0][1]}, from {ok_after[0][6]})"
            else:
                rec, same = "never", False
        then = "+".join(later.get(rs[-1][2], ["-"]))
        if gw == "gw1" and not set(later.get(first_port, [])) & {"gw2", "gw3"}:
            same = False
        print(f"{c:>4} {first_port:>6} {gw:>8} {then:>8} {servers[0] if servers else '-':>6} "
              f"{servers[-1] if servers else '-':>6} {len(distinct):>8} {nfail:>6} {reopened:>8}  {rec}")
    per_server = {}
    for c in conns:
        ok = [r[6] for r in conns[c] if r[5]]
        if ok:
            per_server[ok[0]] = per_server.get(ok[0], 0) + 1
    print("connections per first server: " + "  ".join(f"{s} {n}" for s, n in sorted(per_server.items())))
    on_killed = sum(1 for c in conns if on.get(conns[c][0][2]) == "gw1")
    last = max(recovered) * 1000 if recovered else -1
    print(f"connections per gateway before the kill: "
          + "  ".join(f"{g} {n}" for g, n in sorted(spread.items())))
    print(f"connections on the killed gateway: {on_killed}, recovered {len(recovered)}"
          + (f", the last {last:.0f} ms after the SIGKILL (the slowest of those requests took"
             f" {slowest * 1000:.1f} ms)" if recovered else "")
          + (", each on its next request from the same server" if same and recovered else ""))
    print(f"connections that changed server or were reopened: {moved}")
    print("FIGURES " + json.dumps({
        "requests": len(reqs), "failed": len(failed), "in_flight_at_kill": len(in_flight),
        "failed_at_kill": len(failed_kill), "slow": len(slow), "failed_after_drain": len(failed_after_drain),
        "spread": spread, "on_killed": on_killed, "recovered": len(recovered),
        "last_recovered_ms": round(last),
        "slowest_recovery_request_ms": round(slowest * 1000, 1), "same_server_next_request": same and bool(recovered),
        "moved": moved}))


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "run":
        run(*sys.argv[2:])
    elif len(sys.argv) == 4 and sys.argv[1] == "report":
        report(*sys.argv[2:])
    else:
        sys.exit(__doc__)
