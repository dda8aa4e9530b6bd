"""ctdb-sandbox --services smb,nfs: every node serves the shared share over SMB and NFSv4.

A 2-node nspawn sandbox.  pyctdb's serviced does not exist yet, so the tests start
smbd.service and nfs-ganesha.service in the nodes by hand, as serviced will.  Files go
through the client namespace like a real client's: put over SMB to node 0, read back
over SMB and over NFS, seen through node 1 (shared storage), refused with NFS4ERR_GRACE
while Ganesha is put in grace over D-Bus the way a failover will, and ``down`` leaves
no process, mount, namespace or directory behind.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from ctdb.sandbox import fileclient, nspawn_backend, services
from ctdb.sandbox.cli import parser as sandbox_parser
from ctdb.sandbox.fileclient import FileServiceError
from ctdb.sandbox.lab import Options, Sandbox, destroy, wait_for
from ctdb.sandbox.topology import SandboxError
from netfs import dbus, ganesha, health
from tests.leftovers import leftovers

# make test installs Samba, NFS-Ganesha and libnfs-utils and runs as root: no skip.
pytestmark = [pytest.mark.netns]

NAME = f"f{os.getpid() % 100000}"
T = TypeVar("T")
SERVICE_PROCESSES = ("smbd", "samba-dcerpcd", "ganesha.nfsd", "rpcd_classic", "rpcd_winreg")


# -- the option, without a sandbox --------------------------------------------------------
@pytest.mark.parametrize(("text", "result"), [
    ("smb,nfs", ["smb", "nfs"]), ("nfs", ["nfs"]), ("", []), (" smb , ", ["smb"]),
])
def test_services_parse(text: str, result: list[str]) -> None:
    assert services.parse_services(text) == result


@pytest.mark.parametrize(("text", "message"), [
    ("smb,afp", "--services: unknown service 'afp' (known: smb, nfs)"),
    ("smb,smb", "--services: smb given twice"),
])
def test_services_refused(text: str, message: str) -> None:
    with pytest.raises(SandboxError) as err:
        services.parse_services(text)
    assert str(err.value) == message


def test_cli_refuses_bad_services(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        sandbox_parser().parse_args(["up", "--services", "smb,afp"])
    assert exit_.value.code == 2
    assert "argument --services: unknown service 'afp' (known: smb, nfs)" in \
        capsys.readouterr().err
    args = sandbox_parser().parse_args(["up", "--services", "nfs,smb"])
    assert isinstance(args, argparse.Namespace)
    assert args.services == ["nfs", "smb"]


def test_services_need_the_nspawn_backend() -> None:
    with pytest.raises(SandboxError, match=r"^--services needs --backend nspawn"):
        services.check(["smb"], "netns")


def test_masks_spare_only_the_services_asked_for() -> None:
    units = nspawn_backend.MASKED_UNITS
    assert "smbd.service" not in services.masked_units(units, ["smb"])
    assert "nfs-ganesha.service" in services.masked_units(units, ["smb"])
    assert "nmbd.service" in services.masked_units(units, ["smb", "nfs"])
    assert services.masked_units(units, []) == list(units)


# -- a sandbox serving files ----------------------------------------------------------------
@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    sandbox = Sandbox(Options(name=NAME, nodes=2, backend="nspawn", services=["smb", "nfs"]))
    try:
        sandbox.up()
        yield sandbox
    finally:
        sandbox.down()
        destroy(NAME)


def backend(sb: Sandbox) -> nspawn_backend.NspawnBackend:
    assert isinstance(sb.backend, nspawn_backend.NspawnBackend)
    return sb.backend


def leader(sb: Sandbox, pnn: int) -> int:
    pid = backend(sb).leader(sb.topo.node(pnn))
    assert pid is not None
    return pid


def bus_address(sb: Sandbox, pnn: int) -> str:
    """The node's system bus, from the host."""
    return f"unix:path=/proc/{leader(sb, pnn)}/root/run/dbus/system_bus_socket"


def systemctl(sb: Sandbox, pnn: int, *args: str) -> str:
    return sb.exec(pnn, ["systemctl", *args]).stdout.strip()


def start_services(sb: Sandbox, pnn: int) -> None:
    """What serviced will do: start the units, then until both answer."""
    sb.exec(pnn, ["systemctl", "start", "smbd.service", "nfs-ganesha.service"], check=True)
    proc_net = Path(f"/proc/{leader(sb, pnn)}/net")
    wait_for(f"node {pnn}'s smbd to listen", lambda: health.smbd_listening(proc_net=proc_net)[0])
    address = bus_address(sb, pnn)

    def exported() -> bool:
        import asyncio

        ok, reason = asyncio.run(health.ganesha_alive(address=address))
        return ok and str(services.SHARE_PATH) in reason

    wait_for(f"node {pnn}'s Ganesha to export the share", exported)


def until_served(what: str, fn: Callable[[], T], timeout: float = 20.0) -> T:
    """*fn*'s result once the server is out of its grace period; other errors at once."""
    def attempt() -> T | None:
        try:
            return fn()
        except FileServiceError as exc:
            if exc.grace:
                return None
            raise

    return wait_for(what, attempt, timeout)


def client(sb: Sandbox) -> str:
    return sb.topo.client


def test_units_unmasked_not_enabled_started_by_serviced(sb: Sandbox) -> None:
    for node in sb.topo.nodes:
        for unit in ("smbd.service", "nfs-ganesha.service"):
            # Not started at boot by systemd: pyctdb's serviced starts them.
            assert systemctl(sb, node.pnn, "is-enabled", unit) == "disabled"
            wait_for(f"{unit} started by serviced on node {node.pnn}",
                     lambda n=node.pnn, u=unit: systemctl(sb, n, "is-active", u) == "active")
        assert systemctl(sb, node.pnn, "is-enabled", "nmbd.service") == "masked"
        assert sb.exec(node.pnn, ["cat", "/etc/samba/smb.conf"]).stdout == services.smb_conf(sb)
        assert sb.exec(node.pnn, ["cat", "/etc/ganesha/ganesha.conf"]).stdout == \
            services.ganesha_conf()
        # The shared storage: the same directory in every node.
        inode = sb.exec(node.pnn, ["stat", "-c", "%d:%i", str(services.SHARE_PATH)]).stdout
        host = (services.storage(sb) / services.SHARE).stat()
        assert inode.strip() == f"{host.st_dev}:{host.st_ino}"


def test_smb_round_trip_through_node0(sb: Sandbox) -> None:
    start_services(sb, 0)
    ip = sb.topo.node(0).public_ip
    data = os.urandom(256 * 1024)
    put = fileclient.smb_put(ip, services.SHARE, "smb0.bin", data, client(sb))
    assert fileclient.smb_get(ip, services.SHARE, "smb0.bin", client(sb)) == put
    on_disk = services.storage(sb) / services.SHARE / "smb0.bin"
    assert fileclient.sha256(on_disk.read_bytes()) == put


def test_nfs_reads_what_smb_wrote_and_round_trips(sb: Sandbox) -> None:
    ip = sb.topo.node(0).public_ip
    path = f"/{services.SHARE}/smb0.bin"
    expected = fileclient.sha256((services.storage(sb) / services.SHARE / "smb0.bin")
                                 .read_bytes())
    assert until_served("node 0 serving NFS",
                        lambda: fileclient.nfs_get(ip, path, client(sb))) == expected
    data = os.urandom(fileclient.NFS_PUT_MAX)
    put = fileclient.nfs_put(ip, f"/{services.SHARE}/nfs0.bin", data, client(sb))
    assert fileclient.nfs_get(ip, f"/{services.SHARE}/nfs0.bin", client(sb)) == put


def test_smb_and_nfs_errors_are_one_line(sb: Sandbox) -> None:
    ip = sb.topo.node(0).public_ip
    with pytest.raises(FileServiceError) as err:
        fileclient.smb_get(ip, services.SHARE, "nosuch.bin", client(sb))
    assert str(err.value) == (f"SMB get //{ip}/{services.SHARE}/nosuch.bin: "
                              "NT_STATUS_OBJECT_NAME_NOT_FOUND opening remote file \\nosuch.bin")
    assert not err.value.grace
    with pytest.raises(FileServiceError) as err:
        fileclient.nfs_get(ip, f"/{services.SHARE}/nosuch.bin", client(sb))
    assert "NFS4ERR_NOENT" in str(err.value)
    assert "\n" not in str(err.value)
    assert not err.value.grace
    with pytest.raises(FileServiceError, match="at most 3072 bytes"):
        fileclient.nfs_put(ip, f"/{services.SHARE}/big.bin", bytes(4096), client(sb))


async def test_grace_over_dbus_refuses_with_nfs4err_grace(sb: Sandbox) -> None:
    """The takeover call a failover makes: clients of the address get NFS4ERR_GRACE."""
    ip = sb.topo.node(0).public_ip
    bus = await dbus.connect(bus_address(sb, 0))
    try:
        await ganesha.grace(bus, ip)
        assert await ganesha.in_grace(bus)
        exports = await ganesha.show_exports(bus)
    finally:
        bus.disconnect()
    assert ganesha.Export(1, str(services.SHARE_PATH)) in exports
    with pytest.raises(FileServiceError) as err:
        fileclient.nfs_put(ip, f"/{services.SHARE}/grace.bin", b"x", client(sb))
    assert err.value.grace
    assert "NFS4ERR_GRACE" in str(err.value)
    until_served("the grace period to end",
                 lambda: fileclient.nfs_put(ip, f"/{services.SHARE}/grace2.bin", b"y",
                                            client(sb)),
                 timeout=services.GRACE_PERIOD + 15)


def test_shared_storage_seen_through_node1(sb: Sandbox) -> None:
    start_services(sb, 1)
    ip0, ip1 = sb.topo.node(0).public_ip, sb.topo.node(1).public_ip
    share = services.SHARE
    written = fileclient.sha256((services.storage(sb) / share / "smb0.bin").read_bytes())
    assert fileclient.smb_get(ip1, share, "smb0.bin", client(sb)) == written
    assert until_served("node 1 serving NFS", lambda: fileclient.nfs_get(
        ip1, f"/{share}/nfs0.bin", client(sb))) == \
        fileclient.nfs_get(ip0, f"/{share}/nfs0.bin", client(sb))
    put = fileclient.smb_put(ip1, share, "smb1.bin", os.urandom(4096), client(sb))
    assert fileclient.smb_get(ip0, share, "smb1.bin", client(sb)) == put


async def test_health_checks_see_the_services(sb: Sandbox) -> None:
    for node in sb.topo.nodes:
        # Debian's units run in a container as they are (ExecCondition, ExecStartPre, the
        # Wants= of masked rpcbind and nfs-ganesha-lock): nothing failed.
        assert systemctl(sb, node.pnn, "is-system-running") == "running"
        assert systemctl(sb, node.pnn, "list-units", "--failed", "--plain", "--no-legend") == ""
        ok, reason = health.smbd_listening(proc_net=Path(f"/proc/{leader(sb, node.pnn)}/net"))
        assert ok, reason
        # smbd_ping inside the node, where smbd's pid file is (the venv is bound there).
        ping = sb.exec(node.pnn, [sys.executable, "-c", "from netfs.health import smbd_ping;"
                                  " print(*smbd_ping(), sep='|')"], check=True).stdout
        assert ping.startswith("True|smbd answers ping (pid "), ping
        ok, reason = await health.ganesha_alive(address=bus_address(sb, node.pnn))
        assert (ok, reason) == (True, "NFS-Ganesha answers over D-Bus, exports: "
                                f"{services.SHARE_PATH}")


def _service_pids(sb: Sandbox) -> list[int]:
    found = []
    for node in sb.topo.nodes:
        for pid in backend(sb).pids(node):
            st = nspawn_backend._stat(pid)
            if st is not None and st[0] in SERVICE_PROCESSES:
                found.append(pid)
    return found


def test_down_leaves_nothing(sb: Sandbox) -> None:
    pids = _service_pids(sb)
    names = {st[0] for st in map(nspawn_backend._stat, pids) if st is not None}
    assert {"smbd", "ganesha.nfsd"} <= names, names
    sb.down()
    assert [p for p in pids if nspawn_backend._alive(p)] == []
    assert leftovers(NAME) == []
    assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                          check=True).stdout.count(f"pctdb-{NAME}-") == 0
