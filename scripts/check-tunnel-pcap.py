#!/usr/bin/env python3
"""check-tunnel-pcap.py PCAP KIND SPEC... — check, field by field, the tunnelled packets a
real server received from lb-tun (a tcpdump -w capture of its Ethernet link), and that its
replies to the client left unencapsulated. Used by scripts/test-e2e.sh tunnel.

KIND: ipip | gue | gre. SPEC is KEY=VALUE:
  src4, src6        lb-tun's --tunnel-source addresses
  server4, server6  this real server's addresses (the outer destination)
  vip4, vip6        the virtual addresses (the inner destination)
  client4, client6  the client's addresses (the inner source)
  csum4, csum6      GUE: UDP checksum over IPv4/IPv6 outer, GRE: GRE checksum (0 or 1)
  port              GUE: the real server's --tun-port

Every outer packet (source = a tunnel source) must have: a valid outer header (IPv4: IHL 5,
header checksum, total length = the frame; IPv6: payload length, flow label 0), the outer
protocol of KIND and the inner version, TOS/traffic class and DF (IPv4, from an IPv4 inner)
copied from the inner packet, IPv4 identification 0 when DF is set, TTL / hop limit one below
the inner packet's (lb-tun's host forwarded the outer packet once), then for GUE a UDP header
to PORT from a source port in 32768-60999 that is the same for every packet of a flow, the
UDP checksum as configured (0, or one that verifies), a 4-byte GUE header (version 0, no
flags, the inner protocol); for GRE flags 00 00 or 80 00 with a checksum that verifies and
zero reserved bytes, the inner EtherType; and an inner packet from the client to a VIP whose
IP and TCP checksums verify. Replies: every packet from a VIP to the client is plain TCP.
Prints "outer N (IPv4 A, IPv6 B) replies R"; exits 1 on the first wrong field.

check-tunnel-pcap.py too-big PCAP SPEC... — check the path MTU answers a client received (a
capture of its link): every ICMP "fragmentation needed" (type 3 code 4) / ICMPv6 "packet too
big" (type 2) comes from a VIP to the client, carries the MTU left inside the tunnel (mtu4,
mtu6) and quotes the client's own TCP segment to the VIP's port (port) that was too big for it;
no other ICMP error reaches the client (neighbour discovery and echo are ignored). SPEC: vip4,
vip6, client4, client6, mtu4, mtu6, port. Prints "ipv4 N mtu M quoted Q ipv6 N mtu M quoted Q"
(N answers, M their MTU, Q the largest quoted packet's length).
"""
import ipaddress
import struct
import sys


def fail(msg):
    print("check-tunnel-pcap: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def ones(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def verifies(b, extra=0):
    s = ones(b) + extra
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


def pseudo(src, dst, proto, length):
    return ones(src) + ones(dst) + proto + length


def frames(path):
    data = open(path, "rb").read()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    link = struct.unpack(endian + "I", data[20:24])[0]
    if link != 1:
        fail("link type %d, want Ethernet" % link)
    at = 24
    while at + 16 <= len(data):
        _, _, incl, orig = struct.unpack(endian + "IIII", data[at : at + 16])
        if incl != orig:
            fail("frame cut by the snap length")
        yield data[at + 16 : at + 16 + incl]
        at += 16 + incl


def ip_fields(p):
    """(version, header length, protocol, src, dst, ttl, tos, df, total length) of an IP packet."""
    v = p[0] >> 4
    if v == 4:
        ihl = (p[0] & 15) * 4
        df = bool(p[6] & 0x40)
        return v, ihl, p[9], p[12:16], p[16:20], p[8], p[1], df, struct.unpack("!H", p[2:4])[0]
    if v == 6:
        tc = ((p[0] & 15) << 4) | (p[1] >> 4)
        return v, 40, p[6], p[8:24], p[24:40], p[7], tc, None, 40 + struct.unpack("!H", p[4:6])[0]
    fail("not IP: %s" % p[:4].hex())


def check_inner(p, spec):
    v, hl, proto, src, dst, ttl, tos, df, total = ip_fields(p)
    if total != len(p):
        fail("inner length %d, carried %d" % (total, len(p)))
    if v == 4 and not verifies(p[:hl]):
        fail("inner IPv4 header checksum")
    want_src, want_dst = (spec["client4"], spec["vip4"]) if v == 4 else (spec["client6"], spec["vip6"])
    if (src, dst) != (want_src, want_dst):
        fail("inner %s -> %s" % (ipaddress.ip_address(src), ipaddress.ip_address(dst)))
    if proto != 6:
        fail("inner protocol %d, want TCP" % proto)
    if not verifies(p[hl:], pseudo(src, dst, 6, len(p) - hl)):
        fail("inner TCP checksum")
    flow = (src, dst, p[hl : hl + 4])
    return v, ttl, tos, df, flow


def too_big(path, spec):
    for k in ("vip4", "vip6", "client4", "client6"):
        spec[k] = ipaddress.ip_address(spec[k]).packed
    mtu = {4: int(spec["mtu4"]), 6: int(spec["mtu6"])}
    port = int(spec["port"])
    seen = {4: 0, 6: 0}
    quoted_max = {4: 0, 6: 0}
    mtu_seen = {4: 0, 6: 0}
    for f in frames(path):
        ethertype = struct.unpack("!H", f[12:14])[0]
        if ethertype not in (0x0800, 0x86DD):
            continue
        p = f[14:]
        v, hl, proto, src, dst, _, _, _, total = ip_fields(p)
        if proto != (1 if v == 4 else 58):
            continue
        icmp = p[hl:total]
        ty, code = icmp[0], icmp[1]
        if v == 4:
            if ty in (0, 8):
                continue
            if not verifies(icmp):
                fail("ICMP checksum")
            if (ty, code) != (3, 4):
                fail("ICMP type %d code %d from %s" % (ty, code, ipaddress.ip_address(src)))
            got = struct.unpack("!H", icmp[6:8])[0]
        else:
            if ty in (128, 129, 133, 134, 135, 136, 137):
                continue
            if not verifies(icmp, pseudo(src, dst, 58, len(icmp))):
                fail("ICMPv6 checksum")
            if (ty, code) != (2, 0):
                fail("ICMPv6 type %d code %d from %s" % (ty, code, ipaddress.ip_address(src)))
            got = struct.unpack("!I", icmp[4:8])[0]
        if (src, dst) != (spec["vip%d" % v], spec["client%d" % v]):
            fail("a path MTU answer %s -> %s" % (ipaddress.ip_address(src), ipaddress.ip_address(dst)))
        if got != mtu[v]:
            fail("IPv%d path MTU answer with MTU %d, want %d" % (v, got, mtu[v]))
        q = icmp[8:]
        qv, qhl, qproto, qsrc, qdst, _, _, _, qtotal = ip_fields(q)
        if qv != v or qproto != 6 or (qsrc, qdst) != (spec["client%d" % v], spec["vip%d" % v]):
            fail("the answer quotes no TCP segment from the client to the VIP")
        if struct.unpack("!H", q[qhl + 2 : qhl + 4])[0] != port:
            fail("the answer quotes a segment to port %d" % struct.unpack("!H", q[qhl + 2 : qhl + 4])[0])
        if qtotal <= mtu[v]:
            fail("the answer quotes a %d-byte packet, within the MTU %d" % (qtotal, mtu[v]))
        seen[v] += 1
        mtu_seen[v] = got
        quoted_max[v] = max(quoted_max[v], qtotal)
    print(
        "ipv4 %d mtu %d quoted %d ipv6 %d mtu %d quoted %d"
        % (seen[4], mtu_seen[4], quoted_max[4], seen[6], mtu_seen[6], quoted_max[6])
    )


def main():
    if sys.argv[1] == "too-big":
        too_big(sys.argv[2], dict(a.split("=", 1) for a in sys.argv[3:]))
        return
    path, kind = sys.argv[1], sys.argv[2]
    spec = dict(a.split("=", 1) for a in sys.argv[3:])
    for k in ("src4", "src6", "server4", "server6", "vip4", "vip6", "client4", "client6"):
        spec[k] = ipaddress.ip_address(spec[k]).packed
    csum = {4: spec.get("csum4") == "1", 6: spec.get("csum6") == "1"}
    port = int(spec.get("port", "0"))
    outer = {4: 0, 6: 0}
    replies = 0
    sports = {}
    for f in frames(path):
        ethertype = struct.unpack("!H", f[12:14])[0]
        if ethertype not in (0x0800, 0x86DD):
            continue
        p = f[14:]
        v, hl, proto, src, dst, ttl, tos, df, total = ip_fields(p)
        if src in (spec["vip4"], spec["vip6"]):
            if proto != 6 or dst not in (spec["client4"], spec["client6"]):
                fail("a packet from a VIP that is not plain TCP to the client (protocol %d)" % proto)
            replies += 1
            continue
        if src not in (spec["src4"], spec["src6"]):
            continue
        # An outer packet.
        if v == 4:
            if hl != 20 or not verifies(p[:20]):
                fail("outer IPv4 header (IHL %d or checksum)" % hl)
            if total != len(p):
                fail("outer IPv4 total length %d, frame carries %d" % (total, len(p)))
            ident = struct.unpack("!H", p[4:6])[0]
            if df and ident != 0:
                fail("outer identification %d with DF" % ident)
        else:
            if total != len(p):
                fail("outer IPv6 payload length %d, frame carries %d" % (total - 40, len(p) - 40))
            if struct.unpack("!I", p[:4])[0] & 0xFFFFF:
                fail("outer IPv6 flow label not 0")
        if dst != (spec["server4"] if v == 4 else spec["server6"]):
            fail("outer destination %s" % ipaddress.ip_address(dst))
        payload = p[hl:total]
        if kind == "ipip":
            inner = payload
            want_proto = 4 if inner[0] >> 4 == 4 else 41
        elif kind == "gre":
            want_proto = 47
            flags, ethertype = struct.unpack("!HH", payload[:4])
            if flags == 0x8000:
                if not csum[v]:
                    fail("GRE checksum present, not configured")
                if not verifies(payload) or payload[6:8] != b"\0\0":
                    fail("GRE checksum or reserved field")
                inner = payload[8:]
            elif flags == 0:
                if csum[v]:
                    fail("GRE checksum configured, absent")
                inner = payload[4:]
            else:
                fail("GRE flags %04x" % flags)
            if ethertype != (0x0800 if inner[0] >> 4 == 4 else 0x86DD):
                fail("GRE EtherType %04x for IPv%d" % (ethertype, inner[0] >> 4))
        else:
            want_proto = 17
            sport, dport, ulen, ucsum = struct.unpack("!HHHH", payload[:8])
            if dport != port or not 32768 <= sport <= 60999 or ulen != len(payload):
                fail("UDP %d -> %d length %d (payload %d)" % (sport, dport, ulen, len(payload)))
            if csum[v]:
                if ucsum == 0 or not verifies(payload, pseudo(src, dst, 17, ulen)):
                    fail("UDP checksum %04x does not verify" % ucsum)
            elif ucsum != 0:
                fail("UDP checksum %04x, configured none" % ucsum)
            gue = payload[8:12]
            inner = payload[12:]
            if gue != bytes([0, 4 if inner[0] >> 4 == 4 else 41, 0, 0]):
                fail("GUE header %s" % gue.hex())
        if proto != want_proto:
            fail("outer protocol %d, want %d" % (proto, want_proto))
        iv, ittl, itos, idf, flow = check_inner(inner, spec)
        if ttl != ittl - 1:
            fail("outer TTL %d, inner %d (want one less: forwarded once)" % (ttl, ittl))
        if tos != itos:
            fail("outer TOS/traffic class %02x, inner %02x" % (tos, itos))
        if v == 4 and df != (idf if iv == 4 else False):
            fail("outer DF %s, inner IPv%d DF %s" % (df, iv, idf))
        if kind == "gue":
            if sports.setdefault(flow, sport) != sport:
                fail("GUE source port changed within a flow")
        outer[v] += 1
    print("outer %d (IPv4 %d, IPv6 %d) replies %d" % (outer[4] + outer[6], outer[4], outer[6], replies))


if __name__ == "__main__":
    main()
