"""The declarative share list: what the cluster serves, over SMB, NFS or both.

One list feeds both renderers (smb.conf and ganesha.conf), so a share is named and
placed once.  It comes from a TOML file (``[[share]]`` tables) or, from the Ansible
role, as the same structure in a list of dicts.  Input is checked strictly and every
refusal is a one-line :class:`~ctdb.errors.ConfigError` naming the source, the share
and the field (``shares.toml: share 'data': nfs.squash: ...``), because a typo in a
share list would otherwise surface as a file server refusing to start on every node.

Values end up inside smb.conf and ganesha.conf lines, so characters those formats
cannot carry (line breaks, quotes, Ganesha's ``{ } ;``) are refused here rather than
escaped: there is no escaping in either format that both smbd and Ganesha honour.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from ctdb.errors import ConfigError

PROTOCOLS = frozenset({"smb", "nfs"})
MAX_EXPORT_ID = 65535  # Ganesha's Export_Id is a uint16; 0 is its pseudo root
# smb.conf section names that are not shares, or mean something else.
RESERVED_NAMES = frozenset({"global", "homes", "printers", "ipc$"})
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.$-]{0,79}$")
_USER_RE = re.compile(r"^[@+&]{0,2}[A-Za-z0-9_.$\\-]+$")
_HOST_RE = re.compile(r"^[A-Za-z0-9*?.\[\]-]+$")
# Characters neither smb.conf nor ganesha.conf can carry inside a value; a comment goes
# to smb.conf only, where just line breaks (and other control characters) end it.
_BAD_CHARS = re.compile(r'[\x00-\x1f\x7f"{};]')
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Access(StrEnum):
    """NFS Access_Type of an export."""

    RW = "RW"
    RO = "RO"


class Squash(StrEnum):
    """How NFS maps client root (or every user) to the anonymous user."""

    ROOT_SQUASH = "root_squash"
    NO_ROOT_SQUASH = "no_root_squash"
    ALL_SQUASH = "all_squash"


@dataclass(frozen=True)
class NfsOptions:
    """The NFS side of a share (Ganesha EXPORT block).

    ``export_id`` is embedded in every file handle Ganesha gives out: keep it stable
    (set it explicitly) or clients get ESTALE after the list is reordered.
    """

    export_id: int
    pseudo: str
    access: Access = Access.RW
    squash: Squash = Squash.ROOT_SQUASH
    clients: tuple[str, ...] = ()  # empty: every client


@dataclass(frozen=True)
class Share:
    name: str
    path: str
    protocols: frozenset[str] = PROTOCOLS
    read_only: bool = False
    comment: str = ""
    browseable: bool = True
    guest_ok: bool = False
    valid_users: tuple[str, ...] = ()
    nfs: NfsOptions | None = None  # set exactly when "nfs" is in protocols

    @property
    def smb(self) -> bool:
        return "smb" in self.protocols

    @property
    def exported(self) -> bool:
        return "nfs" in self.protocols


SHARE_KEYS = ("name", "path", "protocols", "read_only", "comment", "browseable", "guest_ok",
              "valid_users", "nfs")
NFS_KEYS = ("access_type", "squash", "clients", "pseudo", "export_id")


@dataclass
class _Checker:
    """Where errors point: the source and the share being read."""

    source: str
    share: str = ""

    def fail(self, key: str, problem: str) -> ConfigError:
        where = f"{self.source}: {self.share}" if self.share else self.source
        return ConfigError(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")

    def string(self, data: Mapping[str, Any], key: str, label: str,
               default: str | None = None, bad: re.Pattern[str] = _BAD_CHARS) -> str:
        value = data.get(key, default)
        if value is None:
            raise self.fail(label, "missing (required)")
        if not isinstance(value, str):
            raise self.fail(label, f"must be a string, not {_kind(value)}")
        if bad.search(value):
            what = "a line break, quote, brace or ';'" if bad is _BAD_CHARS else "a line break"
            raise self.fail(label, f"{value!r} contains {what}")
        return value

    def boolean(self, data: Mapping[str, Any], key: str, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, not {value!r}")
        return value

    def strings(self, data: Mapping[str, Any], key: str, label: str) -> tuple[str, ...]:
        value = data.get(key, [])
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise self.fail(label, f"must be a list of strings, not {_kind(value)}")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.fail(f"{label}[{i}]", f"must be a string, not {_kind(item)}")
            out.append(item)
        return tuple(out)

    def path(self, value: str, label: str) -> str:
        if not value.startswith("/"):
            raise self.fail(label, f"{value!r} is not an absolute path")
        stripped = value.rstrip("/") or "/"
        if posixpath.normpath(value) != stripped or "//" in value:
            raise self.fail(label, f"{value!r} is not a normalised path (no '.', '..', '//')")
        if "%" in value or value != value.strip():
            # smbd would expand %-macros that Ganesha takes literally: two different paths
            raise self.fail(label, f"{value!r}: no '%' or surrounding spaces in a path")
        return stripped

    def unknown(self, data: Mapping[str, Any], known: Sequence[str], prefix: str = "") -> None:
        for key in data:
            if key not in known:
                raise self.fail(f"{prefix}{key}", f"unknown key (known: {', '.join(known)})")


def _kind(value: object) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def load_shares(path: str | Path) -> tuple[Share, ...]:
    """The shares of a TOML file (``[[share]]`` tables)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the share list: {exc.strerror}") from None
    return parse_shares(text, str(path))


def parse_shares(text: str, source: str = "<shares>") -> tuple[Share, ...]:
    """The shares of TOML text; *source* names it in errors."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    check = _Checker(source)
    check.unknown(doc, ("share",))
    shares = doc.get("share", [])
    if not isinstance(shares, list):
        raise check.fail("share", "must be an array of tables ([[share]])")
    return shares_from_data(shares, source)


def shares_from_data(data: Sequence[Mapping[str, Any]],
                     source: str = "<shares>") -> tuple[Share, ...]:
    """Shares from a list of dicts (the TOML's tables, or the Ansible role's variable).

    Export ids left out are given the lowest ids no other share uses, in list order.
    """
    check = _Checker(source)
    if isinstance(data, (str, Mapping)) or not isinstance(data, Sequence):
        raise check.fail("", f"the share list must be a list of tables, not {_kind(data)}")
    raw: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    names: dict[str, str] = {}
    for index, item in enumerate(data):
        check.share = f"share #{index + 1}"
        if not isinstance(item, Mapping):
            raise check.fail("", f"must be a table, not {_kind(item)}")
        if isinstance(item.get("name"), str):
            check.share = f"share {item['name']!r}"
        fields, nfs = _share_fields(check, item)
        folded = fields["name"].lower()  # SMB share names are case-insensitive
        if folded in names:
            raise check.fail("name", f"duplicate share name (also {names[folded]!r})")
        names[folded] = fields["name"]
        raw.append((fields, nfs))
    return _with_exports(check, raw)


def _share_fields(check: _Checker,
                  item: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A share's own fields checked; its NFS options checked but export ids still open."""
    check.unknown(item, SHARE_KEYS)
    name = check.string(item, "name", "name")
    if not _NAME_RE.match(name):
        raise check.fail("name", f"{name!r}: 1-80 letters, digits, '_', '.', '-' or '$',"
                         " starting with a letter or digit")
    if name.lower() in RESERVED_NAMES:
        raise check.fail("name", f"{name!r} is reserved in smb.conf")
    path = check.path(check.string(item, "path", "path"), "path")
    protocols = check.strings(item, "protocols", "protocols") if "protocols" in item \
        else tuple(sorted(PROTOCOLS))
    if not protocols:
        raise check.fail("protocols", "must name at least one of smb, nfs")
    for proto in protocols:
        if proto not in PROTOCOLS:
            raise check.fail("protocols", f"unknown protocol {proto!r} (known: nfs, smb)")
    users = check.strings(item, "valid_users", "valid_users")
    for user in users:
        if not _USER_RE.match(user):
            raise check.fail("valid_users", f"{user!r} is not a user or @group name")
    fields: dict[str, Any] = {
        "name": name, "path": path, "protocols": frozenset(protocols),
        "read_only": check.boolean(item, "read_only", False),
        "comment": check.string(item, "comment", "comment", "", bad=_CONTROL),
        "browseable": check.boolean(item, "browseable", True),
        "guest_ok": check.boolean(item, "guest_ok", False),
        "valid_users": users,
    }
    nfs_data = item.get("nfs")
    if "nfs" not in protocols:
        if nfs_data is not None:
            raise check.fail("nfs", "NFS options for a share whose protocols lack nfs")
        return fields, None
    if nfs_data is None:
        nfs_data = {}
    if not isinstance(nfs_data, Mapping):
        raise check.fail("nfs", f"must be a table, not {_kind(nfs_data)}")
    return fields, _nfs_fields(check, nfs_data, name, fields["read_only"])


def _nfs_fields(check: _Checker, data: Mapping[str, Any], name: str,
                read_only: bool) -> dict[str, Any]:
    check.unknown(data, NFS_KEYS, "nfs.")
    default_access = "RO" if read_only else "RW"
    access_text = check.string(data, "access_type", "nfs.access_type", default_access)
    try:
        access = Access(access_text.upper())
    except ValueError:
        raise check.fail("nfs.access_type", f"{access_text!r} is not RW or RO") from None
    if read_only and access is Access.RW:
        raise check.fail("nfs.access_type", "RW contradicts read_only = true")
    squash_text = check.string(data, "squash", "nfs.squash", Squash.ROOT_SQUASH.value)
    try:
        squash = Squash(squash_text)
    except ValueError:
        raise check.fail("nfs.squash", f"{squash_text!r} is not one of "
                         + ", ".join(s.value for s in Squash)) from None
    clients = check.strings(data, "clients", "nfs.clients")
    for client in clients:
        if not _valid_client(client):
            raise check.fail("nfs.clients", f"{client!r} is not an address, network or"
                             " host name pattern")
    pseudo = check.path(check.string(data, "pseudo", "nfs.pseudo", f"/{name}"), "nfs.pseudo")
    if pseudo == "/":
        raise check.fail("nfs.pseudo", "'/' is Ganesha's pseudo root: pick a path below it")
    export_id = data.get("export_id")
    if export_id is not None and (isinstance(export_id, bool) or not isinstance(export_id, int)
                                  or not 1 <= export_id <= MAX_EXPORT_ID):
        raise check.fail("nfs.export_id", f"{export_id!r} is not a number from 1 to"
                         f" {MAX_EXPORT_ID}")
    return {"export_id": export_id, "pseudo": pseudo, "access": access, "squash": squash,
            "clients": clients}


def _valid_client(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return text == "*" or bool(_HOST_RE.match(text))
    return True


def _with_exports(check: _Checker,
                  raw: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> tuple[Share, ...]:
    """The shares with export ids given out and export ids and pseudo paths unique."""
    taken: dict[int, str] = {}
    pseudos: dict[str, str] = {}
    for fields, nfs in raw:
        if nfs is None:
            continue
        check.share = f"share {fields['name']!r}"
        if nfs["export_id"] is not None:
            if nfs["export_id"] in taken:
                raise check.fail("nfs.export_id", f"{nfs['export_id']} is also share "
                                 f"{taken[nfs['export_id']]!r}'s export id")
            taken[nfs["export_id"]] = fields["name"]
        if nfs["pseudo"] in pseudos:
            raise check.fail("nfs.pseudo", f"{nfs['pseudo']} is also share "
                             f"{pseudos[nfs['pseudo']]!r}'s pseudo path")
        pseudos[nfs["pseudo"]] = fields["name"]
    free = (i for i in range(1, MAX_EXPORT_ID + 1) if i not in taken)
    shares = []
    for fields, nfs in raw:
        options = None
        if nfs is not None:
            if nfs["export_id"] is None:
                check.share = f"share {fields['name']!r}"
                nfs["export_id"] = next(free, None)
                if nfs["export_id"] is None:
                    raise check.fail("nfs.export_id", "no export id left")
            options = NfsOptions(**nfs)
        shares.append(Share(**fields, nfs=options))
    return tuple(shares)
