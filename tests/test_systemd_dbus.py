"""netfs.systemd against a real systemd: a booted nspawn node's, through both D-Bus libraries.

One node boots for the module; its system bus is reached from here through
``/proc/<leader>/root/run/dbus/system_bus_socket``.  Each test drops its own unit files
into the node's ``/run/systemd/system`` (names carry the D-Bus library, so the two runs
never share a unit), reloads systemd, and checks what a user sees: job results, states,
the real processes, and watch callbacks that report a dying unit within a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ctdb.errors import CtdbError
from ctdb.sandbox import nspawn_backend
from ctdb.sandbox.lab import Options, Sandbox, destroy
from netfs import dbus
from netfs.systemd import BusDisconnected, JobTimeout, Systemd, SystemdError, UnitState

# make test installs systemd-container and runs as root: a missing part fails, no skip.
pytestmark = [pytest.mark.netns]

NAME = f"sd{os.getpid() % 100000}"
DEADLINE = 5.0  # for what systemd does in milliseconds; a hung test still ends

# Type=exec: a start job is done once the command runs, not when systemd has only forked
# (the child is named "(sleep)" until its exec).
SLEEP = "[Service]\nType=exec\nExecStart=/bin/sleep infinity\n"


@dataclass
class Node:
    """The booted node: its systemd's bus, its files and processes seen from the host."""

    sb: Sandbox
    leader: int

    @property
    def root(self) -> Path:
        return Path(f"/proc/{self.leader}/root")

    @property
    def address(self) -> str:
        return f"unix:path={self.root}/run/dbus/system_bus_socket"

    def write_unit(self, name: str, text: str) -> None:
        units = self.root / "run" / "systemd" / "system"
        units.mkdir(parents=True, exist_ok=True)
        (units / name).write_text(text)

    def mask(self, name: str, masked: bool = True) -> None:
        """``systemctl mask`` (or unmask) by hand: a link to /dev/null in /etc."""
        link = self.root / "etc" / "systemd" / "system" / name
        link.unlink(missing_ok=True)
        if masked:
            link.symlink_to("/dev/null")

    def exists(self, path: str) -> bool:
        return (self.root / path.lstrip("/")).exists()

    def host_pid(self, pid: int) -> int | None:
        """The host's pid of the container's *pid* (a child of the container's systemd)."""
        children = Path(f"/proc/{self.leader}/task/{self.leader}/children").read_text().split()
        for child in children:
            with contextlib.suppress(OSError, IndexError):
                status = Path(f"/proc/{child}/status").read_text()
                if status.split("NSpid:")[1].split("\n")[0].split()[-1] == str(pid):
                    return int(child)
        return None

    def comm(self, pid: int) -> str | None:
        """The command name of the container's *pid*, None once it is gone."""
        host = self.host_pid(pid)
        if host is None:
            return None
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{host}/stat").read_text()
            if stat.rpartition(") ")[2].split()[0] not in "ZX":
                return stat.split(" (", 1)[1].rpartition(") ")[0]
        return None

    def kill(self, pid: int, sig: int = signal.SIGKILL) -> None:
        host = self.host_pid(pid)
        assert host is not None, f"no process {pid} in the node"
        os.kill(host, sig)


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    try:
        with Sandbox(Options(name=NAME, nodes=1, backend="nspawn")) as sb:
            assert isinstance(sb.backend, nspawn_backend.NspawnBackend)
            leader = sb.backend.leader(sb.topo.node(0))
            assert leader is not None
            yield Node(sb, leader)
    finally:  # even after a crash inside `up` or a failed test
        nspawn_backend.cleanup(NAME)
        destroy(NAME)


@pytest.fixture(scope="module", params=["dbus-fast", "dbus-next"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """netfs.dbus reloaded on the library asked for (it chooses once, at import)."""
    wanted: str = request.param
    patch = pytest.MonkeyPatch()
    patch.setenv("PYCTDB_DBUS", wanted)
    importlib.reload(dbus)
    try:
        assert wanted == dbus.BACKEND
        yield wanted
    finally:
        patch.undo()
        importlib.reload(dbus)


@pytest.fixture
async def sd(node: Node, backend: str) -> AsyncIterator[Systemd]:
    client = await Systemd().connect(node.address)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def unit(node: Node, backend: str) -> Callable[[str, str], str]:
    """Write a unit file for this test and library; its name."""

    def write(tag: str, text: str) -> str:
        name = f"pt-{tag}-{backend.partition('-')[2]}.service"
        node.write_unit(name, text)
        return name

    return write


class Recorder:
    """A watch callback keeping every state it was given, and waiting for one."""

    def __init__(self) -> None:
        self.states: list[UnitState] = []
        self.times: list[float] = []
        self._news = asyncio.Event()

    def __call__(self, state: UnitState) -> None:
        self.states.append(state)
        self.times.append(time.monotonic())
        self._news.set()

    def pairs(self, name: str | None = None) -> list[tuple[str, str]]:
        return [(s.active_state, s.sub_state) for s in self.states
                if name is None or s.name == name]

    async def wait(self, what: str, match: Callable[[UnitState], bool], after: int = 0,
                   timeout: float = DEADLINE) -> int:
        """The index of the first state from *after* on that matches, within *timeout*."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(after, len(self.states)):
                if match(self.states[i]):
                    return i
            self._news.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout:g}s; saw {self.pairs()}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._news.wait(), left)


def running(s: UnitState) -> bool:
    return (s.active_state, s.sub_state) == ("active", "running")


# -- jobs and states ---------------------------------------------------------------------------
async def test_start_and_stop(sd: Systemd, node: Node, unit: Callable[[str, str], str]) -> None:
    name = unit("sleep", SLEEP)
    await sd.daemon_reload()
    before = await sd.state(name)
    assert (before.name, before.load_state, before.active_state, before.sub_state) == (
        name, "loaded", "inactive", "dead")

    assert await sd.start(name) == "done"
    now = await sd.state(name)
    assert running(now)
    assert now.main_pid > 0
    assert now.result == "success"
    assert node.comm(now.main_pid) == "sleep"  # the real process runs in the node

    assert await sd.stop(name) == "done"
    after = await sd.state(name)
    assert (after.active_state, after.sub_state, after.main_pid) == ("inactive", "dead", 0)
    assert node.comm(now.main_pid) is None
    # Jobs that end at once, many in flight: each waiter gets its own job's end.
    jobs = [sd.stop(name, timeout=DEADLINE) for _ in range(20)]
    assert await asyncio.gather(*jobs) == ["done"] * 20


async def test_restart_and_reload(sd: Systemd, node: Node,
                                  unit: Callable[[str, str], str]) -> None:
    marker = f"/run/pt-reloaded-{dbus.BACKEND}"
    name = unit("reload", f"{SLEEP}ExecReload=/bin/touch {marker}\n")
    plain = unit("plain", SLEEP)
    await sd.daemon_reload()

    assert await sd.restart(name) == "done"  # restart starts a stopped unit
    first = await sd.state(name)
    assert running(first)
    assert await sd.restart(name) == "done"
    second = await sd.state(name)
    assert running(second)
    assert second.main_pid not in (0, first.main_pid)
    assert node.comm(first.main_pid) is None

    assert not node.exists(marker)
    assert await sd.reload(name) == "done"
    assert node.exists(marker)
    assert (await sd.state(name)).main_pid == second.main_pid  # reloaded, not restarted

    assert await sd.start(plain) == "done"
    with pytest.raises(CtdbError) as caught:
        await sd.reload(plain)  # no ExecReload=
    assert plain in str(caught.value)
    assert "JobTypeNotApplicable" in str(caught.value)

    assert await sd.stop(name) == "done"
    assert await sd.reload(name) == "invalid"  # not running: nothing to reload
    assert await sd.stop(plain) == "done"


async def test_unknown_unit_is_an_error_naming_it(sd: Systemd) -> None:
    missing = "pt-no-such-unit.service"
    for job in (sd.start, sd.restart, sd.reload):
        with pytest.raises(CtdbError) as caught:
            await job(missing)
        text = str(caught.value)
        assert missing in text
        assert "org.freedesktop.systemd1.NoSuchUnit" in text, text
        assert "\n" not in text
        assert isinstance(caught.value, SystemdError)
        assert caught.value.unit == missing
    # Stopping a unit that does not exist has nothing to do: systemd says it is not loaded.
    with pytest.raises(CtdbError, match=re.escape(f"stop {missing}: Unit {missing} not loaded")):
        await sd.stop(missing)
    with pytest.raises(CtdbError, match=r"start no such\.service: .*InvalidArgs"):
        await sd.start("no such.service")
    # A state is not an error: systemd loads a stub for any valid name.
    state = await sd.state(missing)
    assert (state.load_state, state.active_state, state.sub_state) == (
        "not-found", "inactive", "dead")


async def test_failing_exec_start_fails_the_job(sd: Systemd,
                                                unit: Callable[[str, str], str]) -> None:
    false = unit("false", "[Service]\nType=oneshot\nExecStart=/bin/false\n")
    missing = unit("noexec", "[Service]\nType=exec\nExecStart=/pt/no/such/binary\n")
    await sd.daemon_reload()

    assert await sd.start(false) == "failed"
    state = await sd.state(false)
    assert (state.active_state, state.sub_state, state.result) == ("failed", "failed",
                                                                  "exit-code")
    assert state.exec_main_status == 1
    assert state.failed

    assert await sd.start(missing) == "failed"
    state = await sd.state(missing)
    assert (state.active_state, state.result) == ("failed", "exit-code")
    assert state.exec_main_status == 203  # systemd's EXIT_EXEC


async def test_job_timeout_and_canceled_job(sd: Systemd,
                                            unit: Callable[[str, str], str]) -> None:
    slow = "[Service]\nType=oneshot\nExecStart=/bin/sleep 30\n"
    name, other = unit("slow", slow), unit("slow2", slow)
    await sd.daemon_reload()

    started = time.monotonic()
    with pytest.raises(JobTimeout) as caught:
        await sd.start(name, timeout=0.3)
    assert time.monotonic() - started < 2.0
    assert isinstance(caught.value, CtdbError)
    assert isinstance(caught.value, TimeoutError)
    assert name in str(caught.value)
    state = await sd.state(name)
    assert (state.active_state, state.sub_state) == ("activating", "start")  # it goes on
    assert await sd.stop(name) == "done"

    seen = Recorder()
    watch = await sd.watch([other], seen)
    waiting = asyncio.ensure_future(sd.start(other))
    await seen.wait("activating", lambda s: s.active_state == "activating")
    assert await sd.stop(other) == "done"  # replaces the start job...
    assert await asyncio.wait_for(waiting, DEADLINE) == "canceled"  # ...which ends so
    # A oneshot killed while starting is "failed" (SIGTERM is clean only for daemons), even
    # after a stop job that was "done": a watcher must not read every "failed" as a crash.
    stopped = await sd.state(other)
    assert (stopped.active_state, stopped.result, stopped.exec_main_status) == (
        "failed", "signal", signal.SIGTERM)
    assert seen.pairs()[-2:] == [("deactivating", "stop-sigterm"), ("failed", "failed")]
    await watch.close()


async def test_daemon_reload_applies_a_changed_unit(sd: Systemd, node: Node,
                                                    unit: Callable[[str, str], str]) -> None:
    name = unit("changed", SLEEP)
    await sd.daemon_reload()
    assert await sd.start(name) == "done"
    assert node.comm((await sd.state(name)).main_pid) == "sleep"

    unit("changed", "[Service]\nType=exec\nExecStart=/usr/bin/tail -f /dev/null\n")
    assert await sd.restart(name) == "done"
    assert node.comm((await sd.state(name)).main_pid) == "sleep"  # the old unit still
    await sd.daemon_reload()
    assert await sd.restart(name) == "done"
    assert node.comm((await sd.state(name)).main_pid) == "tail"
    assert await sd.stop(name) == "done"


async def test_watch_a_unit_before_its_file_exists(sd: Systemd,
                                                   unit: Callable[[str, str], str]) -> None:
    name = f"pt-late-{dbus.BACKEND.partition('-')[2]}.service"
    seen = Recorder()
    watch = await sd.watch([name], seen)
    assert (seen.states[0].load_state, seen.states[0].active_state) == ("not-found", "inactive")

    unit("late", SLEEP)
    # No daemon-reload needed: the unloaded stub is loaded again from the new file.
    assert (await sd.state(name)).load_state == "loaded"
    assert await sd.start(name) == "done"
    i = await seen.wait("running", running)
    assert seen.states[i].load_state == "loaded"
    assert seen.states[i].main_pid > 0
    await watch.close()
    assert await sd.stop(name) == "done"


# -- watches -----------------------------------------------------------------------------------
async def test_watch_sees_a_killed_unit_fail(sd: Systemd, node: Node,
                                             unit: Callable[[str, str], str]) -> None:
    name = unit("victim", SLEEP)
    await sd.daemon_reload()
    seen = Recorder()
    watch = await sd.watch([name], seen)
    assert seen.pairs() == [("inactive", "dead")]  # the state when the watch began

    assert await sd.start(name) == "done"
    up = seen.states[await seen.wait("running", running)]
    assert up.main_pid > 0
    assert up.load_state == "loaded"
    assert up.name == name

    node.kill(up.main_pid)
    killed = time.monotonic()
    i = await seen.wait("failed", lambda s: s.failed)
    assert seen.times[i] - killed < 1.0  # signalled, not polled
    # The Unit signal carries no MainPID or Result: they come merged from the Service one.
    assert (seen.states[i].result, seen.states[i].exec_main_status, seen.states[i].main_pid) \
        == ("signal", signal.SIGKILL, 0)
    assert seen.states[i].load_state == "loaded"
    pairs = seen.pairs()
    assert pairs.index(("active", "running")) < i
    assert all(a != b for a, b in itertools.pairwise(pairs)), pairs  # changes only
    assert watch.states[name] == seen.states[-1] == await sd.state(name)
    await watch.close()


async def test_watch_sees_an_exit_1(sd: Systemd, unit: Callable[[str, str], str]) -> None:
    name = unit("exit1", "[Service]\nExecStart=/bin/sh -c 'sleep 0.3; exit 1'\n")
    await sd.daemon_reload()
    seen = Recorder()
    watch = await sd.watch([name], seen, initial=False)
    assert seen.states == []
    assert await sd.start(name) == "done"  # Type=simple: done once the process runs
    i = await seen.wait("failed", lambda s: s.failed)
    assert (seen.states[i].result, seen.states[i].exec_main_status) == ("exit-code", 1)
    assert seen.pairs()[:i].count(("active", "running")) == 1
    await watch.close()


async def test_watch_sees_failure_and_auto_restart_in_order(
        sd: Systemd, node: Node, unit: Callable[[str, str], str]) -> None:
    name = unit("phoenix", f"{SLEEP}Restart=on-failure\nRestartSec=100ms\n")
    other = unit("bystander", SLEEP)
    await sd.daemon_reload()
    seen = Recorder()
    watch = await sd.watch([name, other], seen)
    assert [s.name for s in seen.states] == [name, other]

    assert await sd.start(name) == "done"
    up = seen.states[await seen.wait("running", running)]
    node.kill(up.main_pid)
    # systemd 252: "failed" for a moment, then auto-restart, then running again.
    failed = await seen.wait("failed", lambda s: s.failed, after=seen.states.index(up))
    assert seen.states[failed].result == "signal"
    waiting = await seen.wait("auto-restart", lambda s: s.sub_state == "auto-restart",
                              after=failed)
    assert seen.states[waiting].active_state == "activating"
    back = seen.states[await seen.wait("running again", running, after=waiting)]
    assert back.n_restarts == 1
    assert back.main_pid not in (0, up.main_pid)
    assert back.result == "success"
    assert seen.pairs(other) == [("inactive", "dead")]  # only its own signals count
    await watch.close()
    assert await sd.stop(name) == "done"


async def test_closed_watch_is_silent(sd: Systemd, unit: Callable[[str, str], str]) -> None:
    name = unit("quiet", SLEEP)
    await sd.daemon_reload()
    closed, open_ = Recorder(), Recorder()
    first = await sd.watch([name], closed)
    second = await sd.watch([name], open_)
    await first.close()
    assert await sd.start(name) == "done"
    # The open watch's news is the very signal the closed one would have had.
    await open_.wait("running", running)
    assert closed.pairs() == [("inactive", "dead")]
    await second.close()
    assert await sd.stop(name) == "done"


async def test_watch_learns_load_state_after_daemon_reload(
        sd: Systemd, node: Node, unit: Callable[[str, str], str]) -> None:
    name = unit("masked", SLEEP)
    await sd.daemon_reload()
    assert await sd.start(name) == "done"
    seen = Recorder()
    watch = await sd.watch([name], seen)
    try:
        node.mask(name)
        await sd.daemon_reload()
        # No signal carries LoadState; the watch asks again after each reload.
        i = await seen.wait("masked", lambda s: s.load_state == "masked")
        assert running(seen.states[i])  # masking does not stop a running unit
        node.mask(name, masked=False)
        await sd.daemon_reload()
        await seen.wait("loaded again", lambda s: s.load_state == "loaded", after=i)
        assert seen.pairs() == [("active", "running")] * 3
    finally:
        node.mask(name, masked=False)
    await watch.close()
    assert await sd.stop(name) == "done"


# -- the bus -----------------------------------------------------------------------------------
class Relay:
    """A unix socket relaying to the node's bus, to cut as a dying bus would."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self, path: Path) -> str:
        self.server = await asyncio.start_unix_server(self._serve, str(path))
        return f"unix:path={path}"

    async def _serve(self, client_r: asyncio.StreamReader,
                     client_w: asyncio.StreamWriter) -> None:
        bus_r, bus_w = await asyncio.open_unix_connection(self.target)
        self.writers += [client_w, bus_w]

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            w.close()

        await asyncio.gather(pipe(client_r, bus_w), pipe(bus_r, client_w))

    def cut(self) -> None:
        if self.server is not None:
            self.server.close()
        for w in self.writers:
            w.transport.abort()


async def test_lost_bus_fails_pending_jobs_and_later_calls(
        sd: Systemd, node: Node, unit: Callable[[str, str], str], tmp_path: Path) -> None:
    name = unit("orphan", "[Service]\nType=oneshot\nExecStart=/bin/sleep 30\n")
    await sd.daemon_reload()
    relay = Relay(node.address.removeprefix("unix:path="))
    client = await Systemd().connect(await relay.start(tmp_path / "bus"))
    try:
        assert client.connected
        seen = Recorder()
        await client.watch([name], seen)
        job = asyncio.ensure_future(client.start(name))
        await seen.wait("activating", lambda s: s.active_state == "activating")

        relay.cut()
        started = time.monotonic()
        with pytest.raises(BusDisconnected) as caught:
            await asyncio.wait_for(job, DEADLINE)
        assert time.monotonic() - started < 1.0
        assert isinstance(caught.value, CtdbError)
        assert name in str(caught.value)
        reason = await asyncio.wait_for(client.wait_disconnected(), DEADLINE)
        assert "connection" in reason
        assert not client.connected
        with pytest.raises(CtdbError, match=re.escape(f"state of {name}: not connected")):
            await client.state(name)
    finally:
        relay.cut()
        await client.close()
    # systemd goes on: the job this client waited for still runs.
    assert (await sd.state(name)).active_state == "activating"
    assert await sd.stop(name) == "done"


async def test_closed_client_refuses_requests(node: Node, backend: str) -> None:
    client = await Systemd().connect(node.address)
    assert client.connected
    await client.close()
    await client.close()  # idempotent
    assert not client.connected
    assert await client.wait_disconnected() == "closed by this client"
    with pytest.raises(BusDisconnected, match=re.escape("start x.service: not connected")):
        await client.start("x.service")
    with pytest.raises(BusDisconnected, match=re.escape("cannot connect to unix:path=/pt/no/bus")):
        await Systemd().connect("unix:path=/pt/no/bus")
