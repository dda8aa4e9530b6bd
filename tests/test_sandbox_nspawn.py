"""ctdb-sandbox with the nspawn backend: every node a booted clone of this machine.

Each node's systemd reaches ``running``, pyctdb's ctdb.service is active (Type=notify:
ctdbd sent READY=1), the nodes form a cluster, faults work on containers, and ``down``
leaves nothing: no namespace, mount, systemd-nspawn process or state directory.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctdb.sandbox import network, nspawn_backend
from ctdb.sandbox.lab import BIN, Options, Sandbox, destroy, wait_for
from ctdb.sandbox.topology import STATE_ROOT
from tests.leftovers import leftovers

# make test installs systemd-container and runs as root: a missing part fails, no skip.
pytestmark = [pytest.mark.netns]

NAME = f"n{os.getpid() % 100000}"
UNIT = Path(__file__).resolve().parents[1] / "packaging" / "systemd" / "ctdb.service"


def nspawn(sb: Sandbox) -> nspawn_backend.NspawnBackend:
    assert isinstance(sb.backend, nspawn_backend.NspawnBackend)
    return sb.backend


def systemctl(sb: Sandbox, pnn: int, *args: str) -> str:
    return sb.exec(pnn, ["systemctl", *args]).stdout.strip()


def states(sb: Sandbox, pnn: int) -> set[str]:
    result = set()
    for pid in network.pids_in(sb.topo.node(pnn).netns):
        try:
            result.add(Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0])
        except (OSError, IndexError):
            continue
    return result


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    sandbox = Sandbox(Options(name=NAME, nodes=3, backend="nspawn"))
    try:
        sandbox.up()
        yield sandbox
    finally:
        sandbox.down()
        nspawn_backend.cleanup(NAME)
        destroy(NAME)


def test_unit_file_lints(tmp_path: Path) -> None:
    # verify needs ExecStart's binary: /usr/sbin/ctdbd exists only once the package is
    # installed (or Samba's ctdb is), so verify a copy that runs this venv's ctdbd.
    copy = tmp_path / "ctdb.service"
    copy.write_text(UNIT.read_text().replace("/usr/sbin/ctdbd", str(BIN / "ctdbd")))
    verify = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True,
                            text=True, check=False)
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr.strip() == ""
    security = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)],
                              capture_output=True, text=True, check=False)
    m = re.search(r"Overall exposure level for ctdb.service: (\d+\.\d)", security.stdout)
    assert m, security.stdout + security.stderr
    recorded = re.search(r"exposure level (\d+\.\d)", UNIT.read_text())
    assert recorded, "the unit records its systemd-analyze security score"
    assert recorded.group(1) == m.group(1), "update the score in the unit's header comment"


def test_every_node_boots_and_ctdbd_is_ready(sb: Sandbox) -> None:
    backend = nspawn(sb)
    for node in sb.topo.nodes:
        system = systemctl(sb, node.pnn, "is-system-running")
        failed = systemctl(sb, node.pnn, "list-units", "--failed", "--plain", "--no-legend")
        assert system == "running", f"node {node.pnn}: {system}; failed units: {failed}"
        props = dict(line.split("=", 1) for line in systemctl(
            sb, node.pnn, "show", "-p", "Type,ActiveState,SubState,StatusText,MainPID,"
            "NotifyAccess,WatchdogUSec", "ctdb.service").splitlines())
        # Type=notify: active only after ctdbd's READY=1; StatusText is ctdbd's own STATUS=.
        assert props["Type"] == "notify"
        assert (props["ActiveState"], props["SubState"]) == ("active", "running")
        assert props["StatusText"].startswith("Running: ")
        assert props["NotifyAccess"] == "main"
        assert props["WatchdogUSec"] == "10s"
        # The recorded pid is the host's view of the container's ctdbd (its MainPID inside).
        pid = sb.pid(node.pnn)
        assert pid == backend.ctdbd_pid(node)
        nspid = Path(f"/proc/{pid}/status").read_text().split("NSpid:")[1].split("\n")[0].split()
        assert nspid == [str(pid), props["MainPID"]]
        assert {"ctdb-transport"} <= set(sb.children(node.pnn))
        # The node's directory is the same path inside: log, run dir and socket included.
        assert (node.run_dir / "transport.sock").exists()
        assert systemctl(sb, node.pnn, "is-enabled", "ctdb.service") == "enabled"
        assert systemctl(sb, node.pnn, "is-enabled", "postgresql.service") == "masked"


def test_ctdb_ping_all_from_node0(sb: Sandbox) -> None:
    wait_for("every node answers node 0",
             lambda: sb.ctdb(0, "-n", "all", "ping", check=False).returncode == 0, 10)
    out = sb.ctdb(0, "-n", "all", "ping").stdout
    assert out.count("response from") == 3


def test_killed_transport_is_restarted(sb: Sandbox) -> None:
    before = sb.children(1)["ctdb-transport"]
    sb.kill(1, "transport")
    wait_for("a new transport", lambda: sb.children(1).get("ctdb-transport") not in
             (None, before))
    assert systemctl(sb, 1, "show", "-p", "NRestarts", "--value", "ctdb.service") == "0"
    wait_for("node 1 answers", lambda: sb.ctdb(0, "-n", "1", "ping", check=False).returncode == 0)


def test_freeze_stops_the_container_and_thaw_resumes(sb: Sandbox) -> None:
    leader = nspawn(sb).leader(sb.topo.node(1))
    sb.freeze(1)
    try:
        assert wait_for("all stopped", lambda: states(sb, 1) == {"T"}, 5)
        assert Path(f"/proc/{leader}/stat").read_text().split(") ", 1)[1][0] == "T"
        assert sb.ctdb(0, "-n", "1", "ping", "-t", "1", check=False).returncode == 1
    finally:
        sb.thaw(1)
    assert "T" not in states(sb, 1)
    wait_for("node 1 answers", lambda: sb.ctdb(0, "-n", "1", "ping", check=False).returncode == 0)
    assert systemctl(sb, 1, "is-system-running") == "running"


def test_restart_reboots_the_node(sb: Sandbox) -> None:
    node = sb.topo.node(2)
    old_pid, old_leader = sb.pid(2), nspawn(sb).leader(node)
    sb.restart(2)
    assert sb.pid(2) not in (None, old_pid)
    assert nspawn(sb).leader(node) != old_leader
    wait_for("node 0 reaches the restarted node 2",
             lambda: sb.ctdb(0, "-n", "2", "ping", check=False).returncode == 0)


def test_logging_to_syslog_reaches_the_journal(sb: Sandbox) -> None:
    """``[logging] location = syslog``: the daemons log through /dev/log (journald here)."""
    conf = sb.topo.node(1).base / "ctdb.conf"
    before = conf.read_text()
    lines = before.splitlines()
    i = next(n for n, line in enumerate(lines) if line.strip().startswith("location ="))
    conf.write_text("\n".join([*lines[:i], "    location = syslog", *lines[i + 1:]]) + "\n")
    try:
        systemctl(sb, 1, "restart", "ctdb.service")
        wait_for("node 1 answers", lambda: sb.ctdb(1, "ping", check=False).returncode == 0)
        journal = wait_for("clusterd's lines in the journal", lambda: (
            j if "clusterd: heartbeat every" in (j := sb.exec(1, [
                "journalctl", "--no-pager", "-o", "cat", "-t", "ctdb-clusterd"]).stdout)
            else None))
        assert "ctdb-clusterd[" not in journal  # the journal keeps the tag and pid apart
    finally:
        conf.write_text(before)
        systemctl(sb, 1, "restart", "ctdb.service")
        wait_for("node 1 answers", lambda: sb.ctdb(1, "ping", check=False).returncode == 0)


def test_down_leaves_nothing(sb: Sandbox) -> None:
    sb.down()
    assert leftovers(NAME) == []


def test_cleanup_after_a_crash() -> None:
    """A crashed `up`: state lost, the container still running; cleanup and destroy."""
    name = f"m{os.getpid() % 100000}"
    sandbox = Sandbox(Options(name=name, nodes=1, backend="nspawn"))
    try:
        sandbox.up()
        (STATE_ROOT / name / "state.json").unlink()
        assert nspawn(sandbox).nspawn_pid(sandbox.topo.node(0))
    finally:
        nspawn_backend.cleanup(name)
        destroy(name)
    assert leftovers(name) == []

