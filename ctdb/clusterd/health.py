"""How health inputs become the node's UNHEALTHY flag: one rule, in one place.

Inputs come from other daemons, each under its own source name: eventd's monitor
event (``monitor``), serviced's unit states (``service:smbd`` ...), failoverd's
interface checks (``interfaces``).  The rule: a node is UNHEALTHY while any source
reports it unhealthy; a source that has never reported counts as healthy, so a node
without event scripts or services is healthy.  An admin's ``ctdb setflags``-style
UNHEALTHY (SetFlagsRequest) is one more source, ``admin``.
"""

from __future__ import annotations

from collections.abc import Mapping


def unhealthy_sources(reports: Mapping[str, tuple[bool, str]]) -> list[str]:
    """The sources that currently say unhealthy, sorted, with their reasons."""
    return sorted(f"{source}: {reason}" if reason else source
                  for source, (healthy, reason) in reports.items() if not healthy)


def is_unhealthy(reports: Mapping[str, tuple[bool, str]]) -> bool:
    return any(not healthy for healthy, _ in reports.values())
