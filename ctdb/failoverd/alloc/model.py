"""What public IP allocation takes and gives: plain frozen values, no I/O.

The caller (failoverd on the leader) gathers the cluster's view -- each node's
public_addresses, its flags and runstate, which side of the lock it is on, and who
hosts what now -- and turns it into an :class:`AllocationRequest`.  The allocators
only compute; they never look at the system, so the same request always gives the
same answer.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from ctdb.clusterd.flags import DISABLED, INACTIVE

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Algorithm(enum.IntEnum):
    """CTDB's ``IPAllocAlgorithm`` tunable values."""

    DETERMINISTIC = 0
    NONDETERMINISTIC = 1
    LCP2 = 2

    @classmethod
    def from_tunable(cls, value: int) -> Algorithm:
        """CTDB falls back to LCP2 for any value it does not know, and so do we."""
        try:
            return cls(value)
        except ValueError:
            return cls.LCP2


class Eligibility(enum.Enum):
    """Whether a node may host public addresses; the caller decides, see :func:`eligibility`."""

    ELIGIBLE = "eligible"
    """No flags, RUNNING, on the lock-holding side: may host its addresses."""

    DISABLED = "disabled"
    """Connected and active but UNHEALTHY or administratively DISABLED.  Never hosts,
    except with ``NoIPHostOnAllDisabled=0`` while no node at all is ELIGIBLE."""

    INELIGIBLE = "ineligible"
    """INACTIVE (disconnected, banned, stopped, deleted), not RUNNING, or cut off from
    the lock: never hosts."""


def eligibility(flags: int, *, running: bool = True, lock_side: bool = True) -> Eligibility:
    """Map CTDB node flags, runstate and lock membership to an :class:`Eligibility`.

    CTDB only takes "available" address lists from active RUNNING nodes, and a node
    drops every address while DISABLED; a node outside the lock-holding partition must
    not host either, or two partitions would answer for the same address.
    """
    if flags & INACTIVE or not running or not lock_side:
        return Eligibility.INELIGIBLE
    if flags & DISABLED:
        return Eligibility.DISABLED
    return Eligibility.ELIGIBLE


@dataclass(frozen=True, slots=True)
class PublicIP:
    """One public_addresses entry: the address and the interfaces that may carry it.

    With no interfaces listed the address is taken to be usable whenever the node is.
    """

    address: IPAddress
    interfaces: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One node: what its public_addresses file lets it host, and whether it may now.

    Nodes whose files differ form groups: an address only ever goes to a node that
    lists it.  ``down_interfaces`` are links that are down on this node; like CTDB, an
    address stays usable while at least one of its interfaces is up.
    """

    public_ips: tuple[PublicIP, ...] = ()
    eligibility: Eligibility = Eligibility.ELIGIBLE
    down_interfaces: frozenset[str] = frozenset()

    @property
    def addresses(self) -> frozenset[IPAddress]:
        """Every address this node is configured for (CTDB's "known" list)."""
        return frozenset(p.address for p in self.public_ips)

    def usable(self) -> frozenset[IPAddress]:
        """Configured addresses with a usable interface (CTDB's "available" list,
        before node state is taken into account)."""
        down = self.down_interfaces
        return frozenset(
            p.address
            for p in self.public_ips
            if not p.interfaces or any(i not in down for i in p.interfaces)
        )


@dataclass(frozen=True, slots=True)
class Tunables:
    """The CTDB tunables that steer allocation, with CTDB 4.17's defaults.

    ``no_ip_host_on_all_disabled`` is obsolete in CTDB 4.17, which always behaves as if
    it were 1; setting it to False restores the older rule (DISABLED nodes may host
    when no node is ELIGIBLE).
    """

    no_ip_failback: bool = False
    no_ip_takeover: bool = False
    no_ip_host_on_all_disabled: bool = True
    algorithm: Algorithm = Algorithm.LCP2

    @classmethod
    def from_values(cls, values: Mapping[str, int]) -> Tunables:
        """Build from CTDB tunable names and values, e.g. ``{"NoIPFailback": 1}``."""
        return cls(
            no_ip_failback=values.get("NoIPFailback", 0) != 0,
            no_ip_takeover=values.get("NoIPTakeover", 0) != 0,
            no_ip_host_on_all_disabled=values.get("NoIPHostOnAllDisabled", 1) != 0,
            algorithm=Algorithm.from_tunable(values.get("IPAllocAlgorithm", 2)),
        )


_K = TypeVar("_K")
_V = TypeVar("_V")


def _frozen_map(m: Mapping[_K, _V]) -> Mapping[_K, _V]:
    return MappingProxyType(dict(m))


@dataclass(frozen=True, slots=True)
class AllocationRequest:
    """Everything one allocation run needs.

    ``nodes[pnn]`` describes node ``pnn``; list every node of the nodes file, deleted
    ones too (as INELIGIBLE), because the deterministic algorithm spreads addresses by
    ``index % len(nodes)``.  ``current`` says who hosts each address now (None or
    missing: nobody); claims by a node that does not list the address are ignored,
    as CTDB only hears a node about its own addresses.  ``home_nodes`` is the newer
    CTDB ``home_nodes`` file (deterministic algorithm only).  ``force_rebalance`` are
    nodes LCP2 may move addresses onto even though they already host some (CTDB's
    ``ctdb reloadips`` / ``addip`` path).
    """

    nodes: tuple[NodeInfo, ...]
    current: Mapping[IPAddress, int | None] = field(default_factory=dict)
    tunables: Tunables = Tunables()
    home_nodes: Mapping[IPAddress, int] = field(default_factory=dict)
    force_rebalance: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "current", _frozen_map(self.current))
        object.__setattr__(self, "home_nodes", _frozen_map(self.home_nodes))
        object.__setattr__(self, "force_rebalance", frozenset(self.force_rebalance))


Allocation = dict[IPAddress, int | None]
"""The answer: every configured address and the node that should host it (None: no
node may host it)."""
