"""The ``ctdb`` admin command: CTDB's command names, options and output shapes.

Options may stand before or after the command, as with CTDB.  ``-X`` gives CTDB's
machine-readable ``|``-separated layout (CTDB's own event scripts parse it),
``--json`` a stable JSON document (``docs/cli.md``).  Exit codes: 0 success, 1 a
failed command or no daemon, 2 bad usage.

Start-up time is the command's cost, so imports stay lean: no asyncio, dataclasses,
typing or json (loaded for ``--json`` only); a command imports what it needs.
``tests/test_cli_imports.py`` guards this.
"""

from __future__ import annotations

import os
import sys
import time

from ctdb.clusterd.flags import INACTIVE as _INACTIVE
from ctdb.clusterd.flags import NodeFlag
from ctdb.errors import CtdbError, RemoteError, TransportError

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

USAGE = """\
Usage: ctdb [OPTIONS] COMMAND [ARGS]
Options:
  -n PNN|all        run the command on node PNN, or on all nodes
  -X                machine-readable output, fields separated by '|'
  -Y                same as -X
  -x SEP            field separator for machine-readable output
  --json            JSON output
  -t SECONDS        per-request timeout (default 10)
  -T SECONDS        maximum run time (ignored; each request has a deadline)
  -d LEVEL          debug level (accepted for compatibility)
  -h, --help        this help
Commands:
  ping              ping the daemon of a node
  version           the version of pyctdb (with -n, of that node's daemon)
  uptime            daemon start time and last recovery
  pnn               the PNN of this node
  status            the cluster's nodes and their state
  nodestatus [all|PNN[,PNN...]]  state of nodes; the exit code is their flags
  listnodes         the nodes file's addresses
  getpid            the PID of ctdbd on a node
  getdebug          the daemons' log level
  setdebug LEVEL    set the daemons' log level
  leader            the PNN of the leader
  runstate [STATE...]  the node's runstate (fails unless it is one of STATEs)
  disable | enable  take a node out of / back into service
  stop | continue   stop a node (it leaves the cluster's service) / resume it
  ban SECONDS | unban  ban a node for a while / lift the ban
  listvars | getvar NAME | setvar NAME VALUE  tunables
  getcapabilities   the node's LEADER and LMASTER capabilities
  setleaderrole on|off  whether the node may become leader
  recover           ask the leader for a recovery now
  shutdown          stop ctdbd on the node
  reloadnodes       every node re-reads its nodes file (added and deleted nodes)
  ip [all] [-v]     public addresses and the nodes hosting them
  moveip IP PNN     move a public address to a node
  ifaces            the public interfaces, their link state and address count
  ipreallocate      the leader recomputes where public addresses go
  reloadips [PNN-LIST]  nodes re-read public_addresses, then addresses are reallocated
  addip IP/MASK IFACE | delip IP  offer / stop offering an address on a node (not saved)
  ipinfo IP         an address's holder and interfaces
  gettickles IP [PORT]  clients' TCP connections to a public address, cluster-wide
  tickle SRC:PORT DST:PORT  send a tickle ACK so the client (SRC) resets the connection
  addtickle | deltickle [SRC:PORT DST:PORT]  track / forget a connection (pairs on stdin)
  setifacelink IFACE up|down  an event script's view of a public interface's link
  gratarp IP IFACE  announce an address now (gratuitous ARP / neighbour advertisement)
  event run|status|script ...  event scripts (``ctdb event`` for details)
  scriptstatus [EVENT]  the last run of a legacy event's scripts (default monitor)
  service list|status  the file services the node manages (smbd, NFS-Ganesha...)
  checktcpport PORT  exit 0 if the TCP port is free, 98 if something listens on it
"""

# CTDB's node flag bits, as plain ints for the output code.
DISCONNECTED = int(NodeFlag.DISCONNECTED)
UNHEALTHY = int(NodeFlag.UNHEALTHY)
PERMANENTLY_DISABLED = int(NodeFlag.PERMANENTLY_DISABLED)
BANNED = int(NodeFlag.BANNED)
DELETED = int(NodeFlag.DELETED)
STOPPED = int(NodeFlag.STOPPED)
UNKNOWN = int(NodeFlag.UNKNOWN)
INACTIVE = int(_INACTIVE)


class UsageError(Exception):
    """Bad arguments: usage and exit code 2."""


class Options:
    """The parsed command line."""

    __slots__ = ("args", "command", "json", "machine", "node", "separator", "timeout")

    def __init__(self) -> None:
        self.node: str | None = None
        self.machine = False
        self.separator = "|"
        self.json = False
        self.timeout = 10.0
        self.command = ""
        self.args: list[str] = []


def parse(argv: list[str]) -> Options:  # noqa: PLR0912 - one flat option table
    opts = Options()
    rest: list[str] = []
    it = iter(argv)

    def value(flag: str) -> str:
        try:
            return next(it)
        except StopIteration:
            raise UsageError(f"option {flag} needs a value") from None

    for arg in it:
        if arg in ("-h", "--help", "-?"):
            raise UsageError("")
        if arg == "-n" or arg.startswith("--node"):
            opts.node = arg.partition("=")[2] if "=" in arg else value(arg)
        elif arg.startswith("-n") and len(arg) > 2:
            opts.node = arg[2:]
        elif arg in ("-X", "-Y"):
            opts.machine = True
        elif arg == "-x":
            opts.separator = value(arg)
        elif arg == "--json":
            opts.json = True
        elif arg in ("-t", "-T", "-d", "--timelimit", "--maxruntime", "--debug"):
            text = value(arg)
            if arg in ("-t", "--timelimit"):
                try:
                    opts.timeout = float(text)
                except ValueError:
                    raise UsageError(f"invalid timeout {text!r}") from None
        elif arg.startswith("-") and arg != "-" and not rest:
            raise UsageError(f"unknown option {arg}")
        else:
            rest.append(arg)
    if not rest:
        raise UsageError("no command given")
    opts.command, opts.args = rest[0], rest[1:]
    if opts.node is not None and opts.node != "all" and not opts.node.isdigit():
        raise UsageError(f"invalid node {opts.node!r}: a PNN or 'all'")
    return opts


class Session:
    """What a command needs: the configuration and a connection to the local daemon."""

    def __init__(self, opts: Options) -> None:
        from ctdb.config import load

        self.opts = opts
        self.config = load()
        self._client: Any = None
        self.rc = 0  # the exit code: 1 once any node failed

    @property
    def client(self) -> Any:
        if self._client is None:
            from ctdb.transport.sync import SyncClient

            self._client = SyncClient(self.config.conf.run_dir, self.opts.timeout)
        return self._client

    @property
    def pnn(self) -> int:
        return int(self.client.address.node)

    @property
    def nodes(self) -> list[Any]:
        if self.config.nodes is None:
            raise CtdbError(f'Failed to read nodes file "{self.config.base / "nodes"}"')
        return self.config.nodes

    def live_nodes(self) -> list[int]:
        return [n.pnn for n in self.nodes if not n.deleted]

    def targets(self) -> list[int]:
        """The PNNs ``-n`` names (default: this node)."""
        if self.opts.node is None:
            return [self.pnn]
        if self.opts.node == "all":
            return self.live_nodes()
        pnn = int(self.opts.node)
        if pnn not in self.live_nodes():
            raise CtdbError(f"Node {pnn} does not exist")
        return [pnn]

    def replies(self, service: int, body: Any,
                pnns: list[int] | None = None) -> list[tuple[int, Any]]:
        """The replies from every target node (or *pnns*); each failure is printed (one
        line) and makes the command's exit code 1 (``rc``)."""
        out = []
        for pnn, reply, _ in self.ask_all_timed(service, body, pnns):
            if isinstance(reply, BaseException):
                print(_node_error(pnn, reply), file=sys.stderr)
                self.rc = 1
            else:
                out.append((pnn, reply))
        return out

    def ask_all(self, service: int, body: Any) -> list[tuple[int, Any]]:
        """Send *body* to *service* on every target at once; (pnn, reply or error)."""
        return [(pnn, reply) for pnn, reply, _ in self.ask_all_timed(service, body)]

    def ask_all_timed(self, service: int, body: Any,
                      pnns: list[int] | None = None) -> list[tuple[int, Any, float]]:
        """As ``ask_all`` (to *pnns* if given), with each reply's round-trip time."""
        from ctdb.protocol import Address

        client = self.client  # connect and register before any clock starts
        sent = []
        for pnn in self.targets() if pnns is None else pnns:
            started = time.monotonic()
            sent.append((pnn, client.send_request(Address(pnn, service), body), started))
        results: list[tuple[int, Any, float]] = []
        deadline = time.monotonic() + self.opts.timeout
        for pnn, rid, started in sent:
            try:
                reply = self.client.wait_reply(rid, deadline, f"node {pnn}")
            except CtdbError as exc:
                results.append((pnn, exc, 0.0))
                continue
            results.append((pnn, reply, self.client.received_at.pop(rid) - started))
        return results

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _machine(opts: Options, *rows: list[Any]) -> None:
    sep = opts.separator
    for row in rows:
        _out(sep + sep.join(str(v) for v in row) + sep)


def _json(doc: Any) -> None:
    """A whole ``--json`` document."""
    import json

    _out(json.dumps(doc, indent=2, sort_keys=True))


def _json_line(doc: Any) -> str:
    """One compact JSON object, for commands that print one per node."""
    import json

    return json.dumps(doc)


def _node_error(pnn: int, exc: BaseException) -> str:
    if isinstance(exc, RemoteError) and exc.code == 2:
        return f"Node {pnn} is DISCONNECTED"
    return f"node {pnn}: {exc}"


# -- commands ---------------------------------------------------------------------
def cmd_ping(s: Session) -> int:
    from ctdb.protocol import PingRequest, Service

    rc = 0
    doc = []
    for pnn, reply, elapsed in s.ask_all_timed(Service.TRANSPORT, PingRequest()):
        if isinstance(reply, BaseException):
            print(_node_error(pnn, reply), file=sys.stderr)
            doc.append({"pnn": pnn, "ok": False, "error": str(reply)})
            rc = 1
            continue
        doc.append({"pnn": pnn, "ok": True, "time": elapsed, "clients": reply.clients})
        if not s.opts.json:
            _out(f"response from {pnn} time={elapsed:.6f} sec  ({reply.clients} clients)")
    if s.opts.json:
        _json({"ping": doc})
    return rc


def cmd_version(s: Session) -> int:
    import ctdb

    if s.opts.node is None:
        if s.opts.json:
            _json({"version": ctdb.__version__})
        else:
            _out(ctdb.__version__)
        return 0
    from ctdb.protocol import Service, VersionRequest

    doc = []
    for pnn, reply in s.replies(Service.TRANSPORT, VersionRequest()):
        doc.append({"pnn": pnn, "version": reply.version,
                    "protocol": [reply.protocol_min, reply.protocol_max]})
        if not s.opts.json:
            _out(reply.version if s.opts.node != "all" else f"{pnn}: {reply.version}")
    if s.opts.json:
        _json({"versions": doc})
    return s.rc


def _span(seconds: float) -> str:
    total = max(0, int(seconds))
    days, total = divmod(total, 86400)
    hours, total = divmod(total, 3600)
    minutes, secs = divmod(total, 60)
    return f"({days:03d} {hours:02d}:{minutes:02d}:{secs:02d})"


def cmd_uptime(s: Session) -> int:
    from ctdb.protocol import Service, UptimeRequest

    doc = []
    for pnn, reply in s.replies(Service.MASTERD, UptimeRequest()):
        now = reply.current_time_us / 1e6
        start = reply.start_time_us / 1e6
        rec_start = reply.last_recovery_started_us / 1e6
        rec_end = reply.last_recovery_finished_us / 1e6
        doc.append({"pnn": pnn, "current_time": now, "start_time": start,
                    "last_recovery_started": rec_start or None,
                    "last_recovery_finished": rec_end or None})
        if s.opts.json:
            continue
        _out(f"Current time of node {pnn:<4d}     :                {time.ctime(now)}")
        _out(f"Ctdbd start time              : {_span(now - start)} {time.ctime(start)}")
        last = rec_end or start
        _out(f"Time of last recovery/failover: {_span(now - last)} {time.ctime(last)}")
        _out(f"Duration of last recovery/failover: {max(0.0, rec_end - rec_start):.6f} seconds")
    if s.opts.json:
        _json({"uptime": doc})
    return s.rc


def cmd_pnn(s: Session) -> int:
    if s.opts.node not in (None, str(s.pnn)):
        raise CtdbError("Node cannot be specified for command pnn")
    if s.opts.json:
        _json({"pnn": s.pnn})
    else:
        _out(str(s.pnn))
    return 0


class NodeRow:
    """One node of the node map, with the flags to show."""

    __slots__ = ("address", "flags", "partial", "pnn")

    def __init__(self, pnn: int, address: str, flags: int) -> None:
        self.pnn = pnn
        self.address = address
        self.flags = flags
        self.partial = False  # OK, but some public interfaces are down

    @property
    def text(self) -> str:
        from ctdb.clusterd.flags import flags_text

        return "PARTIALLYONLINE" if self.partial and not self.flags else flags_text(self.flags)


def _view(s: Session, pnn: int | None = None) -> Any:
    """clusterd's ClusterView from node *pnn* (default: ``-n`` or this node)."""
    from ctdb.clusterd.messages import ClusterViewRequest
    from ctdb.protocol import NODE_CURRENT, Address, Service

    if pnn is None and s.opts.node not in (None, "all"):
        pnn = s.targets()[0]
    node = NODE_CURRENT if pnn is None else pnn
    return s.client.request(Address(node, Service.CLUSTERD), ClusterViewRequest(),
                            s.opts.timeout)


def _nodemap(s: Session, view: Any) -> list[NodeRow]:
    """Every node with its flags; while the asked node has not finished its first
    recovery, the other connected nodes show UNKNOWN, as CTDB does."""
    from ctdb.clusterd.flags import Runstate

    rows = []
    early = view.runstate <= Runstate.FIRST_RECOVERY
    for n in view.nodes:
        flags = n.flags
        if early and n.pnn != view.pnn and not flags & (DELETED | DISCONNECTED):
            flags = UNKNOWN
        rows.append(NodeRow(n.pnn, n.address, flags))
    _mark_partial(s, rows)
    return rows


def _mark_partial(s: Session, rows: list[NodeRow]) -> None:
    """PARTIALLYONLINE, as CTDB's tool finds it: an OK node with some public interfaces
    down, asked of each OK node's failoverd (at once)."""
    from ctdb.failoverd.messages import IfacesRequest
    from ctdb.protocol import Address, Service

    client = s.client
    asked = [(r, client.send_request(Address(r.pnn, Service.FAILOVERD), IfacesRequest()))
             for r in rows if not r.flags]
    deadline = time.monotonic() + min(s.opts.timeout, 2.0)
    for row, rid in asked:
        try:
            reply = client.wait_reply(rid, deadline, f"node {row.pnn}")
        except CtdbError:
            continue  # no answer about interfaces: show the flags alone
        ups = [i.up for i in getattr(reply, "interfaces", [])]
        row.partial = any(ups) and not all(ups)


def _print_nodes(s: Session, rows: list[NodeRow], me: int, header: bool) -> None:

    live = [r for r in rows if not r.flags & DELETED]
    if s.opts.machine:
        _machine(s.opts, ["Node", "IP", "Disconnected", "Unknown", "Banned", "Disabled",
                          "Unhealthy", "Stopped", "Inactive", "PartiallyOnline", "ThisNode"])
        for r in live:
            f = r.flags
            _machine(s.opts, [r.pnn, r.address] + [
                int(bool(f & bit)) for bit in
                (DISCONNECTED, UNKNOWN, BANNED, PERMANENTLY_DISABLED, UNHEALTHY, STOPPED)
            ] + [int(bool(f & INACTIVE)), int(r.partial), "Y" if r.pnn == me else "N"])
        return
    if header:
        deleted = len(rows) - len(live)
        extra = f" (including {deleted} deleted nodes)" if deleted else ""
        _out(f"Number of nodes:{len(rows)}{extra}")
    for r in live:
        this = " (THIS NODE)" if r.pnn == me else ""
        _out(f"pnn:{r.pnn} {r.address:<16} {r.text}{this}")


def _rows_json(rows: list[NodeRow], me: int) -> list[dict[str, Any]]:
    from ctdb.clusterd.flags import flag_words

    return [{"pnn": r.pnn, "address": r.address, "state": r.text,
             "flags": flag_words(r.flags), "flag_bits": r.flags,
             "partially_online": r.partial, "this_node": r.pnn == me}
            for r in rows]


NO_NODE = 0xFFFFFFFF


def cmd_status(s: Session) -> int:
    if s.opts.args:
        raise UsageError("status takes no arguments")
    view = _view(s)
    rows = _nodemap(s, view)
    if s.opts.json:
        _json({"nodes": _rows_json(rows, view.pnn),
               "generation": None if view.generation == 1 else view.generation,
               "vnnmap": list(view.vnnmap),
               "recovery_mode": "RECOVERY" if view.recovery_mode else "NORMAL",
               "leader": None if view.leader == NO_NODE else view.leader,
               "term": view.term,
               "lock": {"configured": view.lock.configured or None, "held": view.lock.held,
                        "lock_side": view.lock.lock_side, "detail": view.lock.detail}})
        return 0
    _print_nodes(s, rows, view.pnn, header=True)
    if s.opts.machine:
        return 0
    _out("Generation:INVALID" if view.generation == 1 else f"Generation:{view.generation}")
    _out(f"Size:{len(view.vnnmap)}")
    for i, pnn in enumerate(view.vnnmap):
        _out(f"hash:{i} lmaster:{pnn}")
    mode = view.recovery_mode
    _out(f"Recovery mode:{'RECOVERY' if mode else 'NORMAL'} ({mode})")
    _out("Leader:UNKNOWN" if view.leader == NO_NODE else f"Leader:{view.leader}")
    return 0


def cmd_nodestatus(s: Session) -> int:
    view = _view(s)
    rows = _nodemap(s, view)
    arg = s.opts.args[0] if s.opts.args else None
    if arg is None:
        wanted = {view.pnn} if s.opts.node in (None, "all") else set(s.targets())
    elif arg == "all":
        wanted = {r.pnn for r in rows}
    else:
        wanted = set()
        for part in arg.split(","):
            if not part.isdigit():
                raise CtdbError(f"Invalid node {part}")
            if int(part) not in {r.pnn for r in rows}:
                raise CtdbError(f"Node {part} does not exist")
            wanted.add(int(part))
    chosen = [r for r in rows if r.pnn in wanted]
    if s.opts.json:
        _json({"nodes": _rows_json(chosen, view.pnn)})
    else:
        _print_nodes(s, chosen, view.pnn, header=arg == "all")
    status = 0
    for r in chosen:
        if not r.flags & DELETED:
            status |= r.flags
    return status & 0xFF


def cmd_leader(s: Session) -> int:
    view = _view(s)
    if view.leader == NO_NODE:
        raise CtdbError("Leader is unknown")
    _out(_json_line({"leader": view.leader}) if s.opts.json else str(view.leader))
    return 0


def cmd_runstate(s: Session) -> int:
    from ctdb.clusterd.flags import Runstate
    from ctdb.clusterd.messages import RunstateRequest
    from ctdb.protocol import Service

    for pnn, reply in s.replies(Service.CLUSTERD, RunstateRequest()):
        name = Runstate(reply.runstate).name
        if s.opts.args and name not in (a.upper() for a in s.opts.args):
            print(f"CTDB not in required run state (got {name})", file=sys.stderr)
            s.rc = 1
            continue
        _out(_json_line({"pnn": pnn, "runstate": name}) if s.opts.json else name)
    return s.rc


def _set_flags(s: Session, set_bits: int, clear_bits: int, want: bool, bit: int) -> int:
    from ctdb.clusterd.messages import SetFlagsRequest
    from ctdb.protocol import Service

    s.replies(Service.CLUSTERD, SetFlagsRequest(set_bits, clear_bits))
    if s.rc:
        return s.rc
    # As CTDB does, return once this node sees the change on every target.
    deadline = time.monotonic() + s.opts.timeout
    targets = set(s.targets())
    while True:
        rows = {r.pnn: r for r in _nodemap(s, _view(s, s.pnn))}
        if all(bool(rows[p].flags & bit) == want for p in targets if p in rows):
            return 0
        if time.monotonic() > deadline:
            print("timed out waiting for the node flags to change", file=sys.stderr)
            return 1
        time.sleep(0.05)


def cmd_disable(s: Session) -> int:
    return _set_flags(s, PERMANENTLY_DISABLED, 0, True, PERMANENTLY_DISABLED)


def cmd_enable(s: Session) -> int:
    return _set_flags(s, 0, PERMANENTLY_DISABLED, False, PERMANENTLY_DISABLED)


def cmd_stop(s: Session) -> int:
    return _set_flags(s, STOPPED, 0, True, STOPPED)


def cmd_continue(s: Session) -> int:
    return _set_flags(s, 0, STOPPED, False, STOPPED)


def _ban(s: Session, seconds: int) -> int:
    from ctdb.clusterd.messages import BanRequest
    from ctdb.protocol import Service

    s.replies(Service.CLUSTERD, BanRequest(seconds))
    return s.rc


def cmd_ban(s: Session) -> int:
    if len(s.opts.args) != 1 or not s.opts.args[0].isdigit():
        raise UsageError("ban needs BANTIME in seconds")
    return _ban(s, int(s.opts.args[0]))


def cmd_unban(s: Session) -> int:
    return _ban(s, 0)


def cmd_listvars(s: Session) -> int:
    from ctdb.clusterd.messages import ListTunablesRequest
    from ctdb.protocol import Service

    pnn, reply = s.ask_all(Service.CLUSTERD, ListTunablesRequest())[0]
    if isinstance(reply, BaseException):
        raise CtdbError(_node_error(pnn, reply))
    if s.opts.json:
        _json({t.name: t.value for t in reply.tunables})
    for t in reply.tunables:
        if s.opts.machine:
            _machine(s.opts, [t.name, t.value])
        elif not s.opts.json:
            _out(f"{t.name:<23} = {t.value}")
    return 0


def cmd_getvar(s: Session) -> int:
    from ctdb.clusterd.messages import GetTunableRequest
    from ctdb.protocol import Service

    if len(s.opts.args) != 1:
        raise UsageError("getvar needs a NAME")
    for pnn, reply in s.replies(Service.CLUSTERD, GetTunableRequest(s.opts.args[0])):
        _out(_json_line({"pnn": pnn, reply.name: reply.value}) if s.opts.json
             else f"{reply.name:<23} = {reply.value}")
    return s.rc


def cmd_setvar(s: Session) -> int:
    from ctdb.clusterd.messages import SetTunableRequest
    from ctdb.protocol import Service

    if len(s.opts.args) != 2 or not s.opts.args[1].isdigit():
        raise UsageError("setvar needs a NAME and a VALUE")
    s.replies(Service.CLUSTERD, SetTunableRequest(s.opts.args[0], int(s.opts.args[1])))
    return s.rc


def cmd_getcapabilities(s: Session) -> int:
    from ctdb.clusterd.flags import Capability
    from ctdb.clusterd.messages import CapabilitiesRequest
    from ctdb.protocol import Service

    for pnn, reply in s.replies(Service.CLUSTERD, CapabilitiesRequest()):
        caps = Capability(reply.capabilities)
        doc = {"pnn": pnn, "leader": bool(caps & Capability.LEADER),
               "lmaster": bool(caps & Capability.LMASTER)}
        if s.opts.json:
            _out(_json_line(doc))
        elif s.opts.machine:
            _machine(s.opts, ["LEADER", "LMASTER"])
            _machine(s.opts, ["Y" if doc["leader"] else "N", "Y" if doc["lmaster"] else "N"])
        else:
            _out(f"LEADER: {'YES' if doc['leader'] else 'NO'}")
            _out(f"LMASTER: {'YES' if doc['lmaster'] else 'NO'}")
    return s.rc


def cmd_setleaderrole(s: Session) -> int:
    from ctdb.clusterd.messages import SetLeaderRoleRequest
    from ctdb.protocol import Service

    if len(s.opts.args) != 1 or s.opts.args[0] not in ("on", "off"):
        raise UsageError("setleaderrole needs on or off")
    s.replies(Service.CLUSTERD, SetLeaderRoleRequest(s.opts.args[0] == "on"))
    return s.rc


def cmd_recover(s: Session) -> int:
    from ctdb.clusterd.messages import RecoverRequest
    from ctdb.protocol import NODE_LEADER, Address, Service

    before = _view(s).generation
    s.client.request(Address(NODE_LEADER, Service.CLUSTERD), RecoverRequest(), s.opts.timeout)
    deadline = time.monotonic() + s.opts.timeout
    while _view(s).generation == before:
        if time.monotonic() > deadline:
            print("timed out waiting for the recovery", file=sys.stderr)
            return 1
        time.sleep(0.05)
    return 0


def cmd_reloadnodes(s: Session) -> int:
    """Every node re-reads its nodes file (change it on every node first).

    This node goes first, so its transport knows new nodes before it asks them; a new
    node's link may take a moment to come up, so each node is retried until the deadline.
    """
    from ctdb.clusterd.messages import ReloadNodesRequest
    from ctdb.protocol import NODE_CURRENT, Address, Service

    s.client.request(Address(NODE_CURRENT, Service.CLUSTERD), ReloadNodesRequest(),
                     s.opts.timeout)
    rc = 0
    deadline = time.monotonic() + s.opts.timeout
    for pnn in s.live_nodes():
        if pnn == s.pnn:
            continue
        while True:
            try:
                s.client.request(Address(pnn, Service.CLUSTERD), ReloadNodesRequest(),
                                 max(0.1, deadline - time.monotonic()))
                break
            except RemoteError as exc:
                # Retry while the new node's link or daemons are still coming up.
                if exc.code not in (1, 2) or time.monotonic() > deadline:
                    print(f"Node {pnn}: failed to reload the nodes file: {exc}",
                          file=sys.stderr)
                    rc = 1
                    break
                time.sleep(0.05)
            except CtdbError as exc:
                print(f"Node {pnn}: failed to reload the nodes file: {exc}", file=sys.stderr)
                rc = 1
                break
    return rc


def cmd_ip(s: Session) -> int:
    """CTDB's ``ip``: every public address and the node hosting it (-1: nobody)."""
    from ctdb.failoverd.messages import UNHOSTED, IPListRequest
    from ctdb.protocol import NODE_CURRENT, Address, Service

    show_all = bool(s.opts.args) and s.opts.args[0] == "all"
    verbose = "-v" in s.opts.args
    node = NODE_CURRENT if s.opts.node in (None, "all") else s.targets()[0]
    reply = s.client.request(Address(node, Service.FAILOVERD), IPListRequest(),
                             s.opts.timeout)
    entries = reply.ips
    if not show_all:
        entries = [e for e in entries if e.local]
    if s.opts.json:
        _json({"ips": [{"address": e.address,
                        "pnn": None if e.pnn == UNHOSTED else e.pnn} for e in entries]})
        return 0
    if s.opts.machine:
        header = ["Public IP", "Node"]
        if verbose:
            header += ["ActiveInterfaces", "AvailableInterfaces", "ConfiguredInterfaces"]
        _machine(s.opts, header)
    else:
        _out("Public IPs on ALL nodes" if show_all else f"Public IPs on node {reply.pnn}")
    for e in entries:
        pnn = -1 if e.pnn == UNHOSTED else e.pnn
        if s.opts.machine:
            row: list[Any] = [e.address, pnn]
            if verbose:
                row += [e.active, e.interfaces, e.interfaces]
            _machine(s.opts, row)
        elif verbose:
            _out(f"{e.address} node[{pnn}] active[{e.active}] available[{e.interfaces}] "
                 f"configured[{e.interfaces}]")
        else:
            _out(f"{e.address} {pnn}")
    return 0


def cmd_ifaces(s: Session) -> int:
    """CTDB's ``ifaces``: the public interfaces, their link state and address count."""
    from ctdb.failoverd.messages import IfacesRequest
    from ctdb.protocol import NODE_CURRENT, Address, Service

    node = NODE_CURRENT if s.opts.node in (None, "all") else s.targets()[0]
    reply = s.client.request(Address(node, Service.FAILOVERD), IfacesRequest(),
                             s.opts.timeout)
    if s.opts.json:
        _json({"interfaces": [{"name": i.name, "link": "up" if i.up else "down",
                               "references": i.references} for i in reply.interfaces]})
        return 0
    if not reply.interfaces:
        _out(f"No interfaces configured on node {reply.pnn}")
        return 0
    if s.opts.machine:
        _machine(s.opts, ["Name", "LinkStatus", "References"])
    else:
        _out(f"Interfaces on node {reply.pnn}")
    for i in reply.interfaces:
        if s.opts.machine:
            _machine(s.opts, [i.name, int(i.up), i.references])
        else:
            _out(f"name:{i.name} link:{'up' if i.up else 'down'} references:{i.references}")
    return 0


def cmd_moveip(s: Session) -> int:
    from ctdb.failoverd.messages import IPListRequest, MoveIPRequest
    from ctdb.protocol import NODE_CURRENT, NODE_LEADER, Address, Service

    if len(s.opts.args) != 2 or not s.opts.args[1].isdigit():
        raise UsageError("moveip needs an IP and a PNN")
    address, pnn = s.opts.args[0], int(s.opts.args[1])
    s.client.request(Address(NODE_LEADER, Service.FAILOVERD), MoveIPRequest(address, pnn),
                     s.opts.timeout)
    # Return once this node sees the address on its new holder.
    deadline = time.monotonic() + s.opts.timeout
    while True:
        reply = s.client.request(Address(NODE_CURRENT, Service.FAILOVERD), IPListRequest(),
                                 s.opts.timeout)
        if any(e.address == address and e.pnn == pnn for e in reply.ips):
            return 0
        if time.monotonic() > deadline:
            print(f"timed out waiting for {address} to move to node {pnn}", file=sys.stderr)
            return 1
        time.sleep(0.02)


def cmd_ipreallocate(s: Session) -> int:
    from ctdb.failoverd.messages import IPReallocateRequest
    from ctdb.protocol import NODE_LEADER, Address, Service

    s.client.request(Address(NODE_LEADER, Service.FAILOVERD), IPReallocateRequest(),
                     s.opts.timeout)
    return 0


def cmd_shutdown(s: Session) -> int:
    from ctdb.protocol import Service, ShutdownRequest

    s.replies(Service.MASTERD, ShutdownRequest())
    return s.rc


def cmd_listnodes(s: Session) -> int:
    if s.opts.node is not None:
        raise CtdbError("Cannot specify node for command listnodes")
    live = [n for n in s.nodes if not n.deleted]
    if s.opts.json:
        _json({"nodes": [{"pnn": n.pnn, "address": str(n.address)} for n in live]})
    for n in live:
        if s.opts.machine:
            _machine(s.opts, [n.pnn, n.address])
        elif not s.opts.json:
            _out(str(n.address))
    return 0


def cmd_getpid(s: Session) -> int:
    from ctdb.protocol import DaemonListRequest, Service

    for pnn, reply in s.replies(Service.MASTERD, DaemonListRequest()):
        pid = next((d.pid for d in reply.daemons if d.name == "ctdbd"), 0)
        _out(_json_line({"pnn": pnn, "pid": pid}) if s.opts.json else str(pid))
    return s.rc


def cmd_getdebug(s: Session) -> int:
    from ctdb.protocol import GetLogLevelRequest, Service

    for pnn, reply in s.replies(Service.TRANSPORT, GetLogLevelRequest()):
        _out(_json_line({"pnn": pnn, "level": reply.level}) if s.opts.json else reply.level)
    return s.rc


def cmd_setdebug(s: Session) -> int:
    from ctdb.protocol import Service, SetLogLevelRequest

    if len(s.opts.args) != 1:
        raise UsageError("setdebug needs a LEVEL")
    wanted = s.opts.args[0].upper()
    names = ("ERROR", "WARNING", "NOTICE", "INFO", "DEBUG")
    level = next((n for n in names if n.startswith(wanted)), None) if wanted else None
    if level is None:
        raise CtdbError(f"Invalid debug level '{s.opts.args[0]}'. "
                        "Valid levels are: ERROR | WARNING | NOTICE | INFO | DEBUG")
    s.replies(Service.TRANSPORT, SetLogLevelRequest(level))
    s.replies(Service.MASTERD, SetLogLevelRequest(level))
    return s.rc


def _reallocate(s: Session) -> None:
    from ctdb.failoverd.messages import IPReallocateRequest
    from ctdb.protocol import NODE_LEADER, Address, Service

    s.client.request(Address(NODE_LEADER, Service.FAILOVERD), IPReallocateRequest(),
                     s.opts.timeout)


def cmd_reloadips(s: Session) -> int:
    """CTDB's ``reloadips [PNN-LIST]``: nodes re-read public_addresses, then a takeover run."""
    from ctdb.failoverd.messages import ReloadIPsRequest
    from ctdb.protocol import Service

    if len(s.opts.args) > 1:
        raise UsageError("reloadips takes at most a list of nodes")
    wanted = s.live_nodes()
    if s.opts.args:
        try:
            wanted = [int(p) for p in s.opts.args[0].split(",")]
        except ValueError:
            raise UsageError(f"invalid node list {s.opts.args[0]!r}") from None
        missing = set(wanted) - set(s.live_nodes())
        if missing:
            raise CtdbError(f"Node {min(missing)} does not exist")
    for pnn, reply in s.replies(Service.FAILOVERD, ReloadIPsRequest(), wanted):
        if reply.added or reply.removed:
            print(f"node {pnn}: added {', '.join(reply.added) or 'none'}; removed "
                  f"{', '.join(reply.removed) or 'none'}", file=sys.stderr)
    _reallocate(s)
    return s.rc


def _one_node(s: Session) -> int:
    from ctdb.protocol import NODE_CURRENT

    return NODE_CURRENT if s.opts.node is None else s.targets()[0]


def cmd_addip(s: Session) -> int:
    from ctdb.failoverd.messages import AddIPRequest
    from ctdb.protocol import Address, Service

    if len(s.opts.args) != 2:
        raise UsageError("addip needs IP/MASK and an interface")
    s.client.request(Address(_one_node(s), Service.FAILOVERD),
                     AddIPRequest(s.opts.args[0], s.opts.args[1]), s.opts.timeout)
    _reallocate(s)
    return 0


def cmd_delip(s: Session) -> int:
    from ctdb.failoverd.messages import DelIPRequest
    from ctdb.protocol import Address, Service

    if len(s.opts.args) != 1:
        raise UsageError("delip needs an IP")
    s.client.request(Address(_one_node(s), Service.FAILOVERD), DelIPRequest(s.opts.args[0]),
                     s.opts.timeout)
    _reallocate(s)
    return 0


def cmd_ipinfo(s: Session) -> int:
    """CTDB's ``ipinfo IP``: who holds it and its interfaces, as seen from a node."""
    from ctdb.failoverd.messages import UNHOSTED, IfacesRequest, IPListRequest
    from ctdb.protocol import Address, Service

    if len(s.opts.args) != 1:
        raise UsageError("ipinfo needs an IP")
    node = _one_node(s)
    ips = s.client.request(Address(node, Service.FAILOVERD), IPListRequest(), s.opts.timeout)
    entry = next((e for e in ips.ips if e.address == s.opts.args[0] and e.local), None)
    if entry is None:
        raise CtdbError(f"Node {ips.pnn} does not know about IP {s.opts.args[0]}")
    ifaces = s.client.request(Address(node, Service.FAILOVERD), IfacesRequest(),
                              s.opts.timeout)
    links = {i.name: i for i in ifaces.interfaces}
    names = [n for n in entry.interfaces.split(",") if n]
    _out(f"Public IP[{entry.address}] info on node {ips.pnn}")
    _out(f"IP:{entry.address}")
    _out(f"CurrentNode:{-1 if entry.pnn == UNHOSTED else entry.pnn}")
    _out(f"NumInterfaces:{len(names)}")
    for i, name in enumerate(names, 1):
        info = links.get(name)
        link = "up" if info is not None and info.up else "down"
        refs = info.references if info is not None else 0
        active = " (active)" if name == entry.active else ""
        _out(f"Interface[{i}]: Name:{name} Link:{link} References:{refs}{active}")
    return 0


def cmd_gettickles(s: Session) -> int:
    """CTDB's ``gettickles IP [PORT]``: the clients' connections known for an address."""
    from ctdb.failoverd.messages import GetTicklesRequest
    from ctdb.protocol import Address, Service

    args = s.opts.args
    if not 1 <= len(args) <= 2 or (len(args) == 2 and not args[1].isdigit()):
        raise UsageError("gettickles needs an IP and optionally a port")
    reply = s.client.request(Address(_one_node(s), Service.FAILOVERD),
                             GetTicklesRequest(args[0], int(args[1]) if len(args) == 2 else 0),
                             s.opts.timeout)
    if s.opts.machine:
        _machine(s.opts, ["Source IP", "Port", "Destiation IP", "Port"])  # sic, as CTDB
        for c in reply.conns:
            _machine(s.opts, [c.client, c.client_port, c.server, c.server_port])
        return 0
    _out(f"Connections for IP: {reply.address}")
    _out(f"Num connections: {len(reply.conns)}")
    for c in reply.conns:
        _out(f"SRC: {c.client}:{c.client_port}   DST: {c.server}:{c.server_port}")
    return 0


def _endpoint(text: str) -> tuple[str, int]:
    import ipaddress

    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        return host, int(port)
    except ValueError:
        raise UsageError(f"invalid endpoint {text!r}: expected IP:PORT") from None


def cmd_tickle(s: Session) -> int:
    """CTDB's ``tickle SRC:PORT DST:PORT`` (or pairs on stdin): a tickle ACK from DST (the
    server side) to SRC (the client), so the client resets the connection."""
    from ctdb.failoverd.tickle import send_tickles

    try:
        send_tickles(_pairs(s, "tickle"), count=1)
    except OSError as exc:
        # EPERM: this node's nftables gate holds the address dark (it does not host it).
        raise CtdbError(f"cannot send the tickle: {exc.strerror or exc}") from None
    return 0


def cmd_setifacelink(s: Session) -> int:
    """CTDB's ``setifacelink IFACE up|down``: an event script's view of a link."""
    from ctdb.failoverd.messages import SetIfaceLinkRequest
    from ctdb.protocol import Address, Service

    if len(s.opts.args) != 2 or s.opts.args[1] not in ("up", "down"):
        raise UsageError("setifacelink needs an interface and up or down")
    s.client.request(Address(_one_node(s), Service.FAILOVERD),
                     SetIfaceLinkRequest(s.opts.args[0], s.opts.args[1] == "up"),
                     s.opts.timeout)
    return 0


def _pairs(s: Session, command: str) -> list[Any]:
    """CLIENT:PORT SERVER:PORT from the arguments, or such lines on stdin."""
    from ctdb.failoverd.tickle import Conn

    if len(s.opts.args) == 2:
        pairs = [s.opts.args]
    elif not s.opts.args:
        pairs = [ln.split() for ln in sys.stdin if ln.strip() and not ln.startswith("#")]
    else:
        raise UsageError(f"{command} needs SRC:PORT DST:PORT, or pairs on stdin")
    conns = []
    for pair in pairs:
        if len(pair) != 2:
            raise UsageError(f"invalid connection {' '.join(pair)!r}")
        (client, cport), (server, sport) = _endpoint(pair[0]), _endpoint(pair[1])
        conns.append(Conn(server, sport, client, cport))
    return conns


def _add_tickles(s: Session, add: bool) -> int:
    from ctdb.failoverd.messages import AddTicklesRequest, ConnInfo
    from ctdb.protocol import Address, Service

    conns = _pairs(s, "addtickle" if add else "deltickle")
    s.client.request(Address(_one_node(s), Service.FAILOVERD), AddTicklesRequest(
        [ConnInfo(c.server, c.server_port, c.client, c.client_port) for c in conns], add),
        s.opts.timeout)
    return 0


def cmd_addtickle(s: Session) -> int:
    return _add_tickles(s, True)


def cmd_deltickle(s: Session) -> int:
    return _add_tickles(s, False)


def cmd_gratarp(s: Session) -> int:
    """CTDB's ``gratarp IP IFACE``: announce an address (ARP, or NA for IPv6) now."""
    import asyncio
    import ipaddress

    from ctdb.failoverd.netlink import gratuitous_arp, unsolicited_na

    if len(s.opts.args) != 2:
        raise UsageError("gratarp needs an IP and an interface")
    try:
        ip = ipaddress.ip_address(s.opts.args[0])
    except ValueError:
        raise UsageError(f"invalid IP {s.opts.args[0]!r}") from None
    iface = s.opts.args[1]
    try:
        if isinstance(ip, ipaddress.IPv4Address):
            asyncio.run(gratuitous_arp(iface, ip, count=1))
        else:
            asyncio.run(unsolicited_na(iface, ip, count=1))
    except OSError as exc:
        raise CtdbError(f"cannot announce {ip} on {iface}: {exc.strerror or exc}") from None
    return 0


def cmd_checktcpport(s: Session) -> int:
    """CTDB's ``checktcpport PORT``: 0 when the port is free, 98 (EADDRINUSE) when taken.

    Event scripts use it to see whether a service listens (50.samba on 445)."""
    import errno
    import socket

    if len(s.opts.args) != 1 or not s.opts.args[0].isdigit():
        raise UsageError("checktcpport needs a port number")
    port = int(s.opts.args[0])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))  # noqa: S104 - exactly what is being tested
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return errno.EADDRINUSE
            print(f"Failed to bind to TCP port {port}: {exc.strerror}", file=sys.stderr)
            return 1
    return 0


def cmd_event(s: Session) -> int:
    from ctdb.cli import event

    return event.cmd_event(s)


def cmd_service(s: Session) -> int:
    from ctdb.cli import service

    return service.cmd_service(s)


def cmd_scriptstatus(s: Session) -> int:
    from ctdb.cli import event

    return event.cmd_scriptstatus(s)


COMMANDS: dict[str, Callable[[Session], int]] = {
    "ping": cmd_ping,
    "version": cmd_version,
    "uptime": cmd_uptime,
    "pnn": cmd_pnn,
    "status": cmd_status,
    "nodestatus": cmd_nodestatus,
    "listnodes": cmd_listnodes,
    "getpid": cmd_getpid,
    "getdebug": cmd_getdebug,
    "setdebug": cmd_setdebug,
    "leader": cmd_leader,
    "runstate": cmd_runstate,
    "disable": cmd_disable,
    "enable": cmd_enable,
    "stop": cmd_stop,
    "continue": cmd_continue,
    "ban": cmd_ban,
    "unban": cmd_unban,
    "listvars": cmd_listvars,
    "getvar": cmd_getvar,
    "setvar": cmd_setvar,
    "getcapabilities": cmd_getcapabilities,
    "setleaderrole": cmd_setleaderrole,
    "recover": cmd_recover,
    "shutdown": cmd_shutdown,
    "reloadnodes": cmd_reloadnodes,
    "ip": cmd_ip,
    "moveip": cmd_moveip,
    "ifaces": cmd_ifaces,
    "ipreallocate": cmd_ipreallocate,
    "event": cmd_event,
    "checktcpport": cmd_checktcpport,
    "reloadips": cmd_reloadips,
    "addip": cmd_addip,
    "delip": cmd_delip,
    "ipinfo": cmd_ipinfo,
    "gettickles": cmd_gettickles,
    "tickle": cmd_tickle,
    "addtickle": cmd_addtickle,
    "deltickle": cmd_deltickle,
    "setifacelink": cmd_setifacelink,
    "gratarp": cmd_gratarp,
    "scriptstatus": cmd_scriptstatus,
    "service": cmd_service,
}


def _usage_exit(message: str) -> NoReturn:
    if message:
        print(f"ctdb: {message}", file=sys.stderr)
    sys.stderr.write(USAGE)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    try:
        opts = parse(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        if not str(exc):
            sys.stdout.write(USAGE)
            return 0
        _usage_exit(str(exc))
    command = COMMANDS.get(opts.command)
    if command is None:
        print(f"Unknown command '{opts.command}'", file=sys.stderr)
        return 2
    session: Session | None = None
    try:
        session = Session(opts)
        return command(session)
    except UsageError as exc:
        _usage_exit(str(exc))
    except TransportError as exc:
        from pathlib import Path  # (already loaded with the configuration)

        path = Path(session.config.conf.run_dir) if session else Path("?")
        print(f"Failed to connect to CTDB daemon ({path / 'transport.sock'})"
              if "cannot connect" in str(exc) else str(exc), file=sys.stderr)
        return 1
    except CtdbError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (``ctdb status | head``): exit quietly, as tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        if session is not None:
            session.close()


if __name__ == "__main__":
    sys.exit(main())
