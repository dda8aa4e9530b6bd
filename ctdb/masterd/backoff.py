"""When to restart a crashed daemon: exponential backoff, pure and table-tested."""

from __future__ import annotations

import signal
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays grow ``first * factor**n`` up to ``cap``; a run longer than ``stable``
    seconds counts as healthy and resets the count."""

    first: float = 0.1
    factor: float = 2.0
    cap: float = 30.0
    stable: float = 60.0

    def next_failures(self, failures: int, ran_for: float) -> int:
        """The failure count after a crash that followed *ran_for* seconds of running."""
        return 1 if ran_for >= self.stable else failures + 1

    def delay(self, failures: int) -> float:
        """Seconds to wait before restart number *failures* (1 = first restart)."""
        if failures <= 0:
            return 0.0
        return float(min(self.cap, self.first * self.factor ** (failures - 1)))


def describe_exit(returncode: int) -> str:
    """``exit code 3`` or ``killed by signal 9 (SIGKILL)``, as a log line wants it."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = "unknown"
    return f"killed by signal {-returncode} ({name})"
