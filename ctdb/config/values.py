"""Value syntax shared by CTDB's files: integers, booleans, log levels, addresses.

Each parser returns the value or raises :class:`ValueError` with a short reason; the
file parsers turn that into a located :class:`~ctdb.errors.ConfigError` with
:func:`config_error`, so every refusal reads ``FILE:LINE: what is wrong``.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from ctdb.errors import ConfigError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

INT_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1

# C's strtol/strtoul with base 0: hex with 0x, octal with a leading 0, else decimal.
# Patterns stay strings: ``re`` compiles (and caches) them on first use, so importing
# this module (which the ``ctdb`` CLI does) compiles nothing.
_C_INTEGER = r"([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)"

# CTDB's debug levels in its own order; a number indexes this table (0..10).
LOG_LEVEL_NAMES = ("ERROR", "WARNING", "NOTICE", "INFO", "DEBUG")
_LEVEL_BY_NUMBER = (
    "ERROR",
    "WARNING",
    "WARNING",
    "NOTICE",
    "NOTICE",
    "INFO",
    "INFO",
    "INFO",
    "INFO",
    "INFO",
    "DEBUG",
)

# Longest address text CTDB copies before parsing (a 64-byte buffer).
_MAX_ADDRESS_TEXT = 63


def config_error(filename: str, line: int | None, message: str) -> ConfigError:
    """The one-line error every parser raises: ``FILE:LINE: message``."""
    where = filename if line is None else f"{filename}:{line}"
    return ConfigError(f"{where}: {message}")


def parse_c_integer(text: str, *, maximum: int, allow_negative_zero: bool = True) -> int:
    """An integer as C's ``strtol(s, NULL, 0)`` reads it, but the whole text must be a
    number (CTDB 4.17 silently ignores trailing junk; we refuse it)."""
    m = re.fullmatch(_C_INTEGER, text)
    if m is None:
        raise ValueError(f"{text!r} is not an integer")
    sign, digits = m.groups()
    if digits[:2] in ("0x", "0X"):
        value = int(digits[2:], 16)
    elif len(digits) > 1 and digits[0] == "0":
        value = int(digits[1:], 8)
    else:
        value = int(digits, 10)
    if sign == "-" and (value != 0 or not allow_negative_zero):
        raise ValueError(f"{text!r} is negative")
    if value > maximum:
        raise ValueError(f"{text!r} is larger than {maximum}")
    return value


def parse_boolean(text: str) -> bool:
    """CTDB's booleans: true/yes or false/no, any case (not 1/0, not on/off)."""
    lowered = text.lower()
    if lowered in ("true", "yes"):
        return True
    if lowered in ("false", "no"):
        return False
    raise ValueError(f"{text!r} is not a boolean (use true, false, yes or no)")


def parse_log_level(text: str) -> str:
    """A CTDB debug level, normalised to its upper-case name.

    As CTDB's ``debug_level_parse``: text starting with a digit is read as a number
    0..10 (``atoi``, so trailing text is ignored); otherwise it may be any
    case-insensitive prefix of ERROR, WARNING, NOTICE, INFO or DEBUG.
    """
    if not text:
        raise ValueError("empty log level")
    if text[0] in "0123456789":
        digits = re.match(r"[0-9]+", text)
        number = int(digits.group(0)) if digits else 0
        if number < len(_LEVEL_BY_NUMBER):
            return _LEVEL_BY_NUMBER[number]
        raise ValueError(f"log level {text!r} is out of range 0..10")
    upper = text.upper()
    for name in LOG_LEVEL_NAMES:
        if name.startswith(upper):
            return name
    raise ValueError(f"unknown log level {text!r} (use ERROR, WARNING, NOTICE, INFO or DEBUG)")


def parse_ip(text: str) -> IPAddress:
    """An address as C's ``inet_pton``: dotted-quad IPv4 or IPv6, no zone index."""
    if "%" in text:
        raise ValueError(f"{text!r} has a zone index, which CTDB does not accept")
    try:
        if ":" in text:
            return ipaddress.IPv6Address(text)
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv4 or IPv6 address") from None


def parse_node_ip(text: str) -> IPAddress:
    """An address as CTDB reads nodes and public addresses: IPv6 may be in brackets,
    and an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) means the IPv4 address."""
    if len(text) > _MAX_ADDRESS_TEXT:
        raise ValueError(f"{text[:20]!r}... is too long for an address")
    inner = text
    if ":" in text and len(text) >= 2 and text[0] == "[" and text[-1] == "]":
        inner = text[1:-1]
    address = parse_ip(inner)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def read_text(path: Path) -> str:
    """The file's text; bytes that are not UTF-8 are refused with their line number."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise config_error(str(path), line, "text is not valid UTF-8") from None
