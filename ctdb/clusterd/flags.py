"""Node flags, runstates and capabilities with CTDB's bit values and words.

Light on imports: the ``ctdb`` command uses it for every ``status``.
"""

from __future__ import annotations

import enum


class NodeFlag(enum.IntFlag):
    """CTDB's node flag bits (``ctdb/protocol/protocol.h``)."""

    DISCONNECTED = 0x01
    UNHEALTHY = 0x02
    PERMANENTLY_DISABLED = 0x04
    BANNED = 0x08
    DELETED = 0x10
    STOPPED = 0x20
    UNKNOWN = 0x40  # shown by the tool only


DISABLED = NodeFlag.UNHEALTHY | NodeFlag.PERMANENTLY_DISABLED
INACTIVE = NodeFlag.DELETED | NodeFlag.DISCONNECTED | NodeFlag.BANNED | NodeFlag.STOPPED

_WORDS = (
    (NodeFlag.DISCONNECTED, "DISCONNECTED"),
    (NodeFlag.UNKNOWN, "UNKNOWN"),
    (NodeFlag.PERMANENTLY_DISABLED, "DISABLED"),
    (NodeFlag.BANNED, "BANNED"),
    (NodeFlag.UNHEALTHY, "UNHEALTHY"),
    (NodeFlag.DELETED, "DELETED"),
    (NodeFlag.STOPPED, "STOPPED"),
)


def flag_words(flags: int) -> list[str]:
    """CTDB's words for *flags* in CTDB's order, INACTIVE last when it applies."""
    words = [word for bit, word in _WORDS if flags & bit]
    if flags & INACTIVE:
        words.append("INACTIVE")
    return words


def flags_text(flags: int) -> str:
    """``DISCONNECTED|INACTIVE`` and so on; ``OK`` when no flag is set."""
    return "|".join(flag_words(flags)) or "OK"


class Runstate(enum.IntEnum):
    """CTDB's daemon runstates, in the order a node goes through them."""

    UNKNOWN = 0
    INIT = 1
    SETUP = 2
    FIRST_RECOVERY = 3
    STARTUP = 4
    RUNNING = 5
    SHUTDOWN = 6


class Capability(enum.IntFlag):
    """CTDB's node capabilities (``getcapabilities``)."""

    LEADER = 0x01  # CTDB calls it RECMASTER
    LMASTER = 0x02


NO_NODE = 0xFFFFFFFF
