"""NFS-Ganesha's D-Bus interface: grace periods for failover, and its exports.

When a public address moves, the node taking it over must put Ganesha into a grace
period so that the clients of that address can reclaim their opens and locks before
anyone else takes them.  Ganesha's ``org.ganesha.nfsd.admin.grace`` takes one string,
``"EVENT:ARG"``: the event number (Ganesha's ``EVENT_*`` in sal_data.h) and, for the
address events, the address.  ``TAKE_IP`` (5) with the moved address also loads that
address's clients from the recovery directory (``RecoveryRoot/IP/...``); a plain grace
is ``"0:"``.  (Ganesha 4.x reads a string without ``:`` as an address for TAKE_IP, so
the event is always sent explicitly; IPv6 addresses are fine: only the first ``:`` splits.)
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from ctdb.errors import CtdbError
from netfs import dbus

BUS_NAME = "org.ganesha.nfsd"
ADMIN_PATH = "/org/ganesha/nfsd/admin"
ADMIN_IFACE = "org.ganesha.nfsd.admin"
EXPORTMGR_PATH = "/org/ganesha/nfsd/ExportMgr"
EXPORTMGR_IFACE = "org.ganesha.nfsd.exportmgr"


class GraceEvent(IntEnum):
    """Why a grace period starts (Ganesha's EVENT_* numbers)."""

    JUST_GRACE = 0
    CLEAR_BLOCKED = 1
    RELEASE_IP = 2
    UPDATE_CLIENTS = 3
    TAKE_NODEID = 4
    TAKE_IP = 5


class GaneshaError(CtdbError):
    """Ganesha refused or failed a request."""


@dataclass(frozen=True)
class Export:
    export_id: int
    path: str


def grace_argument(ip: str | None, event: GraceEvent | None = None) -> str:
    """The string ``admin.grace`` takes: ``"5:IP"`` for a taken-over address, else ``"0:"``."""
    if ip is None:
        if event not in (None, GraceEvent.JUST_GRACE, GraceEvent.CLEAR_BLOCKED,
                         GraceEvent.UPDATE_CLIENTS):
            raise ValueError(f"grace event {event!r} needs an address")
        return f"{int(event or GraceEvent.JUST_GRACE)}:"
    try:
        address = str(ipaddress.ip_address(ip))
    except ValueError:
        raise ValueError(f"{ip!r} is not an IP address") from None
    event = GraceEvent.TAKE_IP if event is None else event
    if event not in (GraceEvent.TAKE_IP, GraceEvent.RELEASE_IP):
        raise ValueError(f"grace event {event.name} takes no address")
    return f"{int(event)}:{address}"


def _status(reply: list[Any], what: str) -> None:
    """Ganesha's (status, message) reply: raise on a false status."""
    if len(reply) >= 2 and reply[0] is False:
        raise GaneshaError(f"NFS-Ganesha refused {what}: {reply[1]}")


async def grace(bus: Any, ip: str | None, event: GraceEvent | None = None,
                timeout: float = 10.0) -> None:
    """Start a grace period; with *ip*, for the clients of that (taken-over) address."""
    argument = grace_argument(ip, event)
    async with asyncio.timeout(timeout):
        reply = await dbus.call(bus, BUS_NAME, ADMIN_PATH, ADMIN_IFACE, "grace",
                                signature="s", body=[argument])
    _status(reply, f"grace {argument!r}")


async def in_grace(bus: Any, timeout: float = 10.0) -> bool:
    """Whether Ganesha is in a grace period now."""
    async with asyncio.timeout(timeout):
        reply = await dbus.call(bus, BUS_NAME, ADMIN_PATH, ADMIN_IFACE, "get_grace")
    return bool(reply[0])


def parse_exports(reply: list[Any]) -> list[Export]:
    """ShowExports' reply: a timestamp, then one struct per export (id, path, stats...)."""
    if len(reply) < 2 or not isinstance(reply[1], list):
        raise GaneshaError(f"NFS-Ganesha's ShowExports reply is not understood: {reply!r:.80}")
    return [Export(int(e[0]), str(e[1])) for e in reply[1]]


async def show_exports(bus: Any, timeout: float = 10.0) -> list[Export]:
    """Ganesha's exports (export id 0 is its NFSv4 pseudo root)."""
    async with asyncio.timeout(timeout):
        reply = await dbus.call(bus, BUS_NAME, EXPORTMGR_PATH, EXPORTMGR_IFACE, "ShowExports")
    return parse_exports(reply)
