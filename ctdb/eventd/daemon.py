"""eventd: runs CTDB-style event scripts for the node and keeps their last status.

Other daemons ask for events (clusterd: startup, startrecovery, recovered; failoverd:
takeip, releaseip, startipreallocate, ipreallocated), ``ctdb event run`` asks for any,
and eventd itself runs ``init`` and ``setup`` before it reports ready (a failure
stops the node) and ``monitor`` every MonitorInterval while the node is RUNNING,
reporting the result to clusterd as the ``monitor`` health input.  One event runs
at a time per component; an event that must run cancels a monitor in progress.
What each result means for the node is decided in ``policy``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path

from ctdb import logs
from ctdb.clusterd.flags import INACTIVE, NodeFlag, Runstate
from ctdb.clusterd.messages import (
    ClusterView,
    HealthReport,
    ListTunablesRequest,
    RecoveryStepRequest,
)
from ctdb.config.paths import SCRIPTS_DATA_DIR
from ctdb.config.tunables import TUNABLES
from ctdb.errors import CtdbError, FatalError
from ctdb.eventd import policy
from ctdb.eventd.messages import EventResult, EventStatusRequest, RunEventRequest, ScriptStatus
from ctdb.eventd.runner import CANCELLED, NO_COMPONENT, EventRun, run_event
from ctdb.eventd.scripts import list_scripts
from ctdb.node import NodeContext
from ctdb.protocol import NODE_CURRENT, Ack, Address, KeyValue, Message, Service
from ctdb.tdaemon import Daemon, handles

log = logging.getLogger(__name__)

LEGACY = "legacy"  # the component ctdbd's own events go to, as in CTDB
SHUTDOWN_TIMEOUT = 4.0  # seconds for the shutdown event (masterd's stop timeout is 5 s)


def script_env(node: NodeContext) -> dict[str, str]:
    """The environment scripts run with: CTDB's variables, and pyctdb's ``ctdb`` first
    on PATH so scripts that call ``ctdb`` reach this node."""
    base = node.config.base
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTDB_READY")}
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bindir, env.get("PATH") or "/usr/sbin:/usr/bin:/sbin:/bin"])
    env["CTDB_BASE"] = str(base)
    env["CTDB_SCRIPT_VARDIR"] = str(node.state_dir / "scripts")
    env.setdefault("CTDB_SCRIPTS_DATA_DIR", str(SCRIPTS_DATA_DIR))
    env["CTDB_HELPER_BINDIR"] = bindir  # ctdb-config
    env["CTDB"] = str(Path(bindir) / "ctdb")  # CTDB's functions default to /usr/bin/ctdb
    return env


def to_result(run: EventRun) -> EventResult:
    return EventResult(run.component, run.event, list(run.args), run.status,
                       int(run.begin * 1e6), int(run.end * 1e6),
                       [ScriptStatus(s.name, s.status, int(s.begin * 1e6), int(s.end * 1e6),
                                     s.output) for s in run.scripts])


class Eventd(Daemon):
    name = "eventd"
    service = Service.EVENTD
    subscriptions = (ClusterView,)

    def __init__(self, node: NodeContext) -> None:
        super().__init__(node.run_dir)
        self.node = node
        self.events_dir = node.config.base / "events"
        tunables = dict(node.config.tunables or {})
        for spec in TUNABLES.values():
            tunables.setdefault(spec.name, spec.default)
        self.timeout = float(tunables["EventScriptTimeout"])
        self.monitor_interval = float(tunables["MonitorInterval"])
        self.monitor_timeout_limit = int(tunables["MonitorTimeoutCount"])
        debug = node.config.conf.event_debug_script
        self.debug_script = None if not debug else (
            Path(debug) if debug.startswith("/") else node.config.base / debug)
        self.env = script_env(node)
        Path(self.env["CTDB_SCRIPT_VARDIR"]).mkdir(parents=True, exist_ok=True)
        self.last: dict[tuple[str, str], EventRun] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._running: dict[str, tuple[str, asyncio.Task[EventRun]]] = {}
        self.runstate = Runstate.INIT
        self.recovering = False
        self.own_flags = 0
        self.monitor_timeouts = 0
        self._health: tuple[bool, str] | None = None

    # -- running events ---------------------------------------------------------------
    def _lock(self, component: str) -> asyncio.Lock:
        return self._locks.setdefault(component, asyncio.Lock())

    def scripts(self, component: str) -> list[tuple[str, Path, bool]] | None:
        """The component's scripts in run order; None when it has no directory."""
        if "/" in component or component in ("", ".", ".."):
            raise CtdbError(f"invalid component {component!r}")
        directory = self.events_dir / component
        if not directory.is_dir():
            return None
        return [(s.name, s.path, s.enabled) for s in list_scripts(directory)]

    async def run_event(self, component: str, event: str, args: list[str],
                        timeout: float | None = None) -> EventRun:
        """Run an event now, with CTDB's queueing: any event cancels a monitor in progress;
        a monitor while another event runs is cancelled at once; others wait their turn.
        The timeout counts from now, time spent waiting included."""
        if not event or not event.isidentifier():
            raise CtdbError(f"invalid event name {event!r}")
        begin = time.time()
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        scripts = self.scripts(component)
        if scripts is None:
            return EventRun(component, event, tuple(args), NO_COMPONENT, begin, begin, ())
        running = self._running.get(component)
        if running is not None and not running[1].done():
            if running[0] == "monitor":
                running[1].cancel()
            elif event == "monitor":
                return EventRun(component, event, tuple(args), CANCELLED, begin, begin, ())
        async with self._lock(component):
            task = asyncio.ensure_future(run_event(component, scripts, event, args,
                                                   deadline=deadline, env=self.env,
                                                   debug_script=self.debug_script))
            self._running[component] = (event, task)
            try:
                run = await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.cancelled():
                    task.cancel()
                    raise
                return EventRun(component, event, tuple(args), CANCELLED, begin, time.time(),
                                ())
            finally:
                if self._running.get(component, (None, None))[1] is task:
                    del self._running[component]
        self._record(run)
        return run

    def _record(self, run: EventRun) -> None:
        self.last[(run.component, run.event)] = run
        failed = run.failed
        if failed is not None:
            level = logging.WARNING if run.event == "monitor" else logging.ERROR
            log.log(level, "event %s%s: %s %s", run.event,
                    "".join(" " + a for a in run.args), failed.name, policy.describe(failed.status))
            for line in failed.output.splitlines()[:20]:
                log.log(level, "  %s: %s", failed.name, line)

    def notify(self, event: str) -> None:
        """CTDB's notification: ``<CTDB_BASE>/notify.sh EVENT``, if executable; not awaited."""
        script = self.node.config.base / "notify.sh"
        if os.access(script, os.X_OK):
            self._own(self._notify(script, event))

    async def _notify(self, script: Path, event: str) -> None:
        run = await run_event("notification", [("notify", script, True)], event, [],
                              deadline=time.monotonic() + self.timeout, env=self.env)
        if run.status != 0:
            log.warning("notification script %s %s: %s", script, event,
                        policy.describe(run.status))

    def _may_monitor(self) -> bool:
        return (self.runstate == Runstate.RUNNING and not self.recovering
                and not self.own_flags & INACTIVE)

    async def _monitor_loop(self) -> None:
        delay = 0.0
        changed = False
        while True:
            await self._refresh_tunables()
            delay = policy.next_monitor(delay, self.monitor_interval, changed)
            await asyncio.sleep(delay)
            if not self._may_monitor():
                delay = 0.0
                continue
            try:
                run = await self.run_event(LEGACY, "monitor", [])
            except CtdbError as exc:
                log.error("monitor: %s", exc)  # noqa: TRY400
                continue
            verdict = policy.monitor_verdict(run.status, self.monitor_timeouts,
                                             self.monitor_timeout_limit)
            self.monitor_timeouts = verdict.timeouts
            changed = False
            if verdict.healthy is not None:
                changed = self._report(verdict.healthy, verdict.reason(run))

    async def _refresh_tunables(self) -> None:
        """``ctdb setvar`` changes clusterd's tunables: take up the ones eventd uses."""
        if self.client is None or not self.client.connected:
            return
        try:
            reply = await self.client.request(Address(NODE_CURRENT, Service.CLUSTERD),
                                              ListTunablesRequest(), timeout=1.0)
        except CtdbError:
            return  # clusterd restarting: keep what we have
        values = {t.name: t.value for t in getattr(reply, "tunables", [])}
        self.timeout = float(values.get("EventScriptTimeout", self.timeout))
        self.monitor_interval = float(values.get("MonitorInterval", self.monitor_interval))
        self.monitor_timeout_limit = int(values.get("MonitorTimeoutCount",
                                                    self.monitor_timeout_limit))

    def _report(self, healthy: bool, reason: str) -> bool:
        """Tell clusterd; True when this changed the monitor's verdict."""
        changed = self._health is not None and self._health[0] != healthy
        if self._health != (healthy, reason):
            log.log(logs.NOTICE if healthy else logging.WARNING, "monitor: %s",
                    "healthy" if healthy else f"unhealthy ({reason})")
        self._health = (healthy, reason)
        if self.client is not None and self.client.connected:
            self.client.send(Address(NODE_CURRENT, Service.CLUSTERD),
                             HealthReport("monitor", healthy, reason))
        return changed

    # -- life cycle ----------------------------------------------------------------------
    async def setup(self) -> None:
        for event in ("init", "setup"):
            self.runstate = Runstate.INIT if event == "init" else Runstate.SETUP
            run = await self.run_event(LEGACY, event, [])
            if run.status not in (0, NO_COMPONENT):
                failed = run.failed
                raise FatalError(f"{event} event failed"
                                 + (f": {failed.name} {policy.describe(failed.status)}"
                                    if failed else ""))
            self.notify(event)
        self._own(self._monitor_loop())
        scripts = [name for name, _, enabled in self.scripts(LEGACY) or [] if enabled]
        log.log(logs.NOTICE, "eventd: %d enabled scripts in %s; monitor every %.0f s",
                len(scripts), self.events_dir / LEGACY, self.monitor_interval)

    async def teardown(self) -> None:
        for _event, task in self._running.values():
            task.cancel()
        # masterd kills a daemon that takes longer than its stop timeout to stop.
        await self.run_event(LEGACY, "shutdown", [], min(self.timeout, SHUTDOWN_TIMEOUT))

    # -- messages ------------------------------------------------------------------------
    @handles(ClusterView)
    def _view(self, msg: Message) -> None:
        view: ClusterView = msg.body
        if msg.src.node != self.pnn:
            return
        old = self.runstate
        self.runstate = Runstate(view.runstate)
        self.recovering = bool(view.recovery_mode)
        flags = next((n.flags for n in view.nodes if n.pnn == self.pnn), 0)
        if old == Runstate.STARTUP and self.runstate == Runstate.RUNNING:
            self.notify("startup")
        if (flags ^ self.own_flags) & NodeFlag.UNHEALTHY:
            self.notify("unhealthy" if flags & NodeFlag.UNHEALTHY else "healthy")
        self.own_flags = flags

    @handles(RunEventRequest)
    async def _run(self, msg: Message) -> EventResult:
        body: RunEventRequest = msg.body
        timeout = body.timeout_ms / 1000 if body.timeout_ms else None
        return to_result(await self.run_event(body.component, body.event, list(body.args),
                                              timeout))

    @handles(RecoveryStepRequest)
    async def _recovery_step(self, msg: Message) -> Ack:
        """The leader's recovery: startrecovery and recovered are steps run on every node."""
        event = msg.body.name
        if event not in ("startrecovery", "recovered"):
            raise CtdbError(f"eventd has no recovery step {event!r}")
        run = await self.run_event(LEGACY, event, [])
        if not policy.succeeded_status(event, run.status):
            failed = run.failed
            raise CtdbError(f"{event} event failed"
                            + (f": {failed.name} {policy.describe(failed.status)}"
                               if failed else ""))
        return Ack()

    @handles(EventStatusRequest)
    def _event_status(self, msg: Message) -> EventResult:
        body: EventStatusRequest = msg.body
        run = self.last.get((body.component, body.event))
        if run is None:
            if self.scripts(body.component) is None:
                return to_result(EventRun(body.component, body.event, (), NO_COMPONENT, 0, 0,
                                          ()))
            raise CtdbError(f"Event {body.event} has never run in {body.component}")
        return to_result(run)

    def status_items(self) -> list[KeyValue]:
        items = [KeyValue("runstate", self.runstate.name)]
        monitor = self.last.get((LEGACY, "monitor"))
        if monitor is not None:
            items.append(KeyValue("last monitor", policy.describe(monitor.status)))
        return items


def create(node: NodeContext) -> Eventd:
    return Eventd(node)
