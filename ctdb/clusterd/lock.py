"""The cluster lock: only its holder leads.

``[cluster] cluster lock`` is either a path (an fcntl lock on a file on shared storage,
re-checking that the file still exists, as CTDB's fcntl helper does) or
``!helper args`` with CTDB's helper protocol: the helper prints one character, ``0``
taken, ``1`` contention, ``2`` timeout, ``3`` error; it holds the lock while it runs,
releases it on SIGTERM and exits when its parent dies.  So CTDB's own helpers work
unchanged, and so does ours for etcd.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shlex
import signal
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

HELPER_TIMEOUT = 10.0
RESULTS = {b"0": "taken", b"1": "contention", b"2": "timeout", b"3": "error"}


class ClusterLock:
    """Base: no lock configured."""

    configured = ""

    def __init__(self, on_lost: Callable[[str], None]) -> None:
        self.on_lost = on_lost
        self.held = False
        self.detail = "no cluster lock configured"

    async def try_take(self) -> bool:
        """One attempt; True when this node now holds the lock."""
        return False

    async def release(self) -> None:
        self.held = False

    def check(self) -> None:
        """Periodic check that a held lock is still held; calls on_lost if not."""


class FcntlLock(ClusterLock):
    def __init__(self, path: Path, on_lost: Callable[[str], None]) -> None:
        super().__init__(on_lost)
        self.path = path
        self.configured = str(path)
        self.detail = "not held"
        self._fd: int | None = None

    async def try_take(self) -> bool:
        if self.held:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            self.detail = f"cannot open {self.path}: {exc.strerror}"
            return False
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
        except OSError:
            os.close(fd)
            self.detail = "held by another node"
            return False
        self._fd = fd
        self.held = True
        self.detail = "held"
        return True

    async def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing the descriptor drops the lock
        self._fd = None
        self.held = False
        self.detail = "released"

    def check(self) -> None:
        if not self.held or self._fd is None:
            return
        try:
            same = os.fstat(self._fd).st_ino == os.stat(self.path).st_ino
        except OSError:
            same = False
        if not same:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)
            self.held = False
            self.detail = "lock file removed or replaced"
            self.on_lost(self.detail)


class HelperLock(ClusterLock):
    """CTDB's mutex helper protocol."""

    def __init__(self, command: str, on_lost: Callable[[str], None]) -> None:
        super().__init__(on_lost)
        self.argv = shlex.split(command)
        self.configured = "!" + command
        self.detail = "not held"
        self._proc: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task[None] | None = None

    async def try_take(self) -> bool:
        if self.held:
            return True
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE)
        except OSError as exc:
            self.detail = f"cannot run {self.argv[0]}: {exc.strerror}"
            return False
        if proc.stdout is None:
            raise RuntimeError("helper started without a pipe")
        try:
            async with asyncio.timeout(HELPER_TIMEOUT):
                answer = await proc.stdout.read(1)
        except TimeoutError:
            answer = b"2"
        if answer != b"0":
            self.detail = f"helper says {RESULTS.get(answer, 'nothing')}"
            await self._end(proc)
            return False
        self._proc = proc
        self.held = True
        self.detail = "held"
        self._watch = asyncio.get_running_loop().create_task(self._watch_helper(proc))
        return True

    async def _watch_helper(self, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if self._proc is proc:
            self._proc = None
            self.held = False
            self.detail = f"helper exited with code {code}"
            self.on_lost(self.detail)

    async def _end(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    async def release(self) -> None:
        proc, self._proc = self._proc, None
        self.held = False
        self.detail = "released"
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if proc is not None:
            await self._end(proc)


def make_lock(setting: str | None, on_lost: Callable[[str], None]) -> ClusterLock:
    if not setting:
        return ClusterLock(on_lost)
    if setting.startswith("!"):
        return HelperLock(setting[1:], on_lost)
    return FcntlLock(Path(setting), on_lost)
