"""serviced's decisions, pure: is a service healthy, and when to restart a failed one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

WINDOW = 600.0  # seconds over which restarts are counted against the limit


@dataclass(frozen=True)
class RestartPolicy:
    limit: int  # restarts allowed within WINDOW
    delay: float  # seconds before the first restart; doubles with each one
    window: float = WINDOW


def restart_delay(policy: RestartPolicy, history: Sequence[float], now: float) -> float | None:
    """Seconds to wait before restarting again, or None once the limit is spent."""
    recent = sum(1 for t in history if now - t < policy.window)
    if recent >= policy.limit:
        return None
    return float(policy.delay * 2**recent)


@dataclass(frozen=True)
class Unit:
    """What serviced needs of a unit's state (netfs.systemd.UnitState has more)."""

    load_state: str
    active_state: str
    sub_state: str


def service_health(units: Sequence[str], states: Mapping[str, Unit | None],
                   check: tuple[bool, str] = (True, "")) -> tuple[bool, str]:
    """A running service is healthy when every unit is active and its check passes."""
    for name in units:
        state = states.get(name)
        if state is None:
            return False, f"{name}: state unknown"
        if state.load_state == "not-found":
            return False, f"{name} is not installed"
        if state.active_state != "active":
            return False, f"{name} is {state.active_state} ({state.sub_state})"
    return check


def needs_restart(state: Unit) -> bool:
    """Failed or stopped behind our back: serviced restarts it.  A unit that systemd
    itself is about to restart (``Restart=``) or that is starting is left alone."""
    return state.active_state in ("failed", "inactive") and state.sub_state != "auto-restart"
