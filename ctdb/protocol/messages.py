"""The core message catalog.

Daemons add their own messages in their own modules with the same ``@message``
decorator; type numbers are global, so a duplicate fails at import.  Ranges in use:
0x0001-0x00FF transport, 0x0100-0x01FF any daemon's common requests, 0x0200-0x02FF
masterd, 0x0F00-0x0FFF tests and benchmarks.
"""

from __future__ import annotations

import enum

from ctdb.protocol.codec import I64, U16, U32, message, struct
from ctdb.protocol.header import FRAGMENT_TYPE

FRAGMENT = FRAGMENT_TYPE


class ErrorCode(enum.IntEnum):
    """``ErrorReply.code`` values."""

    NO_SUCH_SERVICE = 1
    NODE_DISCONNECTED = 2
    NO_LEADER = 3
    UNKNOWN_MESSAGE = 4
    INVALID_MESSAGE = 5
    INTERNAL = 6
    TIMEOUT = 7
    REFUSED = 8


# --- transport ---------------------------------------------------------------------


@message(FRAGMENT)
class Fragment:
    """One piece of a message larger than a frame; see ``fragment.py``."""

    msg_id: U32
    total: U32
    offset: U32
    data: bytes


@message(0x0002)
class ErrorReply:
    """A request failed; ``code`` is an ``ErrorCode``, ``message`` is for humans."""

    code: U32
    message: str


@message(0x0003)
class Ack:
    """A request succeeded and has nothing to return."""


@message(0x0010)
class Register:
    """A local process announces its service number (0: assign a client id)."""

    service: U32
    subscriptions: list[U16]


@message(0x0011)
class Registered:
    """The address transportd registered the process under."""

    node: U32
    service: U32


@message(0x0012)
class Subscribe:
    """Also deliver broadcasts of these message types to the sender."""

    types: list[U16]


@message(0x0013)
class Unsubscribe:
    """Stop delivering broadcasts of these message types."""

    types: list[U16]


@message(0x0014)
class SetLeader:
    """Where NODE_LEADER routes from now on."""

    leader: U32


@message(0x0015)
class LinkStatusRequest:
    """Ask transportd for the state of its links to peers."""


@struct
class LinkInfo:
    """One peer link as transportd sees it."""

    pnn: U32
    address: str
    connected: bool
    deleted: bool
    since_us: I64


@message(0x0016)
class LinkStatusReply:
    """Every link of node ``pnn``."""

    pnn: U32
    links: list[LinkInfo]


# --- common daemon requests --------------------------------------------------------


@message(0x0100)
class PingRequest:
    """Liveness probe."""


@message(0x0101)
class PingReply:
    """Liveness answer, with the number of connected clients."""

    clients: U32


@message(0x0102)
class VersionRequest:
    """Ask for the software version and protocol range."""


@message(0x0103)
class VersionReply:
    """Software version and the protocol versions spoken."""

    version: str
    protocol_min: U16
    protocol_max: U16


@message(0x0104)
class UptimeRequest:
    """Ask for start and recovery times."""


@message(0x0105)
class UptimeReply:
    """Times in microseconds since the epoch (0: never)."""

    current_time_us: I64
    start_time_us: I64
    last_recovery_started_us: I64
    last_recovery_finished_us: I64


@message(0x0106)
class StatusRequest:
    """Ask a daemon for its status."""


@struct
class KeyValue:
    """One free-form status item."""

    key: str
    value: str


@message(0x0107)
class StatusReply:
    """A daemon's name, pid, state and free-form status items."""

    name: str
    pid: U32
    state: str
    items: list[KeyValue]


@message(0x0108)
class GetLogLevelRequest:
    """Ask for the current log level."""


@message(0x0109)
class LogLevelReply:
    """The current log level name."""

    level: str


@message(0x010A)
class SetLogLevelRequest:
    """Change the log level (answered by LogLevelReply or ErrorReply)."""

    level: str


@message(0x010C)
class ShutdownRequest:
    """Ask a daemon to stop."""


# --- masterd -----------------------------------------------------------------------


@message(0x0200)
class DaemonListRequest:
    """Ask masterd for the daemons it supervises."""


@struct
class DaemonInfo:
    """One supervised daemon."""

    name: str
    pid: U32
    state: str
    restarts: U32
    started_us: I64


@message(0x0201)
class DaemonListReply:
    """Every supervised daemon."""

    daemons: list[DaemonInfo]


# --- tests and benchmarks ----------------------------------------------------------


@message(0x0F00)
class EchoRequest:
    """Return ``data`` unchanged."""

    data: bytes


@message(0x0F01)
class EchoReply:
    """The data an EchoRequest carried."""

    data: bytes
