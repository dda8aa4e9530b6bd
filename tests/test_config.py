"""ctdb.config: CTDB's files read as CTDB 4.17 reads them, and refused when invalid."""

from __future__ import annotations

import ipaddress
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctdb.config import (
    OPTIONS,
    TUNABLES,
    CtdbConf,
    Node,
    PublicAddress,
    Tunables,
    find_tunable,
    load,
    parse_conf,
    parse_nodes,
    parse_public_addresses,
    parse_script_options,
    parse_tunables,
)
from ctdb.config.cli import main
from ctdb.config.tunables import TunableSpec, _build_table
from ctdb.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "ctdb-base"
CONFIGS = Path(__file__).resolve().parent / "configs"

PARSERS: dict[str, Callable[[str, str], object]] = {
    "conf": parse_conf,
    "nodes": parse_nodes,
    "public_addresses": parse_public_addresses,
    "tunables": parse_tunables,
    "script.options": parse_script_options,
}
FILENAMES = {
    "conf": "ctdb.conf",
    "nodes": "nodes",
    "public_addresses": "public_addresses",
    "tunables": "ctdb.tunables",
    "script.options": "script.options",
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CTDB_BASE", "CTDB_RUNDIR", "CTDB_VARDIR"):
        monkeypatch.delenv(name, raising=False)


def v4(text: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(text)


# --- the example CTDB_BASE -------------------------------------------------------


def test_example_base_loads() -> None:
    config = load(EXAMPLE)
    assert config.base == EXAMPLE
    assert config.nodes == [
        Node(0, v4("198.18.1.1")),
        Node(1, v4("198.18.1.2")),
        Node(2, None, deleted=True),
        Node(3, v4("198.18.1.4")),
    ]
    assert [str(p.address) for p in config.public_addresses] == [
        "198.18.2.11/24",
        "198.18.2.12/24",
        "198.18.2.13/24",
        "2001:2::11/64",
    ]
    assert config.public_addresses[2].interfaces == ("eth1", "eth2")
    assert config.tunables["MonitorInterval"] == 15
    assert config.script_options["CTDB_NFS_CALLOUT"] == f"{EXAMPLE}/nfs-linux-kernel-callout"
    conf = config.conf
    assert conf.log_location == "syslog"
    assert conf.cluster_lock == "/clusterfs/.ctdb/reclock"
    assert conf.key_file == EXAMPLE / "cluster.key"
    assert conf.port == 4379


def test_example_addresses_stay_in_documentation_ranges() -> None:
    allowed = [ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:2::/48")]
    config = load(EXAMPLE)
    found = [n.address for n in config.nodes or [] if n.address]
    found += [p.address.ip for p in config.public_addresses]
    assert found
    for address in found:
        assert any(address in net for net in allowed if net.version == address.version)


def test_example_validates_through_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CTDB_BASE", str(EXAMPLE))
    assert main(["validate"]) == 0
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("kind", sorted(FILENAMES))
def test_example_files_pass_check_file(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTDB_BASE", str(EXAMPLE))
    assert main(["check-file", kind, str(EXAMPLE / FILENAMES[kind])]) == 0


def test_load_without_optional_files(tmp_path: Path) -> None:
    config = load(tmp_path)
    assert config.nodes is None
    assert config.public_addresses == []
    assert config.script_options == {}
    assert dict(config.tunables) == dict(Tunables())
    assert config.conf.dump() == CtdbConf(base=tmp_path).dump()


def test_load_refuses_missing_base(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a directory"):
        load(tmp_path / "absent")


def test_load_reports_dangling_nodes_symlink(tmp_path: Path) -> None:
    (tmp_path / "nodes").symlink_to(tmp_path / "clusterfs" / "nodes")
    with pytest.raises(ConfigError, match=r"/nodes: cannot read"):
        load(tmp_path)


def test_load_is_all_or_nothing(tmp_path: Path) -> None:
    (tmp_path / "nodes").write_text("198.18.1.1\n")
    (tmp_path / "ctdb.tunables").write_text("MonitorInterval=fast\n")
    with pytest.raises(ConfigError, match=r"ctdb\.tunables:1: "):
        load(tmp_path)


# --- the table of broken files ---------------------------------------------------

BROKEN: list[tuple[str, str, int, str]] = [
    # ctdb.conf
    ("conf", "[logging]\n[bogus]\n", 2, "unknown section [bogus]"),
    ("conf", "[cluster]\n\tfrobnicate = yes\n", 2, 'unknown option "frobnicate"'),
    ("conf", "log level = NOTICE\n", 1, "before any [section]"),
    ("conf", "[legacy]\nrealtime scheduling = maybe\n", 2, "not a boolean"),
    ("conf", "[legacy]\nstart as stopped = 1\n", 2, "not a boolean"),
    ("conf", "[cluster]\nleader timeout = soon\n", 2, "not an integer"),
    ("conf", "[cluster]\nleader timeout = 5s\n", 2, "not an integer"),
    ("conf", "[cluster]\nleader timeout = 0\n", 2, "greater than 0"),
    ("conf", "[cluster]\nleader timeout = -3\n", 2, "negative"),
    ("conf", "[cluster]\nleader timeout = 4294967296\n", 2, "larger than"),
    ("conf", "[cluster]\nport = 70000\n", 2, "not a TCP port"),
    ("conf", "[logging]\nlog level = LOUD\n", 2, "unknown log level"),
    ("conf", "[logging]\nlog level = 11\n", 2, "out of range"),
    ("conf", "[logging]\nlog level = NOTICE # comment\n", 2, "unknown log level"),
    ("conf", "[legacy]\nscript log level = verbose\n", 2, "unknown log level"),
    ("conf", "[logging]\nlocation = journald\n", 2, "unknown log backend"),
    ("conf", "[logging]\nlocation = syslog:tcp\n", 2, "unknown syslog method"),
    ("conf", "[logging]\nlocation = :::\n", 2, "names no log backend"),
    ("conf", "[cluster]\ntransport = ib\n", 2, "only tcp"),
    ("conf", "[cluster]\nnode address = 198.18.1.300\n", 2, "not an IPv4 or IPv6"),
    ("conf", "[cluster]\nnode address = 2001:2::1%eth0\n", 2, "zone index"),
    ("conf", "[cluster]\ncluster lock =\n", 2, "empty value"),
    ("conf", "[cluster]\nrealtime scheduling\n", 2, "unknown option"),
    ("conf", "[legacy]\nrealtime scheduling\n", 2, 'expected "realtime scheduling = value"'),
    ("conf", "\n\n[logging\n", 3, "no closing ']'"),
    ("conf", "[logging]\n = NOTICE\n", 2, "no name before '='"),
    ("conf", "[ logging ]\n", 1, "unknown section [ logging ]"),
    ("conf", "[logging]\nLog Level = NOTICE\n", 2, 'unknown option "Log Level"'),
    ("conf", "[paths]\nrun directory = run/ctdb\n", 2, "not an absolute path"),
    ("conf", "[logging]\nlocation = \\\n  syslog:x\n", 2, "unknown syslog method"),
    # nodes
    ("nodes", "198.18.1.1\n198.18.1.2\n198.18.1.1\n", 3, "duplicate node address 198.18.1.1"),
    ("nodes", "198.18.1.1\n\n198.18.1.256\n", 3, "bad node address"),
    ("nodes", "198.18.1.1\n198.18.1\n", 2, "bad node address"),
    ("nodes", "2001:2::1\n2001:2::g\n", 2, "bad node address"),
    ("nodes", "198.18.1.1 # node one\n", 1, "bad node address"),
    ("nodes", "198.18.1.1:4379\n", 1, "bad node address"),
    ("nodes", "2001:2::1\n2001:2:0::0:1\n", 2, "duplicate node address 2001:2::1"),
    ("nodes", "\n#198.18.1.1\n", 2, "no nodes"),
    ("nodes", "", 1, "no nodes"),
    # public_addresses
    ("public_addresses", "198.18.2.1/24 eth1\n198.18.2.1/25 eth2\n", 2, "duplicate public address"),
    ("public_addresses", "# c\n198.18.2.1/24\n", 2, "no interface"),
    ("public_addresses", "198.18.2.1/24 # eth1\n", 1, "no interface"),
    ("public_addresses", "198.18.2.1 eth1\n", 1, "no /BITS"),
    ("public_addresses", "198.18.2.1/33 eth1\n", 1, "too long for IPv4"),
    ("public_addresses", "2001:2::1/129 eth1\n", 1, "too long for IPv6"),
    ("public_addresses", "198.18.2.1/x24 eth1\n", 1, "not a number"),
    ("public_addresses", "198.18.2.1/ eth1\n", 1, "not a number"),
    ("public_addresses", "198.18.2.300/24 eth1\n", 1, "not an IPv4 or IPv6"),
    ("public_addresses", "198.18.2.1/24 eth1 eth2\n", 1, "separate interfaces with commas"),
    ("public_addresses", "198.18.2.1/24 ,,\n", 1, "no interface names"),
    ("public_addresses", "198.18.2.1/24 averyveryverylongname\n", 1, "longer than 15"),
    ("public_addresses", "198.18.2.1/24 eth0:1\n", 1, "not a valid interface name"),
    # ctdb.tunables
    (
        "tunables",
        "MonitorInterval=15\nMonitorIntervall=15\n",
        2,
        "unknown tunable 'MonitorIntervall'",
    ),
    ("tunables", "MonitorInterval=fifteen\n", 1, "not an integer"),
    ("tunables", "MonitorInterval=15 # seconds\n", 1, "not an integer"),
    ("tunables", "MonitorInterval=-1\n", 1, "negative"),
    ("tunables", "MonitorInterval=4294967296\n", 1, "larger than 4294967295"),
    ("tunables", "MonitorInterval\n", 1, "has no value"),
    ("tunables", "MonitorInterval=\n", 1, "has no value"),
    ("tunables", "# x\n[tunables]\n", 2, "section [tunables] not allowed"),
    ("tunables", "VerifyRecoveryLock=1\n", 1, "obsolete tunable 'VerifyRecoveryLock'"),
    # script.options
    ("script.options", "# c\nCTDB_X=1\nrm -rf /\n", 3, "expected NAME=value"),
    ("script.options", "export CTDB_X=1\n", 1, "expected NAME=value"),
    ("script.options", "CTDB_X = 1\n", 1, "expected NAME=value"),
    ("script.options", "CTDB_X=a b\n", 1, "one assignment per line"),
    ("script.options", "CTDB_X=$(hostname)\n", 1, "command substitution"),
    ("script.options", "CTDB_X=`hostname`\n", 1, "not allowed"),
    ("script.options", 'CTDB_X="unterminated\n', 1, "unterminated double quote"),
    ("script.options", "CTDB_X='unterminated\n", 1, "unterminated single quote"),
    ("script.options", "CTDB_X=$UNSET\n", 1, "$UNSET is not set"),
    ("script.options", "CTDB_X=${Y:-z}\n", 1, "only ${NAME}"),
    ("script.options", "CTDB_X=1; CTDB_Y=2\n", 1, "shell syntax ';'"),
    ("script.options", "CTDB_X=yes\r\n", 1, "carriage return"),
    ("script.options", "CTDB_X=a\\\nb\n", 1, "line continuation"),
]


@pytest.mark.parametrize(("kind", "text", "line", "message"), BROKEN)
def test_broken_files_are_refused(kind: str, text: str, line: int, message: str) -> None:
    filename = FILENAMES[kind]
    with pytest.raises(ConfigError) as info:
        PARSERS[kind](text, filename)
    error = str(info.value)
    assert error.startswith(f"{filename}:{line}: "), error
    assert message in error, error
    assert "\n" not in error


def test_broken_table_covers_every_kind() -> None:
    assert len(BROKEN) >= 25
    assert {row[0] for row in BROKEN} == set(PARSERS)


# --- ctdb.conf: CTDB's defaults and reading rules --------------------------------

CTDB_DEFAULTS = {
    ("logging", "location"): "file:/var/log/log.ctdb",
    ("logging", "log level"): "NOTICE",
    ("cluster", "transport"): "tcp",
    ("cluster", "node address"): "",
    ("cluster", "cluster lock"): "",
    ("cluster", "recovery lock"): "",
    ("cluster", "leader timeout"): "5",
    ("cluster", "leader capability"): "true",
    ("database", "volatile database directory"): "/var/lib/ctdb/volatile",
    ("database", "persistent database directory"): "/var/lib/ctdb/persistent",
    ("database", "state database directory"): "/var/lib/ctdb/state",
    ("database", "lock debug script"): "",
    ("database", "tdb mutexes"): "true",
    ("event", "debug script"): "",
    ("failover", "disabled"): "false",
    ("legacy", "realtime scheduling"): "true",
    ("legacy", "lmaster capability"): "true",
    ("legacy", "start as stopped"): "false",
    ("legacy", "start as disabled"): "false",
    ("legacy", "script log level"): "ERROR",
    # pyctdb additions
    ("cluster", "key file"): "/etc/ctdb/cluster.key",
    ("cluster", "port"): "4379",
    ("paths", "run directory"): "/run/ctdb",
    ("paths", "state directory"): "/var/lib/ctdb",
    ("services", "samba"): "false",
    ("services", "nmbd"): "false",
    ("services", "winbind"): "false",
    ("services", "nfs"): "none",
    ("services", "restart limit"): "3",
    ("services", "restart delay"): "1000",
}


def test_defaults_match_ctdb() -> None:
    conf = parse_conf("")
    assert {(o.section, o.name): conf.get(o.section, o.name) for o in OPTIONS} == CTDB_DEFAULTS
    assert {(o.section, o.name) for o in OPTIONS if o.pyctdb} == {
        ("cluster", "key file"),
        ("cluster", "port"),
        ("paths", "run directory"),
        ("paths", "state directory"),
        ("services", "samba"),
        ("services", "nmbd"),
        ("services", "winbind"),
        ("services", "nfs"),
        ("services", "restart limit"),
        ("services", "restart delay"),
    }


def test_typed_properties_of_defaults() -> None:
    conf = CtdbConf()
    assert conf.log_location == "file:/var/log/log.ctdb"
    assert conf.log_level == "NOTICE"
    assert conf.cluster_lock is None
    assert conf.node_address is None
    assert conf.leader_timeout == 5
    assert conf.leader_capability is True
    assert conf.key_file == Path("/etc/ctdb/cluster.key")
    assert conf.port == 4379
    assert conf.run_dir == Path("/run/ctdb")
    assert conf.state_dir == Path("/var/lib/ctdb")
    assert conf.failover_disabled is False
    assert conf.start_as_disabled is False
    assert conf.start_as_stopped is False
    assert conf.realtime_scheduling is True
    assert conf.script_log_level == "ERROR"


def test_every_option_fixture() -> None:
    text = (CONFIGS / "every-option" / "ctdb.conf").read_text()
    conf = parse_conf(text)
    assert conf.log_level == "DEBUG"
    assert conf.node_address == "198.18.1.2"
    assert conf.cluster_lock is not None
    assert conf.cluster_lock.startswith("!/usr/libexec/ctdb/")
    assert conf.leader_timeout == 10
    assert conf.leader_capability is False
    assert conf.key_file == Path("/etc/pyctdb/cluster.key")
    assert conf.port == 14379
    assert conf.failover_disabled
    assert conf.start_as_stopped
    assert conf.start_as_disabled
    assert not conf.realtime_scheduling
    assert conf.script_log_level == "NOTICE"
    assert conf.run_dir == Path("/run/ctdb-n2")
    assert conf.state_dir == Path("/var/lib/ctdb-n2")
    assert conf.volatile_db_dir == Path("/srv/ctdb/volatile")
    assert conf.services == {"samba": True, "nmbd": True, "winbind": True, "nfs": "ganesha"}
    assert conf.restart_policy == (5, 0.25)
    assert conf.dump() == (CONFIGS / "every-option" / "dump.txt").read_text()


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("ERROR", "ERROR"),
        ("err", "ERROR"),
        ("Warn", "WARNING"),
        ("n", "NOTICE"),
        ("info", "INFO"),
        ("D", "DEBUG"),
        ("0", "ERROR"),
        ("2", "WARNING"),
        ("3", "NOTICE"),
        ("7", "INFO"),
        ("10", "DEBUG"),
    ],
)
def test_log_levels_as_ctdb_parses_them(text: str, level: str) -> None:
    assert parse_conf(f"[logging]\nlog level = {text}\n").log_level == level


@pytest.mark.parametrize(("text", "value"), [("10", 10), ("0x10", 16), ("010", 8), ("+7", 7)])
def test_integers_are_c_strtol_base_0(text: str, value: int) -> None:
    assert parse_conf(f"[cluster]\nleader timeout = {text}\n").leader_timeout == value


@pytest.mark.parametrize("text", ["yes", "YES", "True", "true"])
def test_booleans_true(text: str) -> None:
    assert parse_conf(f"[failover]\ndisabled = {text}\n").failover_disabled is True


def test_ini_rules() -> None:
    text = (
        "# hash comment\n"
        "; semicolon comment\n"
        "   [LOGGING]  trailing text after the bracket is ignored\n"
        "log      level\t=   info   \n"
        "\tlocation = syslog:\\\n"
        "nonblocking\n"
        "[cluster]\r\n"
        "cluster lock = !/usr/bin/helper   with \\ \n"
        "      args\r\n"
    )
    conf = parse_conf(text)
    assert conf.log_level == "INFO"
    assert conf.log_location == "syslog:nonblocking"
    # Blanks squeeze to one, also across a continuation line's indentation.
    assert conf.cluster_lock == "!/usr/bin/helper with args"


def test_continuation_line_reports_its_first_line() -> None:
    with pytest.raises(ConfigError, match=r"^ctdb\.conf:3: "):
        parse_conf("[legacy]\n\n start as stopped = \\\n  perhaps\n")


def test_value_equal_to_default_is_ignored_as_in_ctdb() -> None:
    # CTDB compares each assignment with the value before the file was read.
    conf = parse_conf("[cluster]\nleader timeout = 7\nleader timeout = 5\n")
    assert conf.leader_timeout == 7
    conf = parse_conf("[cluster]\nleader timeout = 7\nleader timeout = 9\n")
    assert conf.leader_timeout == 9
    conf = parse_conf("[logging]\nlog level = NOTICE\n")
    assert conf.is_default("logging", "log level")
    assert "\t# log level = NOTICE\n" in conf.dump()


def test_recovery_lock_is_accepted_and_deprecated() -> None:
    conf = parse_conf("[cluster]\nrecovery lock = /clusterfs/reclock\n")
    assert conf.cluster_lock == "/clusterfs/reclock"
    assert conf.warnings == (
        "ctdb.conf:2: [cluster] recovery lock is deprecated, use [cluster] cluster lock instead",
    )
    both = parse_conf("[cluster]\nrecovery lock = /old\ncluster lock = /new\n")
    assert both.cluster_lock == "/new"


def test_ignore_unknown_as_ctdbd() -> None:
    text = "[future]\nshiny = yes\n[cluster]\nnew option = 1\nleader timeout = 8\n"
    with pytest.raises(ConfigError):
        parse_conf(text)
    assert parse_conf(text, ignore_unknown=True).leader_timeout == 8


def test_ignore_unknown_still_refuses_bad_values() -> None:
    with pytest.raises(ConfigError, match="not an integer"):
        parse_conf("[cluster]\nleader timeout = x\n", ignore_unknown=True)


def test_state_directory_moves_database_defaults() -> None:
    conf = parse_conf("[paths]\nstate directory = /var/lib/ctdb-n1\n")
    assert conf.volatile_db_dir == Path("/var/lib/ctdb-n1/volatile")
    assert conf.is_default("database", "volatile database directory")


def test_environment_overrides_paths() -> None:
    env = {"CTDB_RUNDIR": "/run/n1", "CTDB_VARDIR": "/var/lib/n1"}
    conf = parse_conf("[paths]\nrun directory = /run/other\n", env=env)
    assert conf.run_dir == Path("/run/n1")
    assert conf.state_dir == Path("/var/lib/n1")
    assert conf.state_db_dir == Path("/var/lib/n1/state")
    assert "\tstate directory = /var/lib/n1\n" in conf.dump()


def test_environment_path_must_be_absolute() -> None:
    with pytest.raises(ConfigError, match=r"^\$CTDB_VARDIR: 'var' is not an absolute path"):
        parse_conf("", env={"CTDB_VARDIR": "var"})


def test_key_file_follows_ctdb_base() -> None:
    base = Path("/etc/ctdb-n1")
    assert parse_conf("", base=base).key_file == base / "cluster.key"
    assert parse_conf("[cluster]\nkey file = k\n", base=base).key_file == base / "k"


def test_get_of_unknown_option_is_key_error() -> None:
    with pytest.raises(KeyError):
        CtdbConf().get("cluster", "nodes list")
    assert CtdbConf().get("CLUSTER", "leader timeout") == "5"


# --- filesystem checks (ctdb-config validate, ctdbd) ------------------------------


def test_path_checks(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(ConfigError, match=r"^ctdb\.conf:2: .*log directory .* does not exist"):
        parse_conf(f"[logging]\nlocation = file:{missing}/log.ctdb\n", check_paths=True)
    parse_conf(f"[logging]\nlocation = file:{tmp_path}/log.ctdb\n", check_paths=True)
    parse_conf(f"[logging]\nlocation = file:{missing}/log.ctdb\n")  # pure: not checked
    with pytest.raises(ConfigError, match=r"directory .* does not exist"):
        parse_conf(f"[database]\nstate database directory = {missing}\n", check_paths=True)


def test_debug_script_must_be_executable_in_base(tmp_path: Path) -> None:
    text = "[event]\ndebug script = /anywhere/debug-hung-script.sh\n"
    with pytest.raises(ConfigError, match="does not exist"):
        parse_conf(text, base=tmp_path, check_paths=True)
    script = tmp_path / "debug-hung-script.sh"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(ConfigError, match="not executable"):
        parse_conf(text, base=tmp_path, check_paths=True)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    parse_conf(text, base=tmp_path, check_paths=True)


# --- nodes -----------------------------------------------------------------------


def test_nodes_numbering_as_ctdb() -> None:
    text = (
        "\n198.18.1.1\n\n  # a remark is a deleted node too\n"
        "\t198.18.1.2  \n#198.18.1.3\n2001:2::4\n\n"
    )
    assert parse_nodes(text) == [
        Node(0, v4("198.18.1.1")),
        Node(1, None, deleted=True),
        Node(2, v4("198.18.1.2")),
        Node(3, None, deleted=True),
        Node(4, ipaddress.IPv6Address("2001:2::4")),
    ]


def test_nodes_address_forms() -> None:
    nodes = parse_nodes(
        "[2001:2::1]\r\n198.18.1.1\rtrailing junk after CR is cut\n::ffff:198.18.1.2\n"
    )
    assert [n.address for n in nodes] == [
        ipaddress.IPv6Address("2001:2::1"),
        v4("198.18.1.1"),
        v4("198.18.1.2"),
    ]


# --- public_addresses ------------------------------------------------------------


def test_public_addresses_forms() -> None:
    text = (
        "# comment\n"
        "\n"
        "  198.18.2.1/24\teth1   # trailing comment\n"
        "198.18.2.2/24 ,eth1,,eth2,eth1\n"
        "[2001:2::5]/64 bond0\n"
    )
    assert parse_public_addresses(text) == [
        PublicAddress(ipaddress.IPv4Interface("198.18.2.1/24"), ("eth1",)),
        PublicAddress(ipaddress.IPv4Interface("198.18.2.2/24"), ("eth1", "eth2")),
        PublicAddress(ipaddress.IPv6Interface("2001:2::5/64"), ("bond0",)),
    ]


def test_public_addresses_empty_file() -> None:
    assert parse_public_addresses("# none yet\n") == []


# --- ctdb.tunables ---------------------------------------------------------------


def test_tunables_defaults_match_ctdb() -> None:
    tunables = Tunables()
    expected = {
        "MonitorInterval": 15,
        "KeepaliveInterval": 5,
        "KeepaliveLimit": 5,
        "RecoverTimeout": 30,
        "ElectionTimeout": 3,
        "TakeoverTimeout": 9,
        "EventScriptTimeout": 30,
        "RecoveryBanPeriod": 300,
        "DatabaseHashSize": 100001,
        "DBSizeWarn": 100000000,
        "PullDBPreallocation": 10485760,
        "IPAllocAlgorithm": 2,
        "AllowMixedVersions": 0,
    }
    assert {name: tunables[name] for name in expected} == expected
    # CTDB 4.17 has 62 tunables, 13 of them obsolete; listvars shows the other 49.
    assert len([s for s in TUNABLES.values() if not s.pyctdb]) == 62
    assert len([s for s in TUNABLES.values() if s.obsolete]) == 13
    assert len([name for name in tunables if not TUNABLES[name].pyctdb]) == 49
    assert tunables["HeartbeatIntervalMs"] == 100  # pyctdb's own, documented
    assert "VerifyRecoveryLock" not in tunables


def test_tunables_file_rules() -> None:
    tunables = parse_tunables(
        "# comment\n; comment\n  monitorinterval = 0x14\nKeepaliveLimit=3\nKEEPALIVELIMIT=4\n"
    )
    assert tunables["MonitorInterval"] == 20
    assert tunables["monitorINTERVAL"] == 20
    assert tunables["KeepaliveLimit"] == 4
    assert tunables.explicit == {"MonitorInterval": 20, "KeepaliveLimit": 4}
    assert tunables["KeepaliveInterval"] == 5


def test_tunable_table_is_extensible() -> None:
    ours = TunableSpec("KeepaliveIntervalMs", 500, "Sub-second keepalives.", pyctdb=True)
    assert _build_table((ours,))["keepaliveintervalms"] is ours
    with pytest.raises(ValueError, match="defined twice"):
        _build_table((ours, TunableSpec("keepaliveintervalms", 1, "clash")))
    with pytest.raises(ValueError, match="outside its range"):
        _build_table((TunableSpec("Ranged", 0, "x", minimum=1),))
    assert find_tunable("monitorinterval") is TUNABLES["MonitorInterval"]


# --- script.options --------------------------------------------------------------


def test_script_options_shell_words() -> None:
    text = (
        "# comment\n"
        "\n"
        "CTDB_A=plain\n"
        "  CTDB_B='single $quoted'  # comment\n"
        'CTDB_C="double \\"q\\" \\$x ${CTDB_A}"\n'
        "CTDB_D=a'b c'\"d\"\\ e\n"
        "CTDB_E=\n"
        "CTDB_F=$CTDB_BASE/nfs-checks.d\n"
        "CTDB_G=x#y\n"
        "CTDB_H=cost$\n"
    )
    options = parse_script_options(text, env={"CTDB_BASE": "/etc/ctdb"})
    assert options == {
        "CTDB_A": "plain",
        "CTDB_B": "single $quoted",
        "CTDB_C": 'double "q" $x plain',
        "CTDB_D": "ab cd e",
        "CTDB_E": "",
        "CTDB_F": "/etc/ctdb/nfs-checks.d",
        "CTDB_G": "x#y",
        "CTDB_H": "cost$",
    }
    assert "CTDB_BASE" not in options


# --- the ctdb-config command -----------------------------------------------------


@pytest.fixture
def base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CTDB_BASE", str(tmp_path))
    return tmp_path


def test_cli_dump_format(base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (base / "ctdb.conf").write_text("[cluster]\nleader timeout = 9\n[unknown]\nx = y\n")
    assert main(["dump"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("[logging]\n\t# location = file:/var/log/log.ctdb\n")
    assert "\n[cluster]\n\t# transport = tcp\n\t# node address = \n" in out
    assert "\tleader timeout = 9\n" in out
    assert f"\t# key file = {base}/cluster.key\n" in out
    assert "[unknown]" not in out


def test_cli_dump_without_conf_shows_defaults(
    base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dump"]) == 0
    assert capsys.readouterr().out == CtdbConf(base=base).dump()


def test_cli_get(base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (base / "ctdb.conf").write_text("[Cluster]\nleader capability = no\n")
    assert main(["get", "cluster", "leader capability"]) == 0
    assert main(["get", "cluster", "leader timeout"]) == 0
    assert main(["get", "cluster", "node address"]) == 0
    assert capsys.readouterr().out == "false\n5\n\n"


def test_cli_get_unknown_option(base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get", "cluster", "bogus"]) == 2
    assert capsys.readouterr().err == 'Configuration option [cluster] -> "bogus" not defined\n'


def test_cli_validate_exit_codes(base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 2  # ENOENT: validate needs ctdb.conf, as in Samba
    assert "ctdb.conf: cannot read" in capsys.readouterr().err
    (base / "ctdb.conf").write_text("[logging]\nlog level = LOUD\n")
    assert main(["validate"]) == 22  # EINVAL
    err = capsys.readouterr().err
    assert (
        err == f"{base}/ctdb.conf:2: [logging] log level: unknown log level 'LOUD' "
        "(use ERROR, WARNING, NOTICE, INFO or DEBUG)\n"
    )
    (base / "ctdb.conf").write_text("[logging]\nlog level = INFO\n")
    assert main(["validate"]) == 0
    (base / "nodes").write_text("198.18.1.1\n198.18.1.1\n")
    assert main(["validate"]) == 22
    assert capsys.readouterr().err.startswith(f"{base}/nodes:2: duplicate")


def test_cli_validate_shows_deprecations_with_debug(
    base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (base / "ctdb.conf").write_text("[cluster]\nrecovery lock = /clusterfs/reclock\n")
    assert main(["validate"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["-d", "WARNING", "validate"]) == 0
    assert "recovery lock is deprecated" in capsys.readouterr().err


def test_cli_check_file_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "nodes.good"
    good.write_text("198.18.1.1\n198.18.1.2\n")
    bad = tmp_path / "nodes.bad"
    bad.write_text("198.18.1.1\nnode-two\n")
    assert main(["check-file", "nodes", str(good)]) == 0
    assert main(["check-file", "nodes", str(bad)]) == 22
    assert capsys.readouterr().err.startswith(f"{bad}:2: bad node address")
    assert main(["check-file", "nodes", str(tmp_path / "absent")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["check-file", "conf", str(bad)]) == 22  # a nodes file is no ctdb.conf


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate"], ["get", "cluster"], ["validate", "extra"], ["check-file", "hosts", "/x"]],
)
def test_cli_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage: ctdb-config" in capsys.readouterr().err


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "check-file" in capsys.readouterr().out


# --- junk never raises anything but ConfigError -----------------------------------

_JUNK_TOKENS = st.sampled_from(
    [
        *"abcXYZ019 \t=[]#;:/,.$'\"\\`(){}-+x%\r\x0b\x00\xe9\U0001f600",
        *("198.18.1.1", "2001:2::1", "/24", "/129", "eth1", "[cluster]", "[paths]"),
        *("log level", "leader timeout", "location", "file:", "syslog:", "MonitorInterval"),
        *("CTDB_X=", "${"),
    ]
)
_junk_line = st.lists(_JUNK_TOKENS, max_size=12).map("".join)
_junk_text = st.lists(_junk_line | st.text(max_size=20), max_size=8).map("\n".join)


@pytest.mark.parametrize("kind", sorted(PARSERS))
@settings(max_examples=300, deadline=None)
@given(text=_junk_text)
def test_junk_raises_only_config_error(kind: str, text: str) -> None:
    try:
        PARSERS[kind](text, "junk")
    except ConfigError as e:
        message = str(e)
        assert message.startswith("junk:"), message
        assert "\n" not in message


@settings(max_examples=200, deadline=None)
@given(text=_junk_text)
def test_junk_conf_with_sections(text: str) -> None:
    for section in ("[logging]\n", "[cluster]\n", "[paths]\n"):
        try:
            parse_conf(section + text, "junk", ignore_unknown=True)
        except ConfigError as e:
            message = str(e)
            assert message.startswith("junk:"), message
