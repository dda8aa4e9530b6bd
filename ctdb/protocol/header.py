"""The fixed 48-byte frame header: constants, addresses and in-place routing helpers.

Routers only need the header, so it can be validated and patched without touching the
payload (``peek_header``, ``set_src``, ``set_dst``).
"""

from __future__ import annotations

import enum
import struct
from collections import namedtuple

from ctdb.errors import ProtocolError

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from typing import NamedTuple

MAGIC = b"PCTD"
VERSION = 1
MIN_VERSION = 1
HEADER_SIZE = 48
MAX_MESSAGE = 64 * 1024 * 1024
FRAGMENT_SIZE = 64 * 1024

NODE_CURRENT = 0xF0000001
NODE_ALL = 0xF0000002
NODE_LEADER = 0xF0000003
FIRST_CLIENT_SERVICE = 0x10000
FRAGMENT_TYPE = 0x0001  # pieces of a larger message; see fragment.py

# magic, version, flags, header length, frame length, type, reserved,
# src node, src service, dst node, dst service, request id, generation
HEADER = struct.Struct(">4sBBHIHHIIIIQQ")  # HEADER_SIZE bytes
_ADDR = struct.Struct(">II")
_SRC_OFFSET = 16
_DST_OFFSET = 24


class Flag(enum.IntFlag):
    """Header flag bits; unknown bits are kept so newer flags survive forwarding."""

    REQUEST = 0x01
    REPLY = 0x02
    BROADCAST = 0x04


class _FlagCache(dict[int, Flag]):
    """``Flag(byte)`` for each header flags byte, built the first time it is seen.

    Building an IntFlag per frame is slow, and building all 256 up front costs the CLI
    about a millisecond of start-up.
    """

    def __missing__(self, value: int) -> Flag:
        flag = self[value] = Flag(value)
        return flag


FLAGS: dict[int, Flag] = _FlagCache()


class Service(enum.IntEnum):
    """Well-known service numbers on every node."""

    TRANSPORT = 1
    MASTERD = 2
    CLUSTERD = 3
    DATABASED = 4
    EVENTD = 5
    SERVICED = 6
    FAILOVERD = 7
    CONNTRACKD = 8
    SUBSCRIBERS = 0xFFFFFFFF


if TYPE_CHECKING:

    class Address(NamedTuple):
        """A (node, service) endpoint; a tuple so it is cheap, hashable and a dict key."""

        node: int
        service: int

    class Header(NamedTuple):
        """Every header field of one frame (reserved omitted)."""

        version: int
        flags: Flag
        header_length: int
        length: int
        msg_type: int
        src: Address
        dst: Address
        request_id: int
        generation: int
        route_type: int = 0  # msg_type, or for a Fragment the type of the message it carries

else:  # the same classes, without importing typing (the CLI's start-up budget)
    Address = namedtuple("Address", ["node", "service"], module=__name__)
    Address.__doc__ = "A (node, service) endpoint; a tuple so it is cheap, hashable and a dict key."
    Address.__annotations__ = {"node": "int", "service": "int"}
    Header = namedtuple(
        "Header",
        ["version", "flags", "header_length", "length", "msg_type", "src", "dst",
         "request_id", "generation", "route_type"],
        defaults=[0],  # route_type: msg_type, or for a Fragment the type of the message it carries
        module=__name__,
    )  # fmt: skip
    Header.__doc__ = "Every header field of one frame (reserved omitted)."
    Header.__annotations__ = {
        "version": "int", "flags": "Flag", "header_length": "int", "length": "int",
        "msg_type": "int", "src": "Address", "dst": "Address", "request_id": "int",
        "generation": "int", "route_type": "int",
    }  # fmt: skip


def check_prefix(magic: bytes, version: int, hlen: int, length: int) -> None:
    """Validate the version-independent framing fields shared by every decoder."""
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {magic!r}")
    if version < MIN_VERSION:
        raise ProtocolError(f"protocol version {version} is older than {MIN_VERSION}")
    if hlen < HEADER_SIZE:
        raise ProtocolError(f"header length {hlen} is below {HEADER_SIZE}")
    if length < hlen:
        raise ProtocolError(f"frame length {length} is shorter than its header ({hlen})")
    if length > MAX_MESSAGE:
        raise ProtocolError(f"frame length {length} exceeds {MAX_MESSAGE}")


def peek_header(data: bytes | bytearray | memoryview) -> Header:
    """Parse and validate the header only.

    ``data`` may be just the first HEADER_SIZE bytes of a frame (a stream reader learns
    the frame length this way); ``decode`` is what checks the length against the data.
    """
    try:
        return _peek(data)
    except ProtocolError:
        raise
    except Exception as exc:
        raise ProtocolError(f"invalid header: {exc!r}") from exc


def _peek(data: bytes | bytearray | memoryview) -> Header:
    if len(data) < HEADER_SIZE:
        raise ProtocolError(f"frame of {len(data)} bytes is shorter than the header")
    magic, ver, flags, hlen, length, mtype, reserved, sn, ss, dn, ds, rid, gen = HEADER.unpack_from(
        data
    )
    check_prefix(magic, ver, hlen, length)
    route = reserved if mtype == FRAGMENT_TYPE else mtype
    return Header(
        ver, FLAGS[flags], hlen, length, mtype, Address(sn, ss), Address(dn, ds), rid, gen, route
    )


def _patch(buf: bytearray | memoryview, offset: int, addr: Address) -> None:
    if len(buf) < HEADER_SIZE:
        raise ProtocolError("buffer is shorter than a header")
    try:
        _ADDR.pack_into(buf, offset, addr[0], addr[1])
    except Exception as exc:
        raise ProtocolError(f"cannot patch address {addr!r}: {exc}") from exc


def set_src(buf: bytearray | memoryview, addr: Address) -> None:
    """Rewrite the source address of an encoded frame in place."""
    _patch(buf, _SRC_OFFSET, addr)


def set_dst(buf: bytearray | memoryview, addr: Address) -> None:
    """Rewrite the destination address of an encoded frame in place."""
    _patch(buf, _DST_OFFSET, addr)
