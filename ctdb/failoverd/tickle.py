"""Tickle ACKs: clients of a moved address learn at once that their connection is gone.

After an address moves, its clients' TCP connections point at a node that no longer
has them; an idle client would notice only when it next sends, and then only after
retransmission timeouts.  So every node records the TCP connections to the public
addresses it holds (from ``/proc/net/tcp*``) and shares the list with the cluster; the
node that takes an address over sends each of its clients a "tickle": an ACK from the
address with sequence numbers the client does not expect.  The client answers with an
ACK carrying its real numbers, which the new holder's kernel, knowing no such
connection, answers with a RST: the client's connection fails now and it reconnects.

The packets are built here (pure functions, table-tested) and sent through raw sockets.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from netfs.health import parse_proc_net_tcp

TCP_ESTABLISHED = 0x01
TICKLE_COUNT = 3  # tickles per connection, as CTDB sends
WINDOW = 1234
IPPROTO_TCP = 6


@dataclass(frozen=True, order=True)
class Conn:
    """A client's TCP connection to a public address (server side first)."""

    server: str
    server_port: int
    client: str
    client_port: int


def _plain(address: str) -> str:
    """``::ffff:198.18.2.1`` (an IPv4 client of a dual-stack socket) as IPv4."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def connections(texts: Iterable[str], held: Iterable[str]) -> set[Conn]:
    """Established connections to the *held* addresses, from /proc/net/tcp and tcp6."""
    addresses = set(held)
    found = set()
    for text in texts:
        for sock in parse_proc_net_tcp(text):
            if sock.state != TCP_ESTABLISHED or not sock.remote:
                continue
            server = _plain(sock.address)
            if server in addresses:
                found.add(Conn(server, sock.port, _plain(sock.remote), sock.remote_port))
    return found


def read_connections(held: Iterable[str], proc_net: Path = Path("/proc/net")) -> set[Conn]:
    texts = []
    for name in ("tcp", "tcp6"):
        try:
            texts.append((proc_net / name).read_text())
        except FileNotFoundError:
            continue  # no IPv6 in this kernel
    return connections(texts, held)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_segment(src: str, sport: int, dst: str, dport: int) -> bytes:
    """A bare ACK from *src* to *dst*, sequence and ack numbers 0, checksummed."""
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version != d.version:
        raise ValueError(f"{src} and {dst} are not of one IP version")
    header = struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 5 << 4, 0x10, WINDOW, 0, 0)
    if s.version == 4:
        pseudo = s.packed + d.packed + struct.pack("!BBH", 0, IPPROTO_TCP, len(header))
    else:
        pseudo = s.packed + d.packed + struct.pack("!I3xB", len(header), IPPROTO_TCP)
    checksum = _checksum(pseudo + header)
    return header[:16] + struct.pack("!H", checksum) + header[18:]


def ipv4_packet(src: str, sport: int, dst: str, dport: int) -> bytes:
    """The tickle as a whole IPv4 packet (for a raw socket with IP_HDRINCL)."""
    segment = tcp_segment(src, sport, dst, dport)
    s, d = ipaddress.IPv4Address(src), ipaddress.IPv4Address(dst)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(segment), 0, 0x4000, 64,
                         IPPROTO_TCP, 0, s.packed, d.packed)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + segment


def _send_one(conn: Conn, v4: socket.socket) -> None:
    if ipaddress.ip_address(conn.server).version == 4:
        v4.sendto(ipv4_packet(conn.server, conn.server_port, conn.client, conn.client_port),
                  (conn.client, 0))
        return
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_TCP) as v6:
        v6.bind((conn.server, 0))  # the kernel writes the IPv6 header
        v6.sendto(tcp_segment(conn.server, conn.server_port, conn.client, conn.client_port),
                  (conn.client, 0))


def send_tickles(conns: Iterable[Conn], count: int = TICKLE_COUNT) -> int:
    """Tickle every connection's client *count* times; the packets sent.  A packet that
    cannot go (an unreachable client) does not stop the others; if none could, the last
    error is raised."""
    sent = 0
    error: OSError | None = None
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as v4:
        for conn in sorted(conns):
            for _ in range(count):
                try:
                    _send_one(conn, v4)
                    sent += 1
                except OSError as exc:
                    error = exc
    if error is not None and not sent:
        raise error
    return sent
