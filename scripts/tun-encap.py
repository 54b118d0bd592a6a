#!/usr/bin/env python3
"""tun-encap.py TUN TYPE SERVER [VIP...] — a tunnelling director in a few lines, for tests.

Reads the packets the host routes into the TUN device TUN (persistent, IFF_NO_PI), and sends
each one whose destination is a VIP to SERVER inside the tunnel TYPE, the way Linux IPVS does
with -i --tun-type ...; the kernel adds the outer IP header (raw and UDP sockets), this script
the GRE/GUE header and checksums. It is written apart from lb-core's encoder on purpose: the
end-to-end test of lb-decap (scripts/test-e2e.sh decap) checks the decoder against it.

TYPE: ipip | gre | gre-csum | gue | gue-csum | gue-remcsum (GUE to UDP port 6080; gue has
a zero UDP checksum, gue-remcsum leaves the inner TCP/UDP checksum to the receiver: remote
checksum offload). SERVER is an IPv4 or an IPv6 address: the outer family.
"""
import fcntl
import ipaddress
import os
import socket
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI, IFF_MULTI_QUEUE = 0x0001, 0x1000, 0x0100
SO_NO_CHECK = 11
UDP_NO_CHECK6_TX = 101
GUE_PORT = 6080


def fold(s):
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def ones_sum(b):
    if len(b) % 2:
        b += b"\0"
    return sum(struct.unpack("!%dH" % (len(b) // 2), b))


def gre(inner, csum):
    ethertype = 0x0800 if inner[0] >> 4 == 4 else 0x86DD
    if not csum:
        return struct.pack("!HH", 0, ethertype) + inner
    g = bytearray(struct.pack("!HHHH", 0x8000, ethertype, 0, 0) + inner)
    g[4:6] = struct.pack("!H", ~fold(ones_sum(bytes(g))) & 0xFFFF)
    return bytes(g)


def remcsum(inner):
    """The GUE header with REMCSUM and the inner packet with only the pseudo-header sum in its
    L4 checksum field, as a sender with checksum offload leaves it (CHECKSUM_PARTIAL)."""
    p = bytearray(inner)
    if p[0] >> 4 == 4:
        start, proto = (p[0] & 0x0F) * 4, p[9]
        addrs = bytes(p[12:20])
    else:
        start, proto = 40, p[6]
        addrs = bytes(p[8:40])
    field = {6: 16, 17: 6}.get(proto)
    if field is None:
        return bytes([0, 4 if p[0] >> 4 == 4 else 41, 0, 0]) + inner
    pseudo = fold(ones_sum(addrs) + proto + len(p) - start)
    p[start + field : start + field + 2] = struct.pack("!H", pseudo)
    inner_proto = 4 if p[0] >> 4 == 4 else 41
    hdr = bytes([2, inner_proto, 0, 1]) + struct.pack("!IHH", 0x80000000, start, start + field)
    return hdr + bytes(p)


def main():
    tun, kind, server = sys.argv[1], sys.argv[2], sys.argv[3]
    vips = {ipaddress.ip_address(v) for v in sys.argv[4:]}
    fam = socket.AF_INET6 if ":" in server else socket.AF_INET
    fd = os.open("/dev/net/tun", os.O_RDWR)
    # An existing device is attached to with its own multi-queue flag (the kernel refuses
    # another); one queue is enough here.
    try:
        with open(f"/sys/class/net/{tun}/tun_flags") as f:
            multi = int(f.read(), 16) & IFF_MULTI_QUEUE
    except OSError:
        multi = 0
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", tun.encode(), IFF_TUN | IFF_NO_PI | multi))
    raw = {}
    udp = socket.socket(fam, socket.SOCK_DGRAM)
    if kind == "gue":
        if fam == socket.AF_INET:
            udp.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
        else:
            udp.setsockopt(socket.IPPROTO_UDP, UDP_NO_CHECK6_TX, 1)
    sent = 0
    while True:
        inner = os.read(fd, 65536)
        version = inner[0] >> 4
        dst = inner[16:20] if version == 4 else inner[24:40]
        if version not in (4, 6) or ipaddress.ip_address(dst) not in vips:
            continue
        if kind == "ipip":
            proto, payload = (4 if version == 4 else 41), inner
        elif kind in ("gre", "gre-csum"):
            proto, payload = 47, gre(inner, kind == "gre-csum")
        elif kind == "gue-remcsum":
            udp.sendto(remcsum(inner), (server, GUE_PORT))
            continue
        else:
            udp.sendto(bytes([0, 4 if version == 4 else 41, 0, 0]) + inner, (server, GUE_PORT))
            continue
        if proto not in raw:
            raw[proto] = socket.socket(fam, socket.SOCK_RAW, proto)
        raw[proto].sendto(payload, (server, 0))
        sent += 1


if __name__ == "__main__":
    main()
