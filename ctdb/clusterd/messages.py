"""clusterd's messages (type numbers 0x0300-0x03FF)."""

from __future__ import annotations

from ctdb.protocol.codec import I64, U8, U32, U64, message, struct


@message(0x0300)
class Heartbeat:
    """Every node's clusterd broadcasts its own state to every node, many times a second.

    A node is the authority for its own flags (disabled, stopped, banned, unhealthy);
    the leader fields carry its claim and term so every node can follow one leader.
    """

    pnn: U32
    flags: U32
    runstate: U8
    capabilities: U32
    term: U64  # the highest leader term this node knows
    leader: U32  # NO_NODE when it follows nobody
    vote: U32  # the candidate this node supports
    generation: U32
    recovery_mode: U8
    lock_held: bool
    connected: list[U32]  # the nodes this node currently hears
    ban_seconds: U32 = 0  # remaining ban time when BANNED


@struct
class NodeInfo:
    pnn: U32
    address: str
    flags: U32
    runstate: U8


@struct
class LockInfo:
    configured: str  # "" when no cluster lock is configured
    held: bool  # this node holds it
    lock_side: bool  # this node is on the side that holds the lock (or a majority)
    detail: str


@message(0x0301)
class ClusterViewRequest:
    """Ask the local clusterd for its view (``ctdb status``)."""


@message(0x0302)
class ClusterView:
    """One node's view of the cluster; also published to local subscribers on change."""

    pnn: U32
    generation: U32
    term: U64
    leader: U32
    recovery_mode: U8  # 0 NORMAL, 1 RECOVERY
    runstate: U8
    nodes: list[NodeInfo]
    vnnmap: list[U32]
    lock: LockInfo
    last_recovery_started_us: I64
    last_recovery_finished_us: I64


@message(0x0303)
class SetFlagsRequest:
    """Set and clear this node's own flags (disable/enable, stop/continue)."""

    set: U32
    clear: U32


@message(0x0304)
class BanRequest:
    """Ban this node for *seconds* (0 lifts a ban)."""

    seconds: U32


@message(0x0305)
class RunstateRequest:
    pass


@message(0x0306)
class RunstateReply:
    runstate: U8


@struct
class Tunable:
    name: str
    value: U32


@message(0x0307)
class ListTunablesRequest:
    pass


@message(0x0308)
class TunableList:
    tunables: list[Tunable]


@message(0x0309)
class GetTunableRequest:
    name: str


@message(0x030A)
class SetTunableRequest:
    name: str
    value: U32


@message(0x030B)
class CapabilitiesRequest:
    pass


@message(0x030C)
class CapabilitiesReply:
    capabilities: U32


@message(0x030D)
class SetLeaderRoleRequest:
    enabled: bool


@message(0x030E)
class RecoverRequest:
    """Ask the leader to run a recovery now."""


@message(0x030F)
class ReloadNodesRequest:
    """Re-read the nodes file (``ctdb reloadnodes``)."""


@message(0x0310)
class StartRecovery:
    """The leader tells every node a recovery for *generation* starts."""

    generation: U32
    term: U64


@message(0x0311)
class Recovered:
    """The leader tells every node the recovery for *generation* is done."""

    generation: U32
    term: U64
    started_us: I64
    finished_us: I64


@message(0x0312)
class TunableValue:
    name: str
    value: U32


@message(0x0313)
class HealthReport:
    """A daemon reports this node's health from its point of view (``source``)."""

    source: str
    healthy: bool
    reason: str = ""


@message(0x0314)
class RecoveryStepRequest:
    """The leader asks a service to run its recovery step for *generation*."""

    generation: U32
    name: str
