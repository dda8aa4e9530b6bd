"""The D-Bus adapter against a real, private dbus-daemon, with both libraries."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctdb.sandbox.netns_backend import DBUS_CONFIG as CONFIG  # the sandbox's own bus

PROBE = """
import asyncio, sys
from netfs import dbus
async def main():
    bus = await dbus.connect(sys.argv[1])
    names = (await dbus.call(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                             "org.freedesktop.DBus", "ListNames"))[0]
    assert bus.unique_name in names, names
    try:
        await dbus.call(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                        "org.freedesktop.DBus", "NoSuchMethod")
    except Exception as exc:
        print(dbus.BACKEND, type(exc).__name__, str(exc).split(":")[0])
    bus.disconnect()
asyncio.run(main())
"""


@pytest.fixture
def bus_address(tmp_path: Path) -> Iterator[str]:
    conf = tmp_path / "bus.conf"
    sock = tmp_path / "bus.sock"
    conf.write_text(CONFIG.format(path=sock))
    proc = subprocess.Popen(["dbus-daemon", f"--config-file={conf}", "--nofork",
                             "--print-address"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("backend", ["dbus-fast", "dbus-next"])
def test_call_and_error_through_both_libraries(bus_address: str, backend: str) -> None:
    env = dict(os.environ, PYCTDB_DBUS=backend)
    out = subprocess.run([sys.executable, "-c", PROBE, bus_address], env=env,
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert out.split() == [backend, "CtdbError", "D-Bus", "org.freedesktop.DBus.NoSuchMethod",
                           "failed"]
