"""What an event's result means for the node: CTDB's rules, as pure functions.

* init and setup must succeed, or the node stops (``FatalError`` in eventd);
* startup is retried every ``STARTUP_RETRY`` seconds until it succeeds; only then is
  the node RUNNING (and may host addresses);
* one failed monitor makes the node UNHEALTHY, the next good one healthy again;
  monitor timeouts count as good until ``MonitorTimeoutCount`` of them in a row;
  a cancelled monitor changes nothing;
* a timeout of startrecovery, recovered, takeip or releaseip is logged and ignored
  (a hung script must not keep an address from moving); other failures fail them.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from ctdb.eventd.runner import (
    CANCELLED,
    DISABLED,
    KILLED,
    NO_COMPONENT,
    NOT_RUN,
    TIMEDOUT,
    EventRun,
)

# Events with the number of arguments each takes (CTDB's check).
EVENTS: dict[str, int] = {
    "init": 0, "setup": 0, "startup": 0, "startrecovery": 0, "recovered": 0,
    "takeip": 3, "releaseip": 3, "updateip": 4, "startipreallocate": 0,
    "ipreallocated": 0, "monitor": 0, "shutdown": 0,
}
TIMEOUT_IGNORED = frozenset({"startrecovery", "recovered", "takeip", "releaseip"})
STARTUP_RETRY = 5.0  # seconds between startup attempts
FIRST_MONITOR = 2.0  # seconds from startup to the first monitor
AFTER_CHANGE = 5.0  # seconds to the next monitor after the health changed


def check_args(event: str, args: list[str] | tuple[str, ...]) -> str | None:
    """None if *args* suit *event*, else why not (one line)."""
    wanted = EVENTS.get(event)
    if wanted is None:
        return f"unknown event {event!r}"
    if len(args) != wanted:
        return f"event {event} takes {wanted} arguments, not {len(args)}"
    return None


_WORDS = {0: "OK", TIMEDOUT: "TIMEDOUT", DISABLED: "DISABLED", CANCELLED: "CANCELLED",
          NOT_RUN: "NOT RUN", KILLED: "CANNOT RUN (killed by a signal)"}


def describe(status: int) -> str:
    """A script or event status in CTDB's words."""
    word = _WORDS.get(status)
    if word is not None:
        return word
    if status < 0:
        return f"CANNOT RUN ({os.strerror(-status)})"
    return f"ERROR (exit {status})"


def succeeded_status(event: str, status: int) -> bool:
    """Whether an *event* run ending in *status* counts as a success for the daemon
    that asked for it (a component without a directory has nothing to run)."""
    if status in (0, NO_COMPONENT):
        return True
    return status == TIMEDOUT and event in TIMEOUT_IGNORED


@dataclass(frozen=True)
class MonitorVerdict:
    healthy: bool | None  # None: no change
    timeouts: int  # monitor timeouts in a row so far

    def reason(self, run: EventRun) -> str:
        if self.healthy is not False:
            return ""
        failed = run.failed
        if failed is None:
            return f"monitor {describe(run.status)}"
        first = next((ln.strip() for ln in failed.output.splitlines() if ln.strip()), "")
        what = f"{failed.name} {describe(failed.status)}"
        return f"{what}: {first}" if first else what


def monitor_verdict(status: int, timeouts: int, limit: int) -> MonitorVerdict:
    """The node's health after a monitor run with *status*."""
    if status == CANCELLED:
        return MonitorVerdict(None, timeouts)
    if status == NO_COMPONENT:
        return MonitorVerdict(True, 0)  # no scripts: nothing is wrong
    if status == TIMEDOUT:
        timeouts += 1
        return MonitorVerdict(False if timeouts >= limit else None, timeouts)
    return MonitorVerdict(status == 0, 0)


def next_monitor(previous: float, interval: float, changed: bool) -> float:
    """Seconds to the next monitor: soon after a change, doubling up to *interval*."""
    if changed:
        return min(AFTER_CHANGE, interval)
    return min(max(previous * 2, FIRST_MONITOR), interval)


def exit_code(status: int) -> int:
    """``ctdb event run``'s exit code for an event status, as CTDB's tool gives it."""
    if status == 0:
        return 0
    if status == NO_COMPONENT:
        return errno.ENOENT
    if status == TIMEDOUT:
        return errno.ETIMEDOUT - 64  # CTDB's tool reports errno + 64 as errno
    if status == CANCELLED:
        return errno.ECANCELED - 64
    return errno.ENOEXEC
