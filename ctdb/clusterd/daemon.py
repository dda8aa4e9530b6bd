"""clusterd: the asyncio shell around ``ClusterState``.

Every heartbeat interval it broadcasts this node's heartbeat, evaluates the state,
acts on the decision (take or release the cluster lock, tell transportd the leader,
run a recovery when leading and membership changed) and publishes the cluster view
to local subscribers when it changed.  Link events from transportd are evaluated at
once, so a peer whose processes died is DISCONNECTED without waiting for a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from ctdb import logs
from ctdb.clusterd.flags import NO_NODE, Capability, NodeFlag, Runstate
from ctdb.clusterd.health import is_unhealthy, unhealthy_sources
from ctdb.clusterd.lock import ClusterLock, make_lock
from ctdb.clusterd.messages import (
    BanRequest,
    CapabilitiesReply,
    CapabilitiesRequest,
    ClusterView,
    ClusterViewRequest,
    GetTunableRequest,
    HealthReport,
    Heartbeat,
    ListTunablesRequest,
    LockInfo,
    NodeInfo,
    Recovered,
    RecoverRequest,
    RecoveryStepRequest,
    ReloadNodesRequest,
    RunstateReply,
    RunstateRequest,
    SetFlagsRequest,
    SetLeaderRoleRequest,
    SetTunableRequest,
    StartRecovery,
    Tunable,
    TunableList,
    TunableValue,
)
from ctdb.clusterd.recovery import STEPS, BanTracker, Outcome, RecoveryStep, run_steps
from ctdb.clusterd.state import OWN_FLAGS, ClusterState, Decision, Peer
from ctdb.config import load_nodes
from ctdb.config.tunables import TUNABLES, find_tunable, heartbeat_timing
from ctdb.errors import CtdbError, RemoteError
from ctdb.eventd.client import run_event
from ctdb.eventd.policy import STARTUP_RETRY
from ctdb.node import NodeContext
from ctdb.protocol import (
    NODE_ALL,
    NODE_CURRENT,
    Ack,
    Address,
    ErrorCode,
    KeyValue,
    LinkStatusReply,
    LinkStatusRequest,
    Message,
    Service,
    SetLeader,
)
from ctdb.serviced.messages import StartServicesRequest
from ctdb.tdaemon import Daemon, handles
from ctdb.transport.events import LinkEvent, ReloadNodes

log = logging.getLogger(__name__)

TRANSPORT = Address(NODE_CURRENT, Service.TRANSPORT)
ALL_CLUSTERDS = Address(NODE_ALL, Service.CLUSTERD)
LOCK_RETRY = 0.25  # seconds between attempts to take a contended cluster lock
RECOVERY_RETRY = 1.0  # seconds before a failed recovery is tried again
SERVICES_TIMEOUT = 130.0  # seconds for serviced to start the file services (systemd: 90 s)
RECOVERY_SETTLE = 1.0  # seconds after a recovery before FIRST_RECOVERY heartbeats count



class Clusterd(Daemon):
    name = "clusterd"
    service = Service.CLUSTERD
    subscriptions = (Heartbeat, LinkEvent)

    def __init__(self, node: NodeContext) -> None:
        super().__init__(node.run_dir)
        self.node = node
        conf = node.config.conf
        self.tunables: dict[str, int] = dict(node.config.tunables or {})
        for spec in TUNABLES.values():
            if not spec.obsolete:
                self.tunables.setdefault(spec.name, spec.default)
        explicit = getattr(node.config.tunables, "explicit", {})
        self.explicit: set[str] = set(explicit)
        self.interval, self.limit = heartbeat_timing(self.tunables, self.explicit)
        peers = {n.pnn: Peer(n.pnn, str(n.address) if n.address else "", deleted=n.deleted)
                 for n in node.config.nodes or []}
        self.cluster = ClusterState(node.pnn, peers, self.interval * self.limit,
                                  lock_configured=bool(conf.cluster_lock))
        caps = Capability.LMASTER if conf.lmaster_capability else Capability(0)
        if conf.leader_capability:
            caps |= Capability.LEADER
        self.cluster.capabilities = int(caps)
        if conf.start_as_stopped:
            self.cluster.flags |= NodeFlag.STOPPED
        if conf.start_as_disabled:
            self.cluster.flags |= NodeFlag.PERMANENTLY_DISABLED
        self.lock: ClusterLock = make_lock(conf.cluster_lock, self._lock_lost)
        self._locking = False
        self._next_lock_try = 0.0
        self._recovered_set: frozenset[int] | None = None
        self._recovering = False
        self._last_view: Any = None
        self._told_leader = -1
        self.last_recovery = (0, 0)
        self._wake = asyncio.Event()
        self.health: dict[str, tuple[bool, str]] = {}
        self._connected: frozenset[int] = frozenset({node.pnn})
        self._view_sent = 0.0
        self.steps: tuple[RecoveryStep, ...] = STEPS
        self.bans = BanTracker()
        self._next_recovery = 0.0
        self._recovery_done = 0.0

    # -- life cycle --------------------------------------------------------------------
    async def setup(self) -> None:
        self.cluster.runstate = Runstate.SETUP
        if self.client is None:
            raise CtdbError("clusterd is not connected")
        links = await self.client.request(TRANSPORT, LinkStatusRequest())
        if not isinstance(links, LinkStatusReply):
            raise CtdbError("transportd answered the link status with the wrong message")
        now = time.monotonic()
        for link in links.links:
            if link.pnn != self.cluster.pnn:
                self.cluster.on_link(link.pnn, link.connected, now)
        self.cluster.runstate = Runstate.FIRST_RECOVERY
        self._own(self._loop())
        log.log(logs.NOTICE, "clusterd: heartbeat every %.0f ms, DISCONNECTED after %d missed",
                self.interval * 1000, self.limit)

    async def teardown(self) -> None:
        self.cluster.runstate = Runstate.SHUTDOWN
        await self.lock.release()

    async def _loop(self) -> None:
        while True:
            self._tick()
            self._wake.clear()
            try:
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _tick(self) -> None:
        now = time.monotonic()
        self.lock.check()
        decision = self.cluster.evaluate(now)
        if decision.connected != self._connected:
            for pnn in sorted(self._connected - decision.connected):
                log.log(logs.NOTICE, "node %d is DISCONNECTED", pnn)
            for pnn in sorted(decision.connected - self._connected - {self.cluster.pnn}):
                log.log(logs.NOTICE, "node %d is connected", pnn)
            self._connected = decision.connected
        self._act(decision, now)
        self._send_heartbeat(decision, now)
        self._publish_view(now)

    # -- acting on decisions --------------------------------------------------------
    def _act(self, d: Decision, now: float) -> None:
        if (d.want_lock and not self.lock.held and not self._locking
                and now >= self._next_lock_try):
            self._locking = True
            self._own(self._take_lock(now))
        elif not d.want_lock and self.lock.held and not self._locking:
            self._own(self._release_lock())
        if d.leader != self._told_leader and self.client is not None and self.client.connected:
            self._told_leader = d.leader
            self.client.send(TRANSPORT, SetLeader(d.leader))
            if d.leader == self.cluster.pnn:
                log.log(logs.NOTICE, "this node is the leader (term %d)", self.cluster.term)
                self._recovered_set = None  # a new leader recovers, as CTDB's does
            elif d.leader == NO_NODE:
                log.log(logs.NOTICE, "no leader")
            else:
                log.log(logs.NOTICE, "leader is node %d (term %d)", d.leader, self.cluster.term)
        if d.leading and not self._recovering and now >= self._next_recovery:
            active = frozenset(self.cluster.active_nodes(now))
            if active != self._recovered_set or self._awaiting_recovery(active, now):
                self._recovering = True
                self._own(self._recover(active))

    async def _start_services(self) -> bool:
        """serviced starts the file services (a node without serviced has none)."""
        if self.client is None:
            return False
        try:
            await self.client.request(Address(NODE_CURRENT, Service.SERVICED),
                                      StartServicesRequest(), timeout=SERVICES_TIMEOUT)
        except RemoteError as exc:
            if exc.code == ErrorCode.NO_SUCH_SERVICE:
                return True
            log.error("cannot start the file services: %s; trying again in %.0f s", exc,  # noqa: TRY400
                      STARTUP_RETRY)
            return False
        except CtdbError as exc:
            log.error("cannot start the file services: %s; trying again in %.0f s", exc,  # noqa: TRY400
                      STARTUP_RETRY)
            return False
        return True

    def _awaiting_recovery(self, active: frozenset[int], now: float) -> bool:
        """Whether an active node waits in FIRST_RECOVERY: it restarted while the set
        of active nodes stayed the same.  Heartbeats sent before the last recovery
        ended may still say so for a moment: those are not believed."""
        if now - self._recovery_done < RECOVERY_SETTLE:
            return False
        for pnn in active:
            if pnn == self.cluster.pnn:
                runstate = int(self.cluster.runstate)
            else:
                peer = self.cluster.peers.get(pnn)
                runstate = peer.hb.runstate if peer is not None and peer.hb else -1
            if runstate == Runstate.FIRST_RECOVERY:
                return True
        return False

    async def _take_lock(self, now: float) -> None:
        try:
            if await self.lock.try_take():
                log.log(logs.NOTICE, "took the cluster lock")
                self.cluster.lock_held = True
                self._wake.set()
            else:
                # A helper is a process: do not start one every heartbeat.
                self._next_lock_try = now + LOCK_RETRY
                log.info("cluster lock not taken: %s", self.lock.detail)
        finally:
            self._locking = False
        self._next_lock_try = 0.0

    async def _release_lock(self) -> None:
        await self.lock.release()
        self.cluster.lock_held = False
        log.log(logs.NOTICE, "released the cluster lock")

    def _lock_lost(self, why: str) -> None:
        log.error("lost the cluster lock: %s; stepping down", why)
        self.cluster.lock_held = False
        self._wake.set()

    async def _recover(self, active: frozenset[int]) -> None:
        """The leader's recovery: new generation, startrecovery, steps, recovered."""
        try:
            started = time.time()
            generation = self.cluster.generation
            while generation in (0, 1, self.cluster.generation):
                generation = random.randint(2, 0xFFFFFFFF)  # noqa: S311 - not a secret
            term = self.cluster.term
            log.log(logs.NOTICE, "recovery of nodes %s, generation %d", sorted(active),
                    generation)
            self._broadcast(StartRecovery(generation, term))
            failed, ban = await run_steps(
                self.steps, sorted(active),
                lambda pnn, step: self._run_step(pnn, step, generation), self.bans)
            for pnn in sorted(ban):
                seconds = self.tunables.get("RecoveryBanPeriod", 300)
                log.error("node %d failed recovery %d times in a row; banning it for %d s",
                          pnn, self.bans.limit, seconds)
                self._order(pnn, BanRequest(seconds))
            if failed:
                log.error("recovery failed on nodes %s; retrying", sorted(failed))
                self._next_recovery = time.monotonic() + RECOVERY_RETRY
                return
            self._broadcast(Recovered(generation, term, int(started * 1e6),
                                      int(time.time() * 1e6)))
            self._recovered_set = active
            self._recovery_done = time.monotonic()
        finally:
            self._recovering = False

    async def _run_step(self, pnn: int, step: RecoveryStep, generation: int) -> Outcome:
        if self.client is None:
            return Outcome.FAILED
        try:
            await self.client.request(Address(pnn, step.service),
                                      RecoveryStepRequest(generation, step.name),
                                      timeout=step.timeout, generation=self.cluster.term)
        except RemoteError as exc:
            if exc.code == ErrorCode.NO_SUCH_SERVICE:
                return Outcome.SKIPPED
            log.warning("node %d: recovery step %s failed: %s", pnn, step.name, exc)
            return Outcome.FAILED
        except CtdbError as exc:
            log.warning("node %d: recovery step %s failed: %s", pnn, step.name, exc)
            return Outcome.FAILED
        return Outcome.OK

    def _order(self, pnn: int, body: Any) -> None:
        if self.client is not None and self.client.connected:
            self.client.send(Address(pnn, Service.CLUSTERD), body, generation=self.cluster.term)

    def _broadcast(self, body: Any) -> None:
        if self.client is not None and self.client.connected:
            self.client.send(ALL_CLUSTERDS, body, generation=self.cluster.term)

    def _send_heartbeat(self, d: Decision, now: float) -> None:
        if self.client is None or not self.client.connected:
            return
        s = self.cluster
        ban = max(0, int(s.ban_until - now)) if s.ban_until > now else 0
        hb = Heartbeat(pnn=s.pnn, flags=s.own_flags(now), runstate=int(s.runstate),
                       capabilities=s.capabilities, term=s.term, leader=s.leader, vote=s.vote,
                       generation=s.generation, recovery_mode=s.recovery_mode,
                       lock_held=self.lock.held, connected=sorted(d.connected),
                       ban_seconds=ban)
        self.client.publish(hb, NODE_ALL)

    def view(self, now: float | None = None) -> ClusterView:
        now = time.monotonic() if now is None else now
        s = self.cluster
        d = s.evaluate(now) if now is not None else None
        nodes = [NodeInfo(p.pnn, p.address, s.flags_of(p.pnn, now),
                          int(p.hb.runstate) if p.hb and p.pnn != s.pnn else int(s.runstate))
                 for p in sorted(s.peers.values(), key=lambda p: p.pnn)]
        lock = LockInfo(self.lock.configured, self.lock.held,
                        bool(d.lock_side) if d else False, self.lock.detail)
        vnnmap = [p for p in s.active_nodes(now)
                  if s.capabilities_of(p) & Capability.LMASTER]
        return ClusterView(s.pnn, s.generation, s.term, s.leader, s.recovery_mode,
                           int(s.runstate), nodes, vnnmap, lock, *self.last_recovery)

    def _publish_view(self, now: float) -> None:
        """On every change, and every second for subscribers that came late."""
        view = self.view(now)
        stale = now - self._view_sent > 1.0
        if (view != self._last_view or stale) and self.client is not None \
                and self.client.connected:
            self._last_view = view
            self._view_sent = now
            self.client.publish(view, NODE_CURRENT)

    # -- messages ------------------------------------------------------------------------
    @handles(Heartbeat)
    def _heartbeat(self, msg: Message) -> None:
        hb: Heartbeat = msg.body
        if hb.pnn != msg.src.node or hb.pnn == self.cluster.pnn:
            return
        peer = self.cluster.peers.get(hb.pnn)
        before = peer.hb if peer is not None else None
        self.cluster.on_heartbeat(hb, time.monotonic())
        if before is None or (before.flags, before.runstate) != (hb.flags, hb.runstate):
            self._wake.set()  # a node's state changed: publish the view now, not next tick
        if (hb.leader == hb.pnn == self.cluster.leader and hb.term >= self.cluster.term
                and hb.generation != 1):
            self.cluster.generation = hb.generation  # follow the leader's generation

    @handles(LinkEvent)
    def _link(self, msg: Message) -> None:
        ev: LinkEvent = msg.body
        self.cluster.on_link(ev.pnn, ev.connected, time.monotonic())
        self._wake.set()

    def _fenced(self, msg: Message, term: int) -> bool:
        if term < self.cluster.term:
            log.warning("refused an order from node %d with stale term %d (current %d)",
                        msg.src.node, term, self.cluster.term)
            return True
        return False

    @handles(StartRecovery)
    def _start_recovery(self, msg: Message) -> None:
        body: StartRecovery = msg.body
        if self._fenced(msg, body.term):
            return
        self.cluster.recovery_mode = 1

    @handles(Recovered)
    def _recovered(self, msg: Message) -> None:
        body: Recovered = msg.body
        if self._fenced(msg, body.term):
            return
        self.cluster.generation = body.generation
        self.cluster.recovery_mode = 0
        self.last_recovery = (body.started_us, body.finished_us)
        if self.cluster.runstate == Runstate.FIRST_RECOVERY:
            self.cluster.runstate = Runstate.STARTUP
            log.log(logs.NOTICE, "first recovery done; running the startup event")
            self._own(self._startup())
        self._wake.set()

    async def _startup(self) -> None:
        """The startup event until it succeeds (as CTDB, every few seconds); then the
        node is RUNNING and may host public addresses."""
        timeout = float(self.tunables.get("EventScriptTimeout", 30))
        while self.client is not None:
            if await run_event(self.client, NODE_CURRENT, "startup", timeout=timeout):
                if await self._start_services():
                    break
            else:
                log.error("startup event failed; trying again in %.0f s", STARTUP_RETRY)
            await asyncio.sleep(STARTUP_RETRY)
        self.cluster.runstate = Runstate.RUNNING
        log.log(logs.NOTICE, "node is RUNNING")
        self._wake.set()

    @handles(ClusterViewRequest)
    def _view(self, _msg: Message) -> ClusterView:
        return self.view()

    @handles(SetFlagsRequest)
    def _set_flags(self, msg: Message) -> Ack:
        body: SetFlagsRequest = msg.body
        allowed = int(OWN_FLAGS) & ~int(NodeFlag.BANNED)
        if (body.set | body.clear) & ~allowed:
            raise CtdbError("only UNHEALTHY, DISABLED and STOPPED may be set or cleared")
        if (body.set | body.clear) & NodeFlag.UNHEALTHY:
            # UNHEALTHY is derived from health reports; the admin's is one more source.
            was = is_unhealthy(self.health)
            self.health["admin"] = (not body.set & NodeFlag.UNHEALTHY, "set by the admin")
            self._apply_health(was)
        own = int(NodeFlag.UNHEALTHY)
        self.cluster.flags = ((self.cluster.flags | body.set) & ~body.clear & ~own) | (
            self.cluster.flags & own)
        log.log(logs.NOTICE, "node flags now %#x", self.cluster.own_flags(time.monotonic()))
        self._wake.set()
        return Ack()

    @handles(HealthReport)
    def _health(self, msg: Message) -> Ack:
        body: HealthReport = msg.body
        was = is_unhealthy(self.health)
        self.health[body.source] = (body.healthy, body.reason)
        self._apply_health(was)
        return Ack()

    def _apply_health(self, was: bool) -> None:
        now_unhealthy = is_unhealthy(self.health)
        if now_unhealthy:
            self.cluster.flags |= NodeFlag.UNHEALTHY
        else:
            self.cluster.flags &= ~int(NodeFlag.UNHEALTHY)
        if now_unhealthy != was:
            log.log(logs.NOTICE, "node is %s%s", "UNHEALTHY" if now_unhealthy else "healthy",
                    f" ({'; '.join(unhealthy_sources(self.health))})" if now_unhealthy else "")
            self._wake.set()

    @handles(BanRequest)
    def _ban(self, msg: Message) -> Ack:
        seconds: int = msg.body.seconds
        now = time.monotonic()
        self.cluster.ban_until = now + seconds if seconds else 0.0
        log.log(logs.NOTICE, "banned for %d seconds" if seconds else "ban lifted%s",
                seconds if seconds else "")
        self._wake.set()
        return Ack()

    @handles(RunstateRequest)
    def _runstate(self, _msg: Message) -> RunstateReply:
        return RunstateReply(int(self.cluster.runstate))

    @handles(CapabilitiesRequest)
    def _capabilities(self, _msg: Message) -> CapabilitiesReply:
        return CapabilitiesReply(self.cluster.capabilities)

    @handles(SetLeaderRoleRequest)
    def _leader_role(self, msg: Message) -> Ack:
        if msg.body.enabled:
            self.cluster.capabilities |= Capability.LEADER
        else:
            self.cluster.capabilities &= ~int(Capability.LEADER)
        self._wake.set()
        return Ack()

    @handles(RecoverRequest)
    def _recover_request(self, _msg: Message) -> Ack:
        if self.cluster.leader != self.cluster.pnn:
            raise CtdbError("this node is not the leader")
        self._recovered_set = None
        self._wake.set()
        return Ack()

    @handles(ReloadNodesRequest)
    async def _reload_nodes(self, _msg: Message) -> Ack:
        """Take up a changed nodes file: transportd first (links), then membership."""
        if self.client is None:
            raise CtdbError("clusterd is not connected")
        nodes = load_nodes(self.node.config.base / "nodes")
        await self.client.request(TRANSPORT, ReloadNodes())
        for n in nodes:
            peer = self.cluster.peers.get(n.pnn)
            if peer is None:
                self.cluster.peers[n.pnn] = Peer(n.pnn, str(n.address or ""),
                                                 deleted=n.deleted)
                log.log(logs.NOTICE, "node %d added", n.pnn)
            elif n.deleted and not peer.deleted:
                peer.deleted = True
                log.log(logs.NOTICE, "node %d deleted", n.pnn)
            elif not n.deleted and peer.deleted:
                # A deleted node's line uncommented again: it is back (its PNN kept).
                self.cluster.peers[n.pnn] = Peer(n.pnn, str(n.address or ""))
                log.log(logs.NOTICE, "node %d added back", n.pnn)
        self._wake.set()
        return Ack()

    @handles(ListTunablesRequest)
    def _list_tunables(self, _msg: Message) -> TunableList:
        return TunableList([Tunable(name, value) for name, value in self.tunables.items()])

    @handles(GetTunableRequest)
    def _get_tunable(self, msg: Message) -> TunableValue:
        spec = find_tunable(msg.body.name)
        if spec is None or spec.obsolete:
            raise CtdbError(f"Unable to get tunable variable '{msg.body.name}'")
        return TunableValue(spec.name, self.tunables[spec.name])

    @handles(SetTunableRequest)
    def _set_tunable(self, msg: Message) -> Ack:
        spec = find_tunable(msg.body.name)
        if spec is None or spec.obsolete:
            raise CtdbError(f"Unable to set tunable variable '{msg.body.name}'")
        if not spec.minimum <= msg.body.value <= spec.maximum:
            raise CtdbError(f"{spec.name} must be {spec.minimum} to {spec.maximum}")
        self.tunables[spec.name] = msg.body.value
        self.explicit.add(spec.name)
        self.interval, self.limit = heartbeat_timing(self.tunables, self.explicit)
        self.cluster.timeout = self.interval * self.limit
        return Ack()

    def status_items(self) -> list[KeyValue]:
        s = self.cluster
        return [KeyValue("leader", str(s.leader)), KeyValue("term", str(s.term)),
                KeyValue("generation", str(s.generation)),
                KeyValue("lock", self.lock.detail)]


def create(node: NodeContext) -> Clusterd:
    return Clusterd(node)
