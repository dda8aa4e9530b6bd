"""NSM (statd) client lists per public address, kept where every node can read them.

NFSv3 clients hold their locks (NLM) until told that the server restarted: an
SM_NOTIFY from the server's NSM, after which they reclaim them.  In a cluster the
"server" a client knows is a public address, so when an address moves, the node that
takes it over must notify the clients that locked through it; the node that recorded
them may be gone.  So the record is kept on storage all nodes share, behind
:class:`ClientStore` (a shared directory until pyctdb has clustered databases):

* ``add(server_ip, client)``: rpc.statd monitors *client* (its ha-callout
  ``add-client``), recorded for an address this node holds;
* ``remove(server_ip, client)``: no longer (``del-client``, or notified);
* ``clients(server_ip)``: who to notify when that address is taken over, sorted;
* ``all()``: every (server IP, client) pair, sorted.

:class:`SharedDirStore` keeps one file per pair, ``DIR/<server IP>/<client>``, written
to a private temporary name and renamed into place (atomic on every POSIX file
system, local or clustered), so several nodes may add and remove at once: an add is
one rename, a remove one unlink, and a reader sees a pair or not, never half of one.
Files whose names start with a dot (temporary ones) are not pairs.  The file holds one
line for people (when, from which node); only its name counts.  rpc.statd runs its
callout as its own user (the owner of /var/lib/nfs/sm), so the directory belongs to
that user (:meth:`SharedDirStore.ensure`), who must have the same uid on every node.

Server addresses are IP addresses (normalised: ``2001:DB8::1`` is ``2001:db8::1``);
clients are what statd passes as ``mon_name``, an IP address or a host name (host
names lowercased, IPv4-mapped IPv6 addresses as IPv4).  Anything else, which could
name another file, is refused with one line.

Where: ``CTDB_NFS_SHARED_STATE_DIR`` (CTDB's NFS variable for state on shared
storage), taken from the environment, else ``events/legacy/60.nfs.options``, else
``script.options`` in CTDB_BASE, else :data:`DEFAULT_SHARED_STATE_DIR`; the pairs live
in its ``statd`` subdirectory.  It must be on storage every node mounts at the same
path, or a moved address's clients are not found by the node taking it over.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from ctdb.config import ctdb_base, load_script_options
from ctdb.errors import CtdbError

DEFAULT_SHARED_STATE_DIR = Path("/var/lib/pyctdb/nfs-state")
SHARED_STATE_VARIABLE = "CTDB_NFS_SHARED_STATE_DIR"
NFS_OPTIONS = Path("events/legacy/60.nfs.options")  # the NFS script's own options
STATD_SUBDIR = "statd"
MAX_NAME = 253  # a DNS name's longest text form
# A host name: dot-separated labels of letters, digits, '-' and '_' (NetBIOS-style
# names), none starting or ending with '-'.
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?"
_HOSTNAME = rf"{_LABEL}(?:\.{_LABEL})*"


class StatdError(CtdbError, ValueError):
    """A server address or client name that cannot be stored."""


class ClientStore(Protocol):
    """The NSM clients of each public address, shared by every node."""

    def add(self, server_ip: str, client: str) -> None: ...

    def remove(self, server_ip: str, client: str) -> None: ...

    def clients(self, server_ip: str) -> list[str]: ...

    def all(self) -> list[tuple[str, str]]: ...


def server_address(text: str) -> str:
    """*text* as a normalised IP address; StatdError if it is not one."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise StatdError(f"server address {text!r} is not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        raise StatdError(f"server address {text!r}: scoped IPv6 addresses are not supported")
    return str(address)


def client_name(text: str) -> str:
    """*text* as statd's name for a client (an IP address or host name), normalised."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        if isinstance(address, ipaddress.IPv6Address):
            if address.scope_id:
                raise StatdError(f"client {text!r}: scoped IPv6 addresses are not supported")
            if address.ipv4_mapped is not None:
                return str(address.ipv4_mapped)
        return str(address)
    name = text.lower()
    if len(name) > MAX_NAME or re.fullmatch(_HOSTNAME, name) is None:
        raise StatdError(f"client {text!r} is neither an IP address nor a host name")
    if re.fullmatch(r"[0-9.]+", name):  # 198.18.0.256: a bad address, not a name
        raise StatdError(f"client {text!r} is not a valid IP address")
    return name


def _is_client(name: str) -> bool:
    try:
        return client_name(name) == name
    except StatdError:
        return False


def _is_server(name: str) -> bool:
    try:
        return server_address(name) == name
    except StatdError:
        return False


class SharedDirStore:
    """:class:`ClientStore` on a directory that every node mounts: one file per pair."""

    def __init__(self, directory: Path, node: str | None = None) -> None:
        self.directory = Path(directory)
        # In temporary file names only, so that two nodes never pick the same one.
        self.node = re.sub(r"[^A-Za-z0-9-]", "-", node or socket.gethostname())[:64]

    def __repr__(self) -> str:
        return f"SharedDirStore({str(self.directory)!r})"

    def ensure(self, owner: tuple[int, int] | None = None) -> None:
        """Create the directory if it is missing, owned by *owner* (uid, gid): the user
        rpc.statd runs its callout as must be able to add pairs.  Not its parent: that
        is the shared storage, which an admin mounts (no parent, nothing is done)."""
        try:
            self.directory.mkdir()
        except (FileExistsError, FileNotFoundError):
            return
        if owner is not None:
            os.chown(self.directory, *owner)

    def add(self, server_ip: str, client: str) -> None:
        ip, name = server_address(server_ip), client_name(client)
        folder = self.directory / ip
        try:
            folder.mkdir(parents=True)
        except FileExistsError:
            pass
        else:
            if os.geteuid() == 0:  # root (by hand) makes it for statd's user, as the store
                top = self.directory.stat()
                os.chown(folder, top.st_uid, top.st_gid)
        temporary = folder / f".{name}.{self.node}.{os.getpid()}.{secrets.token_hex(4)}"
        line = f"{ip} {name} added {int(time.time())} by {self.node}\n"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, folder / name)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def remove(self, server_ip: str, client: str) -> None:
        """Forget the pair; nothing to do if it is not there (another node removed it)."""
        (self.directory / server_address(server_ip) / client_name(client)).unlink(missing_ok=True)

    def clients(self, server_ip: str) -> list[str]:
        try:
            names = os.listdir(self.directory / server_address(server_ip))
        except FileNotFoundError:
            return []
        return sorted(n for n in names if _is_client(n))

    def all(self) -> list[tuple[str, str]]:
        try:
            folders = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        pairs: list[tuple[str, str]] = []
        for ip in folders:
            if not _is_server(ip):
                continue
            try:
                names = os.listdir(self.directory / ip)
            except (FileNotFoundError, NotADirectoryError):
                continue
            pairs.extend((ip, n) for n in names if _is_client(n))
        return sorted(pairs)


def shared_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """``CTDB_NFS_SHARED_STATE_DIR``: the environment's, else the NFS script's options
    (``60.nfs.options`` after ``script.options``, as the script reads them), else the
    default.  ConfigError for an unreadable options file or a relative path."""
    env = os.environ if env is None else env
    value = env.get(SHARED_STATE_VARIABLE, "")
    where = SHARED_STATE_VARIABLE
    if not value:
        base = ctdb_base(env)
        for path in (base / NFS_OPTIONS, base / "script.options"):
            try:
                options = load_script_options(path, env={"CTDB_BASE": str(base)})
            except FileNotFoundError:
                continue
            if options.get(SHARED_STATE_VARIABLE):
                value, where = options[SHARED_STATE_VARIABLE], f"{path}: {SHARED_STATE_VARIABLE}"
                break
    if not value:
        return DEFAULT_SHARED_STATE_DIR
    if not value.startswith("/"):
        raise StatdError(f"{where}={value!r} is not an absolute path")
    return Path(value)


def configured_store(env: Mapping[str, str] | None = None) -> SharedDirStore:
    """The store the configuration names: ``CTDB_NFS_SHARED_STATE_DIR/statd``."""
    return SharedDirStore(shared_state_dir(env) / STATD_SUBDIR)
