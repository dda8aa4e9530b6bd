"""masterd: starts a node's daemons in order, watches them, stops them in reverse.

Each daemon runs as a child process named ``ctdb-<name>`` (fault isolation, and a
GIL each), or, with ``single_process``, as a task in this process.  A daemon that
crashes is restarted with exponential backoff and the reason is logged.  masterd
is itself a tdaemon (service MASTERD) so ``ctdb`` can ask it for its daemons, and it
keeps systemd informed through sd_notify.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ctdb import logs
from ctdb.errors import EXIT_FATAL, FatalError
from ctdb.masterd import sdnotify
from ctdb.masterd.backoff import Backoff, describe_exit
from ctdb.masterd.registry import DAEMONS, DaemonSpec, Runnable
from ctdb.node import NodeContext
from ctdb.protocol import (
    DaemonInfo,
    DaemonListReply,
    DaemonListRequest,
    KeyValue,
    Message,
    Service,
)
from ctdb.tdaemon import Daemon, handles

log = logging.getLogger(__name__)

READY_TIMEOUT = 30.0
FATAL = "failed fatally"
STOP_TIMEOUT = 5.0


@dataclass
class Child:
    """One supervised daemon and what masterd knows of it."""

    spec: DaemonSpec
    pid: int = 0
    state: str = "STOPPED"
    restarts: int = 0
    failures: int = 0
    started: float = 0.0
    process: asyncio.subprocess.Process | None = None
    task: asyncio.Task[Any] | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class Masterd(Daemon):
    name = "masterd"
    service = Service.MASTERD

    def __init__(self, node: NodeContext, single_process: bool = False,
                 daemons: tuple[DaemonSpec, ...] = DAEMONS, backoff: Backoff | None = None,
                 child_env: dict[str, str] | None = None) -> None:
        super().__init__(node.run_dir)
        self.node = node
        self.single_process = single_process
        self.backoff = backoff or Backoff()
        self.children = [Child(spec) for spec in daemons]
        self.child_env = child_env or {}
        self._stopping = False
        self._node_stop = asyncio.Event()
        self.fatal = ""  # why the node had to stop, when a daemon failed fatally

    # -- tdaemon -----------------------------------------------------------------
    def shutdown(self) -> None:
        """A ShutdownRequest stops the whole node."""
        self._node_stop.set()

    def status_items(self) -> list[KeyValue]:
        return [KeyValue(c.spec.process_name, f"{c.state} pid {c.pid} restarts {c.restarts}")
                for c in self.children]

    @handles(DaemonListRequest)
    def _daemons(self, _msg: Message) -> DaemonListReply:
        return DaemonListReply([
            DaemonInfo(c.spec.process_name, c.pid, c.state, c.restarts, int(c.started * 1e6))
            for c in self.children
        ] + [DaemonInfo("ctdbd", os.getpid(), self.state, 0, int(self.start_time * 1e6))])

    # -- the node ----------------------------------------------------------------
    async def serve(self) -> None:
        """Run the node until SIGTERM or a shutdown request, then stop it in order."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._node_stop.set)
        self.node.run_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        self.node.state_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        conf = self.node.config.conf
        for db_dir in (conf.volatile_db_dir, conf.persistent_db_dir, conf.state_db_dir):
            db_dir.mkdir(parents=True, exist_ok=True, mode=0o755)  # as ctdbd; scripts df them
        sdnotify.notify(f"STATUS=Starting {len(self.children)} daemons")
        own: asyncio.Task[None] | None = None
        watchdog: asyncio.Task[None] | None = None
        try:
            for child in self.children:
                child.task = loop.create_task(self._supervise(child))
                await self._wait_ready(child)
                if self._node_stop.is_set():
                    return  # asked to stop while starting
            own_ready = asyncio.Event()
            own = loop.create_task(self.run(own_ready.set))
            await asyncio.wait([own, loop.create_task(own_ready.wait())],
                               return_when=asyncio.FIRST_COMPLETED)
            if own.done():
                own.result()
            log.log(logs.NOTICE, "node %d: all %d daemons ready", self.node.pnn,
                    len(self.children))
            sdnotify.notify(f"READY=1\nSTATUS=Running: {len(self.children)} daemons")
            interval = sdnotify.watchdog_interval()
            if interval:
                watchdog = loop.create_task(self._watchdog(interval))
            await self._node_stop.wait()
        finally:
            self._stopping = True
            sdnotify.notify("STOPPING=1\nSTATUS=Stopping")
            log.log(logs.NOTICE, "node %d: shutting down", self.node.pnn)
            for task in (watchdog, own):
                if task is not None:
                    Daemon.shutdown(self)
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            for child in reversed(self.children):
                await self._stop_child(child)
            if self.fatal:
                raise RuntimeError(self.fatal)

    async def _wait_ready(self, child: Child) -> None:
        stop = asyncio.ensure_future(self._node_stop.wait())
        ready = asyncio.ensure_future(child.ready.wait())
        try:
            await asyncio.wait([stop, ready], timeout=READY_TIMEOUT,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            ready.cancel()
        if not child.ready.is_set() and not self._node_stop.is_set():
            raise RuntimeError(f"{child.spec.process_name} did not become ready")

    async def _watchdog(self, interval: float) -> None:
        while True:
            sdnotify.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    async def _supervise(self, child: Child) -> None:
        while not self._stopping:
            child.state = "STARTING"
            child.started = time.time()
            began = time.monotonic()
            outcome = await (self._run_task(child) if self.single_process
                             else self._run_process(child))
            if self._stopping:
                break
            if outcome == FATAL:
                self.fatal = f"{child.spec.process_name} cannot run"
                log.critical("%s failed fatally; stopping the node", child.spec.process_name)
                self._node_stop.set()
                break
            ran_for = time.monotonic() - began
            child.failures = self.backoff.next_failures(child.failures, ran_for)
            delay = self.backoff.delay(child.failures)
            child.state = "RESTARTING"
            child.pid = 0
            log.error("%s %s; restarting in %.2fs (failure %d)", child.spec.process_name,
                      outcome, delay, child.failures)
            sdnotify.notify(f"STATUS={child.spec.process_name} {outcome}, restarting")
            await asyncio.sleep(delay)
            child.restarts += 1
        child.state = "STOPPED"

    async def _run_process(self, child: Child) -> str:
        rfd, wfd = os.pipe()
        env = dict(os.environ, CTDB_READY_FD=str(wfd), **self.child_env)
        env.setdefault("CTDB_BASE", str(self.node.config.base))
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ctdb.masterd.child", child.spec.name,
                pass_fds=(wfd,), env=env, stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            os.close(wfd)
        child.process = proc
        child.pid = proc.pid
        loop = asyncio.get_running_loop()

        def on_ready() -> None:
            with contextlib.suppress(OSError):
                if os.read(rfd, 1):
                    child.state = "RUNNING"
                    child.ready.set()
            loop.remove_reader(rfd)

        loop.add_reader(rfd, on_ready)
        try:
            returncode = await proc.wait()
        finally:
            loop.remove_reader(rfd)
            os.close(rfd)
            child.process = None
        return FATAL if returncode == EXIT_FATAL else describe_exit(returncode)

    async def _run_task(self, child: Child) -> str:
        child.pid = os.getpid()

        def ready() -> None:
            child.state = "RUNNING"
            child.ready.set()

        try:
            runnable: Runnable = child.spec.create(self.node)
            await runnable.run(ready)
        except asyncio.CancelledError:
            raise
        except FatalError as exc:
            log.critical("%s: %s", child.spec.process_name, exc)
            return FATAL
        except Exception as exc:
            log.exception("%s failed", child.spec.process_name)
            return f"failed: {exc}"
        return "stopped by itself"

    async def _stop_child(self, child: Child) -> None:
        proc, task = child.process, child.task
        child.state = "STOPPING"
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            stopped = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_TIMEOUT):
                    await proc.wait()
                    stopped = True
            if not stopped:
                log.error("%s did not stop within %.0fs; killing it", child.spec.process_name,
                          STOP_TIMEOUT)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        child.state = "STOPPED"


def run_node(node: NodeContext, single_process: bool,
             on_started: Callable[[], None] | None = None) -> int:
    """Run masterd on a fresh event loop; the exit code for ``ctdbd``."""

    masterd: list[Masterd] = []

    async def main_() -> None:
        if on_started is not None:
            on_started()
        masterd.append(Masterd(node, single_process))
        await masterd[0].serve()

    try:
        asyncio.run(main_())
    except RuntimeError:
        log.exception("ctdbd failed")
        # A daemon said the node must not run (init/setup failed): systemd must not
        # restart it (the unit's RestartPreventExitStatus).
        return EXIT_FATAL if masterd and masterd[0].fatal else 1
    return 0
