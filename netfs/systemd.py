"""An asyncio client for systemd's D-Bus API (``org.freedesktop.systemd1``).

serviced manages smbd and nfs-ganesha through it and marks the node UNHEALTHY the moment
a unit fails, so failures must come from systemd's own signals, never from polling, in
the order they happened.  Built on :mod:`netfs.dbus` (dbus-fast or dbus-next).

What systemd does (seen on systemd 252) that shapes this module:

- The manager sends unit and job signals only while some client is subscribed
  (``Manager.Subscribe``); a subscription lasts as long as the client's connection.
- A job method (``StartUnit``...) answers with the job's path at once; the job's end comes
  later as ``Manager.JobRemoved(id, job, unit, result)``.  That signal can be read before
  the coroutine that made the call sees the answer, so JobRemoved signals are kept while
  such a call is in flight.
- Each change of a unit sends ``PropertiesChanged`` twice on the unit's path: first for
  its type's interface (``...Service``: MainPID, Result, NRestarts...), then for
  ``...Unit`` (ActiveState, SubState...), each with every property that signals changes;
  the same state often comes several times, and the first Unit signal after a start may
  still show the old state.  So a watch keeps the last known properties of each unit,
  merges every signal into them, and reports on the Unit signal when LoadState,
  ActiveState or SubState differ from what it reported last.
- LoadState is constant as far as D-Bus goes: no signal carries it, even when a unit
  file appears or is masked.  A watch asks for a unit's state again after each
  daemon-reload (``Manager.Reloading``) and when a unit not loaded before changes.
- A snapshot (``GetAll``) and the signals come from one connection of systemd, which
  numbers what it sends: a signal numbered before the snapshot's answer is older than the
  snapshot and is dropped, a later one is applied on top.
- With ``Restart=``, a unit whose process dies is still reported "failed"/"failed" (Result
  "signal" or "exit-code") for a moment, then "activating"/"auto-restart" until it runs
  again: a watcher sees the failure either way.
- ``LoadUnit`` (and any query on a unit's path) loads a unit that is not loaded, even one
  without a unit file (LoadState "not-found"); nothing else holding it, systemd unloads it
  again at once.  Its object path stays the same, so a watch on it goes on working.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ctdb.errors import CtdbError
from netfs import dbus

log = logging.getLogger(__name__)

T = TypeVar("T")
SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
UNIT = "org.freedesktop.systemd1.Unit"
PROPERTIES = "org.freedesktop.DBus.Properties"
JOB_TIMEOUT = 120.0  # longer than systemd's default start timeout (90 s)
CALL_TIMEOUT = 25.0  # a frozen or hung systemd must not hang its client


class SystemdError(CtdbError):
    """A request to systemd failed; ``unit`` and ``dbus_error`` say which and why."""

    def __init__(self, message: str, unit: str = "", dbus_error: str = "") -> None:
        super().__init__(message)
        self.unit = unit
        self.dbus_error = dbus_error


class JobTimeout(SystemdError, TimeoutError):
    """A job did not finish in time; systemd goes on with it."""


class BusDisconnected(SystemdError, ConnectionError):
    """The connection to the bus is gone: connect a new Systemd (and watch again)."""


@dataclass(frozen=True)
class UnitState:
    """One unit as systemd sees it: what serviced decides health on.

    ``result`` (a service's "success", "exit-code", "signal", "timeout"...) says why a
    unit failed; ``main_pid`` (0: none) and ``n_restarts`` (``Restart=``'s count) tell
    a restarted process apart.  Pids are those of systemd's pid namespace.
    """

    name: str
    load_state: str
    active_state: str
    sub_state: str
    result: str = ""
    main_pid: int = 0
    n_restarts: int = 0
    exec_main_status: int = 0

    @property
    def failed(self) -> bool:
        return self.active_state == "failed"

    @classmethod
    def from_properties(cls, name: str, props: Mapping[str, Any]) -> UnitState:
        """From properties of the Unit interface merged with those of the unit's type."""

        def text(key: str) -> str:
            value = props.get(key, "")
            return value if isinstance(value, str) else ""

        def number(key: str) -> int:
            value = props.get(key, 0)
            return value if isinstance(value, int) else 0

        return cls(name=name, load_state=text("LoadState"), active_state=text("ActiveState"),
                   sub_state=text("SubState"), result=text("Result"),
                   main_pid=number("MainPID"), n_restarts=number("NRestarts"),
                   exec_main_status=number("ExecMainStatus"))


def _values(props: Mapping[str, Any]) -> dict[str, Any]:
    """A{sv} with the variants unwrapped."""
    return {key: getattr(value, "value", value) for key, value in props.items()}


def _newer(serial: int, than: int) -> bool:
    """Whether message *serial* was sent after *than* (serials are 32-bit and wrap)."""
    return 0 < (serial - than) % 2**32 < 2**31


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _Tracked:
    """One unit of a watch: its merged properties and what the callback saw last."""

    def __init__(self, watch: Watch, name: str, path: str) -> None:
        self.watch = watch
        self.name = name
        self.path = path
        self.props: dict[str, Any] = {}
        self.sender: str | None = None  # of the last snapshot or signal applied
        self.serial = 0
        self.pending = True  # a snapshot is on its way: signals wait in `early`
        self.early: list[Any] = []
        self.reported: tuple[str, str, str] | None = None

    def state(self) -> UnitState:
        return UnitState.from_properties(self.name, self.props)


class Watch:
    """A running :meth:`Systemd.watch`: the units' latest states, and :meth:`close`.

    ``closed`` turns true on close() and when the bus is gone.
    """

    def __init__(self, systemd: Systemd, callback: Callable[[UnitState], object],
                 initial: bool) -> None:
        self._systemd = systemd
        self._callback = callback
        self._initial = initial
        self._units: dict[str, _Tracked] = {}
        self._rules: list[str] = []
        self.closed = False

    @property
    def states(self) -> dict[str, UnitState]:
        """The last known state of each unit watched, by the name it was asked for."""
        return {name: t.state() for name, t in self._units.items() if t.sender is not None}

    async def close(self) -> None:
        """No more callbacks; the bus stops sending this watch's signals."""
        if self.closed:
            return
        self.closed = True
        self._systemd._forget(self)
        bus = self._systemd._bus
        if bus is not None and self._systemd.connected:
            for rule in self._rules:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(dbus.remove_match(bus, rule), CALL_TIMEOUT)

    # -- from Systemd, in the order the bus delivered --------------------------------------
    def _snapshot(self, t: _Tracked, reply: Any) -> None:
        """The unit's full state (GetAll's answer); then the signals that came after it."""
        if self.closed:
            return
        t.props = _values(reply.body[0])
        t.sender, t.serial = reply.sender, reply.serial
        if t.reported is None and not self._initial:
            t.reported = self._key(t.state())  # the first snapshot, not to be reported
        self._report(t)
        self._replay(t, check=True)

    def _unsnapped(self, t: _Tracked) -> None:
        """A snapshot that failed: apply what came meanwhile as it is."""
        self._replay(t, check=False)

    def _replay(self, t: _Tracked, check: bool) -> None:
        t.pending = False
        early, t.early = t.early, []
        for msg in early:
            if check:
                self._signal(t, msg)
            elif not self.closed:
                self._apply(t, msg)

    def _signal(self, t: _Tracked, msg: Any) -> None:
        if self.closed:
            return
        if t.pending:
            t.early.append(msg)
            return
        if msg.sender == t.sender and not _newer(msg.serial, t.serial):
            return  # older than the snapshot: its news is in there already
        if msg.body[0] == UNIT and t.props.get("LoadState") != "loaded":
            # LoadState is constant to D-Bus, never in a signal: a unit not loaded at the
            # snapshot that changes now was loaded since, so take a new snapshot first.
            t.pending = True
            t.early.append(msg)
            self._systemd._refresh(t)
            return
        self._apply(t, msg)

    def _apply(self, t: _Tracked, msg: Any) -> None:
        interface, changed, _invalidated = msg.body
        t.props.update(_values(changed))
        t.sender, t.serial = msg.sender, msg.serial
        if interface == UNIT:  # the type's properties came first, in their own signal
            self._report(t)

    @staticmethod
    def _key(state: UnitState) -> tuple[str, str, str]:
        return (state.load_state, state.active_state, state.sub_state)

    def _report(self, t: _Tracked) -> None:
        state = t.state()
        key = self._key(state)
        if key == t.reported:
            return  # systemd repeats itself: only changes are news
        t.reported = key
        try:
            self._callback(state)
        except Exception:  # a faulty callback must not stop the bus's reader
            log.exception("systemd watch callback failed on %s", state.name)


class Systemd:
    """A connection to systemd's manager, subscribed so that systemd sends signals.

    ``await Systemd().connect()`` (the system bus, or *address*), then jobs, states and
    watches; :meth:`close` at the end.

    A job method (start, stop, restart, reload; mode "replace") returns once the job is
    over, with systemd's result: "done", "failed" (e.g. ExecStart= failed), "canceled"
    (another job replaced it), "timeout", "dependency", "skipped", "invalid" (e.g.
    reloading an inactive unit)...  A D-Bus error (no such unit...) raises SystemdError
    naming the unit; no result within *timeout* seconds (None: no limit), JobTimeout.

    Once the bus is gone (:attr:`connected` false,
    :meth:`wait_disconnected` returns) every request raises :class:`BusDisconnected`,
    pending jobs included, and watches are silent: connect again and watch again.
    """

    def __init__(self, call_timeout: float = CALL_TIMEOUT) -> None:
        self.call_timeout = call_timeout
        self._bus: Any = None
        self._monitor: asyncio.Task[None] | None = None
        self._gone = asyncio.Event()
        self._reason = "not connected"
        self._jobs: dict[str, asyncio.Future[str | None]] = {}
        self._early: dict[str, str] = {}  # JobRemoved read while a job call is in flight
        self._inflight = 0
        self._tracked: dict[str, list[_Tracked]] = {}
        self._watches: list[Watch] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # -- connection -------------------------------------------------------------------------
    async def connect(self, address: str | None = None) -> Systemd:
        """Connect to *address* (None: the system bus) and subscribe to systemd's signals."""
        if self._bus is not None:
            raise SystemdError("systemd: a client connects once: make a new Systemd")
        where = address or "the system bus"
        try:
            bus = await asyncio.wait_for(dbus.connect(address), self.call_timeout)
        except Exception as exc:
            raise BusDisconnected(f"systemd: cannot connect to {where}: "
                                  f"{_one_line(str(exc)) or type(exc).__name__}") from None
        self._bus = bus
        self._reason = f"connected to {where}"
        bus.add_message_handler(self._on_message)
        self._monitor = asyncio.get_running_loop().create_task(self._watch_bus(bus))
        try:
            for member in ("JobRemoved", "Reloading"):
                rule = dbus.match_rule(type="signal", sender=SYSTEMD, path=MANAGER_PATH,
                                       interface=MANAGER, member=member)
                await self._guard("subscribe", "", dbus.add_match(bus, rule))
            await self._call("subscribe", "", MANAGER_PATH, MANAGER, "Subscribe")
        except BaseException:
            await self.close()
            raise
        return self

    @property
    def connected(self) -> bool:
        """Whether requests can still reach systemd."""
        return self._bus is not None and not self._gone.is_set() and bool(self._bus.connected)

    async def wait_disconnected(self) -> str:
        """Return once the connection is gone (or closed), with the reason."""
        await self._gone.wait()
        return self._reason

    async def close(self) -> None:
        """Disconnect: pending jobs raise BusDisconnected, watches stop.  Idempotent."""
        bus = self._bus
        if bus is None or self._gone.is_set():
            return
        self._lost("closed by this client")
        bus.disconnect()
        if self._monitor is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._monitor), 5.0)

    async def _watch_bus(self, bus: Any) -> None:
        try:
            await bus.wait_for_disconnect()
            reason = "the bus closed the connection"
        except Exception as exc:
            reason = f"connection lost: {_one_line(str(exc)) or type(exc).__name__}"
        dbus.release(bus)
        self._lost(reason)

    def _lost(self, reason: str) -> None:
        if self._gone.is_set():
            return
        self._reason = reason
        self._gone.set()
        for fut in self._jobs.values():
            if not fut.done():
                fut.set_result(None)  # the waiter raises BusDisconnected
        self._jobs.clear()
        for watch in self._watches:
            watch.closed = True
        for task in self._tasks:
            task.cancel()

    # -- jobs -------------------------------------------------------------------------------
    async def start(self, unit: str, *, timeout: float | None = JOB_TIMEOUT) -> str:
        """Start *unit*; once its job is over, the job's result."""
        return await self._job("StartUnit", "start", unit, timeout)

    async def stop(self, unit: str, *, timeout: float | None = JOB_TIMEOUT) -> str:
        """Stop *unit*; the job's result ("done" also when it was not running)."""
        return await self._job("StopUnit", "stop", unit, timeout)

    async def restart(self, unit: str, *, timeout: float | None = JOB_TIMEOUT) -> str:
        """Restart *unit* (start it if it is not running); the job's result."""
        return await self._job("RestartUnit", "restart", unit, timeout)

    async def reload(self, unit: str, *, timeout: float | None = JOB_TIMEOUT) -> str:
        """Reload *unit*'s configuration (ExecReload=); the job's result.

        A unit without ExecReload= raises SystemdError (JobTypeNotApplicable); one that
        is not active gives "invalid".
        """
        return await self._job("ReloadUnit", "reload", unit, timeout)

    async def _job(self, method: str, verb: str, unit: str, timeout: float | None) -> str:
        """Queue a job (mode "replace") and wait for its Manager.JobRemoved."""
        what = f"{verb} {unit}"
        self._inflight += 1
        try:
            reply = await self._call(what, unit, MANAGER_PATH, MANAGER, method,
                                     signature="ss", body=[unit, "replace"])
            job = str(reply.body[0])
            result = self._early.get(job)  # kept: other calls may share the job
            if result is not None:
                return result
            fut = self._jobs.get(job)  # a job merged into a pending one is shared
            if fut is None:
                fut = self._jobs[job] = asyncio.get_running_loop().create_future()
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._early.clear()
        try:
            outcome = await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            raise JobTimeout(f"systemd: {what}: job {job} not over within {timeout:g}s"
                             " (systemd goes on with it)", unit) from None
        if outcome is None:
            raise BusDisconnected(f"systemd: {what}: {self._reason} before the job ended",
                                  unit)
        return outcome

    # -- states -----------------------------------------------------------------------------
    async def state(self, unit: str) -> UnitState:
        """*unit*'s state now; a unit without a unit file has load_state "not-found"."""
        what = f"state of {unit}"
        path = await self._load(what, unit)
        reply = await self._call(what, unit, path, PROPERTIES, "GetAll", signature="s",
                                 body=[""])
        return UnitState.from_properties(unit, _values(reply.body[0]))

    async def watch(self, units: Iterable[str], callback: Callable[[UnitState], object], *,
                    initial: bool = True) -> Watch:
        """Call *callback* with a unit's full state whenever its Active/Sub/LoadState change.

        From systemd's PropertiesChanged signals, in the order systemd sent them, with
        each unit's state merged from every signal (and first, if *initial*, each unit's
        state now).  LoadState, which no signal carries, is fetched again after a
        daemon-reload and when a unit not loaded before changes.  The callback runs in
        the bus's reader: it must be quick and not block (hand work to a task); an
        exception from it is logged.  Once the bus is gone the watch is silent (see
        :meth:`wait_disconnected`).
        """
        watch = Watch(self, callback, initial)
        self._watches.append(watch)
        try:
            for name in dict.fromkeys(units):
                what = f"watch {name}"
                path = await self._load(what, name)  # an alias's path is its unit's
                tracked = _Tracked(watch, name, path)
                rule = dbus.match_rule(type="signal", sender=SYSTEMD, path=path,
                                       interface=PROPERTIES, member="PropertiesChanged")
                await self._guard(what, name, dbus.add_match(self._bus, rule))
                watch._rules.append(rule)
                watch._units[name] = tracked
                self._tracked.setdefault(path, []).append(tracked)
                reply = await self._call(what, name, path, PROPERTIES, "GetAll", signature="s",
                                         body=[""])
                watch._snapshot(tracked, reply)
        except BaseException:
            await watch.close()
            raise
        return watch

    def _forget(self, watch: Watch) -> None:
        with contextlib.suppress(ValueError):
            self._watches.remove(watch)
        for tracked in watch._units.values():
            others = [t for t in self._tracked.get(tracked.path, []) if t is not tracked]
            if others:
                self._tracked[tracked.path] = others
            else:
                self._tracked.pop(tracked.path, None)

    def _refresh(self, tracked: _Tracked) -> None:
        """A new snapshot of a watched unit, the signals meanwhile kept until it came."""
        task = asyncio.get_running_loop().create_task(self._resnap(tracked))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resnap(self, tracked: _Tracked) -> None:
        try:
            reply = await self._call(f"watch {tracked.name}", tracked.name, tracked.path,
                                     PROPERTIES, "GetAll", signature="s", body=[""])
        except CtdbError as exc:
            if self.connected:
                log.warning("%s", exc)
                tracked.watch._unsnapped(tracked)
            return
        tracked.watch._snapshot(tracked, reply)

    # -- the manager ------------------------------------------------------------------------
    async def daemon_reload(self) -> None:
        """Reread unit files (``systemctl daemon-reload``); returns once systemd has."""
        await self._call("daemon-reload", "", MANAGER_PATH, MANAGER, "Reload")

    # -- internals --------------------------------------------------------------------------
    async def _load(self, what: str, unit: str) -> str:
        reply = await self._call(what, unit, MANAGER_PATH, MANAGER, "LoadUnit", signature="s",
                                 body=[unit])
        return str(reply.body[0])

    async def _call(self, what: str, unit: str, path: str, interface: str, member: str, *,
                    signature: str = "", body: list[Any] | None = None) -> Any:
        """One call to systemd: its whole answer, or SystemdError naming *what*."""
        return await self._guard(what, unit, dbus.call_reply(
            self._bus, SYSTEMD, path, interface, member, signature=signature, body=body))

    async def _guard(self, what: str, unit: str, request: Awaitable[T]) -> T:
        """*request*'s outcome, every failure turned into a one-line SystemdError."""
        if not self.connected:
            if asyncio.iscoroutine(request):
                request.close()
            raise BusDisconnected(f"systemd: {what}: not connected ({self._reason})", unit)
        try:
            return await asyncio.wait_for(request, self.call_timeout)
        except dbus.DBusCallError as exc:
            raise SystemdError(f"systemd: {what}: {_one_line(exc.detail)} ({exc.error_name})",
                               unit, exc.error_name) from None
        except TimeoutError:
            raise SystemdError(f"systemd: {what}: no answer within {self.call_timeout:g}s",
                               unit) from None
        except Exception as exc:
            if not self.connected:
                raise BusDisconnected(f"systemd: {what}: {self._reason}", unit) from None
            raise SystemdError(f"systemd: {what}: {_one_line(str(exc))}", unit) from None

    def _on_message(self, msg: Any) -> None:
        """Every message the bus reads, in order: JobRemoved and units' PropertiesChanged."""
        if msg.message_type != dbus.MessageType.SIGNAL:
            return
        try:
            if msg.member == "JobRemoved" and msg.interface == MANAGER:
                _id, job, _unit, result = msg.body
                fut = self._jobs.pop(job, None)
                if fut is not None and not fut.done():
                    fut.set_result(str(result))
                if self._inflight:  # for calls whose answer naming this job is not seen yet
                    self._early[job] = str(result)
            elif msg.member == "PropertiesChanged" and msg.interface == PROPERTIES:
                for tracked in list(self._tracked.get(msg.path, ())):
                    tracked.watch._signal(tracked, msg)
            elif msg.member == "Reloading" and msg.interface == MANAGER and not msg.body[0]:
                # Units were read again: a LoadState may have changed (masked, not-found).
                for trackeds in self._tracked.values():
                    for tracked in trackeds:
                        if not tracked.pending:
                            tracked.pending = True
                            self._refresh(tracked)
        except Exception:
            log.exception("systemd: cannot handle %s.%s", msg.interface, msg.member)
