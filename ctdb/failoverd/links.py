"""What the public interfaces' link states mean for the node, as pure functions.

As CTDB's 10.interface monitor: with every public interface down the node is UNHEALTHY
(its addresses move); with some down it is PARTIALLYONLINE (``ctdb status`` says so)
and only the addresses with an interface up stay hostable here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


def link_health(interfaces: Iterable[str], links: Mapping[str, bool]) -> tuple[bool, str]:
    """(healthy, reason): unhealthy when every public interface is down or missing."""
    names = sorted(set(interfaces))
    down = [n for n in names if not links.get(n, False)]
    if names and len(down) == len(names):
        return False, f"public interface{'s' if len(down) > 1 else ''} down: {', '.join(down)}"
    return True, ""


def partially_online(interfaces: Iterable[str], links: Mapping[str, bool]) -> bool:
    """Some, not all, public interfaces are down."""
    names = set(interfaces)
    down = {n for n in names if not links.get(n, False)}
    return bool(down) and down != names


def hostable(public: Mapping[str, Sequence[str]], links: Mapping[str, bool]) -> list[str]:
    """The addresses with at least one of their interfaces up, in *public*'s order."""
    return [a for a, ifaces in public.items() if any(links.get(i, False) for i in ifaces)]
