"""serviced: starts, stops, watches and restarts the node's file services via systemd.

The services (``netfs.services``, from ctdb.conf's ``[services]``) start when the node
starts up (clusterd asks, after the startup event) and whenever it may serve again;
they stop when the node is STOPPED or BANNED and when ctdbd shuts down.  Their units
are watched through systemd's signals: a unit that fails, or is stopped behind
serviced's back, makes the node UNHEALTHY at once (health source ``service:NAME``),
and is restarted by the restart policy; once it runs again the node is healthy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ctdb import logs
from ctdb.clusterd.flags import NodeFlag, Runstate
from ctdb.clusterd.messages import ClusterView, HealthReport
from ctdb.errors import CtdbError
from ctdb.node import NodeContext
from ctdb.protocol import NODE_CURRENT, Ack, Address, KeyValue, Message, Service
from ctdb.serviced import policy
from ctdb.serviced.messages import (
    ServiceInfo,
    ServiceList,
    ServiceListRequest,
    StartServicesRequest,
)
from ctdb.tdaemon import Daemon, handles
from netfs import health
from netfs.services import ServiceDef, services_from_conf

log = logging.getLogger(__name__)

CHECK_INTERVAL = 2.0  # seconds between the deeper checks (smbd listening, Ganesha alive)
CHECK_GRACE = 5.0  # seconds a unit may run before its deeper check counts


class Serviced(Daemon):
    name = "serviced"
    service = Service.SERVICED
    subscriptions = (ClusterView,)

    def __init__(self, node: NodeContext) -> None:
        super().__init__(node.run_dir)
        self.node = node
        self.defs: list[ServiceDef] = services_from_conf(node.config.conf.services)
        limit, delay = node.config.conf.restart_policy
        self.policy = policy.RestartPolicy(limit, delay)
        self.systemd: Any = None
        self.units: dict[str, Any] = {}  # unit name -> last netfs.systemd.UnitState
        self.wanted = False  # the services should run now
        self.started = False  # clusterd asked for them (the node has started up)
        self.checks: dict[str, tuple[bool, str]] = {}  # deeper check results
        self.active_since: dict[str, float] = {}
        self.reported: dict[str, tuple[bool, str]] = {}
        self.history: dict[str, list[float]] = {d.name: [] for d in self.defs}
        self._restarting: set[str] = set()
        self._busy: set[str] = set()  # units serviced itself is starting or stopping
        self._starting = False
        self._change = asyncio.Lock()

    # -- life cycle ----------------------------------------------------------------------
    async def setup(self) -> None:
        if not self.defs:
            log.info("serviced: no services to manage")
            return
        # D-Bus is loaded only when there is something to manage (memory: ~5 MB).
        from netfs.systemd import Systemd  # noqa: PLC0415

        self.systemd = await Systemd().connect()
        units = [u for d in self.defs for u in d.units]
        await self.systemd.watch(units, self._unit_changed)
        self._own(self._check_loop())
        log.log(logs.NOTICE, "serviced: managing %s", ", ".join(
            f"{d.name} ({' '.join(d.units)})" for d in self.defs))

    async def teardown(self) -> None:
        if self.systemd is None:
            return
        if self.wanted:
            self.wanted = False
            await self._stop_all()
        await self.systemd.close()

    # -- starting and stopping -------------------------------------------------------------
    async def _job(self, verb: str, unit: str) -> str:
        """One systemd job on *unit*: "done", or why not."""
        self._busy.add(unit)
        try:
            result: str = await getattr(self.systemd, verb)(unit)
        except CtdbError as exc:
            result = str(exc)
        finally:
            self._busy.discard(unit)
        return result

    async def _start_all(self) -> list[str]:
        """Start every unit in order; the units that failed to start."""
        failed = []
        async with self._change:
            self._starting = True
            try:
                for d in self.defs:
                    for unit in d.units:
                        result = await self._job("start", unit)
                        if result == "done":
                            log.log(logs.NOTICE, "started %s", unit)
                        else:
                            log.error("cannot start %s: %s", unit, result)
                            failed.append(unit)
            finally:
                self._starting = False
        self._evaluate()
        return failed

    async def _start_and_check(self) -> None:
        """Start; a unit that failed meanwhile (its signal came while serviced was busy
        with it) gets the restart policy now."""
        await self._start_all()
        for state in list(self.units.values()):
            self._unit_changed(state)

    async def _stop_all(self) -> None:
        async with self._change:
            for d in reversed(self.defs):
                for unit in reversed(d.units):
                    log.log(logs.NOTICE, "stopped %s (%s)", unit, await self._job("stop", unit))
        self._evaluate()

    def _may_serve(self, view: ClusterView) -> bool:
        flags = next((n.flags for n in view.nodes if n.pnn == self.pnn), 0)
        return view.runstate == Runstate.RUNNING and not flags & (
            NodeFlag.STOPPED | NodeFlag.BANNED)

    # -- watching --------------------------------------------------------------------------
    def _unit_changed(self, state: Any) -> None:
        was = self.units.get(state.name)
        self.units[state.name] = state
        if state.active_state == "active":
            if was is None or was.active_state != "active":
                self.active_since[state.name] = time.monotonic()
        else:
            self.active_since.pop(state.name, None)
        self._evaluate()
        if self.wanted and state.name not in self._busy and policy.needs_restart(state):
            d = next(d for d in self.defs if state.name in d.units)
            if d.name not in self._restarting:
                self._restarting.add(d.name)
                self._own(self._restart(d))

    async def _restart(self, d: ServiceDef) -> None:
        try:
            now = time.monotonic()
            delay = policy.restart_delay(self.policy, self.history[d.name], now)
            if delay is None:
                log.error("%s failed %d times within %.0f s; not restarting it again", d.name,
                          self.policy.limit, self.policy.window)
                return
            log.warning("%s is down; restarting it in %.1f s", d.name, delay)
            await asyncio.sleep(delay)
            if not self.wanted:
                return
            async with self._change:
                if not self.wanted:
                    return  # stopped (ctdb stop, a ban) while this restart waited
                for unit in d.units:
                    # systemd may be restarting it itself (Restart=: "failed" comes first).
                    state = self.units.get(unit)
                    if state is not None and not policy.needs_restart(
                            policy.Unit(state.load_state, state.active_state, state.sub_state)):
                        continue
                    self.history[d.name].append(time.monotonic())
                    log.log(logs.NOTICE, "restarted %s: %s", unit,
                            await self._job("restart", unit))
        finally:
            self._restarting.discard(d.name)
        # A unit that failed again while we restarted it gets its next turn now.
        for unit in d.units:
            state = self.units.get(unit)
            if state is not None:
                self._unit_changed(state)

    def _evaluate(self) -> None:
        """Each service's health, told to clusterd when it changed."""
        for d in self.defs:
            if not self.started:
                healthy, reason = True, ""
            elif not self.wanted or self._starting:
                # Stopped on purpose, or being started: not a health problem (yet).
                healthy, reason = True, ""
            else:
                states = {u: (policy.Unit(s.load_state, s.active_state, s.sub_state)
                              if (s := self.units.get(u)) is not None else None)
                          for u in d.units}
                healthy, reason = policy.service_health(d.units, states,
                                                        self.checks.get(d.name, (True, "")))
            if self.reported.get(d.name) != (healthy, reason):
                self.reported[d.name] = (healthy, reason)
                self._report(d.name, healthy, reason)

    def _report(self, name: str, healthy: bool, reason: str) -> None:
        log.log(logs.NOTICE if healthy else logging.WARNING, "service %s: %s", name,
                "healthy" if healthy else reason)
        if self.client is not None and self.client.connected:
            self.client.send(Address(NODE_CURRENT, Service.CLUSTERD),
                             HealthReport(f"service:{name}", healthy, reason))

    async def _check_loop(self) -> None:
        """The deeper checks, and every health verdict again (a restarted clusterd)."""
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            now = time.monotonic()
            for d in self.defs:
                since = min((self.active_since.get(u, now) for u in d.units), default=now)
                if not self.wanted or not d.check or now - since < CHECK_GRACE:
                    self.checks.pop(d.name, None)
                    continue
                ok, why = await _deep_check(d.check)
                self.checks[d.name] = (ok, "" if ok else why)
            self._evaluate()
            for name, (healthy, reason) in self.reported.items():
                if self.client is not None and self.client.connected:
                    self.client.send(Address(NODE_CURRENT, Service.CLUSTERD),
                                     HealthReport(f"service:{name}", healthy, reason))

    # -- messages --------------------------------------------------------------------------
    @handles(StartServicesRequest)
    async def _start(self, _msg: Message) -> Ack:
        self.started = True
        if not self.defs:
            return Ack()
        self.wanted = True
        failed = await self._start_all()
        if failed:
            raise CtdbError(f"cannot start {', '.join(failed)}")
        return Ack()

    @handles(ClusterView)
    def _view(self, msg: Message) -> None:
        if msg.src.node != self.pnn or not self.defs:
            return
        if not self.started and msg.body.runstate == Runstate.RUNNING:
            self.started = True  # serviced restarted on a running node
        if not self.started:
            return
        may = self._may_serve(msg.body)
        if may and not self.wanted:
            self.wanted = True
            log.log(logs.NOTICE, "node may serve: starting services")
            self._own(self._start_and_check())
        elif not may and self.wanted and msg.body.runstate == Runstate.RUNNING:
            self.wanted = False
            log.log(logs.NOTICE, "node is stopped or banned: stopping services")
            self._own(self._stop_all())

    @handles(ServiceListRequest)
    def _list(self, _msg: Message) -> ServiceList:
        now = time.monotonic()
        infos = []
        for d in self.defs:
            states = [f"{s.active_state}/{s.sub_state}" if (s := self.units.get(u)) else "unknown"
                      for u in d.units]
            healthy, reason = self.reported.get(d.name, (True, ""))
            restarts = sum(1 for t in self.history[d.name] if now - t < self.policy.window)
            infos.append(ServiceInfo(d.name, list(d.units), states, self.wanted, healthy,
                                     reason, restarts))
        return ServiceList(self.pnn, infos)

    def status_items(self) -> list[KeyValue]:
        return [KeyValue(d.name, ",".join(
            s.active_state if (s := self.units.get(u)) else "unknown" for u in d.units))
            for d in self.defs]


async def _deep_check(kind: str) -> tuple[bool, str]:
    if kind == "smbd":
        return await asyncio.to_thread(health.smbd_listening)
    if kind == "ganesha":
        return await health.ganesha_alive()
    return True, ""


def create(node: NodeContext) -> Serviced:
    return Serviced(node)
