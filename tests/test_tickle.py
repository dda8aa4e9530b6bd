"""Tickle ACKs: connections to public addresses are tracked cluster-wide, and the clients
of a moved address are reset at once instead of hanging on a dead connection."""

from __future__ import annotations

import ipaddress
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from ctdb.failoverd.tickle import Conn, _checksum, connections, ipv4_packet, tcp_segment
from ctdb.sandbox.lab import Options, Sandbox, wait_for

ROW = "   {n}: {local} {remote} {st} 00000000:00000000 00:00000000 00000000     0        0 {n}"
HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"


def hexaddr(ip: str, port: int) -> str:
    raw = ipaddress.ip_address(ip).packed
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return f"{words.hex().upper()}:{port:04X}"


def test_connections_to_held_addresses_only() -> None:
    text = "\n".join([HEADER,
        ROW.format(n=0, local=hexaddr("198.18.2.100", 445),
                   remote=hexaddr("198.18.2.250", 40000), st="01"),
        ROW.format(n=1, local=hexaddr("198.18.2.100", 445), remote=hexaddr("0.0.0.0", 0),
                   st="0A"),  # listening: not a connection
        ROW.format(n=2, local=hexaddr("198.18.2.101", 445),
                   remote=hexaddr("198.18.2.250", 40001), st="01"),  # not held here
        ROW.format(n=3, local=hexaddr("198.18.2.100", 2049),
                   remote=hexaddr("198.18.2.250", 40002), st="06"),  # TIME_WAIT
    ])
    mapped = "\n".join([HEADER, ROW.format(
        n=0, local=hexaddr("::ffff:198.18.2.100", 445),
        remote=hexaddr("::ffff:198.18.2.251", 40003), st="01")])
    assert connections([text, mapped], ["198.18.2.100"]) == {
        Conn("198.18.2.100", 445, "198.18.2.250", 40000),
        Conn("198.18.2.100", 445, "198.18.2.251", 40003)}


@pytest.mark.parametrize(("src", "dst"), [("198.18.2.100", "198.18.2.250"),
                                          ("2001:2::100", "2001:2::250")])
def test_tickle_is_a_checksummed_bare_ack(src: str, dst: str) -> None:
    segment = tcp_segment(src, 445, dst, 40000)
    sport, dport, seq, ack, offset, flags = struct.unpack("!HHIIBB", segment[:14])
    assert (sport, dport, seq, ack, offset >> 4, flags) == (445, 40000, 0, 0, 5, 0x10)
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    pseudo = (s.packed + d.packed + struct.pack("!BBH", 0, 6, 20) if s.version == 4
              else s.packed + d.packed + struct.pack("!I3xB", 20, 6))
    assert _checksum(pseudo + segment) == 0  # a valid checksum sums to zero


def test_ipv4_packet_header() -> None:
    packet = ipv4_packet("198.18.2.100", 445, "198.18.2.250", 40000)
    assert len(packet) == 40
    assert packet[0] == 0x45
    assert packet[9] == 6
    assert _checksum(packet[:20]) == 0
    assert packet[12:16] == ipaddress.ip_address("198.18.2.100").packed
    with pytest.raises(ValueError, match="not of one IP version"):
        tcp_segment("198.18.2.100", 1, "2001:2::1", 2)


SERVER = """
import socket, threading, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16)
def hold(c):
    while c.recv(4096): pass
while True:
    c, _ = s.accept(); threading.Thread(target=hold, args=(c,), daemon=True).start()
"""
# An idle client: connects, then waits for data that never comes; prints how it ended.
CLIENT = """
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
print("connected", c.getsockname()[1], flush=True)
c.settimeout(float(sys.argv[3]))
t = time.monotonic()
try:
    data = c.recv(10)
    print("closed" if not data else "data", flush=True)
except ConnectionResetError:
    print("reset", round(time.monotonic() - t, 3), flush=True)
except TimeoutError:
    print("timeout", flush=True)
"""
PORT = 7445


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(Options(name=f"t{os.getpid() % 100000}", nodes=2, public_ips=2)) as sandbox:
        servers = [subprocess.Popen(["ip", "netns", "exec", n.netns, sys.executable, "-c",
                                     SERVER, str(PORT)]) for n in sandbox.topo.nodes]
        try:
            yield sandbox
        finally:
            for server in servers:
                server.kill()
                server.wait()


def holder(sb: Sandbox, ip: str) -> int:
    out = sb.ctdb(0, "ip", "all").stdout
    return int(next(ln.split()[1] for ln in out.splitlines() if ln.startswith(ip + " ")))


def test_idle_client_of_a_moved_address_is_reset(sb: Sandbox) -> None:
    ip = sb.topo.public_ips[0]
    old = wait_for(f"{ip} hosted", lambda: (h := holder(sb, ip)) >= 0 and h + 1) - 1
    client = subprocess.Popen(sb.client_argv([sys.executable, "-c", CLIENT, ip, str(PORT),
                                              "20"]), stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout is not None
        port = int(client.stdout.readline().split()[1])
        # Both nodes learn the connection (the new holder will need it).
        for via in (0, 1):
            wait_for(f"node {via} to know the connection", lambda v=via: f"|{port}|{ip}|{PORT}|"
                     in sb.ctdb(v, "-X", "gettickles", ip).stdout)
        text = sb.ctdb(1 - old, "gettickles", ip, str(PORT)).stdout.splitlines()
        assert text[:2] == [f"Connections for IP: {ip}", "Num connections: 1"]
        assert text[2] == f"SRC: {sb.topo.client_ip}:{port}   DST: {ip}:{PORT}"
        started = time.monotonic()
        sb.ctdb(old, "disable")
        out, _ = client.communicate(timeout=30)
        assert out.split()[0] == "reset", out
        assert time.monotonic() - started < 10  # not the 20 s the idle client would wait
        wait_for("the tickles logged", lambda: f"sent 3 tickle ACKs to 1 clients of {ip}"
                 in sb.log_text(1 - old), timeout=5)
    finally:
        client.kill()
        client.wait()
        sb.ctdb(old, "enable", check=False)


# Watches the client namespace's incoming TCP for a tickle: an ACK with seq and ack 0.
SNIFF = """
import socket, struct, sys
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
raw.settimeout(10)
print("ready", flush=True)
while True:
    packet = raw.recv(65535)
    ihl = (packet[0] & 0x0F) * 4
    sport, dport, seq, ack, _, flags = struct.unpack("!HHIIBB", packet[ihl:ihl + 14])
    src = socket.inet_ntoa(packet[12:16])
    if (src, sport, dport) == (sys.argv[1], int(sys.argv[2]), int(sys.argv[3])) \\
            and (seq, ack, flags) == (0, 0, 0x10):
        print("tickled", flush=True)
        break
"""


def test_tickle_command_sends_a_tickle_ack(sb: Sandbox) -> None:
    ip = sb.topo.public_ips[1]
    sniffer = subprocess.Popen(sb.client_argv([sys.executable, "-c", SNIFF, ip, str(PORT),
                                               "40123"]), stdout=subprocess.PIPE, text=True)
    try:
        assert sniffer.stdout is not None
        assert sniffer.stdout.readline().strip() == "ready"
        # From the address's holder: elsewhere its nftables gate keeps the address dark.
        node = wait_for(f"{ip} hosted", lambda: (h := holder(sb, ip)) >= 0 and h + 1) - 1
        sb.ctdb(node, "tickle", f"{sb.topo.client_ip}:40123", f"{ip}:{PORT}")
        out, _ = sniffer.communicate(timeout=15)
        assert out.strip() == "tickled"
    finally:
        sniffer.kill()
        sniffer.wait()
    bad = sb.ctdb(0, "tickle", "nonsense", "x:1", check=False)
    assert bad.returncode == 2
    gated = sb.ctdb(1 - node, "tickle", f"{sb.topo.client_ip}:40123", f"{ip}:{PORT}",
                    check=False)
    assert (gated.returncode, gated.stderr.strip()) == (
        1, "cannot send the tickle: Operation not permitted")
