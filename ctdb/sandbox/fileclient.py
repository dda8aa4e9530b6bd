"""A file client in the sandbox's client namespace: put and get files over SMB and NFS.

The probe of a cluster's file service is a round trip a real client makes: a file put
through one address and read back (through the same address or another node's) with the
same SHA-256.  SMB goes through ``smbclient`` as a guest; NFS through libnfs's
``nfs-cp``/``nfs-cat`` with ``nfs://IP/PATH?version=4`` (no kernel NFS client needed).
A failure is a :class:`FileServiceError` whose ``grace`` says whether the server
answered NFS4ERR_GRACE: a server in its grace period is alive and refusing on purpose,
which a failover test must tell from a dead one.

smbclient runs with a configuration of its own (its cache and lock files in a temporary
directory), so probing leaves nothing in the host's Samba directories.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ctdb.sandbox.topology import SandboxError

GRACE_ERRORS = ("NFS4ERR_GRACE",)
# libnfs 4.0 (Debian 12) encodes an NFSv4 WRITE in a 4 KiB buffer and nfs-cp writes a
# file in one WRITE: above ~3.9 KiB it fails before sending anything ("Failed to write
# to dest file").  Reads are not limited.
NFS_PUT_MAX = 3072
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class FileServiceError(SandboxError):
    """A put or get failed; ``grace`` is true when the server said it is in grace."""

    def __init__(self, message: str, grace: bool = False) -> None:
        super().__init__(message)
        self.grace = grace


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check(address: str, name: str) -> str:
    """*address* in URL form (IPv6 bracketed), after checking *address* and *name*."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise FileServiceError(f"{address!r} is not an IP address") from None
    if not _NAME_RE.match(name):
        raise FileServiceError(f"file name {name!r}: letters, digits, '.', '_', '-' only")
    return f"[{ip}]" if ip.version == 6 else str(ip)


def _run(argv: Sequence[str], netns: str | None, timeout: float,
         what: str) -> subprocess.CompletedProcess[bytes]:
    full = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
    try:
        return subprocess.run(full, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise FileServiceError(f"{what}: no answer within {timeout:g}s") from None
    except FileNotFoundError:
        raise FileServiceError(f"{what}: {argv[0]} is missing") from None


def _failure(what: str, result: subprocess.CompletedProcess[bytes]) -> FileServiceError:
    said = (result.stderr + result.stdout).decode(errors="replace")
    lines = [ln.strip() for ln in said.splitlines() if ln.strip()]
    # smbclient and libnfs put the cause first and repeat the URL after it.
    reason = next((ln for ln in lines if "NT_STATUS" in ln or "NFS4ERR" in ln
                   or "failed" in ln.lower()), lines[0] if lines else f"exit {result.returncode}")
    return FileServiceError(f"{what}: {reason}", grace=any(e in said for e in GRACE_ERRORS))


# -- SMB --------------------------------------------------------------------------------
def _smbclient(address: str, share: str, command: str, *, workdir: Path, netns: str | None,
               timeout: float, what: str) -> None:
    conf = workdir / "smb.conf"
    conf.write_text("[global]\n"
                    f"    lock directory = {workdir}\n    state directory = {workdir}\n"
                    f"    cache directory = {workdir}\n    private dir = {workdir}\n"
                    "    client min protocol = SMB2\n")
    result = _run(["smbclient", f"//{address}/{share}", "--configfile", str(conf), "-N",
                   "-c", command], netns, timeout, what)
    if result.returncode != 0 or b"NT_STATUS_" in result.stdout + result.stderr:
        raise _failure(what, result)


def smb_put(address: str, share: str, name: str, data: bytes, netns: str | None = None, *,
            timeout: float = 30.0) -> str:
    """Write *data* as *name* in the share's top directory; the SHA-256 written."""
    host = _check(address, name)
    what = f"SMB put //{address}/{share}/{name}"
    with tempfile.TemporaryDirectory(prefix="pyctdb-smb-") as tmp:
        local = Path(tmp) / "put"
        local.write_bytes(data)
        _smbclient(host, share, f"put {local} {name}", workdir=Path(tmp), netns=netns,
                   timeout=timeout, what=what)
    return sha256(data)


def smb_get(address: str, share: str, name: str, netns: str | None = None, *,
            timeout: float = 30.0) -> str:
    """Read *name* from the share's top directory; the SHA-256 read."""
    host = _check(address, name)
    what = f"SMB get //{address}/{share}/{name}"
    with tempfile.TemporaryDirectory(prefix="pyctdb-smb-") as tmp:
        local = Path(tmp) / "got"
        _smbclient(host, share, f"get {name} {local}", workdir=Path(tmp), netns=netns,
                   timeout=timeout, what=what)
        return sha256(local.read_bytes())


# -- NFS --------------------------------------------------------------------------------
def nfs_url(address: str, path: str) -> str:
    """libnfs's URL of *path* (``/data/file``) on *address*, NFSv4."""
    directory, _, name = path.rpartition("/")
    host = _check(address, name)
    return f"nfs://{host}{directory}/{name}?version=4"


def nfs_put(address: str, path: str, data: bytes, netns: str | None = None, *,
            timeout: float = 30.0) -> str:
    """Write *data* at *path* (pseudo path and name, ``/data/f``); the SHA-256 written."""
    url = nfs_url(address, path)
    if len(data) > NFS_PUT_MAX:
        raise FileServiceError(f"NFS put {url}: {len(data)} bytes; nfs-cp (libnfs 4.0) writes"
                               f" at most {NFS_PUT_MAX} bytes over NFSv4")
    with tempfile.TemporaryDirectory(prefix="pyctdb-nfs-") as tmp:
        local = Path(tmp) / "put"
        local.write_bytes(data)
        result = _run(["nfs-cp", str(local), url], netns, timeout, f"NFS put {url}")
    if result.returncode != 0:
        raise _failure(f"NFS put {url}", result)
    return sha256(data)


def nfs_get(address: str, path: str, netns: str | None = None, *,
            timeout: float = 30.0) -> str:
    """Read *path* (``/data/f``); the SHA-256 read."""
    url = nfs_url(address, path)
    result = _run(["nfs-cat", url], netns, timeout, f"NFS get {url}")
    if result.returncode != 0:
        raise _failure(f"NFS get {url}", result)
    return sha256(result.stdout)
