"""tdaemon: a daemon is a name, handlers per message type, and periodic tasks.

The framework connects to transportd, dispatches incoming messages to handlers,
sends a handler's return value back as the reply, turns a handler's exception into
an error reply (the daemon keeps serving), runs periodic tasks, and answers the
common controls every daemon has: ping, version, uptime, status, get/set log level
and shutdown.

    class Echo(Daemon):
        name = "echo"
        service = 42

        @handles(EchoRequest)
        async def echo(self, msg: Message) -> EchoReply:
            return EchoReply(msg.body.data)
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import ctdb
from ctdb import logs
from ctdb.errors import ConfigError, CtdbError, ProtocolError
from ctdb.protocol import (
    MIN_VERSION,
    VERSION,
    Ack,
    ErrorCode,
    ErrorReply,
    Flag,
    GetLogLevelRequest,
    KeyValue,
    LogLevelReply,
    Message,
    PingReply,
    PingRequest,
    SetLogLevelRequest,
    ShutdownRequest,
    StatusReply,
    StatusRequest,
    UnknownBody,
    UptimeReply,
    UptimeRequest,
    VersionReply,
    VersionRequest,
)
from ctdb.protocol.codec import type_number
from ctdb.transport.client import Client

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
Handler = Callable[[Any, Message], Any]


def handles(*body_types: type) -> Callable[[F], F]:
    """Mark a method as the handler of messages with these body types."""

    def mark(fn: F) -> F:
        fn.__dict__.setdefault("_tdaemon_handles", []).extend(body_types)
        return fn

    return mark


def periodic(interval: float | str) -> Callable[[F], F]:
    """Run a method every *interval* seconds (or every ``getattr(self, interval)``)."""

    def mark(fn: F) -> F:
        fn.__dict__["_tdaemon_periodic"] = interval
        return fn

    return mark


class Daemon:
    """Base class of every daemon; subclasses set ``name`` and ``service``."""

    name: ClassVar[str] = "daemon"
    service: ClassVar[int] = 0
    # Message classes whose broadcasts this daemon receives.
    subscriptions: ClassVar[tuple[type, ...]] = ()
    _handlers: ClassVar[dict[type, str]] = {}
    _periodics: ClassVar[dict[str, float | str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers: dict[type, str] = {}
        periodics: dict[str, float | str] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                for body_type in getattr(value, "_tdaemon_handles", ()):
                    handlers[body_type] = attr
                if hasattr(value, "_tdaemon_periodic"):
                    periodics[attr] = value._tdaemon_periodic
        cls._handlers = handlers
        cls._periodics = periodics

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.start_time = time.time()
        self.client: Client | None = None
        self.pnn = -1
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.state = "INIT"

    # -- hooks for subclasses ----------------------------------------------------
    async def setup(self) -> None:
        """Called once connected, before the daemon reports ready."""

    async def teardown(self) -> None:
        """Called on shutdown, while still connected."""

    def status_items(self) -> list[KeyValue]:
        """Daemon-specific lines for ``status``."""
        return []

    # -- running -----------------------------------------------------------------
    async def run(self, ready: Callable[[], None] | None = None) -> None:
        self.client = await Client.connect(self.run_dir, self.service,
                                           subscriptions=[type_number(c)
                                                          for c in self.subscriptions],
                                           on_message=self._dispatch)
        self.pnn = self.client.address.node
        try:
            await self.setup()
            for attr, interval in self._periodics.items():
                self._own(self._every(getattr(self, attr), interval))
            self.state = "RUNNING"
            if ready is not None:
                ready()
            await self._stop.wait()
        finally:
            self.state = "SHUTDOWN"
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            try:
                await self.teardown()
            finally:
                await self.client.close()

    def shutdown(self) -> None:
        self._stop.set()

    def _own(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _every(self, fn: Callable[[], Awaitable[None]], interval: float | str) -> None:
        while True:
            seconds = float(getattr(self, interval)) if isinstance(interval, str) else interval
            await asyncio.sleep(seconds)
            try:
                await fn()
            except Exception:
                log.exception("%s: periodic task %s failed", self.name, fn.__name__)

    def _dispatch(self, msg: Message) -> None:
        if self.state == "SHUTDOWN":
            # Tearing down: new work (a leader's order to take an address...) would undo it.
            self._error(msg, ErrorCode.REFUSED, f"{self.name} is shutting down")
            return
        attr = self._handlers.get(type(msg.body))
        if attr is None:
            what = (f"message type {msg.body.msg_type:#x} (from a newer version?)"
                    if isinstance(msg.body, UnknownBody) else type(msg.body).__name__)
            log.info("%s: no handler for %s", self.name, what)
            self._error(msg, ErrorCode.UNKNOWN_MESSAGE, f"{self.name} does not handle {what}")
            return
        fn = getattr(self, attr)
        if inspect.iscoroutinefunction(fn):
            self._own(self._call_async(fn, msg))
            return
        try:
            result = fn(msg)
        except Exception as exc:
            self._failed(msg, exc)
            return
        self._answer(msg, result)

    async def _call_async(self, fn: Callable[[Message], Awaitable[Any]], msg: Message) -> None:
        try:
            result = await fn(msg)
        except Exception as exc:
            self._failed(msg, exc)
            return
        self._answer(msg, result)

    def _answer(self, msg: Message, result: Any) -> None:
        if result is None or self.client is None or not self.client.connected:
            return
        try:
            self.client.reply(msg, result)
        except ProtocolError as exc:
            log.exception("%s: cannot send the reply to %s", self.name,
                          type(msg.body).__name__)
            self._error(msg, ErrorCode.INTERNAL, f"cannot encode the reply: {exc}")

    def _failed(self, msg: Message, exc: Exception) -> None:
        if isinstance(exc, CtdbError):
            log.warning("%s: %s failed: %s", self.name, type(msg.body).__name__, exc)
        else:
            log.error("%s: handler for %s failed", self.name, type(msg.body).__name__,
                      exc_info=exc)
        # Our own errors are one clear line meant for the user; others name their type.
        text = str(exc) if isinstance(exc, CtdbError) else f"{type(exc).__name__}: {exc}"
        self._error(msg, ErrorCode.INTERNAL, text)

    def _error(self, msg: Message, code: ErrorCode, text: str) -> None:
        if msg.flags & Flag.REQUEST and self.client is not None and self.client.connected:
            self.client.reply(msg, ErrorReply(int(code), text))

    # -- the common controls -----------------------------------------------------
    @handles(PingRequest)
    def _ping(self, _msg: Message) -> PingReply:
        return PingReply(0)

    @handles(VersionRequest)
    def _version(self, _msg: Message) -> VersionReply:
        return VersionReply(ctdb.__version__, MIN_VERSION, VERSION)

    @handles(UptimeRequest)
    def _uptime(self, _msg: Message) -> UptimeReply:
        return UptimeReply(int(time.time() * 1e6), int(self.start_time * 1e6), 0, 0)

    @handles(StatusRequest)
    def _status(self, _msg: Message) -> StatusReply:
        return StatusReply(self.name, os.getpid(), self.state, self.status_items())

    @handles(GetLogLevelRequest)
    def _get_log_level(self, _msg: Message) -> LogLevelReply:
        return LogLevelReply(logs.level_name(logging.getLogger().level))

    @handles(SetLogLevelRequest)
    def _set_log_level(self, msg: Message) -> LogLevelReply:
        try:
            logging.getLogger().setLevel(logs.level_number(msg.body.level))
        except ConfigError as exc:
            raise CtdbError(str(exc)) from None
        return self._get_log_level(msg)

    @handles(ShutdownRequest)
    def _shutdown(self, _msg: Message) -> Ack:
        self.shutdown()
        return Ack()
