"""Read every CTDB file in CTDB_BASE at once, all or nothing.

Absent files mean what they mean to CTDB: no ctdb.conf is all defaults, no
public_addresses is no public addresses, no ctdb.tunables is default tunables, no
script.options is no options.  A missing nodes file is left as ``None`` for the
daemon to refuse (tools such as ``ctdb-config`` do not need it).
"""

from __future__ import annotations

import os

from ctdb.config import paths
from ctdb.config.conf import CtdbConf, load_conf
from ctdb.config.nodes import Node, load_nodes
from ctdb.config.public_addresses import PublicAddress, load_public_addresses
from ctdb.config.script_options import load_script_options
from ctdb.config.tunables import Tunables, load_tunables
from ctdb.config.values import config_error
from ctdb.record import frozen

TYPE_CHECKING = False  # typing is not imported at run time (the ctdb CLI's start-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path
    from typing import TypeVar

    T = TypeVar("T")


@frozen
class Config:
    """Everything read from one CTDB_BASE."""

    base: Path
    conf: CtdbConf
    nodes: list[Node] | None
    public_addresses: list[PublicAddress]
    tunables: Tunables
    script_options: dict[str, str]


def _read(path: Path, read: Callable[[Path], T]) -> T:
    """*read(path)*, with an unreadable file reported as ConfigError."""
    try:
        return read(path)
    except OSError as e:
        raise config_error(str(path), None, f"cannot read: {e.strerror or e}") from None


def _optional(path: Path, read: Callable[[Path], T], absent: T) -> T:
    """As _read, but *absent* when there is no such file."""
    if not path.exists() and not path.is_symlink():
        return absent
    return _read(path, read)


def load(
    base: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    check_paths: bool = True,
) -> Config:
    """Read CTDB_BASE (*base*, else $CTDB_BASE, else /etc/ctdb); ConfigError if any
    file is invalid.  *env* defaults to os.environ; *check_paths* as in parse_conf."""
    env = os.environ if env is None else env
    base = paths.ctdb_base(env) if base is None else base
    if not base.is_dir():
        raise config_error(str(base), None, "CTDB_BASE is not a directory")
    conf = _read(
        base / paths.CONF_FILE,  # absent: all defaults, as for ctdbd
        lambda p: load_conf(p, base=base, env=env, check_paths=check_paths),
    )
    script_env = {"CTDB_BASE": str(base)}
    return Config(
        base=base,
        conf=conf,
        nodes=_optional(base / paths.NODES_FILE, load_nodes, None),
        public_addresses=_optional(base / paths.PUBLIC_ADDRESSES_FILE, load_public_addresses, []),
        tunables=_optional(base / paths.TUNABLES_FILE, load_tunables, Tunables()),
        script_options=_optional(
            base / paths.SCRIPT_OPTIONS_FILE,
            lambda p: load_script_options(p, env=script_env),
            {},
        ),
    )
