"""Measurement clients and echo servers, each run as its own process inside a lab
namespace: ``python -m bench.probe KIND [options]``; results are one JSON line.

Every client is a plain blocking Python loop, so the client side costs the same for
our transportd, Samba's ctdbd and the raw echo servers:

* latency (``--count N``): one request outstanding, each round trip timed with
  ``time.perf_counter_ns``; the result has the samples' percentiles in microseconds.
* rate (``--window W --seconds T``): W requests outstanding at all times; each reply
  read is answered with a new request.  Requests are encoded once and only their
  request id patched, and replies are only parsed as far as the header, so the
  client spends its time in send/recv and the server is what is measured.

Kinds: ``echo-server`` (unix seqpacket or TCP, Python), ``echo`` (client of any echo
server, also socat), ``ours`` (our transportd, PingRequest to Service.TRANSPORT of
``--pnn``), ``ours-async`` (the same through the asyncio ``Client``), ``ctdb`` (Samba
ctdbd's client socket, CTDB_CONTROL_PING to ``--pnn``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ctdb.protocol import Address
    from ctdb.transport.client import Client
    from ctdb.transport.sync import SyncClient

# pyctdb is imported only by the probes of our node (below, inside them), so the echo
# and Samba probes measure the same whatever state our code is in.

# Every recv asks for at most this much.  Python allocates the whole size on each call
# and shrinks it afterwards; at 256 KiB that costs more than the system call itself
# (measured here: a seqpacket echo loop drops from ~300,000/s to ~50,000/s).
RECV_SIZE = 65536

# ---------------------------------------------------------------------------------
# statistics


def summary(samples_ns: list[int]) -> dict[str, float]:
    s = sorted(samples_ns)
    n = len(s)

    def pct(p: float) -> float:
        return s[min(n - 1, int(p / 100 * n))] / 1000

    return {"n": n, "p50_us": pct(50), "p90_us": pct(90), "p99_us": pct(99),
            "min_us": s[0] / 1000, "mean_us": sum(s) / n / 1000}


def latency(round_trip: Callable[[], None], count: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        round_trip()
    clock = time.perf_counter_ns
    samples = []
    for _ in range(count):
        t0 = clock()
        round_trip()
        samples.append(clock() - t0)
    return summary(samples)


# ---------------------------------------------------------------------------------
# raw echo


def echo_server(args: argparse.Namespace) -> None:
    """Serve echo to one client after another until killed."""
    if args.unix:
        path = Path(args.unix)
        path.unlink(missing_ok=True)
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        lsock.bind(str(path))
    else:
        host, port = args.tcp.rsplit(":", 1)
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((host, int(port)))
    lsock.listen(8)
    print("ready", flush=True)
    while True:
        conn, _ = lsock.accept()
        if not args.unix:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        recv, send = conn.recv, conn.sendall
        with conn:
            try:
                while True:
                    data = recv(RECV_SIZE)
                    if not data:
                        break
                    send(data)
            except OSError:
                pass  # the client went away with replies unread: next client


def _connect_echo(args: argparse.Namespace) -> socket.socket:
    """Connect, retrying for up to 5 s while the server starts (socat says nothing)."""
    deadline = time.monotonic() + 5
    while True:
        try:
            if args.unix:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                try:
                    sock.connect(args.unix)
                except OSError:
                    sock.close()
                    raise
            else:
                host, port = args.tcp.rsplit(":", 1)
                sock = socket.create_connection((host, int(port)), timeout=10)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
            continue
        sock.settimeout(10)
        return sock


def echo_client(args: argparse.Namespace) -> dict[str, Any]:
    sock = _connect_echo(args)
    msg = bytes(args.size)
    size = args.size
    send, recv = sock.sendall, sock.recv

    def round_trip() -> None:
        send(msg)
        got = len(recv(RECV_SIZE))
        while got < size:  # a stream may split the echo
            got += len(recv(RECV_SIZE))

    if args.window and args.unix:
        return rate_packets(sock, lambda _rid: msg, args)
    if args.window:
        return rate_stream(sock, lambda _rid: msg, lambda _buf: size, args)
    return latency(round_trip, args.count, args.warmup)


# ---------------------------------------------------------------------------------
# pipelined rate, shared by every kind


def rate_packets(sock: socket.socket, request: Callable[[int], bytes],
                 args: argparse.Namespace,
                 recv_one: Callable[[], bytes] | None = None) -> dict[str, Any]:
    """Rate with one send per request and one recv per reply: over a message-preserving
    socket, or over a stream with *recv_one* reading exactly one reply."""
    send = sock.send if recv_one is None else sock.sendall

    def recv(_size: int) -> bytes:
        return recv_one() if recv_one is not None else sock.recv(_size)

    window, seconds = args.window, args.seconds
    rid = 0
    for _ in range(window):
        rid += 1
        send(request(rid))
    # Warm up for a tenth of the time, then count.
    clock = time.perf_counter
    t_warm = clock() + seconds / 10
    while clock() < t_warm:
        recv(RECV_SIZE)
        rid += 1
        send(request(rid))
    done = 0
    start = clock()
    end = start + seconds
    while True:
        for _ in range(256):
            recv(RECV_SIZE)
            rid += 1
            send(request(rid))
        done += 256
        now = clock()
        if now >= end:
            break
    for _ in range(window):  # drain what is outstanding
        recv(RECV_SIZE)
    return {"window": window, "seconds": now - start, "count": done,
            "per_s": done / (now - start)}


def rate_stream(sock: socket.socket, request: Callable[[int], bytes],
                reply_len: Callable[[bytes], int], args: argparse.Namespace) -> dict[str, Any]:
    """Rate over a byte stream: replies are cut by *reply_len* (of a buffer head)."""
    send, recv = sock.sendall, sock.recv
    window, seconds = args.window, args.seconds
    rid = 0
    buf = b""
    for _ in range(window):
        rid += 1
        send(request(rid))
    clock = time.perf_counter
    warm_until = clock() + seconds / 10
    counting = False
    done = 0
    start = end = now = clock()
    outstanding = window
    while True:
        buf += recv(RECV_SIZE)
        replies = 0
        while len(buf) >= 4:
            n = reply_len(buf)
            if len(buf) < n:
                break
            buf = buf[n:]
            replies += 1
        outstanding -= replies
        now = clock()
        if counting:
            done += replies
            if now >= end:
                break
        elif now >= warm_until:
            counting, start, end = True, now, now + seconds
        out = b"".join(request(rid + k + 1) for k in range(replies))
        rid += replies
        outstanding += replies
        if out:
            send(out)
    return {"window": window, "seconds": now - start, "count": done,
            "per_s": done / (now - start)}


# ---------------------------------------------------------------------------------
# ours


def ours(args: argparse.Namespace) -> dict[str, Any]:
    from ctdb.protocol import Address, PingRequest, Service  # noqa: PLC0415
    from ctdb.transport.sync import SyncClient  # noqa: PLC0415

    client = SyncClient(Path(args.run_dir))
    dst = Address(args.pnn, Service.TRANSPORT)
    if args.window:
        return _ours_rate(client, dst, args)

    def round_trip() -> None:
        client.request(dst, PingRequest())

    return latency(round_trip, args.count, args.warmup)


def _ours_rate(client: SyncClient, dst: Address, args: argparse.Namespace) -> dict[str, Any]:
    from ctdb.protocol import Flag, Message, PingRequest, encode  # noqa: PLC0415

    template = bytearray(encode(Message(body=PingRequest(), dst=dst, request_id=1,
                                        flags=Flag.REQUEST)))
    rid_field = struct.Struct(">Q")
    rid_offset = 32  # header: request id after magic..reserved (16) and two addresses

    def request(rid: int) -> bytes:
        rid_field.pack_into(template, rid_offset, rid)
        return bytes(template)

    sock: socket.socket = client._sock  # the wire itself: a benchmark
    sock.settimeout(10)
    return rate_packets(sock, request, args)


def ours_async(args: argparse.Namespace) -> dict[str, Any]:
    from ctdb.protocol import Address, PingRequest, Service  # noqa: PLC0415
    from ctdb.transport.client import Client  # noqa: PLC0415

    async def main() -> dict[str, Any]:
        client = await Client.connect(Path(args.run_dir), reconnect=False)
        dst = Address(args.pnn, Service.TRANSPORT)
        try:
            if args.window:
                return await _async_rate(client, dst, args)
            for _ in range(args.warmup):
                await client.request(dst, PingRequest())
            clock = time.perf_counter_ns
            samples = []
            for _ in range(args.count):
                t0 = clock()
                await client.request(dst, PingRequest())
                samples.append(clock() - t0)
            return summary(samples)
        finally:
            await client.close()

    return asyncio.run(main())


async def _async_rate(client: Client, dst: Address, args: argparse.Namespace) -> dict[str, Any]:
    """W tasks each doing request after request through the real client API."""
    from ctdb.protocol import PingRequest  # noqa: PLC0415

    counting = False
    done = 0
    stop = False

    async def worker() -> None:
        nonlocal done
        while not stop:
            await client.request(dst, PingRequest())
            if counting:
                done += 1

    tasks = [asyncio.create_task(worker()) for _ in range(args.window)]
    await asyncio.sleep(args.seconds / 10)
    counting = True
    start = time.perf_counter()
    await asyncio.sleep(args.seconds)
    counting = False
    elapsed = time.perf_counter() - start
    stop = True
    await asyncio.gather(*tasks)
    return {"window": args.window, "seconds": elapsed, "count": done,
            "per_s": done / elapsed}


# ---------------------------------------------------------------------------------
# Samba's ctdbd: its client protocol, host-order structs on a unix stream socket.
# A request header (length, magic, version, generation, operation, destination node,
# source node, request id) and a control (opcode, padding, server id, client id,
# flags, data length), written from the protocol's description.

CTDB_MAGIC = 0x43544442  # "CTDB"
CTDB_PROTOCOL = 1
REQ_CONTROL = 7
REPLY_CONTROL = 8
CONTROL_PING = 3
CURRENT_NODE = 0xF0000001
_CTDB_HEADER = struct.Struct("=8I")
_CTDB_CONTROL = struct.Struct("=8I II Q III")
_CTDB_REPLY = struct.Struct("=8I iII")


def ctdb_ping_packet(dest: int, rid: int) -> bytes:
    length = _CTDB_CONTROL.size
    return _CTDB_CONTROL.pack(length, CTDB_MAGIC, CTDB_PROTOCOL, 0, REQ_CONTROL, dest, 0,
                              rid, CONTROL_PING, 0, 0, 0, 0, 0)


def _ctdb_reply_len(buf: bytes) -> int:
    return int.from_bytes(buf[:4], sys.byteorder)


class CtdbClient:
    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.settimeout(10)
        self.buf = b""

    def read_packet(self) -> bytes:
        while len(self.buf) < 4 or len(self.buf) < _ctdb_reply_len(self.buf):
            data = self.sock.recv(RECV_SIZE)
            if not data:
                raise ConnectionError("ctdbd closed the connection")
            self.buf += data
        n = _ctdb_reply_len(self.buf)
        pkt, self.buf = self.buf[:n], self.buf[n:]
        return pkt

    def ping(self, dest: int, rid: int) -> int:
        """One PING control; the reply's status is ctdbd's number of clients."""
        self.sock.sendall(ctdb_ping_packet(dest, rid))
        while True:
            pkt = self.read_packet()
            f = _CTDB_REPLY.unpack_from(pkt)
            if f[1] != CTDB_MAGIC:
                raise ValueError("reply without CTDB magic")
            if f[4] == REPLY_CONTROL and f[7] == rid:
                return int(f[8])


def ctdb(args: argparse.Namespace) -> dict[str, Any]:
    client = CtdbClient(args.socket)
    dest = CURRENT_NODE if args.pnn is None else args.pnn
    if args.window and args.one_by_one:
        # Like our seqpacket client: one request per send, one reply per recv, so
        # neither side gets many messages per system call.
        client.sock.sendall(ctdb_ping_packet(dest, 1))
        reply_size = len(client.read_packet())  # every ping reply has this size

        def recv_one() -> bytes:
            return client.sock.recv(reply_size, socket.MSG_WAITALL)

        return rate_packets(client.sock, lambda rid: ctdb_ping_packet(dest, rid), args,
                            recv_one)
    if args.window:
        return rate_stream(client.sock, lambda rid: ctdb_ping_packet(dest, rid),
                           _ctdb_reply_len, args)
    rid = 0

    def round_trip() -> None:
        nonlocal rid
        rid += 1
        client.ping(dest, rid)

    return latency(round_trip, args.count, args.warmup)


# ---------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.probe")
    p.add_argument("kind", choices=["echo-server", "echo", "ours", "ours-async", "ctdb"])
    p.add_argument("--unix", help="seqpacket socket path (echo)")
    p.add_argument("--tcp", help="HOST:PORT (echo)")
    p.add_argument("--size", type=int, default=64, help="echo message size")
    p.add_argument("--run-dir", help="our node's run directory")
    p.add_argument("--socket", help="Samba ctdbd's ctdbd.socket")
    p.add_argument("--pnn", type=int, default=None, help="destination node")
    p.add_argument("--count", type=int, default=5000)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--window", type=int, default=0, help="rate mode: requests outstanding")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--one-by-one", action="store_true",
                   help="ctdb rate: one request per send and one reply per recv")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.kind == "echo-server":
        echo_server(args)
        return 0
    run: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
        "echo": echo_client, "ours": ours, "ours-async": ours_async, "ctdb": ctdb,
    }
    if args.kind in ("ours", "ours-async") and args.pnn is None:
        args.pnn = 0xF0000001  # NODE_CURRENT
    result = run[args.kind](args)
    result["pid"] = os.getpid()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
