"""ctdb.conf: CTDB 4.17's option table, its validation rules and ``ctdb-config dump``.

The table mirrors CTDB's sections and options in CTDB's order (``dump`` prints them
in that order), plus pyctdb's additions marked ``pyctdb=True``.  CTDB's own
reading rules that matter for compatibility:

* section names match in any case, option names exactly;
* an empty value is an error; integers are C ``strtol`` base 0 and may not be
  negative; booleans are true/yes/false/no in any case;
* an assignment equal to the default is ignored, and among several assignments to
  one option the last one that differs from the default wins;
* only values that differ from the default are validated, so path checks
  (``check_paths``) never fail on defaults.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ctdb.config import paths
from ctdb.config.ini import Param, Section, read_ini
from ctdb.config.values import (
    INT_MAX,
    config_error,
    parse_boolean,
    parse_c_integer,
    parse_ip,
    parse_log_level,
    read_text,
)
from ctdb.record import frozen

TYPE_CHECKING = False  # typing is not imported at run time (the ctdb CLI's start-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, Literal, TypeAlias

    OptionType: TypeAlias = Literal["string", "integer", "boolean"]

Value = str | int | bool | None
Key = tuple[str, str]

# CTDB's LOGDIR is <localstatedir>/log; distributions configure localstatedir=/var.
DEFAULT_LOCATION = "file:/var/log/log.ctdb"
DEFAULT_LOG_LEVEL = "NOTICE"  # ctdbd's default (ctdb-config itself shows ERROR)
DEFAULT_PORT = 4379
_SYSLOG_METHODS = ("nonblocking", "udp", "udp-rfc5424")


# --- validators: pure ones raise ValueError; path ones also get CTDB_BASE ---------


def _check_location(text: str) -> None:
    backend, option = _split_location(text)
    if backend == "file":
        return
    if backend == "syslog":
        if option is not None and option not in _SYSLOG_METHODS:
            raise ValueError(
                f"unknown syslog method {option!r} (use nonblocking, udp or udp-rfc5424)"
            )
        return
    raise ValueError(f"unknown log backend {backend!r} (use file:FILENAME or syslog[:METHOD])")


def _split_location(text: str) -> tuple[str, str | None]:
    """Backend and option as CTDB's strtok(":") splits them (empty parts skipped)."""
    parts = [p for p in text.split(":") if p]
    if not parts:
        raise ValueError(f"{text!r} names no log backend")
    return parts[0], parts[1] if len(parts) > 1 else None


def _c_dirname(path: str) -> str:
    """POSIX dirname(3), which differs from os.path.dirname on trailing slashes."""
    stripped = path.rstrip("/")
    if not stripped:
        return "/" if path else "."
    parent = os.path.dirname(stripped).rstrip("/")
    if not parent:
        return "/" if stripped.startswith("/") else "."
    return parent


def _check_location_dir(text: str, base: Path) -> None:
    backend, option = _split_location(text)
    if backend == "file" and option is not None and option != "-":
        directory = _c_dirname(option)
        if not os.path.isdir(directory):
            raise ValueError(f"log directory {directory!r} does not exist")


def _check_transport(text: str) -> None:
    if text != "tcp":
        raise ValueError(f"transport {text!r} is not supported (only tcp)")


def _check_address(text: str) -> None:
    parse_ip(text)


def _check_leader_timeout(value: int) -> None:
    if value <= 0:
        raise ValueError(f"{value} must be greater than 0")


def _check_port(value: int) -> None:
    if not 1 <= value <= 65535:
        raise ValueError(f"{value} is not a TCP port (1..65535)")


def _check_nfs(text: str) -> None:
    if text not in ("none", "ganesha", "kernel"):
        raise ValueError("must be none, ganesha or kernel")


def _check_absolute(text: str) -> None:
    if not text.startswith("/"):
        raise ValueError(f"{text!r} is not an absolute path")


def _check_directory_exists(text: str, base: Path) -> None:
    if not os.path.isdir(text):
        raise ValueError(f"directory {text!r} does not exist")


def _check_script_in_base(text: str, base: Path) -> None:
    """CTDB ignores any directory part: the script is <CTDB_BASE>/<basename>."""
    script = base / os.path.basename(text.rstrip("/"))
    try:
        st = os.stat(script)
    except OSError:
        raise ValueError(f"script {str(script)!r} does not exist") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"script {str(script)!r} is not a file")
    if not st.st_mode & stat.S_IXUSR:
        raise ValueError(f"script {str(script)!r} is not executable")


# --- the option table --------------------------------------------------------------


@frozen
class Option:
    """One ctdb.conf option: its type, default and how a value is checked.

    ``default`` may be a function of the configuration read so far, for defaults
    that follow CTDB_BASE or the state directory.  ``check`` is a pure check of a
    typed value; ``path_check`` looks at the filesystem and runs only when asked.
    ``env`` names an environment variable that overrides the file.
    """

    section: str
    name: str
    type: OptionType
    default: Value | Callable[[CtdbConf], Value]
    doc: str
    check: Callable[[Any], object] | None = None
    path_check: Callable[[str, Path], None] | None = None
    env: str | None = None
    deprecated: str | None = None
    pyctdb: bool = False

    def default_for(self, conf: CtdbConf) -> Value:
        return self.default(conf) if callable(self.default) else self.default

    def parse(self, text: str) -> Value:
        """Typed value of *text*, or ValueError naming what is wrong."""
        value: Value
        if self.type == "integer":
            value = parse_c_integer(text, maximum=INT_MAX)
        elif self.type == "boolean":
            value = parse_boolean(text)
        else:
            value = text
        if self.check is not None:
            self.check(value)
        return value


SECTIONS: tuple[str, ...] = (
    "logging",
    "cluster",
    "database",
    "event",
    "failover",
    "legacy",
    "paths",
    "services",
)

OPTIONS: tuple[Option, ...] = (
    Option(
        "logging",
        "location",
        "string",
        DEFAULT_LOCATION,
        "Where ctdbd logs: file:FILENAME or syslog[:nonblocking|udp|udp-rfc5424].",
        _check_location,
        path_check=_check_location_dir,
    ),
    Option(
        "logging",
        "log level",
        "string",
        DEFAULT_LOG_LEVEL,
        "ERROR, WARNING, NOTICE, INFO or DEBUG (a prefix or a number 0..10).",
        parse_log_level,
    ),
    Option(
        "cluster",
        "transport",
        "string",
        "tcp",
        "Transport between nodes; CTDB 4.17 accepts only tcp.",
        _check_transport,
    ),
    Option(
        "cluster",
        "node address",
        "string",
        None,
        "This node's private address, when it cannot be found from the nodes file.",
        _check_address,
    ),
    Option(
        "cluster",
        "cluster lock",
        "string",
        None,
        "Cluster-wide mutex against split brain: a lock file, or !helper args.",
    ),
    Option(
        "cluster",
        "recovery lock",
        "string",
        None,
        "Old name of cluster lock, still accepted; cluster lock wins if both are set.",
        deprecated="use [cluster] cluster lock instead",
    ),
    Option(
        "cluster",
        "leader timeout",
        "integer",
        5,
        "Seconds without a leader broadcast before a node calls an election.",
        _check_leader_timeout,
    ),
    Option(
        "cluster",
        "leader capability",
        "boolean",
        True,
        "Whether this node may become the cluster leader.",
    ),
    Option(
        "cluster",
        "key file",
        "string",
        lambda conf: str(conf.base / paths.KEY_FILE),
        "File holding the key nodes use to authenticate each other (relative to CTDB_BASE).",
        pyctdb=True,
    ),
    Option(
        "cluster",
        "port",
        "integer",
        DEFAULT_PORT,
        "TCP port for traffic between nodes.",
        _check_port,
        pyctdb=True,
    ),
    Option(
        "database",
        "volatile database directory",
        "string",
        lambda conf: str(conf.state_dir / "volatile"),
        "Local directory for volatile databases.",
        path_check=_check_directory_exists,
    ),
    Option(
        "database",
        "persistent database directory",
        "string",
        lambda conf: str(conf.state_dir / "persistent"),
        "Local directory for persistent databases.",
        path_check=_check_directory_exists,
    ),
    Option(
        "database",
        "state database directory",
        "string",
        lambda conf: str(conf.state_dir / "state"),
        "Local directory for internal state databases.",
        path_check=_check_directory_exists,
    ),
    Option(
        "database",
        "lock debug script",
        "string",
        None,
        "Script in CTDB_BASE run when a database lock cannot be taken.",
        path_check=_check_script_in_base,
    ),
    Option(
        "database",
        "tdb mutexes",
        "boolean",
        True,
        "Use robust mutexes for volatile database locking.",
    ),
    Option(
        "event",
        "debug script",
        "string",
        None,
        "Script in CTDB_BASE run when an event script times out.",
        path_check=_check_script_in_base,
    ),
    Option(
        "failover",
        "disabled",
        "boolean",
        False,
        "Disable public IP address failover.",
    ),
    Option(
        "legacy",
        "realtime scheduling",
        "boolean",
        True,
        "Run ctdbd with real-time priority.",
    ),
    Option(
        "legacy",
        "lmaster capability",
        "boolean",
        True,
        "Whether this node may be location master for records.",
    ),
    Option(
        "legacy",
        "start as stopped",
        "boolean",
        False,
        "Start in the STOPPED state (until ctdb continue).",
    ),
    Option(
        "legacy",
        "start as disabled",
        "boolean",
        False,
        "Start in the DISABLED state (until ctdb enable).",
    ),
    Option(
        "legacy",
        "script log level",
        "string",
        "ERROR",
        "Log level of event script output.",
        parse_log_level,
    ),
    Option(
        "paths",
        "run directory",
        "string",
        str(paths.DEFAULT_RUN_DIR),
        "Sockets and pid files; $CTDB_RUNDIR overrides.",
        _check_absolute,
        env="CTDB_RUNDIR",
        pyctdb=True,
    ),
    Option(
        "paths",
        "state directory",
        "string",
        str(paths.DEFAULT_STATE_DIR),
        "Databases and other local state; $CTDB_VARDIR overrides.",
        _check_absolute,
        env="CTDB_VARDIR",
        pyctdb=True,
    ),
    Option(
        "services",
        "samba",
        "boolean",
        False,
        "Manage smbd on this node (started when the node may serve, stopped when not).",
        pyctdb=True,
    ),
    Option(
        "services",
        "nmbd",
        "boolean",
        False,
        "Also manage nmbd (NetBIOS name service) with Samba.",
        pyctdb=True,
    ),
    Option(
        "services",
        "winbind",
        "boolean",
        False,
        "Manage winbindd on this node.",
        pyctdb=True,
    ),
    Option(
        "services",
        "nfs",
        "string",
        "none",
        "NFS server to manage: none, ganesha (NFS-Ganesha) or kernel (nfs-server).",
        _check_nfs,
        pyctdb=True,
    ),
    Option(
        "services",
        "restart limit",
        "integer",
        3,
        "Restarts of a failed service within 10 minutes before serviced gives up on it.",
        pyctdb=True,
    ),
    Option(
        "services",
        "restart delay",
        "integer",
        1000,
        "Milliseconds before the first restart of a failed service; doubles each time.",
        pyctdb=True,
    ),
)

_BY_KEY: dict[Key, Option] = {(o.section, o.name): o for o in OPTIONS}


def find_option(section: str, name: str) -> Option | None:
    """The option, matching the section in any case and the name exactly (as CTDB)."""
    return _BY_KEY.get((section.lower(), name))


def value_text(value: Value) -> str:
    """A value as ctdb-config prints it: true/false, decimal, or the string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


# --- the typed configuration ------------------------------------------------------


@frozen
class CtdbConf:
    """The effective ctdb.conf: values set in the file, defaults for the rest.

    ``settings`` holds only values that differ from the default (as CTDB keeps
    them); ``env`` supplies overrides such as CTDB_RUNDIR.  ``CtdbConf()`` is the
    all-defaults configuration.
    """

    settings: Mapping[Key, Value]
    base: Path
    env: Mapping[str, str]
    filename: str
    warnings: tuple[str, ...]

    def __init__(
        self,
        settings: Mapping[Key, Value] | None = None,
        base: Path = paths.DEFAULT_BASE,
        env: Mapping[str, str] | None = None,
        filename: str = paths.CONF_FILE,
        warnings: tuple[str, ...] = (),
    ) -> None:
        # Written out for the fresh empty dicts: ``frozen`` takes a default factory
        # only from ``dataclasses.field``, and importing dataclasses costs the CLI ~7 ms.
        init_field = object.__setattr__  # the fields are frozen once __init__ is done
        init_field(self, "settings", {} if settings is None else settings)
        init_field(self, "base", base)
        init_field(self, "env", {} if env is None else env)
        init_field(self, "filename", filename)
        init_field(self, "warnings", warnings)

    def _option(self, section: str, name: str) -> Option:
        option = find_option(section, name)
        if option is None:
            raise KeyError(f'[{section}] -> "{name}" is not a ctdb.conf option')
        return option

    def value(self, section: str, name: str) -> Value:
        """The typed effective value (str, int, bool, or None for an unset string)."""
        option = self._option(section, name)
        if option.env is not None and self.env.get(option.env):
            return self.env[option.env]
        key = (option.section, option.name)
        if key in self.settings:
            return self.settings[key]
        return option.default_for(self)

    def is_default(self, section: str, name: str) -> bool:
        """True when neither the file nor the environment set the option."""
        option = self._option(section, name)
        if option.env is not None and self.env.get(option.env):
            return False
        return (option.section, option.name) not in self.settings

    def get(self, section: str, name: str) -> str:
        """The value as ``ctdb-config get`` prints it; KeyError for unknown options."""
        return value_text(self.value(section, name))

    def dump(self) -> str:
        """The whole effective configuration in ``ctdb-config dump`` format:
        ``[section]`` lines, then a tab and ``option = value`` per option, commented
        out with ``# `` when the value is the default (or an unset string)."""
        out: list[str] = []
        for section in SECTIONS:
            out.append(f"[{section}]\n")
            for option in OPTIONS:
                if option.section != section:
                    continue
                value = self.value(section, option.name)
                mark = "# " if value is None or self.is_default(section, option.name) else ""
                out.append(f"\t{mark}{option.name} = {value_text(value)}\n")
        return "".join(out)

    def _str(self, section: str, name: str) -> str | None:
        value = self.value(section, name)
        return value if isinstance(value, str) else None

    def _bool(self, section: str, name: str) -> bool:
        return bool(self.value(section, name))

    def _int(self, section: str, name: str) -> int:
        value = self.value(section, name)
        return value if isinstance(value, int) else 0

    # Typed accessors for the daemons.
    @property
    def log_location(self) -> str:
        return self._str("logging", "location") or DEFAULT_LOCATION

    @property
    def log_level(self) -> str:
        return parse_log_level(self._str("logging", "log level") or DEFAULT_LOG_LEVEL)

    @property
    def transport(self) -> str:
        return self._str("cluster", "transport") or "tcp"

    @property
    def cluster_lock(self) -> str | None:
        """``cluster lock``, else the deprecated ``recovery lock`` (as ctdbd does)."""
        return self._str("cluster", "cluster lock") or self._str("cluster", "recovery lock")

    @property
    def node_address(self) -> str | None:
        return self._str("cluster", "node address")

    @property
    def leader_timeout(self) -> int:
        return self._int("cluster", "leader timeout")

    @property
    def leader_capability(self) -> bool:
        return self._bool("cluster", "leader capability")

    @property
    def key_file(self) -> Path:
        """The cluster key; a relative name is taken relative to CTDB_BASE."""
        return self.base / (self._str("cluster", "key file") or paths.KEY_FILE)

    @property
    def port(self) -> int:
        return self._int("cluster", "port")

    @property
    def volatile_db_dir(self) -> Path:
        return Path(self._str("database", "volatile database directory") or "")

    @property
    def persistent_db_dir(self) -> Path:
        return Path(self._str("database", "persistent database directory") or "")

    @property
    def state_db_dir(self) -> Path:
        return Path(self._str("database", "state database directory") or "")

    @property
    def lock_debug_script(self) -> str | None:
        return self._str("database", "lock debug script")

    @property
    def tdb_mutexes(self) -> bool:
        return self._bool("database", "tdb mutexes")

    @property
    def event_debug_script(self) -> str | None:
        return self._str("event", "debug script")

    @property
    def failover_disabled(self) -> bool:
        return self._bool("failover", "disabled")

    @property
    def services(self) -> dict[str, bool | str]:
        """The ``[services]`` section: which file services this node manages."""
        return {"samba": self._bool("services", "samba"), "nmbd": self._bool("services", "nmbd"),
                "winbind": self._bool("services", "winbind"),
                "nfs": self._str("services", "nfs") or "none"}

    @property
    def restart_policy(self) -> tuple[int, float]:
        """(restarts allowed in the window, first delay in seconds) for failed services."""
        return (self._int("services", "restart limit"),
                self._int("services", "restart delay") / 1000)

    @property
    def realtime_scheduling(self) -> bool:
        return self._bool("legacy", "realtime scheduling")

    @property
    def lmaster_capability(self) -> bool:
        return self._bool("legacy", "lmaster capability")

    @property
    def start_as_stopped(self) -> bool:
        return self._bool("legacy", "start as stopped")

    @property
    def start_as_disabled(self) -> bool:
        return self._bool("legacy", "start as disabled")

    @property
    def script_log_level(self) -> str:
        return parse_log_level(self._str("legacy", "script log level") or "ERROR")

    @property
    def run_dir(self) -> Path:
        return Path(self._str("paths", "run directory") or paths.DEFAULT_RUN_DIR)

    @property
    def state_dir(self) -> Path:
        return Path(self._str("paths", "state directory") or paths.DEFAULT_STATE_DIR)


# --- reading ----------------------------------------------------------------------


Assignments = dict[Key, list[tuple[Value, int]]]


def _read_assignments(
    text: str, filename: str, ignore_unknown: bool
) -> tuple[Assignments, list[str]]:
    """Every valid ``option = value`` in file order, plus deprecation warnings."""
    assignments: Assignments = {}
    warnings: list[str] = []
    section: str | None = None
    skipping = False  # inside an unknown section that we were told to ignore
    for item in read_ini(text, filename):
        if isinstance(item, Section):
            section = item.name.lower()
            skipping = section not in SECTIONS
            if skipping and not ignore_unknown:
                raise config_error(filename, item.line, f"unknown section [{_show(item.name)}]")
            continue
        if skipping:
            continue
        if section is None:
            if ignore_unknown:
                continue
            raise config_error(
                filename, item.line, f'option "{_show(item.name)}" comes before any [section]'
            )
        option = find_option(section, item.name)
        if option is None:
            if ignore_unknown:
                continue
            raise config_error(
                filename,
                item.line,
                f'unknown option "{_show(item.name)}" in section [{section}]',
            )
        value = _parse_param(option, item, filename)
        if option.deprecated:
            warnings.append(
                f"{filename}:{item.line}: [{section}] {option.name} is deprecated, "
                f"{option.deprecated}"
            )
        assignments.setdefault((option.section, option.name), []).append((value, item.line))
    return assignments, warnings


def _show(name: str) -> str:
    """A name for an error message, with control characters escaped."""
    return name if name.isprintable() else repr(name)[1:-1]


def _parse_param(option: Option, item: Param, filename: str) -> Value:
    where = f"[{option.section}] {option.name}"
    if item.value is None:
        raise config_error(filename, item.line, f'{where}: expected "{option.name} = value"')
    if item.value == "":
        raise config_error(filename, item.line, f"{where}: empty value")
    try:
        return option.parse(item.value)
    except ValueError as e:
        raise config_error(filename, item.line, f"{where}: {e}") from None


def parse_conf(
    text: str,
    filename: str = paths.CONF_FILE,
    *,
    base: Path = paths.DEFAULT_BASE,
    env: Mapping[str, str] | None = None,
    ignore_unknown: bool = False,
    check_paths: bool = False,
) -> CtdbConf:
    """Read ctdb.conf text; raise ConfigError (``FILE:LINE: ...``) on the first problem.

    *env* (default: empty, so this stays pure) supplies CTDB_RUNDIR/CTDB_VARDIR.
    *ignore_unknown* skips unknown sections and options, as ctdbd and
    ``ctdb-config dump``/``get`` do; ``validate`` refuses them.  *check_paths* adds
    CTDB's filesystem checks (log directory, database directories, debug scripts
    in *base*), which depend on the machine and so are off for pure parsing.
    """
    env = {} if env is None else env
    assignments, warnings = _read_assignments(text, filename, ignore_unknown)
    for option in OPTIONS:
        if option.env and env.get(option.env):
            try:
                option.parse(env[option.env])
            except ValueError as e:
                raise config_error(f"${option.env}", None, str(e)) from None

    conf = _settle(assignments, base, env, filename, tuple(warnings))
    if check_paths:
        _check_paths(conf, assignments, filename)
    return conf


def _settle(
    assignments: Assignments,
    base: Path,
    env: Mapping[str, str],
    filename: str,
    warnings: tuple[str, ...],
) -> CtdbConf:
    """Keep, per option, the last assignment that differs from its default.

    [paths] goes first because other defaults (database directories) follow it.
    """
    settings: dict[Key, Value] = {}
    for paths_pass in (True, False):
        probe = CtdbConf(settings=dict(settings), base=base, env=env)
        for key, values in assignments.items():
            if (key[0] == "paths") != paths_pass:
                continue
            default = _BY_KEY[key].default_for(probe)
            changed = [v for v, _ in values if v != default]
            if changed:
                settings[key] = changed[-1]
    return CtdbConf(settings=settings, base=base, env=env, filename=filename, warnings=warnings)


def _check_paths(conf: CtdbConf, assignments: Assignments, filename: str) -> None:
    for key, value in conf.settings.items():
        option = _BY_KEY[key]
        if option.path_check is None or not isinstance(value, str):
            continue
        line = max(ln for v, ln in assignments[key] if v == value)
        try:
            option.path_check(value, conf.base)
        except ValueError as e:
            raise config_error(filename, line, f"[{key[0]}] {key[1]}: {e}") from None


def load_conf(
    path: Path,
    *,
    base: Path | None = None,
    env: Mapping[str, str] | None = None,
    ignore_unknown: bool = False,
    check_paths: bool = True,
    missing_ok: bool = True,
) -> CtdbConf:
    """Read ctdb.conf from *path*; an absent file means all defaults (as ctdbd).

    *env* defaults to os.environ and *base* to CTDB_BASE from it.  OSError other
    than a missing file propagates; bad content raises ConfigError.
    """
    env = os.environ if env is None else env
    base = paths.ctdb_base(env) if base is None else base
    try:
        text = read_text(path)
    except FileNotFoundError:
        if not missing_ok:
            raise
        text = ""
    return parse_conf(
        text, str(path), base=base, env=env, ignore_unknown=ignore_unknown, check_paths=check_paths
    )


__all__ = [
    "OPTIONS",
    "SECTIONS",
    "CtdbConf",
    "Option",
    "find_option",
    "load_conf",
    "parse_conf",
    "value_text",
]
