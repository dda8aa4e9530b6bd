"""eventd's messages (type numbers 0x0500-0x05FF)."""

from __future__ import annotations

from ctdb.protocol.codec import I32, I64, U32, message, struct


@struct
class ScriptStatus:
    name: str
    status: I32  # exit code, or a negative errno (timed out, cancelled, disabled, not run)
    begin_us: I64
    end_us: I64
    output: str


@message(0x0500)
class RunEventRequest:
    """Run an event's scripts now (``ctdb event run``, and the daemons' own events)."""

    component: str
    event: str
    args: list[str]
    timeout_ms: U32 = 0  # 0: EventScriptTimeout


@message(0x0501)
class EventResult:
    """How an event's last run went, script by script."""

    component: str
    event: str
    args: list[str]
    status: I32
    begin_us: I64
    end_us: I64
    scripts: list[ScriptStatus]


@message(0x0502)
class EventStatusRequest:
    """The last run of an event (``ctdb event status``)."""

    component: str
    event: str
