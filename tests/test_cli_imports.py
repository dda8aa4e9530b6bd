"""The ``ctdb`` command's start-up stays lean: a regression guard on its imports.

Every ``ctdb`` run pays for what it imports (``ctdb ping`` is a few milliseconds of
work after tens of milliseconds of start-up), so the modules below must stay off the
command's path: asyncio, and dataclasses (with inspect, ast, dis, tokenize ...),
typing and json, which the CLI, the configuration and the blocking transport client
used to load at run time.  json is for ``--json`` only.

Each command runs in a fresh interpreter; the check is on the modules the command
added, so whatever the interpreter's own start-up loads does not count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Modules the CLI must not load for an ordinary command.
FORBIDDEN = ("asyncio", "dataclasses", "inspect", "json", "typing")

# Runs the CLI in-process and prints the top-level modules it added, then its exit code.
PROBE = """
import sys
before = set(sys.modules)
from ctdb.cli.main import main
rc = main(sys.argv[1:])
added = sorted({name.partition(".")[0] for name in set(sys.modules) - before})
print("\\n" + " ".join(added) + "\\n" + str(rc))
"""


@pytest.fixture
def ctdb_base(tmp_path: Path) -> Path:
    """A CTDB_BASE with every file the CLI reads, and a run directory with no daemon."""
    base = tmp_path / "etc"
    base.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (base / "ctdb.conf").write_text(
        f"[logging]\n\tlog level = INFO\n[cluster]\n\tleader timeout = 0x5\n"
        f"[paths]\n\trun directory = {run}\n"
    )
    (base / "nodes").write_text("198.18.1.1\n#198.18.1.2\n198.18.1.3\n")
    (base / "public_addresses").write_text("198.18.2.1/24 eth1\n198.18.2.2/24\teth1,eth2\n")
    (base / "ctdb.tunables").write_text("MonitorInterval=20\n")
    (base / "script.options").write_text("CTDB_X=${CTDB_BASE}/x\n")
    return base


def run_cli(base: Path, *argv: str) -> tuple[list[str], int, str]:
    """(top-level modules the command imported, exit code, output before the report)."""
    env = {k: v for k, v in os.environ.items() if k not in ("CTDB_RUNDIR", "CTDB_VARDIR")}
    res = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        env=dict(env, CTDB_BASE=str(base)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output, modules, rc = res.stdout.rsplit("\n", 3)[:3]
    assert res.returncode == 0, res.stderr
    return modules.split(), int(rc), output


@pytest.mark.parametrize("argv", [("version",), ("ping",), ("listnodes",)])
def test_commands_skip_heavy_imports(ctdb_base: Path, argv: tuple[str, ...]) -> None:
    modules, _, _ = run_cli(ctdb_base, *argv)
    assert "ctdb" in modules  # the probe saw the CLI's imports
    loaded = [name for name in FORBIDDEN if name in modules]
    assert loaded == [], f"ctdb {' '.join(argv)} imports {loaded}"


def test_ping_reads_config_and_imports_the_client(ctdb_base: Path) -> None:
    # No daemon: the command still loads the configuration and the transport client.
    _, rc, _ = run_cli(ctdb_base, "ping")
    assert rc == 1


def test_json_is_loaded_for_json_output(ctdb_base: Path) -> None:
    modules, rc, output = run_cli(ctdb_base, "--json", "version")
    assert rc == 0
    assert "json" in modules
    assert "version" in json.loads(output)
