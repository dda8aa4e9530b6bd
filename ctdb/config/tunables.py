"""ctdb.tunables and the table of every tunable CTDB 4.17 knows, with its default.

The file is read with CTDB's ini reader (see :mod:`ctdb.config.ini`) as CTDB does
(ctdb_tunable_load_file in ctdb/common/tunable.c):

* ``NAME=VALUE`` per line, blanks around ``=`` allowed; ``#`` and ``;`` lines are
  comments; no trailing comments (``20 # x`` is not a number);
* names match in any case; sections and lines without a value are refused;
* VALUE is an unsigned C integer (decimal, 0x hex or 0 octal) that fits in 32 bits;
* an obsolete tunable is refused, and so is an unknown one;
* a tunable given twice takes the last value.

Adding a tunable (pyctdb's own, e.g. for sub-second failure detection): append a
:class:`TunableSpec` to ``PYCTDB_TUNABLES`` below with a default, a one-line
description and, if needed, ``minimum``/``maximum``.  It is then accepted in
ctdb.tunables, filled in by default and listed by :data:`TUNABLES`; names must not
clash (in any case) with CTDB's.
"""

from __future__ import annotations

from collections.abc import Mapping

from ctdb.config.ini import Section, read_ini
from ctdb.config.values import UINT32_MAX, config_error, parse_c_integer, read_text
from ctdb.record import frozen

TYPE_CHECKING = False  # typing is not imported at run time (the ctdb CLI's start-up)
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path


@frozen
class TunableSpec:
    """One tunable: default, meaning, whether CTDB has retired it, allowed range."""

    name: str
    default: int
    description: str
    obsolete: bool = False
    minimum: int = 0
    maximum: int = UINT32_MAX
    pyctdb: bool = False


def _t(name: str, default: int, description: str, *, obsolete: bool = False) -> TunableSpec:
    return TunableSpec(name, default, description, obsolete=obsolete)


# CTDB 4.17's table, in CTDB's order (defaults from the code, where the manual differs).
CTDB_TUNABLES: tuple[TunableSpec, ...] = (
    _t("MaxRedirectCount", 3, "Retired.", obsolete=True),
    _t("SeqnumInterval", 1000, "Milliseconds between database sequence number updates to peers."),
    _t("ControlTimeout", 60, "Seconds before a control sent to a daemon times out."),
    _t("TraverseTimeout", 20, "Seconds a database traverse may run before it is aborted."),
    _t("KeepaliveInterval", 5, "Seconds between keepalives to every peer."),
    _t("KeepaliveLimit", 5, "Keepalive intervals without traffic before a peer is disconnected."),
    _t("RecoverTimeout", 30, "Seconds before a control sent by the recovery daemon times out."),
    _t("RecoverInterval", 1, "Seconds between the recovery daemon's consistency checks."),
    _t("ElectionTimeout", 3, "Seconds a leader election round may take."),
    _t("TakeoverTimeout", 9, "Seconds allowed to complete a public IP failover."),
    _t("MonitorInterval", 15, "Seconds between monitor events (health checks)."),
    _t("TickleUpdateInterval", 20, "Seconds between syncs of client connection lists to peers."),
    _t("EventScriptTimeout", 30, "Seconds all scripts of one event may run in total."),
    _t("MonitorTimeoutCount", 20, "Monitor timeouts in a row before the node is UNHEALTHY."),
    _t("EventScriptUnhealthyOnTimeout", 0, "Retired.", obsolete=True),
    _t(
        "RecoveryGracePeriod",
        120,
        "Seconds without failures after which a node's ban count resets.",
    ),
    _t("RecoveryBanPeriod", 300, "Seconds a node stays banned."),
    _t("DatabaseHashSize", 100001, "Hash chains in each local database."),
    _t("DatabaseMaxDead", 5, "Dead records kept per hash chain."),
    _t("RerecoveryTimeout", 10, "Seconds after a recovery before another may start."),
    _t("EnableBans", 1, "Whether misbehaving nodes may be banned (0 disables banning)."),
    _t("DeterministicIPs", 0, "Retired: see IPAllocAlgorithm.", obsolete=True),
    _t("LCP2PublicIPs", 1, "Retired: see IPAllocAlgorithm.", obsolete=True),
    _t("ReclockPingPeriod", 60, "Retired.", obsolete=True),
    _t("NoIPFailback", 0, "When 1, addresses do not move back to a node that becomes healthy."),
    _t("DisableIPFailover", 0, "Retired: see [failover] disabled.", obsolete=True),
    _t("VerboseMemoryNames", 0, "When 1, give memory objects verbose names in memory dumps."),
    _t("RecdPingTimeout", 60, "Seconds without a recovery daemon ping before it is suspect."),
    _t("RecdFailCount", 10, "Missed recovery daemon pings before it is restarted."),
    _t("LogLatencyMs", 0, "Log operations slower than this many milliseconds (0: never)."),
    _t("RecLockLatencyMs", 1000, "Log cluster lock operations slower than this (milliseconds)."),
    _t("RecoveryDropAllIPs", 120, "Seconds stuck in recovery, stopped or banned before IPs drop."),
    _t("VerifyRecoveryLock", 1, "Retired.", obsolete=True),
    _t("VacuumInterval", 10, "Seconds between vacuuming runs of volatile databases."),
    _t("VacuumMaxRunTime", 120, "Seconds a vacuuming run may take before it is stopped."),
    _t("RepackLimit", 10000, "Free-list records above which vacuuming repacks a database."),
    _t("VacuumLimit", 5000, "Retired.", obsolete=True),
    _t("VacuumFastPathCount", 60, "Fast-path vacuuming runs between full database scans."),
    _t("MaxQueueDropMsg", 1000000, "Queued messages after which a client is dropped as hung."),
    _t("AllowUnhealthyDBRead", 0, "When 1, traverses may read unhealthy databases."),
    _t("StatHistoryInterval", 1, "Seconds per slot of the statistics history."),
    _t("DeferredAttachTO", 120, "Seconds a database attach may wait while databases are frozen."),
    _t("AllowClientDBAttach", 1, "When 0, clients may not attach to databases."),
    _t("RecoverPDBBySeqNum", 1, "Retired.", obsolete=True),
    _t("DeferredRebalanceOnNodeAdd", 300, "Retired.", obsolete=True),
    _t("FetchCollapse", 1, "Collapse concurrent fetches of one record into one migration."),
    _t("HopcountMakeSticky", 50, "Hop count at which a record of a sticky database sticks."),
    _t("StickyDuration", 600, "Seconds a record stays sticky."),
    _t("StickyPindown", 200, "Milliseconds a sticky record is pinned to a node after migrating."),
    _t("NoIPTakeover", 0, "When 1, addresses are not moved to other nodes."),
    _t("DBRecordCountWarn", 100000, "Warn in recovery about databases with more records (0: off)."),
    _t("DBRecordSizeWarn", 10000000, "Warn in recovery about records larger than this (0: off)."),
    _t("DBSizeWarn", 100000000, "Warn in recovery about databases larger than this (0: off)."),
    _t("PullDBPreallocation", 10 * 1024 * 1024, "Bytes preallocated for database pull replies."),
    _t("NoIPHostOnAllDisabled", 1, "Retired.", obsolete=True),
    _t("Samba3AvoidDeadlocks", 0, "Retired.", obsolete=True),
    _t("TDBMutexEnabled", 1, "Retired: see [database] tdb mutexes.", obsolete=True),
    _t("LockProcessesPerDB", 200, "Lock helper processes per database at most."),
    _t(
        "RecBufferSizeLimit", 1000000, "Bytes per record buffer in recovery and vacuuming controls."
    ),
    _t("QueueBufferSize", 1024, "Bytes read from a socket at a time."),
    _t(
        "IPAllocAlgorithm", 2, "Public IP allocation: 0 deterministic, 1 non-deterministic, 2 LCP2."
    ),
    _t("AllowMixedVersions", 0, "When 1, nodes of different CTDB versions may run together."),
)

# pyctdb's own tunables go here (see the module docstring); each with pyctdb=True.
PYCTDB_TUNABLES: tuple[TunableSpec, ...] = (
    TunableSpec("HeartbeatIntervalMs", 100,
                "Milliseconds between heartbeats to every node (pyctdb). Unless set, an "
                "explicit KeepaliveInterval in ctdb.tunables takes its place.",
                minimum=10, maximum=60000, pyctdb=True),
    TunableSpec("IPLeaseSeconds", 1,
                "Seconds a node's public addresses live in its kernel without renewal "
                "(pyctdb): bounds how long a lost node may still answer for them.",
                minimum=1, maximum=60, pyctdb=True),
    TunableSpec("IPGateMs", 300,
                "Milliseconds a node's public IPv4 addresses stay reachable without renewal, "
                "enforced by nftables (pyctdb): bounds forced moves; 0 turns the gate off.",
                minimum=0, maximum=60000, pyctdb=True),
    TunableSpec("HeartbeatLimit", 4,
                "Heartbeat intervals without a word from a node before it is DISCONNECTED "
                "(pyctdb). Unless set, an explicit KeepaliveLimit takes its place.",
                minimum=2, maximum=100, pyctdb=True),
)


def _build_table(*groups: tuple[TunableSpec, ...]) -> dict[str, TunableSpec]:
    table: dict[str, TunableSpec] = {}
    for spec in (s for group in groups for s in group):
        if spec.name.lower() in table:
            raise ValueError(f"tunable {spec.name} is defined twice")
        if not spec.minimum <= spec.default <= spec.maximum:
            raise ValueError(f"tunable {spec.name}: default outside its range")
        table[spec.name.lower()] = spec
    return table


_BY_LOWER = _build_table(CTDB_TUNABLES, PYCTDB_TUNABLES)

TUNABLES: Mapping[str, TunableSpec] = {s.name: s for s in _BY_LOWER.values()}
"""Every known tunable by its canonical name, obsolete ones included."""


def find_tunable(name: str) -> TunableSpec | None:
    """The tunable of that name in any case, as CTDB matches them."""
    return _BY_LOWER.get(name.lower())


class Tunables(Mapping[str, int]):
    """Current (non-obsolete) tunables with their values: the file's, else defaults.

    Keys are the canonical names; lookups ignore case, as ``ctdb getvar`` does.
    """

    __slots__ = ("_explicit", "_values")

    def __init__(self, values: Mapping[str, int] | None = None) -> None:
        explicit: dict[str, int] = {}
        for name, value in (values or {}).items():
            spec = find_tunable(name)
            if spec is None or spec.obsolete:
                raise KeyError(f"not a current tunable: {name}")
            explicit[spec.name] = value
        self._explicit = explicit
        self._values = {
            s.name: explicit.get(s.name, s.default) for s in TUNABLES.values() if not s.obsolete
        }

    def __getitem__(self, name: str) -> int:
        spec = find_tunable(name)
        if spec is None or spec.obsolete:
            raise KeyError(name)
        return self._values[spec.name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Tunables({self._explicit!r})"

    @property
    def explicit(self) -> Mapping[str, int]:
        """Only the tunables the file set."""
        return dict(self._explicit)


def parse_tunables(text: str, filename: str = "ctdb.tunables") -> Tunables:
    """Tunables from ctdb.tunables text; ConfigError on the first bad line."""
    values: dict[str, int] = {}
    for item in read_ini(text, filename):
        if isinstance(item, Section):
            raise config_error(
                filename, item.line, f"section [{item.name}] not allowed (expected NAME=VALUE)"
            )
        if not item.value:
            raise config_error(
                filename, item.line, f"{item.name!r} has no value (expected NAME=VALUE)"
            )
        spec = find_tunable(item.name)
        if spec is None:
            raise config_error(filename, item.line, f"unknown tunable {item.name!r}")
        if spec.obsolete:
            raise config_error(filename, item.line, f"obsolete tunable {spec.name!r}")
        try:
            value = parse_c_integer(item.value, maximum=UINT32_MAX, allow_negative_zero=False)
        except ValueError as e:
            raise config_error(filename, item.line, f"{spec.name}: {e}") from None
        if not spec.minimum <= value <= spec.maximum:
            raise config_error(
                filename,
                item.line,
                f"{spec.name}: {value} is outside {spec.minimum}..{spec.maximum}",
            )
        values[spec.name] = value
    return Tunables(values)


def load_tunables(path: Path) -> Tunables:
    """Read ctdb.tunables; OSError (e.g. FileNotFoundError) propagates."""
    return parse_tunables(read_text(path), str(path))


def heartbeat_timing(values: Mapping[str, int], explicit: Iterable[str]) -> tuple[float, int]:
    """Heartbeat interval in seconds and missed-heartbeat limit.

    pyctdb's HeartbeatIntervalMs/HeartbeatLimit, unless ctdb.tunables sets CTDB's
    KeepaliveInterval/KeepaliveLimit and not ours: then CTDB's meaning applies
    (seconds between keepalives, intervals before a node is disconnected).
    """
    given = set(explicit)
    if "HeartbeatIntervalMs" not in given and "KeepaliveInterval" in given:
        interval = float(values["KeepaliveInterval"])
    else:
        interval = values["HeartbeatIntervalMs"] / 1000.0
    if "HeartbeatLimit" not in given and "KeepaliveLimit" in given:
        limit = values["KeepaliveLimit"]
    else:
        limit = values["HeartbeatLimit"]
    return interval, max(limit, 2)
