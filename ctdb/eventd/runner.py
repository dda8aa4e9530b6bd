"""Running one event: every enabled script in order, under one deadline.

A script runs as ``SCRIPT EVENT ARGS...`` in a session of its own, stdout and stderr
into one pipe.  The event's timeout covers all its scripts together (CTDB's
EventScriptTimeout); when it runs out the script's whole process group is killed
(after the optional debug script had a look) and the remaining scripts do not run.
The first failing script also ends the run.  Output is kept up to ``MAX_OUTPUT``
bytes (the rest is read and dropped, so a chatty script never blocks on its pipe),
and decoded so that binary garbage cannot hurt whoever prints it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MAX_OUTPUT = 64 * 1024  # bytes of a script's output kept for ``event status``
KILL_WAIT = 2.0  # seconds to wait for a killed script's process to be reaped
OUTPUT_GRACE = 0.05  # seconds to drain the pipe after a script exited

# Statuses besides a script's exit code, as CTDB's event daemon reports them.
TIMEDOUT = -errno.ETIMEDOUT
CANCELLED = -errno.ECANCELED
DISABLED = -errno.ENOEXEC  # listed, not run: not executable
NOT_RUN = -errno.ENOMSG  # not reached: an earlier script failed or timed out
KILLED = -errno.EINTR  # died of a signal
NO_COMPONENT = -errno.ENOENT  # the component's directory does not exist


@dataclass(frozen=True, slots=True)
class ScriptRun:
    """One script's part in an event run."""

    name: str
    status: int  # exit code, or one of the negative statuses above
    begin: float  # time.time() when it started
    end: float
    output: str


@dataclass(frozen=True, slots=True)
class EventRun:
    """One event's run: the overall status and each script's."""

    component: str
    event: str
    args: tuple[str, ...]
    status: int  # 0, the failing script's status, TIMEDOUT or CANCELLED
    begin: float
    end: float
    scripts: tuple[ScriptRun, ...]

    @property
    def failed(self) -> ScriptRun | None:
        return next((s for s in self.scripts if s.status not in (0, DISABLED, NOT_RUN)), None)


def clean_output(data: bytes, truncated: bool = False) -> str:
    """Printable text from whatever a script wrote: invalid UTF-8 and control bytes
    (except newline and tab) become U+FFFD, so a status line stays one line per line."""
    text = data.decode("utf-8", errors="replace")
    text = "".join(c if c in "\n\t" or (c >= " " and c != "\x7f") else "\ufffd" for c in text)
    if truncated:
        text += "\n[output truncated]"
    return text


class _Capture:
    """A script's output as it arrives, the first ``MAX_OUTPUT`` bytes kept."""

    def __init__(self) -> None:
        self.kept = bytearray()
        self.truncated = False

    async def read(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            room = MAX_OUTPUT - len(self.kept)
            if room > 0:
                self.kept += chunk[:room]
            if len(chunk) > room:
                self.truncated = True

    def text(self) -> str:
        return clean_output(bytes(self.kept), self.truncated)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def _debug_hung(debug_script: Path | None, pid: int, event: str,
                      env: Mapping[str, str]) -> str:
    """CTDB's ``[event] debug script``: run it on a hung script before the kill."""
    if debug_script is None:
        return ""
    try:
        proc = await asyncio.create_subprocess_exec(
            str(debug_script), str(pid), event, env=dict(env),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        return f"\n[debug script {debug_script} failed: {exc}]"
    try:
        async with asyncio.timeout(KILL_WAIT * 2):
            out, _ = await proc.communicate()
    except TimeoutError:
        _kill_group(proc.pid)
        await proc.wait()
        return f"\n[debug script {debug_script} timed out]"
    return "\n" + clean_output(out[:MAX_OUTPUT])


async def run_script(path: Path, event: str, args: Sequence[str], *, deadline: float,
                     env: Mapping[str, str], debug_script: Path | None = None) -> ScriptRun:
    """Run one script until it exits or the monotonic *deadline* passes."""
    begin = time.time()
    # Our own pipe, not asyncio's: Process.wait() waits for the pipes asyncio made to
    # close too, and a child the script left behind would hold the event up.
    rfd, wfd = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            str(path), event, *args, env=dict(env), cwd="/",
            stdin=asyncio.subprocess.DEVNULL, stdout=wfd, stderr=wfd, start_new_session=True)
    except OSError as exc:
        os.close(rfd)
        # Not executable, or not something the kernel can run (no #! line): shown as
        # DISABLED, as CTDB does; anything else as the error it is.
        code = exc.errno or errno.EIO
        status = DISABLED if code in (errno.EACCES, errno.ENOEXEC) else -code
        return ScriptRun(path.stem, status, begin, time.time(),
                         f"cannot run {path}: {exc.strerror or exc}")
    finally:
        os.close(wfd)
    capture = _Capture()
    stream = asyncio.StreamReader(limit=1 << 16)
    transport, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(stream), os.fdopen(rfd, "rb", buffering=0))
    reader = asyncio.ensure_future(capture.read(stream))
    extra = ""
    try:
        async with asyncio.timeout_at(_loop_time(deadline)):
            status = await proc.wait()
    except TimeoutError:
        try:
            extra = await _debug_hung(debug_script, proc.pid, event, env)
        finally:
            _kill_group(proc.pid)  # also when cancelled while the debug script runs
        status = TIMEDOUT
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(KILL_WAIT):
                await proc.wait()
    except asyncio.CancelledError:
        _kill_group(proc.pid)
        reader.cancel()
        transport.close()
        raise
    # What the script wrote before it exited is in the pipe; children it left behind
    # may keep the pipe open, so take what is there and do not wait for them (as CTDB).
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(OUTPUT_GRACE):
            await asyncio.shield(reader)
    reader.cancel()
    transport.close()
    if status < 0 and status != TIMEDOUT:
        status = KILLED  # died of a signal
    return ScriptRun(path.stem, status, begin, time.time(), capture.text() + extra)


def _loop_time(deadline: float) -> float:
    """A ``time.monotonic()`` deadline on the event loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())


async def run_event(component: str, scripts: Sequence[tuple[str, Path, bool]], event: str,
                    args: Sequence[str], *, deadline: float, env: Mapping[str, str],
                    debug_script: Path | None = None) -> EventRun:
    """Run *event* through *scripts* ((name, path, enabled), in order) until the
    monotonic *deadline*.

    Cancelling the task (a monitor pre-empted by another event) kills the running
    script and propagates.
    """
    begin = time.time()
    results: list[ScriptRun] = []
    status = 0
    for name, path, enabled in scripts:
        if not enabled:
            results.append(ScriptRun(name, DISABLED, 0.0, 0.0, ""))
            continue
        if status != 0:
            results.append(ScriptRun(name, NOT_RUN, 0.0, 0.0, ""))
            continue
        if time.monotonic() >= deadline:
            results.append(ScriptRun(name, TIMEDOUT, time.time(), time.time(), ""))
            status = TIMEDOUT
            continue
        run = await run_script(path, event, args, deadline=deadline, env=env,
                               debug_script=debug_script)
        results.append(run)
        if run.status != DISABLED:  # not runnable counts as disabled, not as a failure
            status = run.status
    return EventRun(component, event, tuple(args), status, begin, time.time(), tuple(results))
