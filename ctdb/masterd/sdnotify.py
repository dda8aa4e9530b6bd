"""sd_notify without libsystemd: one datagram to ``$NOTIFY_SOCKET``."""

from __future__ import annotations

import contextlib
import os
import socket


def notify(state: str) -> bool:
    """Send *state* (e.g. ``READY=1``) to systemd; False when not under systemd."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
        sock.sendto(state.encode(), path)
        return True
    return False


def watchdog_interval() -> float | None:
    """Half of systemd's watchdog timeout, if the watchdog is meant for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None
