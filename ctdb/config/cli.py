"""``ctdb-config``: validate, dump and query CTDB's configuration, as Samba's tool does.

Samba's commands and exit codes (ctdb/common/conf_tool.c): ``validate`` is strict
and needs ctdb.conf to exist (exit 2, ENOENT, if not; 22, EINVAL, if invalid);
``dump`` and ``get`` skip unknown options and accept a missing file; ``get`` of an
option that does not exist exits 2.  Beyond Samba: ``validate`` also checks the
other files present in CTDB_BASE, and ``check-file KIND PATH`` checks one file
wherever it is (for Ansible's ``validate: ctdb-config check-file nodes %s``).
Errors are one line on stderr; bad usage prints usage and exits 2.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Callable
from pathlib import Path

from ctdb.config import paths
from ctdb.config.conf import find_option, load_conf
from ctdb.config.loader import load
from ctdb.config.nodes import load_nodes
from ctdb.config.public_addresses import load_public_addresses
from ctdb.config.script_options import load_script_options
from ctdb.config.tunables import load_tunables
from ctdb.config.values import LOG_LEVEL_NAMES, parse_log_level
from ctdb.errors import ConfigError

EXIT_INVALID = errno.EINVAL  # 22, as Samba's ctdb-config
EXIT_MISSING = errno.ENOENT  # 2
EXIT_USAGE = 2

KINDS = ("conf", "nodes", "public_addresses", "tunables", "script.options")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ctdb-config",
        description="Check and show CTDB's configuration in $CTDB_BASE (default /etc/ctdb).",
    )
    parser.add_argument(
        "-d",
        "--debug",
        default="ERROR",
        metavar="LEVEL",
        help="debug level: " + "|".join(LOG_LEVEL_NAMES) + " (WARNING shows deprecations)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("validate", help="validate the configuration files")
    commands.add_parser("dump", help="dump the effective ctdb.conf")
    get = commands.add_parser("get", help="get a ctdb.conf value")
    get.add_argument("section")
    get.add_argument("option")
    check = commands.add_parser("check-file", help="validate one file of the given kind")
    check.add_argument("kind", choices=KINDS)
    check.add_argument("path", type=Path)
    return parser


def _error(message: str) -> None:
    print(message, file=sys.stderr)


def _warn(warnings: tuple[str, ...], debug: str) -> None:
    if LOG_LEVEL_NAMES.index(debug) >= LOG_LEVEL_NAMES.index("WARNING"):
        for warning in warnings:
            _error(f"warning: {warning}")


def _cannot_read(path: Path, e: OSError) -> int:
    _error(f"{path}: cannot read: {e.strerror or e}")
    return e.errno or EXIT_INVALID


def _validate(base: Path, debug: str) -> int:
    conf_path = base / paths.CONF_FILE
    if not conf_path.exists():
        _error(f"{conf_path}: cannot read: {os.strerror(errno.ENOENT)}")
        return EXIT_MISSING
    config = load(base)
    _warn(config.conf.warnings, debug)
    return 0


def _dump(base: Path) -> int:
    conf = load_conf(base / paths.CONF_FILE, base=base, ignore_unknown=True)
    sys.stdout.write(conf.dump())
    return 0


def _get(base: Path, section: str, option: str) -> int:
    if find_option(section, option) is None:
        _error(f'Configuration option [{section}] -> "{option}" not defined')
        return EXIT_MISSING
    conf = load_conf(base / paths.CONF_FILE, base=base, ignore_unknown=True)
    print(conf.get(section, option))
    return 0


def _check_file(kind: str, path: Path, base: Path, debug: str) -> int:
    if kind == "conf":
        _warn(load_conf(path, base=base, missing_ok=False).warnings, debug)
    elif kind == "nodes":
        load_nodes(path)
    elif kind == "public_addresses":
        load_public_addresses(path)
    elif kind == "tunables":
        load_tunables(path)
    else:
        load_script_options(path, env={"CTDB_BASE": str(base)})
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ctdb-config with *argv* (default sys.argv[1:]); return the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: usage errors exit 2, --help exits 0
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    try:
        debug = parse_log_level(args.debug)
    except ValueError:
        debug = "ERROR"  # as Samba: an unknown debug level falls back to ERROR
    base = paths.ctdb_base()
    commands: dict[str, Callable[[], int]] = {
        "validate": lambda: _validate(base, debug),
        "dump": lambda: _dump(base),
        "get": lambda: _get(base, args.section, args.option),
        "check-file": lambda: _check_file(args.kind, args.path, base, debug),
    }
    try:
        return commands[args.command]()
    except ConfigError as e:
        _error(str(e))
        return EXIT_INVALID
    except OSError as e:
        return _cannot_read(Path(e.filename) if e.filename else base, e)


if __name__ == "__main__":
    sys.exit(main())
