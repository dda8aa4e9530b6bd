"""transportd: routes every message of a node.

Local daemons and clients connect to one root-only seqpacket socket in the run
directory and register an address (node, service).  transportd routes frames by
their header alone (payloads are decoded only for its own controls): to a local
service, to the subscribers of a message type, or over an authenticated TCP link
to another node, to all nodes, or to the current leader.  It never reassembles
fragments, so large messages stream through without being buffered whole.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ctdb
from ctdb import logs
from ctdb.errors import CtdbError, ProtocolError
from ctdb.protocol import (
    FIRST_CLIENT_SERVICE,
    FRAGMENT_TYPE,
    HEADER_SIZE,
    MAGIC,
    MAX_MESSAGE,
    MIN_VERSION,
    NODE_ALL,
    NODE_CURRENT,
    NODE_LEADER,
    VERSION,
    Ack,
    Address,
    ErrorCode,
    ErrorReply,
    Flag,
    GetLogLevelRequest,
    Header,
    KeyValue,
    LinkInfo,
    LinkStatusReply,
    LinkStatusRequest,
    LogLevelReply,
    Message,
    PingReply,
    PingRequest,
    Register,
    Registered,
    Service,
    SetLeader,
    SetLogLevelRequest,
    StatusReply,
    StatusRequest,
    Subscribe,
    Unsubscribe,
    UptimeReply,
    UptimeRequest,
    VersionReply,
    VersionRequest,
    decode,
    encode,
    peek_header,
)
from ctdb.protocol.header import HEADER
from ctdb.transport import link as linkmod
from ctdb.transport.auth import AuthError
from ctdb.transport.core import socket_path
from ctdb.transport.events import LinkEvent, ReloadNodes
from ctdb.transport.seqpacket import BorrowingConnection, Connection, listen, peer_uid

log = logging.getLogger(__name__)

UNKNOWN_LEADER = 0xFFFFFFFF

# The routing hot path reads the header with one unpack into plain ints (no Header,
# Address or Flag objects); peek_header is what explains a frame this path refuses.
_REQUEST = int(Flag.REQUEST)
_REPLY = int(Flag.REPLY)
_BROADCAST = int(Flag.BROADCAST)
_TRANSPORT = int(Service.TRANSPORT)
_SUBSCRIBERS = int(Service.SUBSCRIBERS)
_ACK = Message(Ack()).msg_type
_PING = Message(PingRequest()).msg_type
_PING_REPLY = Message(PingReply(0)).msg_type
_ADDR = struct.Struct(">II")
_U32 = struct.Struct(">I")
_SRC_OFFSET = 16
_DST_OFFSET = 24
# A PingReply frame: the header, then the client count.
_PING_REPLY_FRAME = struct.Struct(HEADER.format + "I")

@dataclass
class TransportSettings:
    """What transportd needs, independent of how the config was read."""

    pnn: int
    nodes: dict[int, str | None]  # PNN -> address; None for a deleted node
    run_dir: Path
    keys: list[bytes]
    port: int = 4379
    keepalive_interval: float = 1.0
    keepalive_limit: int = 5
    reload_nodes: Callable[[], dict[int, str | None]] | None = None  # re-reads the nodes file


@dataclass(eq=False)
class _Local:
    conn: Connection
    service: int = 0
    subscriptions: set[int] = field(default_factory=set)


class Transportd:
    """The router; ``run()`` serves until cancelled."""

    def __init__(self, settings: TransportSettings) -> None:
        self.settings = settings
        self.pnn = settings.pnn
        self.leader = UNKNOWN_LEADER
        self.start_time = time.time()
        self._locals: dict[Connection, _Local] = {}
        self._services: dict[int, _Local] = {}
        self._subscribers: dict[int, set[_Local]] = {}
        self._client_ids = itertools.count(FIRST_CLIENT_SERVICE)
        self.links: dict[int, linkmod.PeerLink] = {}
        self._batch = linkmod.WriteBatch()
        self._host = settings.nodes[settings.pnn]
        if self._host is None:
            raise ValueError(f"this node (PNN {settings.pnn}) is deleted in the nodes file")
        for pnn, host in settings.nodes.items():
            if pnn != self.pnn and host is not None:
                self.links[pnn] = self._new_link(pnn)
        self._dialers: dict[int, asyncio.Task[None]] = {}
        self._params = linkmod.LinkParams(settings.keys, self.pnn, (MIN_VERSION, VERSION),
                                          settings.keepalive_interval)
        self._by_host = {host: pnn for pnn, host in settings.nodes.items() if host is not None}
        self._controls: dict[type, Callable[[_Local | None, Any], object]] = {
            Register: self._register,
            Subscribe: self._subscribe,
            Unsubscribe: self._subscribe,
            SetLeader: self._set_leader,
            PingRequest: lambda _s, _b: PingReply(clients=len(self._locals)),
            VersionRequest: lambda _s, _b: VersionReply(ctdb.__version__, MIN_VERSION, VERSION),
            UptimeRequest: self._uptime,
            LinkStatusRequest: self._link_status,
            StatusRequest: self._status,
            GetLogLevelRequest: self._log_level,
            SetLogLevelRequest: self._set_log_level,
            ReloadNodes: self._reload_nodes,
        }

    # -- life cycle --------------------------------------------------------------
    async def run(self, ready: Callable[[], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        s = self.settings
        lsock = listen(socket_path(s.run_dir))
        loop.add_reader(lsock.fileno(), self._accept_local, lsock)
        server = await linkmod.listen(self._host, s.port, self._params, self._allowed_peer)
        log.log(logs.NOTICE, "transport listening on %s:%d as node %d", self._host, s.port,
                self.pnn)
        try:
            for pnn in self.links:
                self._start_dialer(pnn)
            if ready is not None:
                ready()
            await asyncio.Event().wait()
        finally:
            for task in self._dialers.values():
                task.cancel()
            loop.remove_reader(lsock.fileno())
            lsock.close()
            server.close()
            for plink in self.links.values():
                plink.close()
            for local in list(self._locals.values()):
                local.conn.close()

    def _new_link(self, pnn: int) -> linkmod.PeerLink:
        s = self.settings
        return linkmod.PeerLink(pnn, self.pnn, on_frame=self._peer_frame,
                                on_state=self._link_state,
                                keepalive_interval=s.keepalive_interval,
                                keepalive_limit=s.keepalive_limit, batch=self._batch)

    def _start_dialer(self, pnn: int) -> None:
        """The lower PNN of a pair dials; the other end only accepts."""
        if pnn > self.pnn and pnn not in self._dialers:
            task = asyncio.get_running_loop().create_task(self._dial_forever(self.links[pnn]))
            task.add_done_callback(self._dialer_done)
            self._dialers[pnn] = task

    def _dialer_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            log.warning("dialer %s was cancelled", task.get_name())
        elif task.exception() is not None:
            log.error("dialer %s died: %r", task.get_name(), task.exception())

    def _reload_nodes(self, sender: _Local | None, _body: object) -> Ack:
        """Take up a changed nodes file: new nodes get links, deleted ones lose theirs."""
        if self.settings.reload_nodes is None:
            raise CtdbError("this transport cannot reload its nodes")
        nodes = self.settings.reload_nodes()
        for pnn, host in self.settings.nodes.items():
            new = nodes.get(pnn)
            if host is not None and new is not None and new != host:
                raise CtdbError(f"node {pnn} changed its address from {host} to {new}; "
                                "delete it and add a new node instead")
        if nodes.get(self.pnn) != self._host:
            raise CtdbError("this node's own address changed")
        for pnn, host in nodes.items():
            if pnn == self.pnn:
                continue
            if host is None and pnn in self.links:
                self.links.pop(pnn).close()
                task = self._dialers.pop(pnn, None)
                if task is not None:
                    task.cancel()
                log.log(logs.NOTICE, "node %d deleted from the nodes file", pnn)
            elif host is not None and pnn not in self.links:
                self.links[pnn] = self._new_link(pnn)
                log.log(logs.NOTICE, "node %d (%s) added to the nodes file", pnn, host)
        self.settings.nodes = dict(nodes)
        self._by_host = {h: p for p, h in nodes.items() if h is not None}
        for pnn in self.links:
            self._start_dialer(pnn)
        return Ack()

    async def _dial_forever(self, plink: linkmod.PeerLink) -> None:
        host = self.settings.nodes[plink.pnn]
        if host is None:
            return
        delay = 0.05
        while True:
            started = time.monotonic()
            try:
                await linkmod.dial(plink, host, self.settings.port, str(self._host),
                                   self._params)
            except (OSError, TimeoutError, AuthError, asyncio.IncompleteReadError) as exc:
                log.debug("node %d: connect failed: %s", plink.pnn, exc)
                if isinstance(exc, AuthError):
                    log.warning("node %d: refused: %s", plink.pnn, exc)
            except Exception:
                # A bug must not end the dialing: this link would never come back.
                log.exception("node %d: link failed", plink.pnn)
            if time.monotonic() - started > 5:
                delay = 0.05
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _allowed_peer(self, host: str, pnn: int) -> linkmod.PeerLink:
        link = self.links.get(pnn)
        if self._by_host.get(host) != pnn or link is None:
            raise AuthError(f"{host} is not node {pnn} of the nodes file")
        if pnn > self.pnn:
            raise AuthError(f"node {pnn} must wait for this node to connect")
        return link

    def _link_state(self, plink: linkmod.PeerLink, connected: bool) -> None:
        if not connected and self.leader == plink.pnn:
            log.log(logs.NOTICE, "lost the link to the leader, node %d", plink.pnn)
        # Local subscribers (clusterd) learn at once that a peer's process is gone.
        frame = encode(Message(body=LinkEvent(plink.pnn, connected),
                               src=Address(self.pnn, Service.TRANSPORT),
                               dst=Address(self.pnn, Service.SUBSCRIBERS),
                               flags=Flag.BROADCAST))
        _, _, flags, _, _, mtype, reserved, sn, ss, _, ds, rid, _ = HEADER.unpack_from(frame)
        self._deliver(frame, flags, mtype, reserved, sn, ss, ds, rid, None)

    # -- local clients -----------------------------------------------------------
    def _accept_local(self, lsock: socket.socket) -> None:
        while True:
            try:
                sock, _ = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            if peer_uid(sock) not in (0, os.getuid()):
                log.warning("refused a local client that is not root")
                sock.close()
                continue
            sock.setblocking(False)
            conn = BorrowingConnection(sock, self._local_frame, self._local_closed,
                                       batch=self._batch)
            self._locals[conn] = _Local(conn)

    def _local_closed(self, conn: Connection) -> None:
        local = self._locals.pop(conn, None)
        if local is None:
            return
        if self._services.get(local.service) is local:
            del self._services[local.service]
        for t in local.subscriptions:
            subs = self._subscribers.get(t)
            if subs is not None:
                subs.discard(local)

    def _local_frame(self, conn: Connection, data: memoryview) -> None:
        """A message from a local client; *data* is borrowed (valid during this call)."""
        local = self._locals.get(conn)
        if local is None:
            return
        fields = _header_fields(data)
        if fields is None:
            self._malformed_local(local, data)
            return
        _, _, flags, _, _, mtype, reserved, _, _, dn, ds, rid, _ = fields
        service = local.service
        if service == 0 and ds != _TRANSPORT:
            log.warning("ignored a message from an unregistered local client")
            return
        _ADDR.pack_into(data, _SRC_OFFSET, self.pnn, service)
        self._route(bytes(data), flags, mtype, reserved, self.pnn, service, dn, ds, rid, None,
                    local)

    def _malformed_local(self, local: _Local, data: memoryview) -> None:
        try:
            peek_header(data)
        except ProtocolError as exc:
            log.warning("ignored a malformed message from local client %d: %s",
                        local.service, exc)
        else:  # not reached: peek_header refuses what the fast path refuses
            log.warning("ignored a malformed message from local client %d", local.service)

    # -- routing -----------------------------------------------------------------
    def _route(self, frame: bytes, flags: int, mtype: int, reserved: int, sn: int, ss: int,  # noqa: PLR0917
               dn: int, ds: int, rid: int, from_peer: int | None,
               local: _Local | None = None) -> None:
        """Route a validated frame whose header fields are given as ints."""
        node = dn
        if node == NODE_LEADER:
            if self.leader == UNKNOWN_LEADER:
                self._refuse(frame, ErrorCode.NO_LEADER, "no leader is known")
                return
            node = self.leader
        if node == NODE_ALL:
            if from_peer is None:
                source = (ss, ds)
                for plink in self.links.values():
                    plink.send(frame, source)
            self._deliver(frame, flags, mtype, reserved, sn, ss, ds, rid, local)
            return
        if node in (NODE_CURRENT, self.pnn):
            self._deliver(frame, flags, mtype, reserved, sn, ss, ds, rid, local)
            return
        if from_peer is not None:
            log.debug("node %d sent a frame for node %d; not relayed", from_peer, node)
            return
        target = self.links.get(node)
        if target is None:
            self._refuse(frame, ErrorCode.NODE_DISCONNECTED, f"node {node} is not in the cluster")
            return
        if dn != node:
            frame = b"".join((frame[:_DST_OFFSET], _ADDR.pack(node, ds),
                              memoryview(frame)[_DST_OFFSET + 8:]))
        if not target.send(frame, (ss, ds)):
            self._refuse(frame, ErrorCode.NODE_DISCONNECTED, f"node {node} is disconnected")

    def _deliver(self, frame: bytes, flags: int, mtype: int, reserved: int, sn: int, ss: int,  # noqa: PLR0917
                 ds: int, rid: int, sender: _Local | None) -> None:
        if ds == _SUBSCRIBERS or flags & _BROADCAST:
            subs = self._subscribers.get(reserved if mtype == FRAGMENT_TYPE else mtype)
            if subs:
                # A copy: a send that overflows a backlog closes that subscriber.
                for sub in tuple(subs):
                    sub.conn.send(frame)
            return
        if ds == _TRANSPORT:
            self._control(frame, flags, mtype, sn, ss, rid, sender)
            return
        target = self._services.get(ds)
        if target is None:
            self._refuse(frame, ErrorCode.NO_SUCH_SERVICE,
                         f"service {ds} is not running on node {self.pnn}")
            return
        target.conn.send(frame)

    def _peer_frame(self, plink: linkmod.PeerLink, frame: bytes) -> None:
        fields = _header_fields(frame)
        if fields is None:
            self._malformed_peer(plink, frame)
            return
        _, _, flags, _, _, mtype, reserved, sn, ss, dn, ds, rid, _ = fields
        if sn != plink.pnn:
            log.warning("node %d: dropped a frame claiming to come from node %d",
                        plink.pnn, sn)
            return
        if dn in (NODE_ALL, self.pnn):
            self._route(frame, flags, mtype, reserved, sn, ss, dn, ds, rid, plink.pnn)
        elif ds == _TRANSPORT and mtype == _ACK:
            return  # keepalive
        else:
            log.debug("node %d: frame for node %d dropped", plink.pnn, dn)

    def _malformed_peer(self, plink: linkmod.PeerLink, frame: bytes) -> None:
        try:
            peek_header(frame)
        except ProtocolError as exc:
            log.warning("node %d: ignored a malformed frame: %s", plink.pnn, exc)
        else:  # not reached: peek_header refuses what the fast path refuses
            log.warning("node %d: ignored a malformed frame", plink.pnn)

    def _send(self, msg: Message) -> None:
        frame = encode(msg)
        _, _, flags, _, _, mtype, reserved, sn, ss, dn, ds, rid, _ = HEADER.unpack_from(frame)
        self._route(frame, flags, mtype, reserved, sn, ss, dn, ds, rid, None)

    def _refuse(self, frame: bytes, code: ErrorCode, text: str) -> None:
        """``_error`` for a frame the hot path could not deliver."""
        self._error(peek_header(frame), code, text, frame)

    def _error(self, hdr: Header, code: ErrorCode, text: str, frame: bytes = b"") -> None:
        if not hdr.flags & Flag.REQUEST or hdr.flags & Flag.REPLY:
            log.debug("undeliverable message type %#x: %s", hdr.msg_type, text)
            return
        if hdr.msg_type == FRAGMENT_TYPE and not _first_piece(hdr, frame):
            return  # one error per message, not one per piece
        if hdr.src.node == self.pnn and hdr.src.service == Service.TRANSPORT:
            return
        self._send(Message(
            body=ErrorReply(int(code), text),
            src=Address(self.pnn, Service.TRANSPORT),
            dst=Address(hdr.src.node, hdr.src.service),
            request_id=hdr.request_id,
            flags=Flag.REPLY,
        ))

    # -- transportd's own controls -------------------------------------------------
    def _control(self, frame: bytes, flags: int, mtype: int, sn: int, ss: int, rid: int,  # noqa: PLR0917
                 sender: _Local | None) -> None:
        if mtype == _ACK or flags & _REPLY:
            return  # keepalive, or a stray reply
        if mtype == _PING and _U32.unpack_from(frame, 8)[0] == len(frame):
            # What decode + the handler + encode would give, without them.
            if flags & _REQUEST:
                reply = _PING_REPLY_FRAME.pack(
                    MAGIC, VERSION, _REPLY, HEADER_SIZE, _PING_REPLY_FRAME.size, _PING_REPLY,
                    0, self.pnn, _TRANSPORT, sn, ss, rid, 0, len(self._locals))
                self._route(reply, _REPLY, _PING_REPLY, 0, self.pnn, _TRANSPORT, sn, ss, rid,
                            None)
            return
        self._control_message(peek_header(frame), frame, sender)

    def _control_message(self, hdr: Header, frame: bytes, sender: _Local | None) -> None:
        try:
            msg = decode(frame)
        except ProtocolError as exc:
            log.warning("ignored a malformed control message: %s", exc)
            self._error(hdr, ErrorCode.INVALID_MESSAGE, f"malformed message: {exc}")
            return
        body = msg.body
        handler = self._controls.get(type(body))
        if handler is None:
            self._error(hdr, ErrorCode.UNKNOWN_MESSAGE,
                        f"transport does not handle message type {hdr.msg_type:#x}")
            return
        try:
            reply = handler(sender, body)
        except CtdbError as exc:
            self._error(hdr, ErrorCode.REFUSED, str(exc))
            return
        if reply is not None and hdr.flags & Flag.REQUEST:
            # A registration is answered at the address it just assigned.
            to = sender.service if isinstance(body, Register) and sender else hdr.src.service
            self._send(Message(
                body=reply,
                src=Address(self.pnn, Service.TRANSPORT),
                dst=Address(hdr.src.node, to),
                request_id=hdr.request_id,
                flags=Flag.REPLY,
            ))

    def _set_leader(self, sender: _Local | None, body: SetLeader) -> Ack:
        if sender is None or sender.service != Service.CLUSTERD:
            raise CtdbError("only the local clusterd sets the leader")
        self.leader = body.leader
        return Ack()

    def _set_log_level(self, _sender: _Local | None, body: SetLogLevelRequest) -> LogLevelReply:
        logging.getLogger().setLevel(logs.level_number(body.level))
        return self._log_level(None, body)

    def _log_level(self, _sender: _Local | None, _body: object) -> LogLevelReply:
        return LogLevelReply(logs.level_name(logging.getLogger().level))

    def _uptime(self, _sender: _Local | None, _body: object) -> UptimeReply:
        return UptimeReply(int(time.time() * 1e6), int(self.start_time * 1e6), 0, 0)

    def _register(self, sender: _Local | None, body: Register) -> Registered | None:
        if sender is None:
            return None
        service = body.service or next(self._client_ids)
        old = self._services.get(service)
        if old is not None and old is not sender:
            # A restarted daemon takes its address back from its dead predecessor.
            log.info("service %d re-registered; dropping the older connection", service)
            old.conn.close()
        if sender.service and self._services.get(sender.service) is sender:
            del self._services[sender.service]
        sender.service = service
        self._services[service] = sender
        self._subscribe(sender, Subscribe(list(body.subscriptions)))
        return Registered(self.pnn, service)

    def _subscribe(self, sender: _Local | None, body: Subscribe | Unsubscribe) -> Ack:
        if sender is None:
            return Ack()
        for t in body.types:
            subs = self._subscribers.setdefault(t, set())
            if isinstance(body, Subscribe):
                subs.add(sender)
                sender.subscriptions.add(t)
            else:
                subs.discard(sender)
                sender.subscriptions.discard(t)
        return Ack()

    def _link_status(self, _sender: _Local | None = None, _body: object = None) -> LinkStatusReply:
        links = []
        for pnn, host in sorted(self.settings.nodes.items()):
            if pnn == self.pnn:
                links.append(LinkInfo(pnn, host or "", True, False, int(self.start_time * 1e6)))
                continue
            plink = self.links.get(pnn)
            if plink is None:
                links.append(LinkInfo(pnn, host or "", False, True, 0))
            else:
                links.append(LinkInfo(pnn, host or "", plink.connected, False,
                                      int(plink.since * 1e6)))
        return LinkStatusReply(self.pnn, links)

    def _status(self, _sender: _Local | None = None, _body: object = None) -> StatusReply:
        up = sum(1 for p in self.links.values() if p.connected)
        items = [
            KeyValue("pnn", str(self.pnn)),
            KeyValue("links up", f"{up}/{len(self.links)}"),
            KeyValue("local clients", str(len(self._locals))),
            KeyValue("dropped frames", str(sum(p.dropped_frames for p in self.links.values()))),
            KeyValue("leader", "unknown" if self.leader == UNKNOWN_LEADER else str(self.leader)),
        ]
        return StatusReply("transport", os.getpid(), "RUNNING", items)


def _first_piece(hdr: Header, frame: bytes) -> bool:
    """Whether a Fragment frame carries the start of its message (offset 0)."""
    at = hdr.header_length + 8
    return len(frame) < at + 4 or frame[at : at + 4] == b"\0\0\0\0"


def _header_fields(frame: bytes | memoryview) -> tuple[Any, ...] | None:
    """The header's fields as plain values, or None when ``peek_header`` would refuse
    it (the routing fast path: no enum or tuple objects per frame)."""
    if len(frame) < HEADER_SIZE:
        return None
    fields = HEADER.unpack_from(frame)
    magic, ver, _, hlen, length = fields[:5]
    if magic != MAGIC or ver < MIN_VERSION or not HEADER_SIZE <= hlen <= length <= MAX_MESSAGE:
        return None
    return fields
