"""File services in the sandbox's nodes (``--services smb,nfs``, nspawn backend).

Every node serves one share, ``data``, over SMB (smbd) and/or NFSv4 (NFS-Ganesha),
from storage all nodes share: one host directory, ``SANDBOX/storage``, bound into every
container at :data:`STORAGE` (``/srv/pyctdb``), holding the share (``data``) and
Ganesha's recovery directory (``ganesha``), as a cluster file system would.  The
directory must not be on overlayfs: Ganesha's VFS FSAL needs file handles
(``open_by_handle_at``) that overlayfs does not give out.

Before boot each node's overlay gets smb.conf and ganesha.conf rendered by
:mod:`netfs.render` from the same share list, and the units of the services asked for
are unmasked but not enabled: the cluster manager starts them, not boot.  The host
enables smbd.service and nfs-ganesha.service in ``multi-user.target.wants``; the
overlay hides those links with whiteouts.  Ganesha needs more of the container:
``CAP_DAC_READ_SEARCH`` and the ``open_by_handle_at`` system call, which
systemd-nspawn withholds by default.

SMB is open to guests (``smbclient -N``), so the lab needs no accounts; NFS squashes
root.  Ganesha's grace period and lease are short so that a failover demo or test does
not wait the 90 s a production server would.  The services log in the node's overlay:
``SANDBOX/nspawn/node<PNN>/upper/var/log/{samba,ganesha}/``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from ctdb.sandbox.topology import NodeSpec, SandboxError

if TYPE_CHECKING:
    from ctdb.sandbox.lab import Sandbox
    from netfs.shares import Share

SERVICES = ("smb", "nfs")
UNITS = {"smb": "smbd.service", "nfs": "nfs-ganesha.service"}
TOOLS = {"smb": [("smbd", "samba"), ("testparm", "samba-common-bin"),
                 ("smbclient", "smbclient")],
         "nfs": [("ganesha.nfsd", "nfs-ganesha nfs-ganesha-vfs"),
                 ("nfs-cat", "libnfs-utils")]}
STORAGE = Path("/srv/pyctdb")  # the shared storage, as every node sees it
SHARE = "data"
SHARE_PATH = STORAGE / SHARE
RECOVERY = STORAGE / "ganesha"
GRACE_PERIOD = 5  # seconds; Ganesha wants at least a lease
LEASE_LIFETIME = 5
GANESHA_LOG = "/var/log/ganesha/ganesha.log"
# What systemd-nspawn withholds from a container and Ganesha's VFS FSAL needs.
NFS_CAPABILITIES = ["CAP_DAC_READ_SEARCH"]
NFS_SYSCALLS = ["open_by_handle_at"]


def parse_services(text: str) -> list[str]:
    """``smb,nfs`` as a list; an unknown or repeated name is refused."""
    found: list[str] = []
    for word in (w.strip() for w in text.split(",")):
        if not word:
            continue
        if word not in SERVICES:
            raise SandboxError(f"--services: unknown service {word!r} (known: "
                               f"{', '.join(SERVICES)})")
        if word in found:
            raise SandboxError(f"--services: {word} given twice")
        found.append(word)
    return found


def check(services: list[str], backend: str) -> None:
    """The services can run here, or SandboxError says what is missing."""
    for service in services:
        if service not in SERVICES:
            raise SandboxError(f"unknown service {service!r} (known: {', '.join(SERVICES)})")
    if services and backend != "nspawn":
        raise SandboxError("--services needs --backend nspawn (each node's own systemd runs"
                           " smbd and NFS-Ganesha)")
    for service in services:
        for tool, package in TOOLS[service]:
            if shutil.which(tool) is None:
                raise SandboxError(f"--services {service}: {tool} is missing: apt-get install"
                                   f" {package}")


def storage(sb: Sandbox) -> Path:
    """The host directory every node sees at :data:`STORAGE`."""
    return sb.root / "storage"


def lab_shares() -> tuple[Share, ...]:
    from netfs.shares import shares_from_data

    return shares_from_data([{
        "name": SHARE, "path": str(SHARE_PATH), "comment": "pyctdb sandbox shared storage",
        "guest_ok": True, "nfs": {"export_id": 1, "pseudo": f"/{SHARE}"},
    }], "ctdb-sandbox")


def smb_conf(sb: Sandbox) -> str:
    from netfs.render import render_smb

    return render_smb(lab_shares(), {
        # One name for the whole cluster, as CTDB clusters do: clients see one server.
        "netbios name": f"PCTDB-{sb.options.name}".upper(),
        "workgroup": "PYCTDB",
        "map to guest": "Bad User",
    }, header="# Written by ctdb-sandbox (netfs.render) for the sandbox's shared share.")


def ganesha_conf() -> str:
    from netfs.render import render_ganesha

    return render_ganesha(lab_shares(), str(RECOVERY), grace_period=GRACE_PERIOD,
                          lease_lifetime=LEASE_LIFETIME,
                          header="# Written by ctdb-sandbox (netfs.render) for the sandbox's"
                          " shared share.")


def _fs_type(path: Path) -> str:
    """The file system type of the mount holding *path* (from mountinfo)."""
    best, fstype = "", "?"
    text = str(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].replace("\\040", " ")
            if (text == point or text.startswith(point.rstrip("/") + "/")) \
                    and len(point) >= len(best):
                best, fstype = point, fields[fields.index("-") + 1]
    return fstype


def prepare(sb: Sandbox) -> None:
    """The shared storage, and the rendered configuration checked once for all nodes."""
    if not sb.options.services:
        return
    root = storage(sb)
    (root / SHARE).mkdir(parents=True, exist_ok=True)
    (root / RECOVERY.name).mkdir(exist_ok=True)
    root.chmod(0o755)
    (root / SHARE).chmod(0o777)  # guests (nobody) and squashed NFS clients write here
    fstype = _fs_type(root)
    if fstype == "overlay":
        raise SandboxError(f"{root} is on overlayfs: NFS-Ganesha cannot export it; put"
                           f" {root.parent.parent} on ext4, xfs or tmpfs")
    if "smb" in sb.options.services:
        from netfs.render import validate_smb

        validate_smb(smb_conf(sb), "the sandbox's smb.conf")
    if "nfs" in sb.options.services:
        from netfs.render import validate_ganesha

        validate_ganesha(ganesha_conf(), "the sandbox's ganesha.conf")


def _whiteout(path: Path) -> None:
    """Hide *path* of the overlay's lower layer (the host's) from the node."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISCHR(path.lstat().st_mode):
            return
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def masked_units(units: tuple[str, ...], services: list[str]) -> list[str]:
    """*units* less those of the services the node runs."""
    wanted = {UNITS[s] for s in services}
    return [u for u in units if u not in wanted]


def write_node_files(upper: Path, sb: Sandbox, node: NodeSpec) -> None:
    """The node's service configuration and unit state, in its overlay's upper layer."""
    system = upper / "etc" / "systemd" / "system"
    for service in SERVICES:
        unit = UNITS[service]
        if service not in sb.options.services:
            continue
        mask = system / unit
        if mask.is_symlink() and os.readlink(mask) == "/dev/null":
            mask.unlink()
        # Unmasked, not enabled: the host's enablement would start it at boot.
        _whiteout(system / "multi-user.target.wants" / unit)
    etc = upper / "etc"
    if "smb" in sb.options.services:
        (etc / "samba").mkdir(parents=True, exist_ok=True)
        (etc / "samba" / "smb.conf").write_text(smb_conf(sb))
    if "nfs" in sb.options.services:
        (etc / "ganesha").mkdir(parents=True, exist_ok=True)
        (etc / "ganesha" / "ganesha.conf").write_text(ganesha_conf())
        (etc / "default").mkdir(parents=True, exist_ok=True)
        # nfs-ganesha.service reads its command line from here.  Each node its own node
        # id: Ganesha (Clustered, the default) keeps its clients under
        # RecoveryRoot/v4recov/node<ID>, which on shared storage must not collide.
        (etc / "default" / "nfs-ganesha").write_text(
            "# Written by ctdb-sandbox.\n"
            f'OPTIONS="-L {GANESHA_LOG} -f /etc/ganesha/ganesha.conf -N NIV_EVENT"\n'
            f'GNODEID="-I {node.pnn}"\n')


def nspawn_args(sb: Sandbox) -> list[str]:
    """systemd-nspawn's extra arguments for the node's services (capabilities apart)."""
    if not sb.options.services:
        return []
    args = [f"--bind={storage(sb)}:{STORAGE}"]
    if "nfs" in sb.options.services:
        args.append(f"--system-call-filter={' '.join(NFS_SYSCALLS)}")
    return args
