"""Health checks: /proc/net/tcp rows, smbcontrol's answers, Ganesha's D-Bus formats.

The parsers are table-tested; the readers run for real where that is cheap (this
process's own listening socket, smbcontrol with no smbd running, a bus with no Ganesha).
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from netfs import ganesha, health
from netfs.health import TcpSocket

HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
          "  timeout inode")
ROW = "   {n}: {local} {remote} {st} 00000000:00000000 00:00000000 00000000     0        0 {n}"


def row(local: str, st: str = "0A", remote: str = "00000000:0000", n: int = 0) -> str:
    return ROW.format(n=n, local=local, remote=remote, st=st)


TCP_ROWS: list[tuple[str, str, TcpSocket | None]] = [
    ("any v4 listening on 445", row("00000000:01BD"), TcpSocket("0.0.0.0", 445, 0x0A, "0.0.0.0")),
    ("198.18.2.1:445 (little-endian word)", row("010212C6:01BD"),
     TcpSocket("198.18.2.1", 445, 0x0A, "0.0.0.0")),
    ("loopback established", row("0100007F:A5D2", "01", "0100007F:01BD"),
     TcpSocket("127.0.0.1", 42450, 0x01, "127.0.0.1", 445)),
    ("any v6", row("00000000000000000000000000000000:01BD"), TcpSocket("::", 445, 0x0A, "0.0.0.0")),
    ("::1", row("00000000000000000000000001000000:0801"), TcpSocket("::1", 2049, 0x0A, "0.0.0.0")),
    ("v4-mapped", row("0000000000000000FFFF0000010212C6:01BD"),
     TcpSocket("::ffff:198.18.2.1", 445, 0x0A, "0.0.0.0")),
    ("2001:2::1", row("02000120000000000000000001000000:01BD"),
     TcpSocket("2001:2::1", 445, 0x0A, "0.0.0.0")),
    ("header", HEADER, None),
    ("truncated", "   3: 00000000:01BD", None),
    ("odd address", row("0000000:01BD"), None),
    ("not hex", row("0000000G:01BD"), None),
    ("bad port", row("00000000:XYZ"), None),
    ("empty", "", None),
]


@pytest.mark.parametrize(("line", "expected"), [(r, e) for _, r, e in TCP_ROWS],
                         ids=[i for i, _, _ in TCP_ROWS])
def test_proc_net_tcp_rows(line: str, expected: TcpSocket | None) -> None:
    assert health.parse_proc_net_tcp(f"{HEADER}\n{line}\n", "little") == \
        ([expected] if expected else [])


def test_big_endian_words() -> None:
    assert health.parse_proc_net_tcp(row("C6120201:01BD"), "big") == [
        TcpSocket("198.18.2.1", 445, 0x0A, "0.0.0.0")]


def test_listening_picks_listen_state_and_port() -> None:
    text = "\n".join([HEADER, row("00000000:01BD"), row("010212C6:01BD", "01"),
                      row("010212C6:0801"), row("020212C6:01BD", n=3)])
    assert health.listening(health.parse_proc_net_tcp(text, "little"), 445) == [
        "0.0.0.0", "198.18.2.2"]


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_reader_finds_this_process_listening(listener: int) -> None:
    assert "127.0.0.1" in health.tcp_listening(listener)
    ok, reason = health.smbd_listening(listener)
    assert ok
    assert reason == f"listening on TCP port {listener} (127.0.0.1)"


def test_reader_reports_nothing_listening(tmp_path: Path) -> None:
    (tmp_path / "tcp").write_text(f"{HEADER}\n{row('0100007F:A5D2', '01')}\n")
    assert health.smbd_listening(proc_net=tmp_path) == (False,
                                                        "nothing listens on TCP port 445")
    assert health.smbd_listening(proc_net=tmp_path / "nope")[1].startswith("nothing listens")


@pytest.mark.parametrize(("output", "pids"), [
    ("PONG from pid 1234\n", [1234]),
    ("PONG from pid 0:1234\nPONG from pid 1:99\n", [1234, 99]),
    ("Can't find pid for destination 'smbd'\n", []),
    ("PONG from pid\n", []),
    ("", []),
])
def test_smbcontrol_ping_output(output: str, pids: list[int]) -> None:
    assert health.parse_ping(output) == pids


def test_smbd_ping_without_smbd(tmp_path: Path) -> None:
    """No smbd uses this configuration's pid directory: the ping fails in one line."""
    conf = tmp_path / "smb.conf"
    conf.write_text(f"[global]\n    pid directory = {tmp_path}\n    lock directory = {tmp_path}\n")
    ok, reason = health.smbd_ping(timeout=5, config=str(conf))
    assert not ok
    assert reason == "smbd does not answer ping: Can't find pid for destination 'smbd'"
    assert health.smbd_ping(smbcontrol="/nonexistent/smbcontrol") == (
        False, "/nonexistent/smbcontrol is missing")


async def test_ganesha_check_without_a_bus(tmp_path: Path) -> None:
    ok, reason = await health.ganesha_alive(address=f"unix:path={tmp_path}/none", timeout=2)
    assert not ok
    assert reason.startswith("NFS-Ganesha does not answer over D-Bus: ")


@pytest.fixture
def bus_address(tmp_path: Path) -> Iterator[str]:
    """A private bus, like the one a sandbox node has, with no Ganesha on it."""
    from ctdb.sandbox.netns_backend import DBUS_CONFIG

    (tmp_path / "bus.conf").write_text(DBUS_CONFIG.format(path=tmp_path / "bus.sock"))
    proc = subprocess.Popen(["dbus-daemon", f"--config-file={tmp_path / 'bus.conf'}",
                             "--nofork", "--print-address"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(10)


async def test_ganesha_check_without_ganesha(bus_address: str) -> None:
    ok, reason = await health.ganesha_alive(address=bus_address, timeout=5)
    assert not ok
    assert "org.freedesktop.DBus.Error.ServiceUnknown" in reason


# -- Ganesha's D-Bus formats ----------------------------------------------------------------
@pytest.mark.parametrize(("ip", "event", "argument"), [
    ("198.18.2.100", None, "5:198.18.2.100"),
    ("2001:2:0:0::100", None, "5:2001:2::100"),
    ("198.18.2.100", ganesha.GraceEvent.RELEASE_IP, "2:198.18.2.100"),
    (None, None, "0:"),
    (None, ganesha.GraceEvent.CLEAR_BLOCKED, "1:"),
])
def test_grace_argument(ip: str | None, event: ganesha.GraceEvent | None,
                        argument: str) -> None:
    assert ganesha.grace_argument(ip, event) == argument


@pytest.mark.parametrize(("ip", "event", "message"), [
    ("node1", None, "'node1' is not an IP address"),
    ("198.18.2.1", ganesha.GraceEvent.JUST_GRACE, "grace event JUST_GRACE takes no address"),
    (None, ganesha.GraceEvent.TAKE_IP, "grace event <GraceEvent.TAKE_IP: 5> needs an address"),
])
def test_grace_argument_refuses(ip: str | None, event: ganesha.GraceEvent | None,
                                message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace(".", r"\.")):
        ganesha.grace_argument(ip, event)


def test_show_exports_reply() -> None:
    stats = [False] * 8
    reply = [[1700000000, 5], [[3, "/srv/data", *stats, [1700000000, 1]],
                               [0, "/", *stats, [1700000000, 1]]]]
    assert ganesha.parse_exports(reply) == [ganesha.Export(3, "/srv/data"),
                                            ganesha.Export(0, "/")]
    with pytest.raises(ganesha.GaneshaError, match="not understood"):
        ganesha.parse_exports([[1, 2]])
