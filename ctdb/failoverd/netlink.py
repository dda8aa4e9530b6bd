"""Addresses and links of this node through netlink: a small typed adapter over pyroute2.

failoverd takes over and releases public addresses with :class:`Netlink`, follows
carrier changes with :meth:`Netlink.watch`, and announces a taken address with
:func:`gratuitous_arp` (IPv4) or :func:`unsolicited_na` (IPv6).  Everything acts on
the network namespace of the calling thread at the time the socket is opened
(:meth:`Netlink.open`, :meth:`Netlink.watch`, each announcement).

pyroute2's API is untyped and differs between versions, so every call into it stays
in this module:

* pyroute2 >= 0.9 has ``AsyncIPRoute``, used directly on the event loop (its sync
  ``IPRoute`` refuses to run inside a running loop).
* Older pyroute2 (Debian 12 ships 0.7.2) has only the blocking ``IPRoute``; it runs in
  one dedicated worker thread.  Before 0.9.1 ``addr(valid_lft=...)`` is silently
  ignored (the address is added for ever), so the lifetime goes in as ``cacheinfo``
  there; every ``add_address`` reads the address back and refuses a wrong lifetime.

Events come from our own ``NETLINK_ROUTE`` socket bound to the link and address
multicast groups, decoded with pyroute2's message classes: the same on every version,
and cancellable without a thread.  See ``docs/netlink.md``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import fcntl
import importlib.metadata
import ipaddress
import logging
import os
import re
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, TypeVar

import pyroute2
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from ctdb.errors import CtdbError

__all__ = [
    "AddressEvent",
    "Event",
    "EventStream",
    "IfAddress",
    "LinkEvent",
    "Netlink",
    "NetlinkError",
    "gratuitous_arp",
    "pyroute2_version",
    "unsolicited_na",
]

log = logging.getLogger(__name__)

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
T = TypeVar("T")

# Kernel ABI (linux/rtnetlink.h, linux/if_addr.h, linux/if.h): stable, so spelled here.
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR = 0x1, 0x10, 0x100
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFA_F_SECONDARY, IFA_F_NODAD = 0x01, 0x02
IFF_UP, IFF_RUNNING = 0x1, 0x40
INFINITY_LIFE_TIME = 0xFFFFFFFF
_NLMSGHDR = struct.Struct("=IHHII")
_SEED, _RESYNC = 1, 2  # sequence numbers of EventStream's own link dumps
_WATCH_RCVBUF = 4 << 20
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)

ARPHRD_ETHER = 1
SIOCGIFHWADDR = 0x8927
ETH_P_ARP, ETH_P_IP = 0x0806, 0x0800
ARPOP_REQUEST, ARPOP_REPLY = 1, 2
ICMPV6_NA = 136
NA_FLAG_OVERRIDE = 0x20000000
ND_OPT_TARGET_LLADDR = 2
ALL_NODES = "ff02::1"


class NetlinkError(CtdbError, OSError):
    """A netlink (or raw packet) operation failed; ``str()`` is one line naming the
    operation, interface and address.  ``errno`` is the kernel's code when there is one.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.errno = code


@dataclass(frozen=True, slots=True)
class IfAddress:
    """An address on an interface; ``valid_lft`` is the remaining lifetime in seconds
    (``None``: forever)."""

    interface: str
    address: IPInterface
    valid_lft: int | None


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """A link came up (carrier and admin up) or went down (or away)."""

    interface: str
    up: bool


@dataclass(frozen=True, slots=True)
class AddressEvent:
    """An address appeared or was updated (``added``), or disappeared (expired too)."""

    interface: str
    address: IPInterface
    added: bool


Event = LinkEvent | AddressEvent


# -- pyroute2: version and messages ---------------------------------------------------------
def pyroute2_version() -> str:
    """The installed pyroute2's version (Debian's 0.7.2 says ``unknown`` in
    ``__version__``; its package metadata is right)."""
    try:
        return importlib.metadata.version("pyroute2")
    except importlib.metadata.PackageNotFoundError:
        return str(getattr(pyroute2, "__version__", "unknown"))


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = re.findall(r"\d+", text)[:3]
    return tuple(int(p) for p in parts)


_VERSION = pyroute2_version()
HAS_ASYNC = hasattr(pyroute2, "AsyncIPRoute")
# pyroute2 < 0.9.1 drops addr(valid_lft=..., preferred_lft=...) (its issue #752): there
# the lifetimes must be given as cacheinfo={'valid': s, 'preferred': s}.  Unknown
# versions get the old form; add_address's read-back catches a wrong guess.
_LFT_AS_KWARGS = _version_tuple(_VERSION) >= (0, 9, 1)


def _link_of(msg: Any) -> tuple[int, str, bool]:
    """(index, name, up) of an ifinfmsg; up = admin up and operationally running."""
    flags = int(msg["flags"])
    return int(msg["index"]), str(msg.get_attr("IFLA_IFNAME")), \
        bool(flags & IFF_UP and flags & IFF_RUNNING)


@dataclass(frozen=True, slots=True)
class _Addr:
    index: int
    address: IPInterface
    valid_lft: int | None
    secondary: bool


def _address_of(msg: Any) -> _Addr:
    """An ifaddrmsg, decoded."""
    family = int(msg["family"])
    ip = msg.get_attr("IFA_LOCAL") if family == socket.AF_INET else None
    ip = ip or msg.get_attr("IFA_ADDRESS")
    address = ipaddress.ip_interface(f"{ip}/{int(msg['prefixlen'])}")
    cacheinfo = msg.get_attr("IFA_CACHEINFO")
    valid = None if cacheinfo is None else int(cacheinfo["ifa_valid"])
    return _Addr(int(msg["index"]), address,
                 None if valid in (None, INFINITY_LIFE_TIME) else valid,
                 bool(int(msg["flags"]) & IFA_F_SECONDARY))


def _addr_kwargs(addr: IPInterface, valid_lft: int | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "address": str(addr.ip), "prefixlen": addr.network.prefixlen,
        "family": socket.AF_INET if addr.version == 4 else socket.AF_INET6,
    }
    if addr.version == 4:
        if addr.network.prefixlen <= 30:
            kwargs["broadcast"] = str(addr.network.broadcast_address)
    else:
        kwargs["flags"] = IFA_F_NODAD  # usable at once: no duplicate address detection
    lft = INFINITY_LIFE_TIME if valid_lft is None else valid_lft
    if _LFT_AS_KWARGS:
        kwargs["valid_lft"] = kwargs["preferred_lft"] = lft
    else:
        kwargs["cacheinfo"] = {"valid": lft, "preferred": lft}
    return kwargs


# -- backends: the only code that calls pyroute2's request API -------------------------------
class _Backend(Protocol):
    description: str

    async def start(self) -> None: ...
    async def index(self, iface: str) -> int: ...
    async def links(self) -> list[tuple[int, str, bool]]: ...
    async def addresses(self) -> list[_Addr]: ...
    async def replace(self, index: int, addr: IPInterface, valid_lft: int | None) -> None: ...
    async def delete(self, index: int, addr: IPInterface) -> None: ...
    async def close(self) -> None: ...


class _AsyncBackend:
    """pyroute2 >= 0.9: ``AsyncIPRoute`` on the running loop."""

    def __init__(self) -> None:
        self.description = f"AsyncIPRoute (pyroute2 {_VERSION})"
        self._ipr: Any = None

    async def start(self) -> None:
        self._ipr = pyroute2.AsyncIPRoute()
        await self._ipr.setup_endpoint()  # the socket now, in this thread's namespace

    async def index(self, iface: str) -> int:
        msgs = list(await self._ipr.link("get", ifname=iface))
        return int(msgs[0]["index"])

    async def links(self) -> list[tuple[int, str, bool]]:
        return [_link_of(m) async for m in await self._ipr.link("dump")]

    async def addresses(self) -> list[_Addr]:
        return [_address_of(m) async for m in await self._ipr.addr("dump")]

    async def replace(self, index: int, addr: IPInterface, valid_lft: int | None) -> None:
        await self._ipr.addr("replace", index=index, **_addr_kwargs(addr, valid_lft))

    async def delete(self, index: int, addr: IPInterface) -> None:
        await self._ipr.addr("del", index=index, address=str(addr.ip),
                             prefixlen=addr.network.prefixlen)

    async def close(self) -> None:
        ipr, self._ipr = self._ipr, None
        if ipr is not None:
            ipr.close()


class _ThreadBackend:
    """Blocking ``IPRoute`` (any version) in one dedicated worker thread.

    The worker is started by :meth:`start` from the calling thread, so it shares that
    thread's network namespace, and it creates the netlink socket itself."""

    def __init__(self) -> None:
        self.description = f"IPRoute in a worker thread (pyroute2 {_VERSION})"
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="netlink")
        self._ipr: Any = None

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def start(self) -> None:
        self._ipr = await self._run(pyroute2.IPRoute)

    async def index(self, iface: str) -> int:
        msgs = await self._run(lambda: list(self._ipr.link("get", ifname=iface)))
        return int(msgs[0]["index"])

    async def links(self) -> list[tuple[int, str, bool]]:
        return await self._run(lambda: [_link_of(m) for m in self._ipr.link("dump")])

    async def addresses(self) -> list[_Addr]:
        return await self._run(lambda: [_address_of(m) for m in self._ipr.addr("dump")])

    async def replace(self, index: int, addr: IPInterface, valid_lft: int | None) -> None:
        kwargs = _addr_kwargs(addr, valid_lft)
        await self._run(lambda: self._ipr.addr("replace", index=index, **kwargs))

    async def delete(self, index: int, addr: IPInterface) -> None:
        await self._run(lambda: self._ipr.addr("del", index=index, address=str(addr.ip),
                                               prefixlen=addr.network.prefixlen))

    async def close(self) -> None:
        ipr, self._ipr = self._ipr, None
        try:
            if ipr is not None:  # in the worker: pyroute2 0.9's IPRoute is bound to it
                async with asyncio.timeout(5):
                    await self._run(ipr.close)
        finally:
            self._pool.shutdown(wait=False)


PROC_IPV4_CONF = "/proc/sys/net/ipv4/conf"


def _promote_secondaries(iface: str) -> bool:
    """Set promote_secondaries on *iface* (as CTDB does before removing an address);
    False if it cannot be read or written (e.g. a read-only /proc/sys)."""
    path = os.path.join(PROC_IPV4_CONF, iface, "promote_secondaries")
    try:
        with open(path, "r+") as f:
            if f.read().strip() != "1":
                f.seek(0)
                f.write("1\n")
    except OSError as exc:
        log.debug("cannot set %s: %s", path, exc)
        return False
    return True


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    return exc.errno if isinstance(exc, OSError) else None


def _describe(exc: BaseException) -> str:
    code = _code(exc)
    if code:
        return f"{errno.errorcode.get(code, code)} ({os.strerror(code)})"
    return f"{type(exc).__name__}: {exc}"


# -- the adapter ------------------------------------------------------------------------------
class Netlink:
    """Addresses and links of the network namespace this was opened in.

    ``async with Netlink() as nl:`` or ``await nl.open()`` ... ``await nl.close()``.
    Requests are serialised (one at a time) and each has a deadline (``timeout``)."""

    def __init__(self, backend: Literal["auto", "async", "thread"] = "auto",
                 timeout: float = 5.0) -> None:
        if backend == "async" and not HAS_ASYNC:
            raise NetlinkError(f"netlink: pyroute2 {_VERSION} has no AsyncIPRoute")
        self._kind = ("async" if HAS_ASYNC else "thread") if backend == "auto" else backend
        self._timeout = timeout
        self._backend: _Backend | None = None
        self._lock = asyncio.Lock()

    @property
    def description(self) -> str:
        """Which pyroute2 API is in use, e.g. ``AsyncIPRoute (pyroute2 0.9.7)``."""
        if self._backend is not None:
            return self._backend.description
        return f"{self._kind} backend (pyroute2 {_VERSION}), not open"

    async def open(self) -> None:
        if self._backend is not None:
            return
        backend: _Backend = _AsyncBackend() if self._kind == "async" else _ThreadBackend()
        try:
            await self._call("open", "", None, backend.start())
        except BaseException:
            with contextlib.suppress(Exception):
                await backend.close()
            raise
        self._backend = backend
        log.debug("netlink: %s", backend.description)

    async def close(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            await backend.close()

    async def __aenter__(self) -> Netlink:
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    # -- plumbing -------------------------------------------------------------------------
    def _open(self, op: str) -> _Backend:
        if self._backend is None:
            raise NetlinkError(f"{op}: netlink is not open")
        return self._backend

    async def _call(self, op: str, iface: str, addr: object, aw: Awaitable[T]) -> T:
        """Await one pyroute2 request with the deadline, mapping every failure to a
        one-line NetlinkError that names the operation, interface and address."""
        what = " ".join(str(x) for x in (op, iface, addr or "") if x)
        try:
            async with asyncio.timeout(self._timeout):
                return await aw
        except TimeoutError:
            raise NetlinkError(f"{what}: no answer from the kernel in {self._timeout} s",
                               errno.ETIMEDOUT) from None
        except Exception as exc:  # pyroute2 raises its own, OSError, ValueError, ...
            raise NetlinkError(f"{what}: {_describe(exc)}", _code(exc)) from exc

    async def _index(self, op: str, iface: str, addr: object) -> int:
        return await self._call(op, iface, addr, self._open(op).index(iface))

    async def _names(self, op: str) -> dict[int, str]:
        links = await self._call(op, "", None, self._open(op).links())
        return {index: name for index, name, _ in links}

    async def _on(self, op: str, index: int, addr: object) -> list[_Addr]:
        """The addresses on interface *index*."""
        found = await self._call(op, "", addr, self._open(op).addresses())
        return [a for a in found if a.index == index]

    # -- API ------------------------------------------------------------------------------
    async def links(self) -> dict[str, bool]:
        """Every interface -> whether it is up (admin up and carrier/operationally up)."""
        async with self._lock:
            links = await self._call("links", "", None, self._open("links").links())
        return {name: up for _, name, up in links}

    async def addresses(self) -> list[IfAddress]:
        """Every address in the namespace, IPv4 and IPv6, with its remaining lifetime."""
        async with self._lock:
            names = await self._names("addresses")
            found = await self._call("addresses", "", None, self._open("addresses").addresses())
        return [IfAddress(names.get(a.index, f"#{a.index}"), a.address, a.valid_lft)
                for a in found]

    async def add_address(self, iface: str, addr: IPInterface,
                          valid_lft: int | None = None) -> None:
        """Put *addr* on *iface*, or renew it: afterwards it is there exactly once, with
        *valid_lft* seconds to live (``None``: forever; preferred_lft is the same).  IPv6
        addresses skip duplicate address detection so they are usable at once."""
        if valid_lft is not None and (isinstance(valid_lft, bool) or not
                                      1 <= valid_lft < INFINITY_LIFE_TIME):
            raise NetlinkError(f"add_address {iface} {addr}: valid_lft must be 1 .. "
                               f"{INFINITY_LIFE_TIME - 1} seconds or None, not {valid_lft!r}")
        op = "add_address"
        async with self._lock:
            backend = self._open(op)
            index = await self._index(op, iface, addr)
            for other in await self._on(op, index, addr):
                if other.address.ip == addr.ip and other.address != addr:
                    await self._call(op, iface, other.address,
                                     backend.delete(index, other.address))
            await self._call(op, iface, addr, backend.replace(index, addr, valid_lft))
            now = [a.valid_lft for a in await self._on(op, index, addr) if a.address == addr]
        if not now:
            raise NetlinkError(f"{op} {iface} {addr}: the kernel acknowledged the address "
                               "but does not list it")
        if (valid_lft is None) != (now[0] is None) or (
                valid_lft is not None and now[0] is not None and now[0] > valid_lft):
            raise NetlinkError(f"{op} {iface} {addr}: asked for valid_lft "
                               f"{valid_lft or 'forever'}, the kernel has "
                               f"{now[0] or 'forever'} (pyroute2 {_VERSION})")

    async def del_address(self, iface: str, addr: IPInterface | IPAddr) -> bool:
        """Remove the IP of *addr* from *iface* (whatever its prefix length there).
        False if it was not there (also if *iface* does not exist).

        Removing the primary IPv4 address of a subnet makes the kernel remove that
        subnet's secondaries too, unless ``promote_secondaries`` is set: like CTDB, this
        sets it on *iface* first (in /proc/sys, for the calling thread's namespace).  If
        that cannot be written, secondaries dropped with the primary are put back with
        the lifetime they had left, less a second (never longer than they had)."""
        op = "del_address"
        ip = addr.ip if isinstance(addr, IPInterface) else addr
        async with self._lock:
            backend = self._open(op)
            try:
                index = await self._index(op, iface, addr)
            except NetlinkError as exc:
                if exc.errno == errno.ENODEV:
                    return False
                raise
            before = await self._on(op, index, addr)
            targets = [a for a in before if a.address.ip == ip]
            promoted = ip.version == 6 or _promote_secondaries(iface)
            for target in targets:
                try:
                    await self._call(op, iface, target.address,
                                     backend.delete(index, target.address))
                except NetlinkError as exc:
                    if exc.errno != errno.EADDRNOTAVAIL:  # gone meanwhile (expired)
                        raise
            dropped = [a for a in before if a.secondary and any(
                not t.secondary and t.address.network == a.address.network for t in targets)]
            if dropped and not promoted:
                await self._restore(op, iface, index, dropped)
        return bool(targets)

    async def _restore(self, op: str, iface: str, index: int, dropped: list[_Addr]) -> None:
        backend = self._open(op)
        after = {a.address for a in await self._on(op, index, iface)}
        for lost in dropped:
            if lost.address in after:
                continue
            lft = lost.valid_lft
            if lft is not None and lft <= 1:
                continue  # lapses within a second anyway; its holder re-adds it
            log.warning("%s %s: the kernel dropped secondary %s with the primary "
                        "(promote_secondaries is off); restoring it", op, iface, lost.address)
            await self._call(op, iface, lost.address, backend.replace(
                index, lost.address, None if lft is None else lft - 1))

    def watch(self) -> EventStream:
        """Link and address events from now on, from the kernel's multicast groups.

        The subscription exists when this returns (no await needed), so nothing that
        happens afterwards is missed.  ``async for event in nl.watch(): ...``; close the
        stream (``close()``, ``async with``, or cancel the consuming task) when done."""
        return EventStream()


# -- events -------------------------------------------------------------------------------
class EventStream(AsyncIterator[Event]):
    """Events from a ``NETLINK_ROUTE`` socket bound to RTMGRP_LINK, RTMGRP_IPV4_IFADDR
    and RTMGRP_IPV6_IFADDR in the calling thread's namespace.

    A LinkEvent comes only when a link's up state changes (a link that appears is
    reported; one that goes away is reported down if it was up); an AddressEvent comes
    for every RTM_NEWADDR (``added``: new or updated, e.g. renewed) and RTM_DELADDR
    (removed or expired).  If the kernel drops events because the consumer is too slow,
    iteration raises NetlinkError (ENOBUFS) once and continues: re-read ``links()`` and
    ``addresses()`` then."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK,
                                   socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                                   socket.NETLINK_ROUTE)
        try:
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, _WATCH_RCVBUF)
            except PermissionError:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _WATCH_RCVBUF)
            self._sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
            self._port: int = self._sock.getsockname()[0]
            # Names and states of the links that exist now, without emitting events.
            self._dump_links(_SEED)
        except OSError as exc:
            self._sock.close()
            raise NetlinkError(f"watch: cannot subscribe to netlink events: {_describe(exc)}",
                               exc.errno) from exc
        self._names: dict[int, str] = {}
        self._up: dict[int, bool] = {}
        self._seeded = False
        self._held: list[tuple[int, IPInterface, bool]] = []  # address events before seed
        self._queue: collections.deque[Event] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            try:
                data = self._sock.recv(1 << 16)
            except BlockingIOError:
                await self._readable()
                continue
            except OSError as exc:
                if self._closed:
                    raise StopAsyncIteration from None
                if exc.errno == errno.ENOBUFS:
                    self._overflowed()
                    raise NetlinkError("watch: the kernel dropped netlink events (receive "
                                       "buffer full); re-read links and addresses",
                                       exc.errno) from None
                raise NetlinkError(f"watch: {_describe(exc)}", exc.errno) from exc
            self._parse(data)
        return self._queue.popleft()

    async def _readable(self) -> None:
        self._loop = loop = asyncio.get_running_loop()
        fd = self._sock.fileno()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter

        def wake() -> None:
            if not waiter.done():
                waiter.set_result(None)

        loop.add_reader(fd, wake)
        try:
            await waiter
        finally:
            self._waiter = None
            if not self._closed:
                loop.remove_reader(fd)

    def close(self) -> None:
        """Stop: a pending ``__anext__`` ends the iteration."""
        if self._closed:
            return
        self._closed = True
        if self._waiter is not None and self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
            if not self._waiter.done():
                self._waiter.set_result(None)
        self._sock.close()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _overflowed(self) -> None:
        """After ENOBUFS the kernel drops every further event for this socket until its
        queue is empty: empty it now (keeping what it holds), so that events after the
        caller's re-read arrive; link changes lost meanwhile come back as events from a
        new dump."""
        for _ in range(4096):  # bounded: an endless storm must not hold the loop
            try:
                self._parse(self._sock.recv(1 << 16))
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    break
        with contextlib.suppress(OSError):
            self._dump_links(_RESYNC if self._seeded else _SEED)

    def _dump_links(self, seq: int) -> None:
        self._sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + 16, RTM_GETLINK,
                                       NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + bytes(16))

    def _parse(self, data: bytes) -> None:
        offset = 0
        while offset + _NLMSGHDR.size <= len(data):
            length, kind, _flags, seq, pid = _NLMSGHDR.unpack_from(data, offset)
            if length < _NLMSGHDR.size:
                break
            chunk = data[offset:offset + length]
            offset += (length + 3) & ~3
            # Answers to our dumps carry our port id; notifications that of the socket
            # whose request caused them (or 0), and its sequence number.
            ours = pid == self._port and seq in (_SEED, _RESYNC)
            if kind in (NLMSG_DONE, NLMSG_ERROR) and ours:
                self._seed_done()
            elif kind in (RTM_NEWLINK, RTM_DELLINK):
                self._link(chunk, kind, from_dump=ours and seq == _SEED)
            elif kind in (RTM_NEWADDR, RTM_DELADDR):
                self._address(chunk, kind)

    def _seed_done(self) -> None:
        self._seeded = True
        held, self._held = self._held, []
        for index, addr, added in held:
            self._queue.append(AddressEvent(self._name(index), addr, added))

    def _link(self, chunk: bytes, kind: int, from_dump: bool) -> None:
        msg = _decode(ifinfmsg, chunk)
        if msg is None:
            return
        index, name, up = _link_of(msg)
        up = up and kind == RTM_NEWLINK
        self._names[index] = name
        before = self._up.get(index)
        if kind == RTM_DELLINK:
            self._up.pop(index, None)
        else:
            self._up[index] = up
        if not from_dump and before != up and (before is not None or kind == RTM_NEWLINK):
            self._queue.append(LinkEvent(name, up))

    def _address(self, chunk: bytes, kind: int) -> None:
        msg = _decode(ifaddrmsg, chunk)
        if msg is None:
            return
        found = _address_of(msg)
        index, addr = found.index, found.address
        if self._seeded:
            self._queue.append(AddressEvent(self._name(index), addr, kind == RTM_NEWADDR))
        else:
            self._held.append((index, addr, kind == RTM_NEWADDR))

    def _name(self, index: int) -> str:
        return self._names.get(index, f"#{index}")


def _decode(cls: Any, chunk: bytes) -> Any:
    try:
        msg = cls(chunk)
        msg.decode()
    except Exception:  # a message pyroute2 cannot decode must not end the stream
        log.warning("watch: cannot decode a netlink message of %d bytes", len(chunk),
                    exc_info=True)
        return None
    return msg


# -- announcements ------------------------------------------------------------------------
def _hw_address(op: str, iface: str, addr: IPAddr, sock: socket.socket) -> bytes:
    """The interface's Ethernet address (SIOCGIFHWADDR on *sock*)."""
    try:
        ifreq = fcntl.ioctl(sock, SIOCGIFHWADDR, struct.pack("16s16x", iface.encode()))
    except OSError as exc:
        raise NetlinkError(f"{op} {iface} {addr}: {_describe(exc)}", exc.errno) from exc
    hatype = struct.unpack_from("H", ifreq, 16)[0]
    if hatype != ARPHRD_ETHER:
        raise NetlinkError(f"{op} {iface} {addr}: not an Ethernet interface "
                           f"(hardware type {hatype})")
    return bytes(ifreq[18:24])


def arp_frame(mac: bytes, ip: ipaddress.IPv4Address, op: int) -> bytes:
    """A broadcast gratuitous ARP frame announcing *ip* at *mac*: sender and target IP
    are both *ip*; a request's target MAC is zero (RFC 5227), a reply's is *mac*
    (as ``arping -A``).  Padded to Ethernet's 60-byte minimum."""
    target_mac = bytes(6) if op == ARPOP_REQUEST else mac
    eth = b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", ARPHRD_ETHER, ETH_P_IP, 6, 4, op) + mac + ip.packed \
        + target_mac + ip.packed
    return (eth + arp).ljust(60, b"\0")


def na_message(mac: bytes, ip: ipaddress.IPv6Address) -> bytes:
    """An unsolicited ICMPv6 neighbour advertisement for *ip* (override flag, not
    solicited, not router) with a target link-layer address option; the kernel fills in
    the checksum."""
    return struct.pack("!BBHI", ICMPV6_NA, 0, 0, NA_FLAG_OVERRIDE) + ip.packed \
        + struct.pack("!BB", ND_OPT_TARGET_LLADDR, 1) + mac


def _check_count(op: str, iface: str, addr: IPAddr, count: int) -> None:
    if count < 1:
        raise NetlinkError(f"{op} {iface} {addr}: count must be at least 1, not {count}")


async def _repeat(count: int, interval: float, send: Callable[[], Awaitable[None]]) -> None:
    for i in range(count):
        if i:
            await asyncio.sleep(interval)
        await send()


async def gratuitous_arp(iface: str, addr: ipaddress.IPv4Address, count: int = 3,
                         interval: float = 0.0) -> None:
    """Announce *addr* on *iface*: *count* rounds of a gratuitous ARP request and
    reply (as CTDB sends them), *interval* seconds apart, from a raw AF_PACKET socket
    opened in the calling thread's namespace."""
    op = "gratuitous_arp"
    _check_count(op, iface, addr, count)
    loop = asyncio.get_running_loop()
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_NONBLOCK, 0)
    except OSError as exc:
        raise NetlinkError(f"{op} {iface} {addr}: {_describe(exc)}", exc.errno) from exc
    try:
        mac = _hw_address(op, iface, addr, sock)
        frames = [arp_frame(mac, addr, ARPOP_REQUEST), arp_frame(mac, addr, ARPOP_REPLY)]
        sock.bind((iface, 0))  # protocol 0: sends only, receives nothing

        async def send() -> None:
            for frame in frames:
                await loop.sock_sendall(sock, frame)

        await _repeat(count, interval, send)
    except OSError as exc:
        if isinstance(exc, NetlinkError):
            raise
        raise NetlinkError(f"{op} {iface} {addr}: {_describe(exc)}", exc.errno) from exc
    finally:
        # Closing a packet socket waits for an RCU grace period (4-16 ms here): not on
        # the event loop.
        loop.run_in_executor(None, sock.close)


async def unsolicited_na(iface: str, addr: ipaddress.IPv6Address, count: int = 3,
                         interval: float = 0.0) -> None:
    """Announce *addr* on *iface*: *count* unsolicited neighbour advertisements with the
    override flag to ff02::1 (hop limit 255, source *addr*, which must be on *iface*),
    *interval* seconds apart."""
    op = "unsolicited_na"
    _check_count(op, iface, addr, count)
    loop = asyncio.get_running_loop()
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_RAW | socket.SOCK_NONBLOCK,
                           socket.IPPROTO_ICMPV6) as sock:
            message = na_message(_hw_address(op, iface, addr, sock), addr)
            index = socket.if_nametoindex(iface)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            sock.bind((str(addr), 0, 0, index))

            async def send() -> None:
                await loop.sock_sendto(sock, message, (ALL_NODES, 0, 0, index))

            await _repeat(count, interval, send)
    except OSError as exc:
        if isinstance(exc, NetlinkError):
            raise
        raise NetlinkError(f"{op} {iface} {addr}: {_describe(exc)}", exc.errno) from exc
