"""Process plumbing for daemon children: names, parent-death signal, readiness."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import signal

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15


def _prctl(option: int, arg: int | bytes) -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(option, arg, 0, 0, 0)


def set_process_name(name: str) -> None:
    """Set the name ``ps``, ``top`` and ``pgrep`` show (15 bytes at most)."""
    _prctl(_PR_SET_NAME, name.encode()[:15])


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Get *sig* when masterd dies, so no daemon outlives its node."""
    _prctl(_PR_SET_PDEATHSIG, int(sig))
