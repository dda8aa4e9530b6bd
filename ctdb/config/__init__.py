"""CTDB's configuration files, read unchanged from CTDB_BASE and checked strictly.

Each file kind has a pure ``parse_x(text, filename)`` and a ``load_x(path)``; every
refusal is a :class:`~ctdb.errors.ConfigError` reading ``FILE:LINE: what is wrong``.
:func:`load` reads a whole CTDB_BASE.  Imports stay light because the ``ctdb`` CLI
imports this package: its records are ``ctdb.record.frozen`` classes rather
than dataclasses, ``typing`` is imported for type checkers only, and patterns are
compiled on first use.
"""

from ctdb.config.conf import OPTIONS, SECTIONS, CtdbConf, Option, find_option, load_conf, parse_conf
from ctdb.config.loader import Config, load
from ctdb.config.nodes import Node, load_nodes, parse_nodes
from ctdb.config.paths import DEFAULT_BASE, ctdb_base
from ctdb.config.public_addresses import (
    PublicAddress,
    load_public_addresses,
    parse_public_addresses,
)
from ctdb.config.script_options import load_script_options, parse_script_options
from ctdb.config.tunables import (
    CTDB_TUNABLES,
    PYCTDB_TUNABLES,
    TUNABLES,
    Tunables,
    TunableSpec,
    find_tunable,
    load_tunables,
    parse_tunables,
)

__all__ = [
    "CTDB_TUNABLES",
    "DEFAULT_BASE",
    "OPTIONS",
    "PYCTDB_TUNABLES",
    "SECTIONS",
    "TUNABLES",
    "Config",
    "CtdbConf",
    "Node",
    "Option",
    "PublicAddress",
    "TunableSpec",
    "Tunables",
    "ctdb_base",
    "find_option",
    "find_tunable",
    "load",
    "load_conf",
    "load_nodes",
    "load_public_addresses",
    "load_script_options",
    "load_tunables",
    "parse_conf",
    "parse_nodes",
    "parse_public_addresses",
    "parse_script_options",
    "parse_tunables",
]
