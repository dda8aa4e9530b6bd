"""``ctdb event ...`` and ``ctdb scriptstatus``: CTDB's event commands, words and exit codes.

``event run`` and ``event status`` ask the node's eventd; ``event script list|enable|
disable`` work on the files directly (no daemon needed), as CTDB's tool does.
"""

from __future__ import annotations

import errno
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

    from ctdb.cli.main import Session

USAGE = """\
Usage: ctdb event run TIMEOUT COMPONENT EVENT [ARGS...]
       ctdb event status COMPONENT EVENT
       ctdb event script list COMPONENT
       ctdb event script enable COMPONENT SCRIPT
       ctdb event script disable COMPONENT SCRIPT"""


def _usage() -> int:
    print(USAGE, file=sys.stderr)
    return 1


def _dirs(s: Session, component: str) -> tuple[Path, Path]:
    from pathlib import Path

    from ctdb.config.paths import SCRIPTS_DATA_DIR

    data = Path(os.environ.get("CTDB_SCRIPTS_DATA_DIR") or SCRIPTS_DATA_DIR)
    return s.config.base / "events" / component, data / "events" / component


def _exit(code: int) -> int:
    """CTDB's tool turns a helper's errno+64 into errno: so do we, for the same codes."""
    return code - 64 if 64 <= code <= 254 else code


def cmd_event(s: Session) -> int:
    args = s.opts.args
    if not args:
        return _usage()
    sub, rest = args[0], args[1:]
    if sub == "run" and len(rest) >= 3:
        return _run(s, rest[0], rest[1], rest[2], rest[3:])
    if sub == "status" and len(rest) == 2:
        return _status(s, rest[0], rest[1])
    if sub == "script" and len(rest) >= 2:
        return _script(s, rest[0], rest[1:])
    return _usage()


def _run(s: Session, timeout_text: str, component: str, event: str, args: list[str]) -> int:
    from ctdb.eventd import policy
    from ctdb.eventd.messages import RunEventRequest
    from ctdb.eventd.runner import CANCELLED, NO_COMPONENT, TIMEDOUT
    from ctdb.protocol import NODE_CURRENT, Address, Service

    try:
        timeout = max(0, int(timeout_text))
    except ValueError:
        print(f"Invalid timeout {timeout_text!r}", file=sys.stderr)
        return 1
    # CTDB's timeout 0 is a deadline of now; 1 ms is as close as we get.
    request = RunEventRequest(component, event, args, max(1, timeout * 1000))
    reply = s.client.request(Address(NODE_CURRENT, Service.EVENTD), request, timeout + 5.0)
    if reply.status == 0:
        return 0
    if reply.status == NO_COMPONENT:
        print(f"Event dir for {component} does not exist")
    elif reply.status == TIMEDOUT:
        print(f"Event {event} in {component} timed out")
    elif reply.status == CANCELLED:
        print(f"Event {event} in {component} got cancelled")
    else:
        print(f"Event {event} in {component} failed")
    return policy.exit_code(reply.status)


def _ctime(us: int) -> str:
    return time.ctime(us / 1e6)


def status_lines(reply: object) -> list[str]:
    """The lines of ``event status`` for an EventResult, in CTDB's layout."""
    from ctdb.eventd.runner import DISABLED, NOT_RUN, TIMEDOUT

    lines = []
    for sc in reply.scripts:  # type: ignore[attr-defined]
        if sc.status == NOT_RUN:
            continue
        if sc.status == DISABLED:
            lines.append(f"{sc.name:<20} {'DISABLED':<10}")
            continue
        if sc.status == TIMEDOUT:
            lines.append(f"{sc.name:<20} {'TIMEDOUT':<10} {_ctime(sc.begin_us)}")
        elif sc.status < 0:
            reason = "killed by a signal" if sc.status == -errno.EINTR else os.strerror(
                -sc.status)
            lines.append(f"{sc.name:<20} {'CANNOT RUN':<10} ({reason})")
        else:
            word = "OK" if sc.status == 0 else "ERROR"
            seconds = (sc.end_us - sc.begin_us) / 1e6
            lines.append(f"{sc.name:<20} {word:<10} {seconds:.3f} {_ctime(sc.begin_us)}")
        output = sc.output.rstrip("\n")
        if sc.status != 0 or output:
            out = output.split("\n") if output else [""]
            if len(out) == 1:
                lines.append(f"  OUTPUT: {out[0]}")
            else:
                lines.append("  OUTPUT:")
                lines.extend(f"    {line}" for line in out)
    return lines


def _status(s: Session, component: str, event: str) -> int:
    from ctdb.errors import RemoteError
    from ctdb.eventd.messages import EventStatusRequest
    from ctdb.eventd.runner import NO_COMPONENT
    from ctdb.protocol import NODE_CURRENT, Address, Service

    node = NODE_CURRENT if s.opts.node is None else s.targets()[0]
    try:
        reply = s.client.request(Address(node, Service.EVENTD),
                                 EventStatusRequest(component, event), s.opts.timeout)
    except RemoteError as exc:
        if str(exc).startswith("Event ") and str(exc).endswith(f"has never run in {component}"):
            print(str(exc))
            return errno.EINVAL
        raise
    if reply.status == NO_COMPONENT:
        print(f"Event dir for {component} does not exist")
        return errno.ENOENT
    if s.opts.json:
        from ctdb.cli.main import _json

        _json({"component": component, "event": event, "status": reply.status,
               "scripts": [{"name": sc.name, "status": sc.status,
                            "begin": sc.begin_us / 1e6, "end": sc.end_us / 1e6,
                            "output": sc.output} for sc in reply.scripts]})
        return _exit(abs(reply.status))
    for line in status_lines(reply):
        print(line)
    return _exit(abs(reply.status))


def cmd_scriptstatus(s: Session) -> int:
    """CTDB's old ``scriptstatus [EVENT]``: ``event status legacy EVENT``; exit 0."""
    event = s.opts.args[0] if s.opts.args else "monitor"
    _status(s, "legacy", event)
    return 0


def _script(s: Session, sub: str, rest: list[str]) -> int:
    from ctdb.errors import CtdbError
    from ctdb.eventd.scripts import ScriptError, script_list, set_enabled

    if sub == "list" and len(rest) == 1:
        directory, data = _dirs(s, rest[0])
        if not directory.is_dir():
            print(f"Event dir for {rest[0]} does not exist", file=sys.stderr)
            return errno.ENOENT
        for marked, name in script_list(directory, data):
            print(f"{'*' if marked else ' '} {name}" if name else "")
        return 0
    if sub in ("enable", "disable") and len(rest) == 2:
        directory, data = _dirs(s, rest[0])
        try:
            set_enabled(directory, data, rest[1], sub == "enable")
        except ScriptError as exc:
            print(str(exc))
            return exc.code
        except CtdbError as exc:
            print(str(exc))
            return 1
        return 0
    return _usage()
