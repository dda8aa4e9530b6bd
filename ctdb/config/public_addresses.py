"""The public_addresses file: ``ADDRESS/BITS IFACE[,IFACE...]`` per line.

CTDB 4.17's rules (ctdb_set_public_addresses in ctdb/server/ctdb_takeover.c):

* a carriage return ends a line; leading spaces and tabs are skipped; a line whose
  first other character is ``#`` is a comment, a blank line is skipped;
* fields are separated by runs of spaces and tabs; the prefix length is required
  (``/BITS``, decimal), and so is the interface list: CTDB refuses a line without
  one ("No interface specified");
* interfaces are separated by commas (empty items are skipped);
* the same address twice is refused, whatever the prefix lengths.

Where CTDB is looser we refuse: a prefix longer than the address (CTDB fails only
when it adds the address), fields after the interface list other than a ``#``
comment (CTDB silently ignores them, so ``eth1 eth2`` would drop eth2), and
interface names Linux cannot have.  Whether an interface exists is the daemon's
concern, not the file's.
"""

from __future__ import annotations

import ipaddress

from ctdb.config.values import IPAddress, config_error, parse_node_ip, read_text
from ctdb.record import frozen

TYPE_CHECKING = False  # typing is not imported at run time (the ctdb CLI's start-up)
if TYPE_CHECKING:
    from pathlib import Path

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

_DIGITS = frozenset("0123456789")
_IFNAMSIZ = 16  # Linux: names are at most 15 bytes


@frozen
class PublicAddress:
    """An address this node may host, with its prefix, and the interfaces for it."""

    address: IPInterface
    interfaces: tuple[str, ...]


def _check_interface(name: str) -> None:
    """Linux's dev_valid_name: 1..15 bytes, no '/', ':' or blanks, not '.' or '..'."""
    if len(name.encode()) >= _IFNAMSIZ:
        raise ValueError(f"interface name {name!r} is longer than {_IFNAMSIZ - 1} bytes")
    if name in (".", "..") or any(c in name for c in "/:") or any(c.isspace() for c in name):
        raise ValueError(f"{name!r} is not a valid interface name")


def _parse_address(field: str) -> IPInterface:
    text, slash, bits_text = field.rpartition("/")
    if not slash:
        raise ValueError(f"{field!r} has no /BITS prefix length")
    digits = bits_text[1:] if bits_text.startswith("+") else bits_text
    if not digits or not _DIGITS.issuperset(digits):  # decimal, an optional '+'
        raise ValueError(f"prefix length {bits_text!r} in {field!r} is not a number")
    address: IPAddress = parse_node_ip(text)
    bits = int(bits_text)
    if bits > address.max_prefixlen:
        raise ValueError(
            f"prefix length /{bits} is too long for IPv{address.version} (at most "
            f"{address.max_prefixlen})"
        )
    return ipaddress.ip_interface(f"{address}/{bits}")


def _parse_interfaces(field: str) -> tuple[str, ...]:
    names: list[str] = []
    for name in field.split(","):
        if not name:
            continue
        _check_interface(name)
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError(f"no interface names in {field!r}")
    return tuple(names)


def parse_public_addresses(text: str, filename: str = "public_addresses") -> list[PublicAddress]:
    """The addresses listed in *text*, in file order; ConfigError on the first bad line."""
    if "\0" in text:
        raise config_error(filename, text[: text.index("\0")].count("\n") + 1, "NUL character")
    result: list[PublicAddress] = []
    seen: dict[IPAddress, int] = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.split("\r", 1)[0].lstrip(" \t")
        if not line or line.startswith("#"):
            continue
        # CTDB splits on spaces and tabs only; other blanks stay in a field and are refused.
        fields = [f for f in line.replace("\t", " ").split(" ") if f]
        if len(fields) < 2 or fields[1].startswith("#"):
            raise config_error(
                filename, number, f"no interface for {fields[0]!r} (expected ADDRESS/BITS IFACE)"
            )
        if len(fields) > 2 and not fields[2].startswith("#"):
            raise config_error(
                filename,
                number,
                f"unexpected {fields[2]!r} after the interface list "
                "(separate interfaces with commas)",
            )
        try:
            address = _parse_address(fields[0])
            interfaces = _parse_interfaces(fields[1])
        except ValueError as e:
            raise config_error(filename, number, str(e)) from None
        if address.ip in seen:
            raise config_error(
                filename,
                number,
                f"duplicate public address {address.ip} (also on line {seen[address.ip]})",
            )
        seen[address.ip] = number
        result.append(PublicAddress(address, interfaces))
    return result


def load_public_addresses(path: Path) -> list[PublicAddress]:
    """Read a public_addresses file; OSError (e.g. FileNotFoundError) propagates."""
    return parse_public_addresses(read_text(path), str(path))
