"""failoverd: public addresses on the node, and takeover runs when this node leads.

Every node's failoverd holds its addresses as kernel leases (``valid_lft``) that it
renews only while ``may_hold`` says so, tells every other failoverd what it may host
and what it holds, and obeys the leader's TakeIP and ReleaseIP orders (refusing a
stale term).  The leader's failoverd computes the allocation (``alloc``) from the
cluster view and everyone's state, and moves addresses by the rules of ``takeover``:
releases first, then takeovers; addresses of a lost node only once their lease lapsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from typing import Any

from ctdb import logs
from ctdb.clusterd.flags import NO_NODE, NodeFlag, Runstate
from ctdb.clusterd.messages import ClusterView, ClusterViewRequest, HealthReport, Heartbeat
from ctdb.config.paths import PUBLIC_ADDRESSES_FILE
from ctdb.config.public_addresses import (
    PublicAddress,
    load_public_addresses,
    parse_public_addresses,
)
from ctdb.config.tunables import TUNABLES, heartbeat_timing
from ctdb.errors import ConfigError, CtdbError
from ctdb.eventd.client import run_event
from ctdb.failoverd import alloc
from ctdb.failoverd.gate import Gate
from ctdb.failoverd.links import hostable, link_health
from ctdb.failoverd.messages import (
    UNHOSTED,
    AddIPRequest,
    AddTicklesRequest,
    ConnInfo,
    DelIPRequest,
    GetTicklesRequest,
    IfaceInfo,
    IfacesReply,
    IfacesRequest,
    IPEntry,
    IPList,
    IPListRequest,
    IPReallocateRequest,
    IPState,
    MoveIPRequest,
    PublicChanged,
    PublicIPInfo,
    ReleaseIP,
    ReloadIPsRequest,
    SetIfaceLinkRequest,
    TakeIP,
    TickleList,
    Tickles,
)
from ctdb.failoverd.netlink import (
    LinkEvent,
    Netlink,
    NetlinkError,
    gratuitous_arp,
    unsolicited_na,
)
from ctdb.failoverd.takeover import free_after, may_hold, plan
from ctdb.failoverd.tickle import TICKLE_COUNT, Conn, read_connections, send_tickles
from ctdb.node import NodeContext
from ctdb.protocol import NODE_ALL, NODE_CURRENT, Ack, Address, KeyValue, Message, Service
from ctdb.tdaemon import Daemon, handles

log = logging.getLogger(__name__)

# Seconds added to every lease bound: the kernel checks address lifetimes lazily, so a
# lapsed lease can outlive its valid_lft by up to ~1.1 s (docs/netlink.md).
MARGIN = 1.2
GATE_MARGIN = 0.1  # seconds added to the gate's bound: delayed heartbeats, queued renewals
GATE_RENEWALS = 4  # renewals of the gate per IPGateMs
STATE_INTERVAL = 0.5  # seconds between IPState broadcasts
GARP_COUNT = 3
TRACK_INTERVAL = 0.5  # seconds between reads of this node's connections
TRACK_REFRESH = 5.0  # seconds after which an unchanged list is sent again
ALL_NODES_EVENT_TIMEOUT = 3.0  # seconds for startipreallocate/ipreallocated on a node
WAITING_POLL = 0.01  # seconds between takeover runs while a lost node's lease lapses



def _ip(text: str) -> str:
    """The address part of ``IP/bits``."""
    return text.split("/", 1)[0]


class Failoverd(Daemon):
    name = "failoverd"
    service = Service.FAILOVERD
    subscriptions = (Heartbeat, ClusterView, IPState, Tickles)

    def __init__(self, node: NodeContext) -> None:
        super().__init__(node.run_dir)
        self.node = node
        config = node.config
        self.disabled = config.conf.failover_disabled
        self.public = {_ip(str(p.address)): p for p in config.public_addresses or []}
        tunables = dict(config.tunables or {})
        for spec in TUNABLES.values():
            if not spec.obsolete:
                tunables.setdefault(spec.name, spec.default)
        self.tunables = tunables
        explicit = getattr(config.tunables, "explicit", {})
        interval, _limit = heartbeat_timing(tunables, explicit)
        # A node renews its leases only on a leader heartbeat this fresh; the leader's
        # bound on a lost node's addresses grows with it, so keep it short.
        self.detection = 2 * interval
        self.lease = max(1, tunables.get("IPLeaseSeconds", 1))
        self.gate = Gate(int(tunables.get("IPGateMs", 0)))
        self.gate_ms = 0  # the gate's lease once it is installed
        self.takeover_timeout = float(tunables["TakeoverTimeout"])
        self.event_timeout = float(tunables["EventScriptTimeout"])
        self.netlink = Netlink()
        self.held: dict[str, str] = {}  # address -> interface it is on
        self.links: dict[str, bool] = {}  # interface -> link up
        self.conns: dict[int, frozenset[Conn]] = {}  # each node's connections to its addresses
        self.extra_conns: frozenset[Conn] = frozenset()  # added by ctdb addtickle
        self.link_overrides: dict[str, bool] = {}  # ctdb setifacelink, until the next event
        self.view: ClusterView | None = None
        self.leader_heard = 0.0
        self.leader_hears: frozenset[int] = frozenset()
        self.states: dict[int, IPState] = {}
        self.lost_at: dict[int, float] = {}
        self.pinned: dict[str, int] = {}
        self._pinned_generation = 0
        self._run_lock = asyncio.Lock()
        self._addresses = asyncio.Lock()  # serialises every change to held addresses
        self._wake = asyncio.Event()
        self._dirty = asyncio.Event()  # the leader should run a takeover
        self._waiting = False  # addresses wait for a lost node's lease to lapse
        self._unconfirmed_since: float | None = None
        self._last_state: Any = None

    # -- life cycle ------------------------------------------------------------------------
    async def setup(self) -> None:
        await self.netlink.open()
        if self.client is not None:
            try:
                view = await self.client.request(Address(NODE_CURRENT, Service.CLUSTERD),
                                                 ClusterViewRequest(), timeout=5.0)
                self._take_view(view)
            except CtdbError as exc:
                log.info("no cluster view yet (%s); waiting for clusterd's broadcast", exc)
        if await self.gate.open(self.public):
            self.gate_ms = self.gate.timeout_ms
            self._own(self._gate_loop())
        # A (re)starting node hosts nothing: drop configured addresses left behind.
        for existing in await self.netlink.addresses():
            address = str(existing.address.ip)
            if address in self.public:
                await self.netlink.del_address(existing.interface, existing.address)
                log.log(logs.NOTICE, "removed leftover public address %s", address)
        self.links = await self.netlink.links()
        self._links_changed()
        self._own(self._link_loop())
        self._own(self._track_loop())
        self._own(self._renew_loop())
        self._own(self._leader_loop())
        log.log(logs.NOTICE, "failoverd: %d public addresses, lease %d s%s", len(self.public),
                self.lease, " (failover disabled)" if self.disabled else "")

    async def teardown(self) -> None:
        for address in list(self.held):
            await self._drop(address)
        await self.gate.close()
        await self.netlink.close()

    # -- this node's leases --------------------------------------------------------------
    def _may_hold(self, now: float) -> bool:
        v = self.view
        if v is None or self.disabled:
            return False
        own = next((n.flags for n in v.nodes if n.pnn == self.pnn), 0)
        if own & (NodeFlag.BANNED | NodeFlag.STOPPED):
            return False
        return may_hold(me=self.pnn, leader=None if v.leader == NO_NODE else v.leader,
                        lock_side=v.lock.lock_side, leader_heard=self.leader_heard,
                        leader_hears=self.leader_hears, now=now, detection=self.detection)

    def _must_release(self) -> bool:
        """Off the lock side, stopped, banned or disabled: give everything up at once.
        (Merely unconfirmed, during a leader election, is not this: see _renew_loop.)"""
        v = self.view
        if v is None or self.disabled or not v.lock.lock_side:
            return True
        own = next((n.flags for n in v.nodes if n.pnn == self.pnn), 0)
        return bool(own & (NodeFlag.BANNED | NodeFlag.STOPPED))

    def _stale(self, now: float) -> bool:
        """Unconfirmed for so long that even the kernel's lifetimes have run out: the
        addresses are gone and may be given to another node; stop claiming them.
        (Until then a leader that hears this node confirms it and they come back.)"""
        if self._may_hold(now):
            self._unconfirmed_since = None
            return False
        if self._unconfirmed_since is None:
            self._unconfirmed_since = now
        return now - self._unconfirmed_since > self.lease + MARGIN

    async def _renew_loop(self) -> None:
        """Renew the kernel lifetimes while confirmed.  Without a confirmation (the leader
        lost, an election under way) the leases run on: a new leader's confirmation
        soon enough keeps the addresses served; if none comes, they lapse by
        themselves and are released here."""
        while True:
            now = time.monotonic()
            if self.held and (self._must_release() or self._stale(now)):
                log.warning("may no longer hold public addresses (%s); releasing %s",
                            "off the lock side, stopped or banned" if self._must_release()
                            else "no leader confirmed this node", ", ".join(sorted(self.held)))
                for address in list(self.held):
                    await self._drop(address, event="background")
            if not self._may_hold(now):
                await self._sleep_renew()
                continue
            for address in list(self.held):
                async with self._addresses:
                    iface = self.held.get(address)
                    if iface is None:
                        continue  # released meanwhile: renewing would bring it back
                    try:
                        await self.netlink.add_address(iface, self._interface(address),
                                                       valid_lft=self.lease)
                    except CtdbError as exc:
                        log.error("cannot renew %s on %s: %s", address, iface, exc)  # noqa: TRY400
            self._publish_state(force=False)
            await self._sleep_renew()

    async def _sleep_renew(self) -> None:
        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
        # that arrives as the event fires, and the loop would never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.lease / 3):
                await self._wake.wait()
        self._wake.clear()

    def _interface(self, address: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
        return self.public[address].address

    async def _take(self, address: str) -> None:
        entry = self.public.get(address)
        if entry is None:
            raise CtdbError(f"{address} is not in this node's public_addresses")
        links = await self.netlink.links()
        iface = next((i for i in entry.interfaces if links.get(i)), None)
        if iface is None:
            raise CtdbError(f"no interface of {address} is up ({','.join(entry.interfaces)})")
        async with self._addresses:
            self.gate.change(address, live=True)  # reachable the moment it is added
            await self.netlink.add_address(iface, entry.address, valid_lft=self.lease)
            self.held[address] = iface
        log.log(logs.NOTICE, "took %s on %s", entry.address, iface)
        self._own(self._announce(iface, entry.address.ip))
        self._own(self._tickle(address))
        self._publish_state(force=True)
        if not await self._event("takeip", iface, entry.address):
            await self._drop(address, event="none")
            raise CtdbError(f"takeip event for {address} failed")

    async def _event(self, event: str, iface: str,
                     address: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> bool:
        """takeip/releaseip IFACE IP BITS for this node's event scripts."""
        if self.client is None:
            return True
        return await run_event(self.client, NODE_CURRENT, event,
                               [iface, str(address.ip), str(address.network.prefixlen)],
                               timeout=self.event_timeout)

    async def _announce(self, iface: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address
                        ) -> None:
        """Gratuitous ARP / unsolicited NA, a few times, so switches and clients learn."""
        for i in range(GARP_COUNT):
            try:
                if isinstance(ip, ipaddress.IPv4Address):
                    await gratuitous_arp(iface, ip, count=1)
                else:
                    await unsolicited_na(iface, ip, count=1)
            except (CtdbError, OSError) as exc:
                log.warning("cannot announce %s on %s: %s", ip, iface, exc)
                return
            if i + 1 < GARP_COUNT:
                await asyncio.sleep(0.1 * (i + 1))

    async def _drop(self, address: str, event: str = "wait") -> None:
        """Remove the address, then run releaseip ("wait" for it, run it in the
        "background", or "none"): the address goes at once, whatever the scripts do."""
        async with self._addresses:
            iface = self.held.pop(address, None)
            if iface is None:
                return
            self.gate.change(address, live=False)  # dark at once, before it goes
            entry = self.public.get(address)
            if entry is not None:
                try:
                    await self.netlink.del_address(iface, entry.address)
                except CtdbError as exc:
                    log.error("cannot release %s: %s", address, exc)  # noqa: TRY400
        log.log(logs.NOTICE, "released %s", address)
        self._publish_state(force=True)
        if event != "none" and entry is not None:
            released = self._released(address, iface, entry.address)
            if event == "background":
                self._own(released)
            else:
                await released

    async def _released(self, address: str, iface: str,
                        interface: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> None:
        if not await self._event("releaseip", iface, interface):
            log.error("releaseip event for %s failed", address)

    def _my_state(self) -> IPState:
        up = set(hostable({a: p.interfaces for a, p in self.public.items()},
                          self._effective_links()))
        return IPState(self.pnn, [PublicIPInfo(str(p.address), ",".join(p.interfaces))
                                  for a, p in self.public.items() if a in up],
                       sorted(self.held), self.gate_ms)

    async def _gate_loop(self) -> None:
        """Renew the gate's lease several times per lease while this node may hold its
        addresses; stop renewing (they go dark within IPGateMs) when it may not."""
        period = self.gate_ms / 1000 / GATE_RENEWALS
        while True:
            try:
                if not self.gate.active:
                    await self._reopen_gate()
                if self.held and self.gate_ms:
                    if self._must_release():
                        self.gate.renew([])  # dark at once
                    elif self._may_hold(time.monotonic()):
                        self.gate.renew(self.held)
                    # else: unconfirmed; the lease runs on until a leader confirms this node
            except Exception:
                log.exception("renewing the nftables gate failed")
            await asyncio.sleep(period)

    async def _reopen_gate(self) -> None:
        """The gate broke (nft died, or a firewall reload flushed its tables): tell the
        leader at once that this node's addresses are held by kernel lifetimes alone,
        then install it again."""
        if self.gate_ms:
            log.error("the nftables gate is broken; installing it again")
            self.gate_ms = 0
            self._publish_state(force=True)
        if await self.gate.open(self.public):
            self.gate_ms = self.gate.timeout_ms
            if self._may_hold(time.monotonic()):
                self.gate.renew(self.held)
            self._publish_state(force=True)
        else:
            await asyncio.sleep(1.0)  # nft is gone: do not spin

    # -- connections and tickle ACKs (the conntrackd role) -----------------------------------
    async def _track_loop(self) -> None:
        """Share the connections to the addresses held here: on change, and now and then
        for nodes that came late."""
        last: frozenset[Conn] | None = None
        sent = 0.0
        while True:
            # /proc/net/tcp can be large (TIME_WAIT): read it off the event loop, whose
            # lateness would eat into the gate's lease.
            conns = frozenset(await asyncio.to_thread(read_connections, list(self.held))) \
                if self.held else frozenset()
            conns |= {c for c in self.extra_conns if c.server in self.held}
            now = time.monotonic()
            if (conns != last or now - sent > TRACK_REFRESH) and self.client is not None \
                    and self.client.connected:
                self.conns[self.pnn] = conns
                self.client.publish(Tickles(self.pnn, [ConnInfo(c.server, c.server_port,
                                                                c.client, c.client_port)
                                                       for c in sorted(conns)]), NODE_ALL)
                last, sent = conns, now
            await asyncio.sleep(TRACK_INTERVAL)

    @handles(Tickles)
    def _tickles(self, msg: Message) -> None:
        body: Tickles = msg.body
        if body.pnn == msg.src.node and body.pnn != self.pnn:
            self.conns[body.pnn] = frozenset(
                Conn(c.server, c.server_port, c.client, c.client_port) for c in body.conns)

    def _known(self, address: str, port: int = 0, others_only: bool = False) -> set[Conn]:
        return {c for pnn, conns in self.conns.items() if not (others_only and pnn == self.pnn)
                for c in conns if c.server == address and port in (0, c.server_port)}

    async def _tickle(self, address: str) -> None:
        """The previous holder's clients of *address*: reset them so they reconnect."""
        conns = self._known(address, others_only=True)
        if not conns:
            return
        sent = 0
        try:
            for i in range(TICKLE_COUNT):  # spaced as the ARP announcements are
                sent += await asyncio.to_thread(send_tickles, conns, 1)
                if i + 1 < TICKLE_COUNT:
                    await asyncio.sleep(0.1 * (i + 1))
        except OSError as exc:
            log.error("cannot send tickle ACKs for %s: %s", address, exc)  # noqa: TRY400
            return
        log.log(logs.NOTICE, "sent %d tickle ACKs to %d clients of %s", sent, len(conns),
                address)

    @handles(SetIfaceLinkRequest)
    def _set_iface_link(self, msg: Message) -> Ack:
        body: SetIfaceLinkRequest = msg.body
        if body.interface not in self._interfaces():
            raise CtdbError(f"Interface {body.interface} not configured on node {self.pnn}")
        if self._effective_links().get(body.interface) != body.up:
            log.log(logs.NOTICE, "interface %s set %s by ctdb setifacelink", body.interface,
                    "up" if body.up else "down")
        self.link_overrides[body.interface] = body.up
        self._links_changed()
        return Ack()

    @handles(AddTicklesRequest)
    def _add_tickles(self, msg: Message) -> Ack:
        body: AddTicklesRequest = msg.body
        conns = {Conn(c.server, c.server_port, c.client, c.client_port) for c in body.conns}
        self.extra_conns = (self.extra_conns | conns) if body.add else (self.extra_conns - conns)
        return Ack()

    @handles(GetTicklesRequest)
    def _get_tickles(self, msg: Message) -> TickleList:
        body: GetTicklesRequest = msg.body
        return TickleList(body.address, [ConnInfo(c.server, c.server_port, c.client,
                                                  c.client_port)
                                         for c in sorted(self._known(body.address, body.port))])

    # -- link state ------------------------------------------------------------------------
    async def _link_loop(self) -> None:
        """Follow the public interfaces' links from the kernel's events."""
        stream = self.netlink.watch()
        self.links = await self.netlink.links()  # what changed before the subscription
        self._links_changed()
        try:
            while True:
                try:
                    event = await anext(stream)
                except NetlinkError as exc:
                    log.warning("%s", exc)  # events were lost: read the links again
                    self.links = await self.netlink.links()
                    self._links_changed()
                    continue
                except StopAsyncIteration:
                    return
                if isinstance(event, LinkEvent) and self.links.get(event.interface) != event.up:
                    self.links[event.interface] = event.up
                    self.link_overrides.pop(event.interface, None)
                    if event.interface in self._interfaces():
                        log.log(logs.NOTICE, "public interface %s is %s", event.interface,
                                "up" if event.up else "down")
                    self._links_changed()
        finally:
            stream.close()

    def _interfaces(self) -> set[str]:
        return {i for p in self.public.values() for i in p.interfaces}

    def _effective_links(self) -> dict[str, bool]:
        return {**self.links, **self.link_overrides}

    def _links_changed(self) -> None:
        """Tell clusterd (health input ``interfaces``) and the leader (hostable addresses)."""
        healthy, reason = link_health(self._interfaces(), self._effective_links())
        if self.client is not None and self.client.connected:
            self.client.send(Address(NODE_CURRENT, Service.CLUSTERD),
                             HealthReport("interfaces", healthy, reason))
        self._publish_state(force=True)

    def _publish_state(self, force: bool) -> None:
        state = self._my_state()
        self.states[self.pnn] = state
        now = time.monotonic()
        if self.client is None or not self.client.connected:
            return
        if force or state != self._last_state or now - getattr(self, "_last_sent", 0) > \
                STATE_INTERVAL:
            self._last_state = state
            self._last_sent = now
            self.client.publish(state, NODE_ALL)

    # -- inputs -----------------------------------------------------------------------------
    @handles(Heartbeat)
    def _heartbeat(self, msg: Message) -> None:
        hb: Heartbeat = msg.body
        if self.view is not None and hb.pnn == self.view.leader == msg.src.node:
            self.leader_heard = time.monotonic()
            self.leader_hears = frozenset(hb.connected)

    @handles(ClusterView)
    def _cluster_view(self, msg: Message) -> None:
        if msg.src.node == self.pnn:
            self._take_view(msg.body)

    def _take_view(self, view: ClusterView) -> None:
        now = time.monotonic()
        old = self.view
        self.view = view
        for n in view.nodes:
            if n.flags & NodeFlag.DISCONNECTED:
                self.lost_at.setdefault(n.pnn, now)
            else:
                self.lost_at.pop(n.pnn, None)
        if view.leader == self.pnn:
            self.leader_heard = now
            self.leader_hears = frozenset(n.pnn for n in view.nodes
                                          if not n.flags & NodeFlag.DISCONNECTED)
        if old is None or old.generation != view.generation:
            self.pinned.clear()
        if old is None or (old.leader, old.generation, [(n.pnn, n.flags) for n in old.nodes]) \
                != (view.leader, view.generation, [(n.pnn, n.flags) for n in view.nodes]):
            self._dirty.set()
        self._wake.set()

    @handles(IPState)
    def _ip_state(self, msg: Message) -> None:
        state: IPState = msg.body
        if state.pnn == msg.src.node and state.pnn != self.pnn:
            if self.states.get(state.pnn) != state:
                self._dirty.set()
            self.states[state.pnn] = state

    # -- orders from the leader ------------------------------------------------------------
    def _check_order(self, msg: Message) -> None:
        v = self.view
        if v is None or msg.src.node != v.leader:
            raise CtdbError(f"node {msg.src.node} is not the leader")
        if msg.generation < v.term:
            raise CtdbError(f"stale order (term {msg.generation}, current {v.term})")

    @handles(TakeIP)
    async def _take_ip(self, msg: Message) -> Ack:
        self._check_order(msg)
        if not self._may_hold(time.monotonic()):
            raise CtdbError("this node may not hold public addresses now")
        address = _ip(msg.body.address)
        if address not in self.held:
            await self._take(address)
        return Ack()

    @handles(ReleaseIP)
    async def _release_ip(self, msg: Message) -> Ack:
        self._check_order(msg)
        # The leader takes the address elsewhere once this answers: answer as soon as
        # it is gone from here, and let the releaseip scripts run meanwhile.
        await self._drop(_ip(msg.body.address), event="background")
        return Ack()

    @handles(IPListRequest)
    def _ip_list(self, _msg: Message) -> IPList:
        entries: dict[str, IPEntry] = {}
        for _pnn, state in sorted(self.states.items()):
            for info in state.can_host:
                address = _ip(info.address)
                entries.setdefault(address, IPEntry(address, UNHOSTED, info.interfaces, "",
                                                    address in self.public))
        for pnn, state in sorted(self.states.items()):
            for address in state.held:
                if address in entries and self._connected(pnn):
                    e = entries[address]
                    active = self.held.get(address, "") if pnn == self.pnn else ""
                    entries[address] = IPEntry(address, pnn, e.interfaces, active, e.local)
        return IPList(self.pnn, [entries[k] for k in sorted(entries, key=_sort_key)])

    @handles(IfacesRequest)
    async def _ifaces(self, _msg: Message) -> IfacesReply:
        """The interfaces this node's public addresses may use (CTDB's ``ifaces``)."""
        names = sorted({i for p in self.public.values() for i in p.interfaces})
        links = {**await self.netlink.links(), **self.link_overrides}
        held = list(self.held.values())
        return IfacesReply(self.pnn, [IfaceInfo(n, links.get(n, False), held.count(n))
                                      for n in names])

    @handles(MoveIPRequest)
    async def _move_ip(self, msg: Message) -> Ack:
        v = self.view
        if v is None or v.leader != self.pnn:
            raise CtdbError("this node is not the leader")
        body: MoveIPRequest = msg.body
        state = self.states.get(body.pnn)
        if state is None or _ip(body.address) not in {_ip(i.address) for i in state.can_host}:
            raise CtdbError(f"node {body.pnn} cannot host {body.address}")
        self.pinned[_ip(body.address)] = body.pnn
        await self._takeover_run()
        return Ack()

    # -- changing the public addresses -----------------------------------------------------
    async def _set_public(self, new: dict[str, PublicAddress]) -> PublicChanged:
        """Offer *new* from now on: addresses no longer offered are released first."""
        removed = sorted(set(self.public) - set(new), key=_sort_key)
        added = sorted(set(new) - set(self.public), key=_sort_key)
        for address in removed:
            await self._drop(address, event="background")
        self.public = new
        self.gate.set_public(new)
        if removed or added:
            log.log(logs.NOTICE, "public addresses: added %s, removed %s",
                    ", ".join(added) or "none", ", ".join(removed) or "none")
        self._links_changed()  # offers what is hostable now, tells the leader
        return PublicChanged(added, removed)

    @handles(ReloadIPsRequest)
    async def _reload_ips(self, _msg: Message) -> PublicChanged:
        path = self.node.config.base / PUBLIC_ADDRESSES_FILE
        try:
            entries = load_public_addresses(path)
        except FileNotFoundError:
            entries = []
        except (OSError, ConfigError) as exc:
            raise CtdbError(f"cannot reload {path}: {exc}") from None
        return await self._set_public({_ip(str(p.address)): p for p in entries})

    @handles(AddIPRequest)
    async def _add_ip(self, msg: Message) -> PublicChanged:
        body: AddIPRequest = msg.body
        try:
            entry = parse_public_addresses(f"{body.address} {body.interfaces}\n", "addip")[0]
        except (ConfigError, IndexError) as exc:
            raise CtdbError(str(exc)) from None
        address = _ip(str(entry.address))
        if address in self.public:
            raise CtdbError(f"Node already knows about IP {address}")
        return await self._set_public({**self.public, address: entry})

    @handles(DelIPRequest)
    async def _del_ip(self, msg: Message) -> PublicChanged:
        address = _ip(msg.body.address)
        if address not in self.public:
            raise CtdbError(f"Node does not know about IP {address}")
        return await self._set_public({a: p for a, p in self.public.items() if a != address})

    @handles(IPReallocateRequest)
    async def _reallocate(self, _msg: Message) -> Ack:
        v = self.view
        if v is None or v.leader != self.pnn:
            raise CtdbError("this node is not the leader")
        await self._takeover_run()
        return Ack()

    # -- the leader's takeover runs ---------------------------------------------------------
    def _connected(self, pnn: int) -> bool:
        v = self.view
        if v is None:
            return pnn == self.pnn
        return any(n.pnn == pnn and not n.flags & NodeFlag.DISCONNECTED for n in v.nodes)

    async def _leader_loop(self) -> None:
        """Run a takeover when something changed, and every second in case."""
        last = 0.0
        while True:
            # A lost node's lease is running out: look again soon, not at once.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WAITING_POLL if self._waiting else 0.1):
                    await self._dirty.wait()
            await asyncio.sleep(0)  # Event.wait() on a set event does not yield
            now = time.monotonic()
            v = self.view
            if v is None or v.leader != self.pnn or self.disabled:
                self._dirty.clear()  # only the leader acts; a new one starts dirty
                self._waiting = False
                continue
            if not self._dirty.is_set() and not self._waiting and now - last < 1.0:
                continue
            self._dirty.clear()
            last = now
            try:
                await self._takeover_run()
            except Exception:
                log.exception("takeover run failed")

    def _request(self, now: float) -> alloc.AllocationRequest:
        v = self.view
        if v is None:
            raise CtdbError("no cluster view yet")
        size = max([n.pnn for n in v.nodes] + [0]) + 1
        nodes = []
        flags = {n.pnn: (n.flags, n.runstate) for n in v.nodes}
        for pnn in range(size):
            state = self.states.get(pnn)
            f, runstate = flags.get(pnn, (int(NodeFlag.DELETED), 0))
            public = tuple(alloc.PublicIP(ipaddress.ip_interface(i.address).ip,
                                          tuple(x for x in i.interfaces.split(",") if x))
                           for i in (state.can_host if state else []))
            eligible = alloc.eligibility(f, running=runstate == Runstate.RUNNING,
                                         lock_side=self._connected(pnn))
            nodes.append(alloc.NodeInfo(public_ips=public, eligibility=eligible))
        current = self._current()
        return alloc.AllocationRequest(
            nodes=tuple(nodes),
            current={ipaddress.ip_address(a): p for a, p in current.items()},
            tunables=alloc.Tunables.from_values(self.tunables))

    def _current(self) -> dict[str, int | None]:
        current: dict[str, int | None] = {}
        for state in self.states.values():
            for info in state.can_host:
                current.setdefault(_ip(info.address), None)
        for pnn, state in self.states.items():
            for address in state.held:
                current[address] = pnn
        return current

    async def _takeover_run(self) -> None:
        async with self._run_lock:
            now = time.monotonic()
            v = self.view
            if v is None or v.leader != self.pnn:
                return
            desired = {str(a): p for a, p in alloc.allocate(self._request(now)).items()}
            for address, pnn in self.pinned.items():
                if address in desired and self._connected(pnn):
                    desired[address] = pnn
            current = self._current()
            reachable = frozenset(p for p in self.states if self._connected(p))
            free_at = {p: self._free_after(p, t) for p, t in self.lost_at.items()}
            moves = plan(current, desired, reachable, free_at, now)
            self._waiting = bool(moves.waiting)
            if not moves.releases and not moves.takes:
                return
            started = time.monotonic()
            connected = sorted(p for p in reachable if self._connected(p))
            await self._all_nodes("startipreallocate", connected)
            if self.view is None or self.view.leader != self.pnn or self.view.term != v.term:
                return  # no longer the leader, or a newer term, while the events ran
            released = await asyncio.gather(
                *(self._order(pnn, ReleaseIP(a)) for a, pnn in moves.releases))
            failed = {a for (a, _), ok in zip(moves.releases, released, strict=True) if not ok}
            for address, _holder in moves.releases:
                if address not in failed:
                    self._forget_held(address, keep=None)
            takes = [(a, p) for a, p in moves.takes if a not in failed]
            taken = await asyncio.gather(*(self._order(pnn, TakeIP(self._full(a), ""))
                                           for a, pnn in takes))
            for (address, pnn), ok in zip(takes, taken, strict=True):
                if ok and pnn in self.states:
                    # A lost node's last report still lists it: it is not there any more.
                    self._forget_held(address, keep=pnn)
                    st = self.states[pnn]
                    self.states[pnn] = IPState(st.pnn, st.can_host, sorted({*st.held, address}),
                                               st.gate_ms)
            await self._all_nodes("ipreallocated", connected)
            log.log(logs.NOTICE, "takeover run: released %s, took %s in %.1f ms",
                    [a for a, _ in moves.releases], [(a, p) for a, p in takes],
                    (time.monotonic() - started) * 1000)

    async def _all_nodes(self, event: str, nodes: list[int]) -> None:
        """An event on every connected node at once (NFS grace, statd notify...); a
        failure is logged, and does not hold the run up."""
        if self.client is None or not nodes:
            return
        client = self.client
        # A busy or hung eventd must not hold every forced move up for long.
        results = await asyncio.gather(*(run_event(client, pnn, event,
                                                   timeout=min(self.takeover_timeout,
                                                               ALL_NODES_EVENT_TIMEOUT))
                                         for pnn in nodes))
        for pnn, ok in zip(nodes, results, strict=True):
            if not ok:
                log.error("%s event failed on node %d", event, pnn)

    def _forget_held(self, address: str, keep: int | None) -> None:
        """The leader's copy of every node's report, but *keep*'s, without *address*."""
        for pnn, st in list(self.states.items()):
            if pnn != keep and address in st.held:
                self.states[pnn] = IPState(st.pnn, st.can_host,
                                           [h for h in st.held if h != address], st.gate_ms)

    def _free_after(self, pnn: int, lost_at: float) -> float:
        """When a lost node's addresses are surely unreachable: its gate's lease when all
        it holds is gated IPv4, else the kernel lifetime's (seconds, checked lazily)."""
        state = self.states.get(pnn)
        gated = state is not None and state.gate_ms > 0 and all(
            ipaddress.ip_address(a).version == 4 for a in state.held)
        if gated and state is not None:
            return free_after(lost_at, detection=self.detection, lease=state.gate_ms / 1000,
                              margin=GATE_MARGIN)
        return free_after(lost_at, detection=self.detection, lease=self.lease, margin=MARGIN)

    def _full(self, address: str) -> str:
        for state in self.states.values():
            for info in state.can_host:
                if _ip(info.address) == address:
                    return info.address
        return address

    async def _order(self, pnn: int, body: Any) -> bool:
        if self.client is None or self.view is None:
            return False
        try:
            await self.client.request(Address(pnn, Service.FAILOVERD), body,
                                      timeout=self.takeover_timeout, generation=self.view.term)
        except CtdbError as exc:
            log.warning("node %d refused %s: %s", pnn, type(body).__name__, exc)
            return False
        return True

    def status_items(self) -> list[KeyValue]:
        return [KeyValue("held", ", ".join(sorted(self.held)) or "-"),
                KeyValue("lease", f"{self.lease} s"),
                KeyValue("gate", f"{self.gate_ms} ms" if self.gate_ms else "off")]


def _sort_key(address: str) -> tuple[int, int]:
    ip = ipaddress.ip_address(address)
    return (ip.version, int(ip))


def create(node: NodeContext) -> Failoverd:
    return Failoverd(node)
