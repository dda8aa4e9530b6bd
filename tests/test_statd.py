"""NFSv3 lock recovery: statd's client lists on shared storage, pyctdb-statd-callout, and
SM_NOTIFY from a taken-over address (real sm-notify, captured in a network namespace)."""

from __future__ import annotations

import contextlib
import os
import pwd
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ctdb.errors import ConfigError, CtdbError
from ctdb.sandbox import netns
from nfs_scripts import callout, statd_callout
from nfs_scripts.statd import (
    DEFAULT_SHARED_STATE_DIR,
    SharedDirStore,
    StatdError,
    shared_state_dir,
)

ROOT = Path(__file__).resolve().parents[1]
A, B = "198.18.2.10", "198.18.2.11"  # public addresses
SERVER, CLIENT, FAR = "198.18.7.1", "198.18.7.2", "198.18.7.9"
ETC_NETNS = Path("/etc/netns")  # `ip netns exec NS` binds /etc/netns/NS/* over /etc/*


# -- ClientStore ---------------------------------------------------------------------

@pytest.mark.parametrize(("ops", "clients", "pairs"), [
    ([], {A: []}, []),
    ([("n0", "add", A, "198.18.9.1"), ("n0", "add", A, "client2"), ("n1", "add", B, "198.18.9.1")],
     {A: ["198.18.9.1", "client2"], B: ["198.18.9.1"]},
     [(A, "198.18.9.1"), (A, "client2"), (B, "198.18.9.1")]),
    # adding twice is one pair; removing what is not there is no error
    ([("n0", "add", A, "c"), ("n1", "add", A, "c"), ("n0", "remove", B, "c")],
     {A: ["c"], B: []}, [(A, "c")]),
    # one node adds, the other removes: both see it gone
    ([("n0", "add", A, "c"), ("n1", "remove", A, "c")], {A: []}, []),
    # names are normalised, so each pair has one file
    ([("n0", "add", "2001:DB8::1", "Client.Example"),
      ("n1", "add", "2001:db8::1", "client.example"),
      ("n0", "add", A, "::ffff:198.18.9.4"), ("n1", "remove", A, "198.18.9.4")],
     {"2001:db8::1": ["client.example"], A: []}, [("2001:db8::1", "client.example")]),
])
def test_store_shared_by_two_nodes(tmp_path: Path, ops: list[tuple[str, str, str, str]],
                                   clients: dict[str, list[str]],
                                   pairs: list[tuple[str, str]]) -> None:
    nodes = {n: SharedDirStore(tmp_path / "statd", node=n) for n in ("n0", "n1")}
    for node, op, ip, client in ops:
        getattr(nodes[node], op)(ip, client)
    for store in nodes.values():
        assert {ip: store.clients(ip) for ip in clients} == clients
        assert store.all() == pairs
    assert not list((tmp_path / "statd").rglob(".*"))  # no temporary files left


@pytest.mark.parametrize(("server", "client", "error"), [
    ("", "c", "server address '' is not an IP address"),
    ("nfs1", "c", "server address 'nfs1' is not an IP address"),
    (f"{A}/24", "c", "is not an IP address"),
    ("198.18.2.256", "c", "is not an IP address"),
    ("fe80::1%eth0", "c", "scoped IPv6 addresses are not supported"),
    (A, "", "client '' is neither an IP address nor a host name"),
    (A, ".", "is neither"),
    (A, "..", "is neither"),
    (A, "../../etc/passwd", "is neither"),
    (A, "a/b", "is neither"),
    (A, ".hidden", "is neither"),
    (A, "-x", "is neither"),
    (A, "a..b", "is neither"),
    (A, "two words", "is neither"),
    (A, "line\nbreak", "is neither"),
    (A, "user@host", "is neither"),
    (A, "x" * 254, "is neither"),
    (A, "198.18.2.256", "client '198.18.2.256' is not a valid IP address"),
    (A, "fe80::1%eth0", "scoped IPv6 addresses are not supported"),
])
@pytest.mark.parametrize("op", ["add", "remove"])
def test_store_refuses_odd_input(tmp_path: Path, op: str, server: str, client: str,
                                 error: str) -> None:
    store = SharedDirStore(tmp_path)
    with pytest.raises(StatdError, match=r"\A[^\n]*\Z") as info:
        getattr(store, op)(server, client)
    assert error in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_store_ignores_what_is_not_a_pair(tmp_path: Path) -> None:
    store = SharedDirStore(tmp_path)
    store.add(A, "c")
    (tmp_path / A / ".c.n9.123.abcd").write_text("")  # another node's write in progress
    (tmp_path / A / "Not A Client").write_text("")
    (tmp_path / "not-an-ip").mkdir()
    (tmp_path / "198.18.2.12").write_text("")  # a file, not a directory
    assert store.clients(A) == ["c"]
    assert store.all() == [(A, "c")]
    assert SharedDirStore(tmp_path / "absent").all() == []


def test_store_concurrent_nodes(tmp_path: Path) -> None:
    """Two nodes adding and removing at once: every pair ends as its last operation
    left it, and no temporary file is left behind."""
    nodes = [SharedDirStore(tmp_path, node=f"n{i}") for i in range(2)]
    clients = [f"198.18.9.{i}" for i in range(40)]

    def add(i: int) -> None:
        for c in clients:
            nodes[i].add((A, B)[i], c)
            nodes[i].add(A, f"shared-{c.rsplit('.', 1)[1]}")  # both nodes, same pairs

    def remove(i: int) -> None:
        for c in clients[i::2]:  # each node removes half of what the other added
            nodes[i].remove((B, A)[i], c)

    def churn(i: int) -> None:  # the same pair, added and removed by both at once
        for _ in range(50):
            nodes[i].add(B, "busy")
            nodes[i].remove(B, "busy")

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(add, 0), pool.submit(add, 1), pool.submit(churn, 0),
                       pool.submit(churn, 1)]:
            future.result()
        for future in [pool.submit(remove, 0), pool.submit(remove, 1)]:
            future.result()
    assert nodes[1].clients(A) == sorted([*clients[0::2], *(f"shared-{i}" for i in range(40))])
    assert nodes[0].clients(B) == sorted(clients[1::2])  # "busy": last removed
    assert not list(tmp_path.rglob(".*"))


@pytest.mark.parametrize(("env", "files", "expected"), [
    ({}, {}, DEFAULT_SHARED_STATE_DIR),
    ({}, {"script.options": "CTDB_NFS_SHARED_STATE_DIR=/srv/shared/nfs\n"}, "/srv/shared/nfs"),
    ({}, {"script.options": "CTDB_NFS_SHARED_STATE_DIR=/srv/a\n",
          "events/legacy/60.nfs.options": "CTDB_NFS_SHARED_STATE_DIR=/srv/b  # wins\n"},
     "/srv/b"),
    ({}, {"script.options": "X=/srv\nCTDB_NFS_SHARED_STATE_DIR=\"$X/nfs state\"\n"},
     "/srv/nfs state"),
    ({"CTDB_NFS_SHARED_STATE_DIR": "/mnt/env"},
     {"script.options": "CTDB_NFS_SHARED_STATE_DIR=/srv/a\n"}, "/mnt/env"),
    ({}, {"script.options": "CTDB_NFS_SHARED_STATE_DIR=relative\n"},
     "CTDB_NFS_SHARED_STATE_DIR='relative' is not an absolute path"),
    ({"CTDB_NFS_SHARED_STATE_DIR": "relative"}, {}, "is not an absolute path"),
    ({}, {"script.options": "CTDB_NFS_SHARED_STATE_DIR=$(hostname)\n"},
     "command substitution is not allowed"),
])
def test_shared_state_dir(tmp_path: Path, env: dict[str, str], files: dict[str, str],
                          expected: str | Path) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    env = {"CTDB_BASE": str(tmp_path), **env}
    if isinstance(expected, Path) or expected.startswith("/"):
        assert shared_state_dir(env) == Path(expected)
    else:
        with pytest.raises((StatdError, ConfigError), match=r"\A[^\n]*\Z") as info:
            shared_state_dir(env)
        assert expected in str(info.value)


# -- pyctdb-statd-callout ------------------------------------------------------------

@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SharedDirStore:
    """The callout's store (CTDB_NFS_SHARED_STATE_DIR from the environment), this node
    holding A and B."""
    monkeypatch.setenv("CTDB_BASE", str(tmp_path / "etc"))
    monkeypatch.setenv("CTDB_NFS_SHARED_STATE_DIR", str(tmp_path / "shared"))
    monkeypatch.setenv("CTDB_SCRIPT_VARDIR", str(tmp_path / "var"))
    monkeypatch.setattr(statd_callout, "held_addresses", lambda: [A, B])
    return SharedDirStore(tmp_path / "shared" / "statd")


@pytest.mark.parametrize(("argv", "status", "err", "pairs"), [
    ([], 1, "usage: pyctdb-statd-callout {add-client", []),
    (["bogus"], 1, "usage:", []),
    (["add-client"], 1, "pyctdb-statd-callout: add-client needs a client", []),
    (["del-client", "a", "b", "c"], 1, "del-client needs a client", []),
    (["add-client", "../x"], 1,
     "pyctdb-statd-callout: add-client failed: client '../x' is neither", []),
    # statd: add-client MON_NAME MY_NAME; recorded for every address this node holds
    (["add-client", "Client-1.Example", "nfs-server"], 0, "",
     [(A, "client-1.example"), (B, "client-1.example")]),
    (["add-client", "198.18.9.9"], 0, "", [(A, "198.18.9.9"), (B, "198.18.9.9")]),
    (["sm-notify", "client", "198.18.9.9", "3"], 0, "", []),  # statd handles it
    (["notify", "nfs1"], 1,
     "pyctdb-statd-callout: notify failed: server address 'nfs1' is not an IP address", []),
    (["notify", "--timeout", "soon"], 1, "--timeout 'soon' is not a number of seconds", []),
    (["notify", "--timeout", "0"], 1, "is not between 0 and 600 s", []),
    (["notify", "--timeout"], 1, "--timeout '' is not a number", []),
    (["notify", "--now"], 1, "notify: unknown option --now", []),
])
def test_callout_arguments(store: SharedDirStore, capsys: pytest.CaptureFixture[str],
                           argv: list[str], status: int, err: str,
                           pairs: list[tuple[str, str]]) -> None:
    assert statd_callout.main(argv) == status
    stderr = capsys.readouterr().err
    assert err in stderr if err else stderr == ""
    assert stderr.startswith(("pyctdb-statd-callout: ", "usage: ")) or not stderr
    assert stderr.count("\n") <= 1
    assert store.all() == pairs


def test_callout_del_client_and_notify_without_clients(
        store: SharedDirStore, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    store.add(A, "c")
    store.add(FAR, "c")  # another node's address: not this node's to forget
    assert statd_callout.main(["del-client", "c", "nfs-server"]) == 0
    assert store.all() == [(FAR, "c")]
    assert statd_callout.main(["notify", A, A]) == 0
    assert capsys.readouterr().out == f"no clients of {A}\n"
    monkeypatch.setattr(statd_callout, "held_addresses", list)  # holding nothing
    assert statd_callout.main(["notify"]) == 0
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(("public", "status", "err"), [
    (None, 0, ""),  # no public_addresses: this node holds none, nothing is recorded
    ("", 0, ""),
    ("198.18.2.10 eth1\n", 1, "pyctdb-statd-callout: add-client failed: "),
])
def test_callout_reads_the_public_addresses(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        public: str | None, status: int, err: str) -> None:
    if public is not None:
        (tmp_path / "public_addresses").write_text(public)
    monkeypatch.setenv("CTDB_BASE", str(tmp_path))
    monkeypatch.setenv("CTDB_NFS_SHARED_STATE_DIR", str(tmp_path / "shared"))
    assert statd_callout.main(["add-client", "c"]) == status
    stderr = capsys.readouterr().err
    assert stderr.startswith(err) if err else stderr == ""
    assert stderr.count("\n") == (1 if err else 0)
    assert SharedDirStore(tmp_path / "shared" / "statd").all() == []


IP_JSON = ('[{"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1"}]},'
           ' {"ifname": "eth1", "addr_info": [{"family": "inet", "local": "198.18.2.11"},'
           ' {"family": "inet", "local": "198.18.2.10"}, {"family": "inet6"}]}, {"ifname": "x"}]')


@pytest.mark.parametrize(("stdout", "code", "held"), [
    (IP_JSON, 0, [A, B]),  # public and on an interface; sorted by address
    ('[{"addr_info": [{"local": "198.18.2.11"}]}]', 0, [B]),
    ("[]", 0, []),
    ("", 1, "ip addr show failed: "),
    ("not json", 0, "ip addr show: unexpected output"),
    ('[{"addr_info": [{"local": "nonsense"}]}]', 0, "ip addr show: unexpected output"),
])
def test_held_addresses_are_the_public_ones_on_this_nodes_interfaces(
        tmp_path: Path, stdout: str, code: int, held: list[str] | str) -> None:
    (tmp_path / "public_addresses").write_text(f"{A}/24 eth1\n{B}/24 eth1\n{FAR}/24 eth1\n")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "ip").write_text(f"#!/bin/sh\ncat <<'EOF'\n{stdout}\nEOF\n"
                                         f"echo oops >&2\nexit {code}\n")
    (tmp_path / "bin" / "ip").chmod(0o755)
    env = {"CTDB_BASE": str(tmp_path), "PATH": str(tmp_path / "bin")}
    if isinstance(held, list):
        assert statd_callout.held_addresses(env) == held
    else:
        with pytest.raises(CtdbError, match=r"\A[^\n]*\Z") as info:
            statd_callout.held_addresses(env)
        assert str(info.value).startswith(held)


def test_store_directory_belongs_to_statds_user(tmp_path: Path) -> None:
    store = SharedDirStore(tmp_path / "nfs" / "statd")
    store.ensure((12345, 23456))  # no shared storage there: nothing made
    assert not (tmp_path / "nfs").exists()
    (tmp_path / "nfs").mkdir()
    store.ensure((12345, 23456))
    store.ensure((1, 1))  # there already: left alone
    store.add(A, "c")  # as root: the address's directory is made for statd's user too
    for path in (store.directory, store.directory / A):
        assert (path.stat().st_uid, path.stat().st_gid) == (12345, 23456)


def test_sm_notify_state_directory(tmp_path: Path) -> None:
    """What rpc.statd writes and sm-notify reads: sm/<client> records (four 8-digit hex
    numbers, 32 hex digits, the client's and server's names), sm.bak/, a state number."""
    statd_callout.write_state_dir(tmp_path, ["198.18.9.1", "client.example"], A, 12345)
    assert sorted(p.name for p in (tmp_path / "sm").iterdir()) == ["198.18.9.1",
                                                                 "client.example"]
    assert list((tmp_path / "sm.bak").iterdir()) == []
    line = (tmp_path / "sm" / "client.example").read_text()
    fields = line.split()
    assert line.endswith("\n")
    assert line.count("\n") == 1
    assert [len(f) for f in fields[:5]] == [8, 8, 8, 8, 32]
    assert [int(f, 16) for f in fields[1:4]] == [100021, 4, 16]
    assert line[36:68] == "0" * 32  # where sm-notify looks for them
    assert fields[5:] == ["client.example", A]
    assert struct.unpack("=i", (tmp_path / "state").read_bytes()) == (12345,)
    assert statd_callout.nsm_state(1_754_000_000.7) == 1_754_000_001  # odd: "up"
    assert statd_callout.nsm_state(2**31 + 5) == 5


def test_nfs_callout_takeip_starts_the_notify(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    started: list[list[str]] = []
    grace_ok = True

    async def grace(op: str, args: list[str]) -> None:
        if not grace_ok:
            raise OSError("no bus")

    monkeypatch.setattr(callout, "_run", grace)
    monkeypatch.setattr(statd_callout, "spawn_notify", started.append)
    assert callout.main(["takeip", A]) == 0
    assert callout.main(["releaseip", A]) == 0
    assert started == [[A]]
    grace_ok = False  # no grace, no takeover: nobody to notify
    assert callout.main(["takeip", B]) == 1
    assert started == [[A]]
    capsys.readouterr()

    def cannot(ips: list[str]) -> None:
        raise OSError(12, "Cannot allocate memory")

    grace_ok = True
    monkeypatch.setattr(statd_callout, "spawn_notify", cannot)
    assert callout.main(["takeip", A]) == 0  # reported, not fatal
    assert capsys.readouterr().err == (f"pyctdb-nfs-callout: takeip {A}: cannot start the "
                                       "NFSv3 client notify: Cannot allocate memory\n")


def test_spawn_notify_is_detached(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[list[str], dict[str, Any]]] = []
    monkeypatch.setattr(subprocess, "Popen",
                        lambda argv, **kw: calls.append((argv, kw)))
    statd_callout.spawn_notify([A])
    [(argv, kw)] = calls
    assert argv[1:] == ["-m", "nfs_scripts.statd_callout", "notify", "--syslog", A]
    assert kw["start_new_session"] is True  # not in the event script's process group
    assert {kw[k] for k in ("stdin", "stdout", "stderr")} == {subprocess.DEVNULL}


# -- SM_NOTIFY on the wire -----------------------------------------------------------

@contextlib.contextmanager
def inside(ns: str) -> Iterator[None]:
    """Sockets opened meanwhile belong to network namespace *ns*."""
    original = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        netns.setns(target)
        try:
            yield
        finally:
            netns.setns(original)
    finally:
        os.close(original)
        os.close(target)


@pytest.fixture
def link() -> Iterator[tuple[str, str]]:
    """A server and a client namespace joined by a veth pair: SERVER and CLIENT."""
    netns.clean_stale()
    server, client = netns.unique("statd-s"), netns.unique("statd-c")
    try:
        for ns in (server, client):
            netns.sh("ip", "netns", "add", ns)
            netns.sh("ip", "-n", ns, "link", "set", "lo", "up")
        netns.sh("ip", "link", "add", "v0", "netns", server, "type", "veth",
                 "peer", "name", "v1", "netns", client)
        for ns, dev, address in ((server, "v0", SERVER), (client, "v1", CLIENT)):
            netns.sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", dev)
            netns.sh("ip", "-n", ns, "link", "set", dev, "up")
        yield server, client
    finally:
        for ns in (server, client):
            netns.delete_namespace(ns)
        shutil.rmtree(ETC_NETNS / server, ignore_errors=True)
        with contextlib.suppress(OSError):
            ETC_NETNS.rmdir()  # only if no one else keeps files there


@dataclass(frozen=True)
class Call:
    what: str  # "GETPORT" or "SM_NOTIFY"
    source: tuple[str, int]
    args: tuple[Any, ...]


def parse_call(data: bytes) -> tuple[int, int, int, int, bytes]:
    """An ONC RPC call: xid, program, version, procedure, and its arguments."""
    xid, mtype, rpcvers, prog, vers, proc = struct.unpack_from(">6I", data)
    assert (mtype, rpcvers) == (0, 2)
    offset = 24
    for _ in ("credential", "verifier"):
        _flavor, length = struct.unpack_from(">2I", data, offset)
        offset += 8 + (length + 3) // 4 * 4
    return xid, prog, vers, proc, data[offset:]


def accepted(xid: int, result: bytes = b"") -> bytes:
    """A successful reply: REPLY, MSG_ACCEPTED, AUTH_NONE verifier, SUCCESS, result."""
    return struct.pack(">6I", xid, 1, 0, 0, 0, 0) + result


class FakeClient:
    """An NFS client's portmapper (UDP 111) and statd, in its namespace: they record the
    calls they get and answer them (the portmapper not at all, if *silent*)."""

    def __init__(self, ns: str, address: str, *, silent: bool = False) -> None:
        with inside(ns):
            self.portmap = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.portmap.bind((address, 111))
            self.statd = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.statd.bind((address, 0))
        self.silent = silent
        self.calls: list[Call] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.portmap.close()
        self.statd.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.portmap, self.statd], [], [], 0.05)
            for sock in ready:
                data, source = sock.recvfrom(65536)
                xid, prog, vers, proc, args = parse_call(data)
                if sock is self.portmap:  # PMAPPROC_GETPORT(prog, vers, prot, port)
                    assert (prog, vers, proc) == (100000, 2, 3)
                    self.calls.append(Call("GETPORT", source, struct.unpack(">4I", args)))
                    if not self.silent:
                        port = self.statd.getsockname()[1]
                        sock.sendto(accepted(xid, struct.pack(">I", port)), source)
                else:  # SM_NOTIFY(mon_name, state)
                    assert (prog, vers, proc) == (100024, 1, 6)
                    (length,) = struct.unpack_from(">I", args)
                    name = args[4:4 + length].decode()
                    (state,) = struct.unpack_from(">i", args, 4 + (length + 3) // 4 * 4)
                    self.calls.append(Call("SM_NOTIFY", source, (name, state)))
                    sock.sendto(accepted(xid), source)


@pytest.fixture
def fake_client(link: tuple[str, str]) -> Iterator[Callable[..., FakeClient]]:
    made: list[FakeClient] = []

    def make(**kw: Any) -> FakeClient:
        made.append(FakeClient(link[1], CLIENT, **kw))
        return made[-1]

    yield make
    for c in made:
        c.close()


def run_notify(ns: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``pyctdb-statd-callout notify ARGS`` in namespace *ns*, as the node holding SERVER."""
    env = dict(os.environ, CTDB_BASE=str(tmp_path / "etc"), PYTHONDONTWRITEBYTECODE="1",
               CTDB_NFS_SHARED_STATE_DIR=str(tmp_path / "shared"),
               CTDB_SCRIPT_VARDIR=str(tmp_path / "var"))
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m",
                           "nfs_scripts.statd_callout", "notify", *args],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.netns
@pytest.mark.parametrize("named", [True, False], ids=["named", "unnamed"])
def test_notify_sends_sm_notify_to_the_recorded_clients(
        tmp_path: Path, link: tuple[str, str], fake_client: Callable[..., FakeClient],
        named: bool) -> None:
    server_ns, _ = link
    if named:  # the public address's host name, as DNS or /etc/hosts would give it
        (ETC_NETNS / server_ns).mkdir(parents=True)
        (ETC_NETNS / server_ns / "hosts").write_text(
            f"127.0.0.1 localhost\n{SERVER} nfs-public-1\n")
    store = SharedDirStore(tmp_path / "shared" / "statd", node="old-holder")
    store.add(SERVER, CLIENT)
    store.add(FAR, CLIENT)  # another address's client: not notified
    client = fake_client()
    begin = time.time()
    result = run_notify(server_ns, tmp_path, "--timeout", "10", SERVER)
    assert result.returncode == 0, result.stderr
    lines = [f"notified 1 client of {SERVER}"]
    if not named:
        lines.append(f"{SERVER} has no host name: named by its address")
    assert result.stdout.splitlines() == lines
    # sm-notify asks the client's portmapper for statd (UDP), then notifies it, from the
    # address that moved (a reserved port, as rpc.statd expects of a server).
    getport, notified = client.calls[:2]
    assert (getport.what, getport.args) == ("GETPORT", (100024, 1, socket.IPPROTO_UDP, 0))
    assert getport.source[0] == SERVER
    assert getport.source[1] < 1024
    assert notified.what == "SM_NOTIFY"
    name, state = notified.args
    assert name == ("nfs-public-1" if named else SERVER)
    assert state % 2 == 1
    assert begin - 2 <= state <= time.time() + 2
    assert notified.source[0] == SERVER
    # Notified clients leave the list (statd's add-client records them again when they
    # reclaim); the private state directory is gone.
    assert store.all() == [(FAR, CLIENT)]
    assert list((tmp_path / "var" / "nfs" / "sm-notify").iterdir()) == []


@pytest.mark.netns
def test_notify_gives_up_at_its_deadline(tmp_path: Path, link: tuple[str, str],
                                         fake_client: Callable[..., FakeClient]) -> None:
    store = SharedDirStore(tmp_path / "shared" / "statd")
    store.add(SERVER, CLIENT)
    client = fake_client(silent=True)  # the client's portmapper never answers
    begin = time.monotonic()
    result = run_notify(link[0], tmp_path, "--timeout", "1", SERVER)
    assert time.monotonic() - begin < 5
    assert result.returncode == 1
    assert result.stderr == (f"pyctdb-statd-callout: notifying 1 client of {SERVER} failed: "
                             "not all answered within 1.0 s\n")
    assert [c.what for c in client.calls][:1] == ["GETPORT"]
    assert store.all() == []
    assert list((tmp_path / "var" / "nfs" / "sm-notify").iterdir()) == []


TAKEIP = """
import sys
from nfs_scripts import callout

async def grace(op, args):  # NFS-Ganesha's grace period: not what this test is about
    pass

callout._run = grace
sys.exit(callout.main(["takeip", sys.argv[1]]))
"""


@pytest.mark.netns
def test_takeip_notifies_in_the_background(tmp_path: Path, link: tuple[str, str],
                                           fake_client: Callable[..., FakeClient]) -> None:
    """The NFS callout's takeip returns at once; its detached notify reaches the client."""
    store = SharedDirStore(tmp_path / "shared" / "statd")
    store.add(SERVER, CLIENT)
    client = fake_client()
    env = dict(os.environ, CTDB_BASE=str(tmp_path / "etc"), PYTHONDONTWRITEBYTECODE="1",
               CTDB_NFS_SHARED_STATE_DIR=str(tmp_path / "shared"),
               CTDB_SCRIPT_VARDIR=str(tmp_path / "var"))
    result = subprocess.run(["ip", "netns", "exec", link[0], sys.executable, "-c", TAKEIP,
                             SERVER], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
            not any(c.what == "SM_NOTIFY" for c in client.calls)
            or list((tmp_path / "var" / "nfs" / "sm-notify").iterdir())):
        time.sleep(0.05)
    assert [c.what for c in client.calls][:2] == ["GETPORT", "SM_NOTIFY"]
    assert store.all() == []



@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory every user may read (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="pctdbt-statd-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.netns
def test_add_client_as_statds_user_for_the_addresses_on_this_node(
        shared_tmp: Path, link: tuple[str, str]) -> None:
    """rpc.statd runs its callout as its own user: the client is recorded for the public
    addresses this node has on its interfaces, read from the kernel."""
    (shared_tmp / "etc").mkdir(mode=0o755)
    (shared_tmp / "etc" / "public_addresses").write_text(
        f"{SERVER}/24 v0\n{FAR}/24 v0\n")  # FAR: another node's now
    store = SharedDirStore(shared_tmp / "shared" / "statd")
    (shared_tmp / "shared").mkdir(mode=0o755)
    store.ensure(statd_callout.statd_owner())
    env = dict(os.environ, CTDB_BASE=str(shared_tmp / "etc"), PYTHONDONTWRITEBYTECODE="1",
               CTDB_NFS_SHARED_STATE_DIR=str(shared_tmp / "shared"))
    statd = ["setpriv", "--reuid=statd", "--regid=nogroup", "--clear-groups"]

    def callout_as_statd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", link[0], *statd, sys.executable, "-m",
                               "nfs_scripts.statd_callout", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=30)

    result = callout_as_statd("add-client", CLIENT, "nfs-server")
    assert (result.returncode, result.stderr) == (0, "")
    assert store.all() == [(SERVER, CLIENT)]
    assert (store.directory / SERVER / CLIENT).stat().st_uid == pwd.getpwnam("statd").pw_uid
    result = callout_as_statd("del-client", CLIENT, "nfs-server")
    assert (result.returncode, result.stderr) == (0, "")
    assert store.all() == []
