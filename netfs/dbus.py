"""D-Bus through dbus-next's API, from dbus-fast (preferred) or dbus-next.

dbus-fast is dbus-next's maintained fork with the same API; distributions package
one or the other.  Everything in pyctdb that talks D-Bus imports it from here, so
the choice is made once.  ``PYCTDB_DBUS=dbus-next`` forces the older library
(tests run both).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

from ctdb.errors import CtdbError


class DBusUnavailable(CtdbError, ImportError):
    """Neither dbus-fast nor dbus-next can be imported."""


def _load() -> tuple[str, ModuleType, ModuleType]:
    wanted = os.environ.get("PYCTDB_DBUS", "")
    order = ["dbus_next", "dbus_fast"] if wanted == "dbus-next" else ["dbus_fast", "dbus_next"]
    for name in order:
        try:
            return name.replace("_", "-"), importlib.import_module(name), importlib.import_module(
                f"{name}.aio")
        except ImportError:
            continue
    raise DBusUnavailable("neither dbus-fast nor dbus-next is installed")


BACKEND, _core, _aio = _load()
MessageBus: Any = _aio.MessageBus
Message: Any = _core.Message
MessageType: Any = _core.MessageType
BusType: Any = _core.BusType
Variant: Any = _core.Variant


async def connect(address: str | None = None, system: bool = True) -> Any:
    """A connected bus: *address* if given, else the system (or session) bus."""
    if address:
        bus = MessageBus(bus_address=address)
    else:
        bus = MessageBus(bus_type=BusType.SYSTEM if system else BusType.SESSION)
    return await bus.connect()


async def call(bus: Any, destination: str, path: str, interface: str, member: str,
               *, signature: str = "", body: list[Any] | None = None) -> list[Any]:
    """One method call; an error reply raises CtdbError naming the D-Bus error."""
    reply = await bus.call(Message(destination=destination, path=path, interface=interface,
                                   member=member, signature=signature, body=body or []))
    if reply.message_type == MessageType.ERROR:
        detail = reply.body[0] if reply.body else ""
        raise CtdbError(f"D-Bus {interface}.{member} failed: {reply.error_name}: {detail}")
    return list(reply.body)


class DBusCallError(CtdbError):
    """An error reply, with its D-Bus error name kept apart so callers can tell errors apart."""

    def __init__(self, interface: str, member: str, error_name: str, detail: str) -> None:
        super().__init__(f"D-Bus {interface}.{member} failed: {error_name}: {detail}")
        self.error_name = error_name
        self.detail = detail


async def call_reply(bus: Any, destination: str, path: str, interface: str, member: str,
                     *, signature: str = "", body: list[Any] | None = None) -> Any:
    """One method call returning the whole reply message, not just its body.

    The reply's ``serial`` and ``sender`` order it among the sender's signals (a peer
    numbers every message it sends), which a caller mixing a snapshot with change
    signals needs.  An error reply raises DBusCallError; a connection lost meanwhile,
    CtdbError.
    """
    reply = await bus.call(Message(destination=destination, path=path, interface=interface,
                                   member=member, signature=signature, body=body or []))
    if reply is None:  # the libraries answer pending calls with None on a local disconnect
        raise CtdbError(f"D-Bus {interface}.{member}: the connection was closed")
    if reply.message_type == MessageType.ERROR:
        detail = str(reply.body[0]) if reply.body else ""
        raise DBusCallError(interface, member, str(reply.error_name), detail)
    return reply


def match_rule(**keys: str) -> str:
    """A match rule from its keys: ``match_rule(type="signal", member="X")``."""
    return ",".join(f"{key}='{value}'" for key, value in keys.items())


async def add_match(bus: Any, rule: str) -> None:
    """Have the bus daemon route the signals matching *rule* to *bus* (see match_rule)."""
    await call(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
               "AddMatch", signature="s", body=[rule])


async def remove_match(bus: Any, rule: str) -> None:
    """Undo one add_match of *rule* (the daemon counts identical rules)."""
    await call(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
               "RemoveMatch", signature="s", body=[rule])


def release(bus: Any) -> None:
    """Close a disconnected bus's socket now: dbus-next leaves that to the garbage collector."""
    sock = getattr(bus, "_sock", None)
    if sock is not None:
        sock.close()
