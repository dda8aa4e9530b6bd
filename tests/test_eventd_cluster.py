"""eventd in a running cluster: the events a node's scripts see, ``ctdb event`` as CTDB's,
monitor failures making the node UNHEALTHY, and CTDB's failure rules for init and startup."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctdb.sandbox.lab import BIN, Options, Sandbox, wait_for

LOGGER = """\
#!/bin/sh
# Records every event with its arguments; fails monitor while a flag file exists.
echo "$*" >> "$CTDB_BASE/events.log"
case "$1" in
monitor) if [ -e "$CTDB_BASE/fail-monitor" ]; then echo "service broken"; exit 1; fi ;;
startup) if [ -e "$CTDB_BASE/fail-startup" ]; then echo "not yet"; exit 1; fi ;;
init) if [ -e "$CTDB_BASE/fail-init" ]; then echo "cannot init"; exit 1; fi ;;
esac
exit 0
"""

NOTIFY = """\
#!/bin/sh
echo "notify $1" >> "$CTDB_BASE/events.log"
"""


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(Options(name=f"e{os.getpid() % 100000}", nodes=2, public_ips=2)) as sandbox:
        yield sandbox


def base(sb: Sandbox, pnn: int) -> Path:
    return sb.topo.node(pnn).base


def events(sb: Sandbox, pnn: int) -> list[str]:
    try:
        return (base(sb, pnn) / "events.log").read_text().splitlines()
    except FileNotFoundError:
        return []


def write(path: Path, text: str, mode: int = 0o755) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def restart_with_scripts(sb: Sandbox, pnn: int, flags: tuple[str, ...] = ()) -> None:
    """Node *pnn* restarted with the logging script, notify.sh and a 1 s monitor."""
    sb.stop(pnn)
    b = base(sb, pnn)
    for name in ("events.log", "fail-monitor", "fail-startup", "fail-init"):
        (b / name).unlink(missing_ok=True)
    for flag in flags:
        (b / flag).touch()
    write(b / "events" / "legacy" / "10.log.script", LOGGER)
    write(b / "notify.sh", NOTIFY)
    write(b / "ctdb.tunables", "MonitorInterval=1\n", 0o644)
    sb.start(pnn)


def status_of(sb: Sandbox, pnn: int) -> str:
    out = sb.ctdb(0, "status", check=False).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith(f"pnn:{pnn} ")), "")
    return line.split()[2] if line else ""


def holder(sb: Sandbox, ip: str) -> int | None:
    out = sb.ctdb(0, "ip", "all", check=False).stdout
    for line in out.splitlines()[1:]:
        address, pnn = line.split()
        if address == ip:
            return int(pnn)
    return None


def test_node_life_cycle_events_and_monitor_health(sb: Sandbox) -> None:
    restart_with_scripts(sb, 1)
    sb.wait_ready(1)
    wait_for("node 1 to be OK", lambda: status_of(sb, 1) == "OK")
    log = wait_for("the first monitor", lambda: "monitor" in events(sb, 1) and events(sb, 1))
    # CTDB's order: init, setup, (recovery), startup, then monitoring; notifications.
    assert log.index("init") < log.index("setup") < log.index("startup") < log.index("monitor")
    assert {"notify init", "notify setup", "notify startup"} <= set(log)
    assert {"startrecovery", "recovered"} <= set(log)
    # The node takes an address: the run is framed by startipreallocate and ipreallocated.
    takeip = wait_for("a takeip event", lambda: next(
        (e for e in events(sb, 1) if e.startswith("takeip ")), None))
    _, iface, ip, bits = takeip.split()
    assert holder(sb, ip) == 1
    assert bits == "24"
    assert iface
    log = wait_for("ipreallocated after takeip", lambda: "ipreallocated" in events(sb, 1)[
        events(sb, 1).index(takeip):] and events(sb, 1))
    assert "startipreallocate" in log[:log.index(takeip)]

    # A failing monitor makes the node UNHEALTHY; its address moves to node 0.
    (base(sb, 1) / "fail-monitor").touch()
    wait_for("node 1 to be UNHEALTHY", lambda: status_of(sb, 1) == "UNHEALTHY")
    wait_for(f"{ip} to move to node 0", lambda: holder(sb, ip) == 0)
    assert f"releaseip {iface} {ip} {bits}" in events(sb, 1)
    wait_for("the unhealthy notification", lambda: "notify unhealthy" in events(sb, 1))
    status = sb.ctdb(1, "event", "status", "legacy", "monitor", check=False)
    assert status.returncode == 1
    lines = status.stdout.splitlines()
    assert lines[0].startswith("10.log               ERROR      0.")
    assert lines[1] == "  OUTPUT: service broken"
    assert sb.ctdb(1, "scriptstatus", check=False).returncode == 0

    # Mended: healthy again, and the address comes back.
    (base(sb, 1) / "fail-monitor").unlink()
    wait_for("node 1 to be OK again", lambda: status_of(sb, 1) == "OK")
    wait_for("the healthy notification", lambda: "notify healthy" in events(sb, 1))
    wait_for(f"{ip} to return to node 1", lambda: holder(sb, ip) == 1)


def test_ctdb_event_run_and_status(sb: Sandbox) -> None:
    b = base(sb, 0)
    write(b / "events" / "test" / "10.hang.script",
          f'#!/bin/sh\n[ "$1" = hang ] || exit 0\nsleep 100 & echo $! > {b}/hang.pid; wait\n')
    write(b / "events" / "test" / "20.args.script", '#!/bin/sh\necho "args: $*"\n')
    ok = sb.ctdb(0, "event", "run", "5", "test", "something", "a", "b", check=False)
    assert (ok.returncode, ok.stdout) == (0, "")
    status = sb.ctdb(0, "event", "status", "test", "something").stdout.splitlines()
    assert status[0].startswith("10.hang              OK ")
    assert status[1].startswith("20.args              OK ")
    assert status[2] == "  OUTPUT: args: something a b"

    hung = sb.ctdb(0, "event", "run", "1", "test", "hang", check=False)
    assert (hung.returncode, hung.stdout.strip()) == (46, "Event hang in test timed out")
    child = int((b / "hang.pid").read_text())
    wait_for("the hung script's child to be killed", lambda: not Path(f"/proc/{child}").exists()
             or "Z" in Path(f"/proc/{child}/stat").read_text().split(") ", 1)[1][:1])
    status = sb.ctdb(0, "event", "status", "test", "hang", check=False)
    assert status.returncode == 46
    assert status.stdout.startswith("10.hang              TIMEDOUT   ")

    missing = sb.ctdb(0, "event", "run", "5", "nope", "monitor", check=False)
    assert (missing.returncode, missing.stdout.strip()) == (2, "Event dir for nope does not exist")
    never = sb.ctdb(0, "event", "status", "test", "startup", check=False)
    assert (never.returncode, never.stdout.strip()) == (22, "Event startup has never run in test")
    assert sb.ctdb(0, "event", check=False).returncode == 1  # usage


def test_garbage_output_does_not_hurt_eventd(sb: Sandbox) -> None:
    b = base(sb, 0)
    write(b / "events" / "noise" / "10.noise.script",
          "#!/bin/sh\nhead -c 8000000 /dev/urandom\nexit 1\n")
    run = sb.ctdb(0, "event", "run", "20", "noise", "monitor", check=False)
    assert (run.returncode, run.stdout.strip()) == (8, "Event monitor in noise failed")
    status = sb.ctdb(0, "event", "status", "noise", "monitor", check=False)
    assert status.returncode == 1
    assert status.stdout.rstrip().endswith("[output truncated]")
    assert sb.ctdb(0, "ping", check=False).returncode == 0


def test_monitor_is_cancelled_by_another_event(sb: Sandbox) -> None:
    b = base(sb, 0)
    write(b / "events" / "slow" / "10.slow.script",
          f'#!/bin/sh\n[ "$1" = monitor ] && {{ touch {b}/slow.started; sleep 30; }}\nexit 0\n')
    (b / "slow.started").unlink(missing_ok=True)
    monitor = subprocess.Popen(
        sb.backend.exec_argv(sb, sb.topo.node(0),
                             [str(BIN / "ctdb"), "event", "run", "30", "slow", "monitor"]),
        env=sb.backend.node_env(sb, sb.topo.node(0)), stdout=subprocess.PIPE, text=True)
    try:
        wait_for("the slow monitor to start", (b / "slow.started").exists)
        other = sb.ctdb(0, "event", "run", "10", "slow", "ipreallocated", check=False)
        assert other.returncode == 0
        out, _ = monitor.communicate(timeout=10)
        assert (monitor.returncode, out.strip()) == (61, "Event monitor in slow got cancelled")
    finally:
        monitor.kill()
        monitor.wait()


def test_event_scripts_enable_disable_list(sb: Sandbox) -> None:
    b = base(sb, 0)
    data = b / "share"
    write(data / "events" / "legacy" / "50.shipped.script", "#!/bin/sh\nexit 0\n")
    write(b / "events" / "legacy" / "60.local.script", "#!/bin/sh\nexit 0\n", 0o644)
    ctdb = [str(BIN / "ctdb")]

    def cmd(*args: str) -> subprocess.CompletedProcess[str]:
        return sb.exec(0, ["env", f"CTDB_SCRIPTS_DATA_DIR={data}", *ctdb, "event", "script",
                           *args])

    assert cmd("list", "legacy").stdout.splitlines() == ["  50.shipped", "", "  60.local"]
    assert cmd("enable", "legacy", "50.shipped").returncode == 0
    assert cmd("enable", "legacy", "60.local").returncode == 0
    assert cmd("list", "legacy").stdout.splitlines() == ["* 50.shipped", "", "* 60.local"]
    missing = cmd("enable", "legacy", "70.missing")
    assert (missing.returncode, missing.stdout.strip()) == (
        2, "Script 70.missing does not exist in legacy")
    assert cmd("disable", "legacy", "50.shipped").returncode == 0
    assert cmd("disable", "legacy", "60.local").returncode == 0
    assert cmd("list", "legacy").stdout.splitlines() == ["  50.shipped", "", "  60.local"]
    (b / "events" / "legacy" / "60.local.script").unlink()


def test_startup_failure_is_retried_until_it_succeeds(sb: Sandbox) -> None:
    restart_with_scripts(sb, 1, flags=("fail-startup",))
    sb.wait_ready(1)
    wait_for("a failed startup", lambda: events(sb, 1).count("startup") >= 1)
    assert sb.ctdb(1, "runstate").stdout.strip() == "STARTUP"
    assert sb.ctdb(1, "runstate", "RUNNING", check=False).returncode != 0
    assert status_of(sb, 1) == "OK"  # healthy, but hosts nothing until RUNNING
    assert sb.ctdb(0, "ip", "all").stdout.count(" 1\n") == 0
    (base(sb, 1) / "fail-startup").unlink()
    wait_for("node 1 to be RUNNING", lambda: sb.ctdb(1, "runstate", check=False).stdout.strip()
             == "RUNNING", timeout=15)
    assert events(sb, 1).count("startup") >= 2


def test_init_failure_stops_the_node(sb: Sandbox) -> None:
    restart_with_scripts(sb, 1, flags=("fail-init",))
    wait_for("ctdbd on node 1 to exit", lambda: "stopping the node" in sb.log_text(1)
             and sb.ctdb(1, "ping", check=False).returncode != 0)
    assert "init event failed: 10.log ERROR (exit 1)" in sb.log_text(1)
    (base(sb, 1) / "fail-init").unlink()
    sb.stop(1)
    sb.start(1)
    sb.wait_ready(1)


STOCK = Path("/usr/share/ctdb/events/legacy")


def test_samba_stock_scripts_run_under_eventd(sb: Sandbox) -> None:
    """Samba's own 00.ctdb, 01.reclock and 05.system run unchanged through every event
    ctdbd sends them; 50.samba's monitor checks smbd's port with our checktcpport.
    (In components of their own: 50.samba's startup would start the host's smbd.)"""
    b = base(sb, 0)
    functions = b / "functions"
    functions.unlink(missing_ok=True)
    functions.symlink_to("/etc/ctdb/functions")
    for component, names in (("stock", ["00.ctdb", "01.reclock", "05.system"]),
                             ("stock-samba", ["50.samba"])):
        (b / "events" / component).mkdir(parents=True, exist_ok=True)
        for name in names:
            link = b / "events" / component / f"{name}.script"
            link.unlink(missing_ok=True)
            link.symlink_to(STOCK / f"{name}.script")
    for event in ("init", "setup", "startup", "monitor"):
        run = sb.ctdb(0, "event", "run", "30", "stock", event, check=False)
        assert (run.returncode, run.stdout) == (0, ""), event
        status = sb.ctdb(0, "event", "status", "stock", event).stdout
        assert [ln.split()[:2] for ln in status.splitlines() if not ln.startswith(" ")] == [
            ["00.ctdb", "OK"], ["01.reclock", "OK"], ["05.system", "OK"]], status
        assert "df:" not in status  # the database directories exist, as ctdbd makes them
    monitor = sb.ctdb(0, "event", "run", "30", "stock-samba", "monitor", check=False)
    assert monitor.returncode == 8
    status = sb.ctdb(0, "event", "status", "stock-samba", "monitor", check=False).stdout
    assert "samba not listening on TCP port 445" in status


def test_checktcpport(sb: Sandbox) -> None:
    assert sb.ctdb(0, "checktcpport", "4379", check=False).returncode == 98  # transportd
    assert sb.ctdb(0, "checktcpport", "445", check=False).returncode == 0
    assert sb.ctdb(0, "checktcpport", "x", check=False).returncode == 2
