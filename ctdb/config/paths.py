"""Where CTDB's files live: ``CTDB_BASE`` and the file names inside it.

CTDB 4.17 honours ``CTDB_BASE`` only in its test mode; pyctdb always does, so
several nodes can run on one machine, each with its own base directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

DEFAULT_BASE = Path("/etc/ctdb")
DEFAULT_RUN_DIR = Path("/run/ctdb")
DEFAULT_STATE_DIR = Path("/var/lib/ctdb")

CONF_FILE = "ctdb.conf"
NODES_FILE = "nodes"  # CTDB 4.17 has no option to move it: always <CTDB_BASE>/nodes
PUBLIC_ADDRESSES_FILE = "public_addresses"
TUNABLES_FILE = "ctdb.tunables"
SCRIPT_OPTIONS_FILE = "script.options"
KEY_FILE = "cluster.key"
# Where the package keeps the event scripts it ships (CTDB's CTDB_SCRIPTS_DATA_DIR);
# `ctdb event script enable` links them into CTDB_BASE/events/<component>/.
SCRIPTS_DATA_DIR = Path("/usr/share/pyctdb")


def ctdb_base(env: Mapping[str, str] | None = None) -> Path:
    """``$CTDB_BASE`` if set and non-empty, else /etc/ctdb (*env* defaults to os.environ)."""
    value = (os.environ if env is None else env).get("CTDB_BASE", "")
    return Path(value) if value else DEFAULT_BASE
