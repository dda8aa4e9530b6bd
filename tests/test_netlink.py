"""ctdb.failoverd.netlink on real network namespaces, under both pyroute2 APIs.

Every scenario gets two fresh namespaces joined by a veth pair: A (the test thread is
moved into it; the adapter works there) with ``a0`` and B with ``b0``.  Addresses come
from 198.18.7.0/24, 198.18.8.0/24, 198.18.9.0/24 and 2001:2:7::/64 only.

Each scenario runs three ways: the venv's pyroute2 (0.9) through ``AsyncIPRoute`` and
through the threaded ``IPRoute``, and Debian's ``/usr/bin/python3`` with Debian's
pyroute2 0.7.2 (package python3-pyroute2), which runs this file as a script::

    /usr/bin/python3 -m tests.test_netlink run SCENARIO      # one scenario
    /usr/bin/python3 -m tests.test_netlink json SCENARIO...  # JSON lines, as pytest uses
    /usr/bin/python3 -m tests.test_netlink measure [N]       # valid_lft=1 expiry times
    .venv/bin/python -m tests.test_netlink measure [N]       # the same with pyroute2 0.9

Debian's python3 has no pytest, so pytest is optional here and the parametrisation
comes from the ``pytest_generate_tests`` hook.  The Debian runs go in one background
process started with the first test, so they overlap the venv's runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ctdb.errors import CtdbError
from ctdb.failoverd import netlink
from ctdb.failoverd.netlink import (
    AddressEvent,
    Event,
    EventStream,
    IfAddress,
    LinkEvent,
    Netlink,
    NetlinkError,
    gratuitous_arp,
    unsolicited_na,
)
from ctdb.sandbox import netns

try:
    import pytest
except ImportError:  # Debian's python3 runs the scenarios without pytest
    pytest = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parent.parent
DEBIAN_PYTHON = "/usr/bin/python3"
IP4 = ipaddress.ip_interface
A_IP, B_IP = "198.18.7.1/24", "198.18.7.2/24"
B_IP6 = "2001:2:7::2/64"
DEADLINE = 3.0  # seconds: every wait below has one

if pytest is not None:
    pytestmark = [pytest.mark.netns]


# -- the namespace pair ------------------------------------------------------------------
def sh(*argv: str) -> str:
    return netns.sh(*argv).stdout


@dataclass
class Pair:
    a: str
    b: str
    backend: str
    a_mac: str = ""
    described: list[str] = field(default_factory=list)

    def neighbour(self, ip: str) -> tuple[str, str] | None:
        """B's neighbour entry for *ip* on b0: (lladdr, state)."""
        out = json.loads(sh("ip", "-n", self.b, "-j", "neigh", "show", "to", ip, "dev", "b0")
                         or "[]")
        if not out:
            return None
        return out[0].get("lladdr", ""), ",".join(out[0].get("state", []))

    def stale_neighbour(self, ip: str, mac: str = "02:00:00:00:00:99") -> None:
        sh("ip", "-n", self.b, "neigh", "replace", ip, "lladdr", mac, "dev", "b0", "nud", "stale")
        assert self.neighbour(ip) == (mac, "STALE")

    def socket_in_b(self, *args: int) -> socket.socket:
        """A socket opened in namespace B (the thread goes there and comes back)."""
        here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        there = os.open(f"/run/netns/{self.b}", os.O_RDONLY)
        try:
            netns.setns(there)
            try:
                return socket.socket(*args)
            finally:
                netns.setns(here)
        finally:
            os.close(here)
            os.close(there)


@contextlib.contextmanager
def pair(tag: str, backend: str) -> Iterator[Pair]:
    netns.clean_stale()
    a, b = netns.unique(f"nl{tag}-a"), netns.unique(f"nl{tag}-b")
    with netns.entered(a, []):
        try:
            sh("ip", "netns", "add", b)
            # Distinct ifindexes: linkwatch handles a veth whose peer has its own index
            # as urgent; equal ones (both 2, each in its namespace) batch carrier
            # changes to one a second, like a physical NIC (docs/netlink.md).
            sh("ip", "-n", a, "link", "add", "a0", "index", "7", "type", "veth",
               "peer", "name", "b0", "index", "8", "netns", b)
            sh("ip", "-n", b, "link", "set", "lo", "up")
            sh("ip", "-n", a, "addr", "add", A_IP, "dev", "a0")
            sh("ip", "-n", b, "addr", "add", B_IP, "dev", "b0")
            sh("ip", "-n", b, "addr", "add", B_IP6, "dev", "b0", "nodad")
            sh("ip", "-n", a, "link", "set", "a0", "up")
            sh("ip", "-n", b, "link", "set", "b0", "up")
            deadline = time.monotonic() + DEADLINE
            while True:  # IPv6 ignores packets on a link until it is operationally up
                links = [json.loads(sh("ip", "-n", ns, "-j", "link", "show", dev))[0]
                         for ns, dev in ((a, "a0"), (b, "b0"))]
                if all(link["operstate"] == "UP" for link in links):
                    break
                assert time.monotonic() < deadline, f"veth not up: {links}"
                time.sleep(0.01)
            yield Pair(a, b, backend, links[0]["address"])
        finally:
            netns.delete_namespace(b)


async def until(what: str, check: Callable[[], Awaitable[bool]],
                timeout: float = DEADLINE) -> float:
    """Poll *check* until true; the seconds it took.  Fails after *timeout*."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def next_event(events: EventStream, match: Callable[[Event], bool],
                     timeout: float = DEADLINE) -> Event:
    async with asyncio.timeout(timeout):
        async for event in events:
            if match(event):
                return event
    raise AssertionError("event stream ended")


async def present(nl: Netlink, iface: str, addr: str) -> IfAddress | None:
    want = ipaddress.ip_interface(addr)
    return next((a for a in await nl.addresses() if a.interface == iface and a.address == want),
                None)


# -- scenarios ---------------------------------------------------------------------------
async def s_addresses(p: Pair) -> None:
    """add / list / renew / del, IPv4 and IPv6, with and without valid_lft."""
    async with Netlink(p.backend) as nl:
        p.described.append(nl.description)
        for text in ("198.18.7.10/24", "2001:2:7::10/64"):
            addr = IP4(text)
            assert await present(nl, "a0", text) is None
            await nl.add_address("a0", addr)
            got = await present(nl, "a0", text)
            assert got == IfAddress("a0", addr, None)
            await nl.add_address("a0", addr)  # idempotent
            await nl.add_address("a0", addr, valid_lft=100)  # forever -> lease
            got = await present(nl, "a0", text)
            assert got is not None
            assert got.valid_lft is not None
            assert 98 <= got.valid_lft <= 100
            await nl.add_address("a0", addr, valid_lft=3600)  # renew, longer
            got = await present(nl, "a0", text)
            assert got is not None
            assert got.valid_lft is not None
            assert got.valid_lft > 3500
            await nl.add_address("a0", addr)  # lease -> forever
            got = await present(nl, "a0", text)
            assert got is not None
            assert got.valid_lft is None
            assert sum(a.address.ip == addr.ip for a in await nl.addresses()) == 1
            # another prefix length replaces the old one (one copy of the IP, ever)
            wider = ipaddress.ip_interface(f"{addr.ip}/{addr.network.prefixlen - 8}")
            await nl.add_address("a0", wider, valid_lft=50)
            mine = [a for a in await nl.addresses() if a.address.ip == addr.ip]
            assert [(a.address, a.interface) for a in mine] == [(wider, "a0")]
            assert await nl.del_address("a0", addr) is True  # any prefix length
            assert await present(nl, "a0", str(wider)) is None
            assert await nl.del_address("a0", addr) is False
            assert await nl.del_address("a0", addr.ip) is False
            assert await nl.del_address("nosuch0", addr) is False
        if_v6 = IP4("2001:2:7::11/64")
        await nl.add_address("a0", if_v6, valid_lft=30)
        assert "nodad" in sh("ip", "-n", p.a, "addr", "show", "dev", "a0")
        assert "tentative" not in sh("ip", "-n", p.a, "-6", "addr", "show", "to",
                                     "2001:2:7::11/128")
        assert set(await nl.links()) == {"lo", "a0"}
        # errors: one class, one line naming the operation, interface and address
        with raises(NetlinkError) as err:
            await nl.add_address("nosuch0", IP4("198.18.7.12/24"))
        assert str(err.value) == "add_address nosuch0 198.18.7.12/24: ENODEV (No such device)"
        assert err.value.errno == 19
        assert isinstance(err.value, CtdbError)
        assert isinstance(err.value, OSError)
        for bad in (0, -1, 2**32 - 1, True):
            with raises(NetlinkError):
                await nl.add_address("a0", IP4("198.18.7.12/24"), valid_lft=bad)
        assert await present(nl, "a0", "198.18.7.12/24") is None
    with raises(NetlinkError) as err:
        await nl.addresses()
    assert "not open" in str(err.value)


async def s_secondaries(p: Pair) -> None:
    """Removing the primary of a subnet keeps its secondaries: promote_secondaries is
    set on the interface (as CTDB does), so they never go away, not even briefly."""
    async with Netlink(p.backend) as nl:
        p.described.append(nl.description)
        first, second, third = IP4("198.18.8.1/24"), IP4("198.18.8.2/24"), IP4("198.18.8.3/24")
        await nl.add_address("a0", first, valid_lft=100)
        await nl.add_address("a0", second, valid_lft=100)
        await nl.add_address("a0", third)
        assert "secondary" in sh("ip", "-n", p.a, "addr", "show", "to", "198.18.8.2/32")
        no_promotion(p.a)
        async with nl.watch() as events:
            assert await nl.del_address("a0", first) is True
            await nl.add_address("a0", IP4("198.18.7.99/24"))  # a marker event
            seen = []
            async for event in events:
                seen.append(event)
                if event == AddressEvent("a0", IP4("198.18.7.99/24"), True):
                    break
        # the first goes; the next is promoted (an RTM_NEWADDR); none is removed
        assert AddressEvent("a0", first, False) in seen
        assert not [e for e in seen if isinstance(e, AddressEvent) and not e.added
                    and e.address in (second, third)], seen
        assert sysctl(p.a, "net.ipv4.conf.a0.promote_secondaries") == "1"
        left = {a.address: a.valid_lft for a in await nl.addresses() if a.interface == "a0"}
        assert first not in left
        assert left[third] is None
        lft = left[second]
        assert lft is not None
        assert 95 <= lft <= 100


async def s_secondaries_fallback(p: Pair) -> None:
    """Without a writable promote_secondaries, dropped secondaries are put back, with
    no more lifetime than they had left."""
    async with Netlink(p.backend) as nl:
        p.described.append(nl.description)
        first, second, third = IP4("198.18.8.1/24"), IP4("198.18.8.2/24"), IP4("198.18.8.3/24")
        await nl.add_address("a0", first)
        await nl.add_address("a0", second, valid_lft=100)
        await nl.add_address("a0", third)
        no_promotion(p.a)
        saved, netlink.PROC_IPV4_CONF = netlink.PROC_IPV4_CONF, "/nonexistent"
        records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = records.append  # type: ignore[method-assign]
        netlink.log.addHandler(handler)
        try:
            assert await nl.del_address("a0", first) is True
        finally:
            netlink.PROC_IPV4_CONF = saved
            netlink.log.removeHandler(handler)
        restored = sorted(str(r.args[2]) for r in records if "restoring" in r.msg)
        assert restored == ["198.18.8.2/24", "198.18.8.3/24"], records
        assert sysctl(p.a, "net.ipv4.conf.a0.promote_secondaries") == "0"
        left = {a.address: a.valid_lft for a in await nl.addresses() if a.interface == "a0"}
        assert first not in left
        assert left[third] is None
        lft = left[second]
        assert lft is not None
        assert 94 <= lft <= 99


def sysctl(ns: str, name: str) -> str:
    return sh("ip", "netns", "exec", ns, "sysctl", "-n", name).strip()


def no_promotion(ns: str) -> None:
    """The kernel's default, whatever the host's sysctl.d says (a new namespace
    inherits IPv4 settings from the initial one)."""
    for where in ("all", "default", "a0"):
        sh("ip", "netns", "exec", ns, "sysctl", "-qw",
           f"net.ipv4.conf.{where}.promote_secondaries=0")


async def s_lease(p: Pair) -> None:
    """valid_lft=1 lapses by itself (an RTM_DELADDR event); renewing keeps an address.

    The kernel checks lifetimes when an address changes and then at most once a
    second, so a lapsed address may stay up to ~1.2 s past its valid_lft: the bounds
    below allow for that (see docs/netlink.md)."""
    async with Netlink(p.backend) as nl:
        p.described.append(nl.description)

        async def one(lapses: str, renewed: str) -> tuple[float, float]:
            x, y = IP4(lapses), IP4(renewed)
            last = [0.0]

            async def renew() -> None:
                while True:
                    await nl.add_address("a0", y, valid_lft=1)
                    last[0] = time.monotonic()
                    await asyncio.sleep(0.3)

            async with nl.watch() as events:
                await nl.add_address("a0", x, valid_lft=1)
                start = time.monotonic()
                renewing = asyncio.create_task(renew())
                try:
                    await next_event(events, lambda e: e == AddressEvent("a0", x, False))
                    x_gone = time.monotonic() - start
                    assert await present(nl, "a0", lapses) is None
                    got = await present(nl, "a0", renewed)
                    assert got is not None, "the renewed lease lapsed"
                    assert got.valid_lft == 1
                finally:
                    renewing.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await renewing
                await next_event(events, lambda e: e == AddressEvent("a0", y, False))
                y_gone = time.monotonic() - last[0]
                assert await present(nl, "a0", renewed) is None
            assert 0.95 <= x_gone <= 2.3
            assert 0.95 <= y_gone <= 2.3
            return x_gone, y_gone

        v4, v6 = await asyncio.gather(one("198.18.7.20/24", "198.18.7.21/24"),
                                      one("2001:2:7::20/64", "2001:2:7::21/64"))
        print(f"valid_lft=1 lapsed after: IPv4 {v4[0]:.3f} s (renewed: {v4[1]:.3f} s after "
              f"the last renewal), IPv6 {v6[0]:.3f} s ({v6[1]:.3f} s)")


async def s_links_events(p: Pair) -> None:
    """Carrier and admin state in links() and watch(); address events."""
    async with Netlink(p.backend) as nl:
        p.described.append(nl.description)
        assert (await nl.links())["a0"] is True
        async with nl.watch() as events:
            sh("ip", "-n", p.b, "link", "set", "b0", "down")  # a0 loses its carrier
            assert await next_event(events, lambda e: isinstance(e, LinkEvent)) == \
                LinkEvent("a0", False)
            assert (await nl.links())["a0"] is False
            sh("ip", "-n", p.b, "link", "set", "b0", "up")
            assert await next_event(events, lambda e: isinstance(e, LinkEvent)) == \
                LinkEvent("a0", True)
            assert (await nl.links())["a0"] is True
            sh("ip", "-n", p.a, "link", "set", "a0", "down")  # admin down
            assert await next_event(events, lambda e: isinstance(e, LinkEvent)) == \
                LinkEvent("a0", False)
            assert (await nl.links())["a0"] is False
            sh("ip", "-n", p.a, "link", "set", "a0", "up")
            assert await next_event(events, lambda e: isinstance(e, LinkEvent)) == \
                LinkEvent("a0", True)

            def mine(e: Event) -> bool:
                return isinstance(e, AddressEvent) and e.address.ip in {
                    ipaddress.ip_address("198.18.7.30"), ipaddress.ip_address("2001:2:7::30")}

            for text in ("198.18.7.30/24", "2001:2:7::30/64"):
                await nl.add_address("a0", IP4(text), valid_lft=60)
                assert await next_event(events, mine) == AddressEvent("a0", IP4(text), True)
                assert await nl.del_address("a0", IP4(text))
                assert await next_event(events, mine) == AddressEvent("a0", IP4(text), False)
            # changes made by someone else are seen too
            sh("ip", "-n", p.a, "addr", "add", "198.18.7.30/24", "dev", "a0")
            assert await next_event(events, mine) == AddressEvent("a0", IP4("198.18.7.30/24"),
                                                                  True)
            sh("ip", "-n", p.a, "addr", "del", "198.18.7.30/24", "dev", "a0")
            assert await next_event(events, mine) == AddressEvent("a0", IP4("198.18.7.30/24"),
                                                                  False)
        # a consumer too slow for the kernel: ENOBUFS once, then the events flow again
        events = nl.watch()
        try:
            events._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the minimum
            flood = "".join(f"addr add 198.18.9.{i}/24 dev a0\n" for i in range(1, 61))
            await asyncio.to_thread(subprocess.run, ["ip", "-n", p.a, "-batch", "-"],
                                    input=flood, text=True, check=True, capture_output=True)
            with raises(NetlinkError) as err:
                async with asyncio.timeout(DEADLINE):
                    async for _ in events:
                        pass
            assert err.value.errno == errno.ENOBUFS
            assert "re-read links and addresses" in str(err.value)
            events._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            marker = IP4("198.18.7.98/24")
            await nl.add_address("a0", marker)
            assert await next_event(events, lambda e: e == AddressEvent("a0", marker, True))
        finally:
            events.close()
        # closing the stream ends a pending iteration
        events = nl.watch()
        waiting = asyncio.ensure_future(anext(events, None))
        await asyncio.sleep(0)  # the task runs until it waits for the socket
        assert events._waiter is not None
        events.close()
        assert await asyncio.wait_for(waiting, DEADLINE) is None


def frames(sock: socket.socket, keep: Callable[[bytes], bool], count: int) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + DEADLINE
    while len(got) < count:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(2048)
        except TimeoutError:
            break
        if keep(data):
            got.append(data)
    return got


async def s_garp(p: Pair) -> None:
    """A gratuitous ARP from A announces the address with A's MAC; B's cache learns it."""
    ip = "198.18.7.40"
    async with Netlink(p.backend) as nl:
        p.described.append(nl.description)
        await nl.add_address("a0", IP4(f"{ip}/24"), valid_lft=60)
    p.stale_neighbour(ip)
    mac = bytes.fromhex(p.a_mac.replace(":", ""))
    with p.socket_in_b(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806)) as rx:
        rx.bind(("b0", 0))
        await gratuitous_arp("a0", ipaddress.IPv4Address(ip), count=2, interval=0.01)
        got = frames(rx, lambda f: f[6:12] == mac and f[38:42] == socket.inet_aton(ip), 4)
    assert len(got) == 4
    ops = []
    for f in got:
        assert f[0:6] == b"\xff" * 6  # broadcast
        assert f[6:12] == mac
        assert f[12:14] == b"\x08\x06"
        htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", f[14:22])
        assert (htype, ptype, hlen, plen) == (1, 0x0800, 6, 4)
        assert f[22:28] == mac  # sender MAC
        assert f[28:32] == socket.inet_aton(ip)  # sender IP
        assert f[32:38] == (bytes(6) if op == 1 else mac)  # target MAC
        assert f[38:42] == socket.inet_aton(ip)  # target IP: gratuitous
        ops.append(op)
    assert ops == [1, 2, 1, 2]  # request + reply, twice
    assert p.neighbour(ip) == (p.a_mac, "STALE")
    with raises(NetlinkError) as err:
        await gratuitous_arp("nosuch0", ipaddress.IPv4Address(ip))
    assert str(err.value).startswith("gratuitous_arp nosuch0 198.18.7.40: ENODEV")
    with raises(NetlinkError) as err:
        await gratuitous_arp("lo", ipaddress.IPv4Address(ip))
    assert "not an Ethernet interface" in str(err.value)
    with raises(NetlinkError) as err:
        await gratuitous_arp("a0", ipaddress.IPv4Address(ip), count=0)
    assert str(err.value) == "gratuitous_arp a0 198.18.7.40: count must be at least 1, not 0"


async def s_na(p: Pair) -> None:
    """An unsolicited NA from A overrides B's neighbour entry with A's MAC."""
    ip = "2001:2:7::40"
    async with Netlink(p.backend) as nl:
        p.described.append(nl.description)
        await nl.add_address("a0", IP4(f"{ip}/64"), valid_lft=60)
    p.stale_neighbour(ip)
    mac = bytes.fromhex(p.a_mac.replace(":", ""))
    target = ipaddress.IPv6Address(ip).packed
    with p.socket_in_b(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86DD)) as rx:
        rx.bind(("b0", 0))
        await unsolicited_na("a0", ipaddress.IPv6Address(ip), count=2)
        got = frames(rx, lambda f: f[20] == 58 and f[54] == 136 and f[62:78] == target, 2)
    assert len(got) == 2
    for f in got:
        assert f[0:6] == bytes.fromhex("333300000001")  # ff02::1
        assert f[6:12] == mac
        payload_len, next_header, hop_limit = struct.unpack("!HBB", f[18:22])
        assert (next_header, hop_limit) == (58, 255)
        assert f[22:38] == target  # source: the address itself
        assert f[38:54] == socket.inet_pton(socket.AF_INET6, "ff02::1")
        icmp = f[54:54 + payload_len]
        assert icmp[0:2] == b"\x88\x00"  # NA, code 0
        assert struct.unpack("!I", icmp[4:8])[0] >> 29 == 0b001  # override only
        assert icmp[8:24] == target
        assert icmp[24:32] == b"\x02\x01" + mac  # target link-layer address option
        pseudo = f[22:54] + struct.pack("!IxxxB", payload_len, 58)
        assert checksum(pseudo + icmp) == 0
    entry = p.neighbour(ip)
    assert entry is not None
    assert entry[0] == p.a_mac
    with raises(NetlinkError) as err:  # an address A does not have
        await unsolicited_na("a0", ipaddress.IPv6Address("2001:2:7::41"))
    assert "EADDRNOTAVAIL" in str(err.value)


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class _Raised:
    value: BaseException


@contextlib.contextmanager
def raises(kind: type[BaseException]) -> Iterator[_Raised]:
    """pytest.raises for scenarios that also run without pytest."""
    info = _Raised()
    try:
        yield info
    except kind as exc:
        info.value = exc
        return
    raise AssertionError(f"{kind.__name__} not raised")


SCENARIOS: dict[str, Callable[[Pair], Awaitable[None]]] = {
    "addresses": s_addresses,
    "secondaries": s_secondaries,
    "secondaries_fallback": s_secondaries_fallback,
    "lease": s_lease,
    "links_events": s_links_events,
    "garp": s_garp,
    "na": s_na,
}


def run(name: str, backend: str) -> list[str]:
    """Run scenario *name* in a fresh namespace pair; the backends it used."""
    with pair(name[:6], backend) as p:
        asyncio.run(SCENARIOS[name](p))
        return p.described


# -- pytest ------------------------------------------------------------------------------
VARIANTS = ["venv-async", "venv-thread", "debian"]


# The lease scenario waits for the kernel (~2 s) and does not depend on how requests
# reach it: venv-thread's lifetimes are read back by its "addresses" run.
SKIP = {("lease", "venv-thread")}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if {"scenario", "variant"} <= set(metafunc.fixturenames):
        combos = [(s, v) for s in SCENARIOS for v in VARIANTS if (s, v) not in SKIP]
        metafunc.parametrize(("scenario", "variant"), combos,
                             ids=[f"{s}-{v}" for s, v in combos])


def debian_pyroute2() -> str | None:
    probe = subprocess.run([DEBIAN_PYTHON, "-c", "import importlib.metadata as m; "
                            "print(m.version('pyroute2'))"], capture_output=True, text=True)
    return probe.stdout.strip() if probe.returncode == 0 else None


class DebianRuns:
    """Debian's python3 running the selected scenarios one after another in the
    background (while the venv runs its own), reporting one JSON line per scenario."""

    def __init__(self, scenarios: list[str]) -> None:
        self.proc = subprocess.Popen(
            [DEBIAN_PYTHON, "-m", "tests.test_netlink", "json", *scenarios], cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.results: dict[str, dict[str, object]] = {}
        self.output: list[str] = []
        self.finished = False
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                result = json.loads(line)
            except ValueError:
                self.output.append(line)
                continue
            with self.changed:
                self.results[str(result["scenario"])] = result
                self.changed.notify_all()
        with self.changed:
            self.finished = True
            self.changed.notify_all()

    def result(self, scenario: str, timeout: float = 30) -> dict[str, object]:
        with self.changed:
            self.changed.wait_for(lambda: scenario in self.results or self.finished, timeout)
            found = self.results.get(scenario)
        if found is None:
            raise AssertionError(f"no result for {scenario} from {DEBIAN_PYTHON} "
                                 f"(exit {self.proc.poll()}): {''.join(self.output)[-3000:]}")
        return found

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # its finally blocks remove its namespaces
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(5)


if pytest is not None:
    @pytest.fixture(scope="module")
    def debian(request: pytest.FixtureRequest) -> Iterator[DebianRuns | None]:
        wanted = [item.callspec.params["scenario"] for item in request.session.items
                  if item.module is sys.modules[__name__] and hasattr(item, "callspec")
                  and item.callspec.params.get("variant") == "debian"]
        if not wanted or debian_pyroute2() is None or os.geteuid() != 0:
            yield None
            return
        runs = DebianRuns(wanted)
        try:
            yield runs
        finally:
            runs.close()


def test_scenario(scenario: str, variant: str, debian: DebianRuns | None) -> None:
    if variant == "venv-async":
        assert netlink.HAS_ASYNC, "the venv should have pyroute2 >= 0.9"
        described = run(scenario, "auto")
        assert described
        assert all(d.startswith("AsyncIPRoute (pyroute2 0.9") for d in described)
        return
    if variant == "venv-thread":
        described = run(scenario, "thread")
        assert all(d.startswith("IPRoute in a worker thread (pyroute2 0.9") for d in described)
        return
    assert debian is not None, "Debian's python3-pyroute2 is missing: make install adds it"
    result = debian.result(scenario)
    assert result["ok"], result["error"]
    described = result["backends"]
    assert isinstance(described, list)
    assert described
    assert all(d.startswith("IPRoute in a worker thread (pyroute2 0.7") for d in described), \
        f"Debian 12 ships pyroute2 0.7.2: {described}"


def test_event_stream_parser_survives_garbage() -> None:
    """Truncated and unknown netlink messages neither crash nor end the stream."""
    with netns.entered(netns.unique("nlparse"), []):
        stream = EventStream()
        try:
            stream._parse(b"\x05\x00\x00\x00" + bytes(12))  # length below the header
            stream._parse(struct.pack("=IHHII", 20, netlink.RTM_NEWADDR, 0, 0, 0) + bytes(4))
            stream._parse(struct.pack("=IHHII", 16, 999, 0, 0, 0))
            assert not stream._queue
        finally:
            stream.close()


# -- script mode (Debian's python3) ------------------------------------------------------
async def measure(samples: int) -> None:
    """Seconds from add(valid_lft=1) until the kernel's RTM_DELADDR, per family: alone,
    and with another address added 0.9 s after it (any address change makes the kernel
    check lifetimes at once and then not again for a second)."""
    async with Netlink() as nl:
        print(f"backend: {nl.description}")
        for text, other in (("198.18.7.50/24", "198.18.7.51/24"),
                            ("2001:2:7::50/64", "2001:2:7::51/64")):
            addr = IP4(text)
            for poke in (None, 0.9):
                times = []
                for i in range(samples):
                    async with nl.watch() as events:
                        await nl.add_address("a0", addr, valid_lft=1)
                        start = time.monotonic()
                        if poke is not None:
                            await asyncio.sleep(poke)
                            await nl.add_address("a0", IP4(other))
                        await next_event(events,
                                         lambda e, a=addr: e == AddressEvent("a0", a, False))
                        times.append(time.monotonic() - start)
                        await nl.del_address("a0", IP4(other))
                    await asyncio.sleep(0.1 * (i % 5))  # spread the phase
                label = "alone" if poke is None else f"another address added at {poke} s"
                print(f"IPv{addr.version} {label}: " + " ".join(f"{t:.3f}" for t in times)
                      + f"  (min {min(times):.3f}, max {max(times):.3f})")


def run_json(scenarios: list[str]) -> None:
    """Each scenario's outcome as one JSON line on stdout (for DebianRuns)."""
    for name in scenarios:
        result: dict[str, object] = {"scenario": name}
        try:
            with contextlib.redirect_stdout(sys.stderr):
                result["backends"] = run(name, "auto")
            result["ok"], result["error"] = True, ""
        except Exception:  # reported to the pytest side, which fails the test
            result["ok"], result["error"] = False, traceback.format_exc()
        print(json.dumps(result), flush=True)


def main(argv: list[str]) -> int:
    # terminated by pytest (DebianRuns.close): unwind, so the namespaces are removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    if argv[:1] == ["json"]:
        run_json(argv[1:])
        return 0
    if argv[:1] == ["run"] and len(argv) == 2:
        for description in run(argv[1], "auto"):
            print(f"backend: {description}")
        print(f"{argv[1]}: ok")
        return 0
    if argv[:1] == ["measure"]:
        with pair("measure", "auto"):
            asyncio.run(measure(int(argv[1]) if len(argv) > 1 else 10))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
