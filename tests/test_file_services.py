"""The cluster serves files: serviced runs smbd and NFS-Ganesha in real systemd nodes,
a stopped smbd makes its node UNHEALTHY and its addresses move, and files written
through a public address read back through it after its node is gone."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator

import pytest

from ctdb.sandbox import fileclient
from ctdb.sandbox.lab import Options, Sandbox, wait_for


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    options = Options(name=f"f{os.getpid() % 100000}", nodes=3, backend="nspawn",
                      public_ips=3, services=["smb", "nfs"])
    with Sandbox(options) as sandbox:
        wait_for("one address on every node", lambda: sorted(holders(sandbox).values())
                 == [0, 1, 2], timeout=30)
        yield sandbox


def holders(sb: Sandbox, via: int = 0) -> dict[str, int]:
    out = sb.ctdb(via, "ip", "all", check=False).stdout
    return {ip: int(pnn) for ip, pnn in (ln.split() for ln in out.splitlines()[1:])}


def flags(sb: Sandbox, pnn: int, via: int = 0) -> str:
    out = sb.ctdb(via, "status", check=False).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith(f"pnn:{pnn} ")), "")
    return line.split()[2] if line else ""


def active(sb: Sandbox, pnn: int, unit: str) -> str:
    return sb.exec(pnn, ["systemctl", "is-active", unit]).stdout.strip()


def test_serviced_runs_the_file_services(sb: Sandbox) -> None:
    for pnn in range(3):
        assert active(sb, pnn, "smbd.service") == "active"
        assert active(sb, pnn, "nfs-ganesha.service") == "active"
    listing = sb.ctdb(0, "service", "list").stdout.split("\n")
    assert listing[0].split() == ["smb", "smbd.service", "active/running"]
    assert listing[1].split() == ["nfs", "nfs-ganesha.service", "active/running"]
    doc = json.loads(sb.ctdb(0, "-n", "all", "service", "status", "--json").stdout)
    assert [n["pnn"] for n in doc["nodes"]] == [0, 1, 2]
    for node in doc["nodes"]:
        assert [(s["name"], s["healthy"], s["wanted"]) for s in node["services"]] == [
            ("smb", True, True), ("nfs", True, True)]
    # The NFS event script runs and its monitor passes (Ganesha answers over D-Bus).
    status = wait_for("node 1's first monitor", lambda: (r := sb.ctdb(
        1, "event", "status", "legacy", "monitor", check=False)).returncode == 0 and r.stdout)
    assert status.startswith("60.nfs               OK ")


def test_stopped_smbd_makes_the_node_unhealthy_until_serviced_restarts_it(sb: Sandbox) -> None:
    ip = next(ip for ip, pnn in holders(sb).items() if pnn == 1)
    sb.exec(1, ["systemctl", "stop", "smbd.service"], check=True)
    wait_for("node 1 UNHEALTHY", lambda: flags(sb, 1) == "UNHEALTHY", timeout=5)
    wait_for(f"{ip} served by another node", lambda: holders(sb).get(ip) in (0, 2),
             timeout=5)
    # serviced restarts smbd (after its restart delay); the node and its address recover.
    wait_for("smbd running again", lambda: active(sb, 1, "smbd.service") == "active")
    wait_for("node 1 OK", lambda: flags(sb, 1) == "OK")
    wait_for("node 1 hosting again", lambda: 1 in holders(sb).values())
    status = sb.ctdb(1, "service", "status").stdout
    assert "node 1 smb: running, active/running, healthy, 1 restarts" in status
    log = sb.log_text(1)
    assert "node is UNHEALTHY (service:smb: smbd.service is " in log


def test_stopped_node_stops_its_services(sb: Sandbox) -> None:
    sb.ctdb(2, "stop")
    wait_for("smbd stopped on node 2", lambda: active(sb, 2, "smbd.service") == "inactive")
    assert active(sb, 2, "nfs-ganesha.service") == "inactive"
    assert flags(sb, 2) == "STOPPED|INACTIVE"  # stopped on purpose: not UNHEALTHY
    sb.ctdb(2, "continue")
    wait_for("smbd running on node 2", lambda: active(sb, 2, "smbd.service") == "active")
    wait_for("node 2 OK", lambda: flags(sb, 2) == "OK")
    wait_for("node 2 hosting again", lambda: 2 in holders(sb).values())


def test_files_survive_the_loss_of_their_node(sb: Sandbox) -> None:
    ip = next(ip for ip, pnn in holders(sb).items() if pnn == 1)
    client = sb.topo.client
    smb_data = os.urandom(2_000_000)
    nfs_data = os.urandom(3000)  # Debian's nfs-cp writes at most ~3.9 KB over NFSv4
    smb_sum = fileclient.smb_put(ip, "data", "survivor.bin", smb_data, client)
    # Addresses moved in the tests before: wait out the grace periods that started.
    nfs_sum = wait_for("an NFS write after grace", lambda: after_grace(
        lambda: fileclient.nfs_put(ip, "/data/survivor-nfs.bin", nfs_data, client), []))
    assert (smb_sum, nfs_sum) == (fileclient.sha256(smb_data), fileclient.sha256(nfs_data))
    sb.poweroff(1)
    wait_for(f"{ip} served by another node", lambda: holders(sb).get(ip) in (0, 2),
             timeout=10)
    # NFS: the new holder's takeip put Ganesha into grace for this address, loading its
    # clients from the shared recovery directory (new opens get NFS4ERR_GRACE until the
    # grace ends, early once no client is left to reclaim).
    new = holders(sb)[ip]
    log = sb.exec(new, ["cat", "/var/log/ganesha/ganesha.log"]).stdout
    assert f"NFS Server recovery event 5 nodeid -1 ip {ip}" in log
    assert wait_for("the NFS read after grace", lambda: after_grace(
        lambda: fileclient.nfs_get(ip, "/data/survivor-nfs.bin", client, timeout=5), []),
        timeout=30) == nfs_sum
    assert fileclient.smb_get(ip, "data", "survivor.bin", client) == smb_sum


def after_grace(call: Callable[[], str], errors: list[str]) -> str | None:
    """*call*'s result, or None (noting why) while the server refuses it."""
    try:
        return call()
    except fileclient.FileServiceError as exc:
        errors.append("grace" if exc.grace else str(exc))
        return None
