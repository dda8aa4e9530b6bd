"""eventd's parts: script discovery, enable/disable, the runner, and CTDB's rules."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from ctdb.cli.event import status_lines
from ctdb.errors import CtdbError
from ctdb.eventd import policy
from ctdb.eventd.daemon import to_result
from ctdb.eventd.runner import (
    CANCELLED,
    DISABLED,
    KILLED,
    MAX_OUTPUT,
    NO_COMPONENT,
    NOT_RUN,
    TIMEDOUT,
    EventRun,
    clean_output,
    run_event,
)
from ctdb.eventd.scripts import ScriptError, list_scripts, script_list, script_name, set_enabled
from ctdb.sandbox.lab import wait_for


def script(directory: Path, name: str, body: str, mode: int = 0o755) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.script"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(mode)
    return path


def scripts_of(directory: Path) -> list[tuple[str, Path, bool]]:
    return [(s.name, s.path, s.enabled) for s in list_scripts(directory)]


async def run(directory: Path, event: str = "monitor", args: tuple[str, ...] = (),
              timeout: float = 10.0) -> EventRun:
    return await run_event("legacy", scripts_of(directory), event, list(args),
                           deadline=time.monotonic() + timeout, env=dict(os.environ))


# -- names and layout --------------------------------------------------------------------
@pytest.mark.parametrize(("file_name", "name"), [
    ("10.interface.script", "10.interface"),
    ("00.ctdb.script", "00.ctdb"),
    ("07..script", "07."),
    ("99.a.b.c.script", "99.a.b.c"),
    ("5.x.script", None),
    ("aa.x.script", None),
    ("06.foo", None),
    ("50.samba.options", None),
    ("README", None),
    ("10.interface.script~", None),
])
def test_script_names(file_name: str, name: str | None) -> None:
    assert script_name(file_name) == name


def test_scripts_listed_in_order_enabled_by_execute_bit(tmp_path: Path) -> None:
    script(tmp_path, "20.b", "true")
    script(tmp_path, "10.a", "true", mode=0o644)
    script(tmp_path, "05.c", "true")
    (tmp_path / "README").write_text("not a script")
    (tmp_path / "30.dangling.script").symlink_to(tmp_path / "missing")
    assert [(s.name, s.enabled) for s in list_scripts(tmp_path)] == [
        ("05.c", True), ("10.a", False), ("20.b", True), ("30.dangling", False)]
    assert list_scripts(tmp_path / "nope") == []


def test_enable_disable_as_ctdb(tmp_path: Path) -> None:
    etc, data = tmp_path / "etc", tmp_path / "data"
    etc.mkdir()
    script(data, "50.samba", "true")
    own = script(etc, "90.own", "true", mode=0o644)
    # A shipped script is linked in by absolute path, and unlinked again.
    set_enabled(etc, data, "50.samba", True)
    link = etc / "50.samba.script"
    assert link.is_symlink()
    assert os.readlink(link) == str(data / "50.samba.script")
    assert script_list(etc, data) == [(True, "50.samba"), (False, ""), (False, "90.own")]
    set_enabled(etc, data, "50.samba", False)
    assert not os.path.lexists(link)
    # The component's own scripts get and lose their execute bits.
    set_enabled(etc, data, "90.own", True)
    assert own.stat().st_mode & 0o111 == 0o111
    assert script_list(etc, data) == [(False, "50.samba"), (False, ""), (True, "90.own")]
    set_enabled(etc, data, "90.own.script", False)
    assert own.stat().st_mode & 0o111 == 0
    # Disabling what is not there is not an error; enabling it is.
    set_enabled(etc, data, "70.nothing", False)
    with pytest.raises(ScriptError, match=r"Script 70\.nothing does not exist") as info:
        set_enabled(etc, data, "70.nothing", True)
    assert info.value.code == errno.ENOENT
    with pytest.raises(ScriptError, match="invalid") as info:
        set_enabled(etc, data, "../x", True)
    assert info.value.code == errno.EINVAL


# -- running ----------------------------------------------------------------------------
async def test_scripts_run_in_order_with_event_and_args(tmp_path: Path) -> None:
    log = tmp_path / "log"
    for name in ("20.second", "10.first"):
        script(tmp_path / "ev", name, f'echo "{name} $*" >> {log}; echo out-{name}')
    result = await run(tmp_path / "ev", "takeip", ("eth1", "198.18.2.10", "24"))
    assert result.status == 0
    assert log.read_text().splitlines() == ["10.first takeip eth1 198.18.2.10 24",
                                            "20.second takeip eth1 198.18.2.10 24"]
    assert [(s.name, s.status, s.output) for s in result.scripts] == [
        ("10.first", 0, "out-10.first\n"), ("20.second", 0, "out-20.second\n")]


async def test_first_failure_stops_the_event(tmp_path: Path) -> None:
    ev = tmp_path / "ev"
    script(ev, "10.ok", "true")
    script(ev, "20.off", "exit 9", mode=0o644)
    script(ev, "30.bad", "echo broken >&2; exit 3")
    script(ev, "40.never", f"touch {tmp_path / 'ran'}")
    result = await run(ev)
    assert result.status == 3
    assert [(s.name, s.status) for s in result.scripts] == [
        ("10.ok", 0), ("20.off", DISABLED), ("30.bad", 3), ("40.never", NOT_RUN)]
    assert result.failed is not None
    assert result.failed.output == "broken\n"
    assert not (tmp_path / "ran").exists()


async def test_timeout_covers_the_event_and_kills_the_process_group(tmp_path: Path) -> None:
    ev = tmp_path / "ev"
    pid_file = tmp_path / "child.pid"
    script(ev, "10.slow", "sleep 0.3")
    # The hung script leaves a child in its process group: both must die.
    script(ev, "20.hang", f"sleep 100 & echo $! > {pid_file}; wait")
    started = time.monotonic()
    result = await run(ev, timeout=1.0)
    assert time.monotonic() - started < 5
    assert result.status == TIMEDOUT
    assert [(s.name, s.status) for s in result.scripts] == [("10.slow", 0),
                                                            ("20.hang", TIMEDOUT)]
    child = int(pid_file.read_text())
    wait_for("the hung script's child to be killed", lambda: not _alive(child), timeout=5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.split(") ", 1)[1][0] != "Z"


async def test_megabytes_of_binary_output_are_capped_and_cleaned(tmp_path: Path) -> None:
    ev = tmp_path / "ev"
    script(ev, "10.chatty", "head -c 5000000 /dev/urandom; printf 'tail\\033[2J\\0'; exit 1")
    result = await run(ev)
    assert result.status == 1
    out = result.scripts[0].output
    assert out.endswith("[output truncated]")
    assert len(out.encode()) < 4 * MAX_OUTPUT
    assert all(c in "\n\t" or c >= " " for c in out)


def test_clean_output() -> None:
    assert clean_output(b"ok\n\tx") == "ok\n\tx"
    assert clean_output(b"a\x00b\x1b[1mc\xff") == "a\ufffdb\ufffd[1mc\ufffd"
    assert clean_output(b"x", truncated=True) == "x\n[output truncated]"


async def test_not_runnable_scripts(tmp_path: Path) -> None:
    ev = tmp_path / "ev"
    (ev).mkdir()
    no_shebang = ev / "10.noshebang.script"
    no_shebang.write_bytes(b"\x7fELF garbage")
    no_shebang.chmod(0o755)
    script(ev, "20.killed", "kill -9 $$")
    result = await run(ev)
    assert [(s.name, s.status) for s in result.scripts] == [("10.noshebang", DISABLED),
                                                            ("20.killed", KILLED)]
    assert result.status == KILLED


async def test_no_scripts_succeeds(tmp_path: Path) -> None:
    (tmp_path / "ev").mkdir()
    result = await run(tmp_path / "ev")
    assert (result.status, result.scripts) == (0, ())


# -- CTDB's rules ------------------------------------------------------------------------
@pytest.mark.parametrize(("status", "timeouts", "healthy", "after"), [
    (0, 0, True, 0),
    (1, 0, False, 0),
    (0, 5, True, 0),  # a good run resets the timeout count
    (TIMEDOUT, 0, None, 1),  # timeouts are tolerated...
    (TIMEDOUT, 18, None, 19),
    (TIMEDOUT, 19, False, 20),  # ...until MonitorTimeoutCount in a row
    (TIMEDOUT, 25, False, 26),
    (CANCELLED, 3, None, 3),  # a cancelled monitor changes nothing
    (NO_COMPONENT, 0, True, 0),  # no scripts at all: healthy
    (KILLED, 0, False, 0),
])
def test_monitor_verdict(status: int, timeouts: int, healthy: bool | None, after: int) -> None:
    verdict = policy.monitor_verdict(status, timeouts, limit=20)
    assert (verdict.healthy, verdict.timeouts) == (healthy, after)


@pytest.mark.parametrize(("previous", "changed", "delay"), [
    (0.0, False, 2.0), (2.0, False, 4.0), (8.0, False, 15.0), (15.0, False, 15.0),
    (15.0, True, 5.0), (2.0, True, 5.0),
])
def test_monitor_schedule(previous: float, changed: bool, delay: float) -> None:
    assert policy.next_monitor(previous, 15.0, changed) == delay


@pytest.mark.parametrize(("event", "status", "ok"), [
    ("startup", 0, True), ("startup", 1, False), ("startup", TIMEDOUT, False),
    ("takeip", TIMEDOUT, True), ("releaseip", TIMEDOUT, True),
    ("startrecovery", TIMEDOUT, True), ("recovered", TIMEDOUT, True),
    ("takeip", 1, False), ("ipreallocated", TIMEDOUT, False),
    ("monitor", NO_COMPONENT, True),
])
def test_which_results_count_as_success(event: str, status: int, ok: bool) -> None:
    assert policy.succeeded_status(event, status) is ok


@pytest.mark.parametrize(("status", "code"), [
    (0, 0), (1, errno.ENOEXEC), (TIMEDOUT, 46), (CANCELLED, 61), (NO_COMPONENT, 2),
])
def test_event_run_exit_codes(status: int, code: int) -> None:
    assert policy.exit_code(status) == code


@pytest.mark.parametrize(("event", "args", "error"), [
    ("takeip", ["eth1", "198.18.2.10", "24"], None),
    ("takeip", ["eth1"], "event takeip takes 3 arguments, not 1"),
    ("updateip", ["eth1", "eth2", "198.18.2.10", "24"], None),
    ("monitor", [], None),
    ("monitor", ["x"], "event monitor takes 0 arguments, not 1"),
    ("bogus", [], "unknown event 'bogus'"),
])
def test_event_arguments(event: str, args: list[str], error: str | None) -> None:
    assert policy.check_args(event, args) == error


async def test_status_lines_in_ctdb_layout(tmp_path: Path) -> None:
    ev = tmp_path / "ev"
    script(ev, "10.ok", "true")
    script(ev, "20.off", "true", mode=0o644)
    script(ev, "30.bad", "echo one; echo two; exit 2")
    script(ev, "40.later", "true")
    lines = status_lines(to_result(await run(ev)))
    assert lines[0].startswith("10.ok                OK         0.0")
    assert lines[1] == "20.off               DISABLED  "
    assert lines[2].startswith("30.bad               ERROR      0.0")
    assert lines[3:] == ["  OUTPUT:", "    one", "    two"]
    assert policy.describe(2) == "ERROR (exit 2)"
    assert policy.describe(-errno.ENOENT) == "CANNOT RUN (No such file or directory)"


def test_invalid_component_is_refused(tmp_path: Path) -> None:
    from ctdb.eventd.daemon import Eventd

    eventd = Eventd.__new__(Eventd)
    eventd.events_dir = tmp_path
    with pytest.raises(CtdbError, match="invalid component"):
        eventd.scripts("../etc")
    assert eventd.scripts("missing") is None



async def test_a_child_left_behind_does_not_hold_the_event(tmp_path: Path) -> None:
    ev = tmp_path / "ev"
    pid_file = tmp_path / "child.pid"
    script(ev, "10.daemonish", f"sleep 30 & echo $! > {pid_file}; echo started")
    result = await run(ev, timeout=10.0)
    assert (result.status, result.scripts[0].output) == (0, "started\n")
    assert result.end - result.begin < 5  # not the 30 s the child lives
    os.kill(int(pid_file.read_text()), 9)
