"""serviced's rules, the service table, and the NFS event script's mapping to callouts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ctdb.config import load
from ctdb.errors import ConfigError
from ctdb.serviced.policy import RestartPolicy, Unit, needs_restart, restart_delay, service_health
from netfs.services import ServiceDef, services_from_conf
from nfs_scripts import callout

NFS_SCRIPT = Path(__file__).resolve().parents[1] / "nfs_scripts/events/legacy/60.nfs.script"
ACTIVE = Unit("loaded", "active", "running")


@pytest.mark.parametrize(("history", "now", "delay"), [
    ([], 100.0, 1.0),
    ([90.0], 100.0, 2.0),
    ([80.0, 90.0], 100.0, 4.0),
    ([70.0, 80.0, 90.0], 100.0, None),  # the limit is spent
    ([-600.0, 80.0, 90.0], 100.0, 4.0),  # restarts older than the window do not count
])
def test_restart_backoff_and_limit(history: list[float], now: float,
                                   delay: float | None) -> None:
    assert restart_delay(RestartPolicy(limit=3, delay=1.0), history, now) == delay


@pytest.mark.parametrize(("states", "check", "verdict"), [
    ({"smbd.service": ACTIVE}, (True, ""), (True, "")),
    ({"smbd.service": Unit("loaded", "failed", "failed")}, (True, ""),
     (False, "smbd.service is failed (failed)")),
    ({"smbd.service": Unit("loaded", "inactive", "dead")}, (True, ""),
     (False, "smbd.service is inactive (dead)")),
    ({"smbd.service": Unit("not-found", "inactive", "dead")}, (True, ""),
     (False, "smbd.service is not installed")),
    ({}, (True, ""), (False, "smbd.service: state unknown")),
    ({"smbd.service": ACTIVE}, (False, "nothing listens on TCP port 445"),
     (False, "nothing listens on TCP port 445")),
])
def test_service_health(states: dict[str, Unit], check: tuple[bool, str],
                        verdict: tuple[bool, str]) -> None:
    assert service_health(["smbd.service"], states, check) == verdict


@pytest.mark.parametrize(("state", "restart"), [
    (Unit("loaded", "failed", "failed"), True),
    (Unit("loaded", "inactive", "dead"), True),
    (Unit("loaded", "activating", "auto-restart"), False),  # systemd restarts it itself
    (Unit("loaded", "activating", "start"), False),
    (ACTIVE, False),
])
def test_needs_restart(state: Unit, restart: bool) -> None:
    assert needs_restart(state) is restart


@pytest.mark.parametrize(("conf", "services"), [
    ("", []),
    ("[services]\n samba = true\n", [ServiceDef("smb", ("smbd.service",), "smbd")]),
    ("[services]\n samba = yes\n nmbd = yes\n winbind = yes\n nfs = ganesha\n", [
        ServiceDef("winbind", ("winbind.service",)),
        ServiceDef("smb", ("smbd.service", "nmbd.service"), "smbd"),
        ServiceDef("nfs", ("nfs-ganesha.service",), "ganesha")]),
    ("[services]\n nfs = kernel\n", [ServiceDef("nfs", ("nfs-server.service",))]),
])
def test_services_from_ctdb_conf(tmp_path: Path, conf: str,
                                 services: list[ServiceDef]) -> None:
    (tmp_path / "ctdb.conf").write_text(conf)
    assert services_from_conf(load(tmp_path).conf.services) == services


@pytest.mark.parametrize(("conf", "error"), [
    ("[services]\n nfs = knfsd\n", "must be none, ganesha or kernel"),
    ("[services]\n samba = maybe\n", "samba"),
    ("[services]\n restart limit = -1\n", "restart limit: '-1' is negative"),
])
def test_bad_services_config(tmp_path: Path, conf: str, error: str) -> None:
    (tmp_path / "ctdb.conf").write_text(conf)
    with pytest.raises(ConfigError, match=error):
        load(tmp_path)


def test_callout_usage_and_register(capsys: pytest.CaptureFixture[str]) -> None:
    assert callout.main(["register"]) == 0
    assert capsys.readouterr().out.split() == list(callout.HANDLED)
    assert callout.main(["startup"]) == 0  # serviced starts the service: nothing to do
    assert callout.main(["takeip"]) == 1
    assert "takeip needs one address" in capsys.readouterr().err
    assert callout.main(["bogus"]) == 1
    assert "usage: pyctdb-nfs-callout" in capsys.readouterr().err


def test_callout_without_ganesha_fails_with_one_line(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYCTDB_GANESHA_BUS", f"unix:path={tmp_path / 'no-bus'}")
    assert callout.main(["takeip", "198.18.2.10"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("pyctdb-nfs-callout: takeip failed: ")
    assert "\n" not in err


@pytest.mark.parametrize(("args", "calls"), [
    (["startup"], []),  # registered operations only
    (["monitor"], ["monitor-post"]),
    (["takeip", "eth1", "198.18.2.10", "24"], ["takeip 198.18.2.10"]),
    (["releaseip", "eth1", "198.18.2.10", "24"], ["releaseip 198.18.2.10"]),
    (["startipreallocate"], ["startipreallocate"]),
    (["ipreallocated"], []),
])
def test_nfs_event_script_calls_the_callout(tmp_path: Path, args: list[str],
                                            calls: list[str]) -> None:
    log = tmp_path / "calls"
    fake = tmp_path / "callout"
    fake.write_text(f'#!/bin/sh\nif [ "$1" = register ]; then\n'
                    f'  printf "monitor-post\\ntakeip\\nreleaseip\\nstartipreallocate\\n"\n'
                    f'else echo "$*" >> {log}; fi\n')
    fake.chmod(0o755)
    (tmp_path / "script.options").write_text(f"CTDB_NFS_CALLOUT={fake}\n")
    result = subprocess.run([str(NFS_SCRIPT), *args], capture_output=True, text=True,
                            check=False, env=dict(os.environ, CTDB_BASE=str(tmp_path),
                                                  CTDB_SCRIPT_VARDIR=str(tmp_path / "var")))
    assert result.returncode == 0, result.stderr
    assert (log.read_text().splitlines() if log.exists() else []) == calls
    # What the callout registers is kept: a second event does not ask again.
    assert list((tmp_path / "var" / "nfs").iterdir())
