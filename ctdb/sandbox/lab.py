"""A sandbox: networks, nodes and their processes, its saved state, and its faults.

The state of a running sandbox lives in ``/run/pyctdb-sandbox/NAME/state.json`` so
that every ``ctdb-sandbox`` command (and tests) can find it again; the networks are
rebuilt from the same plan.  ``down`` also removes whatever a crashed run left,
found by the sandbox's name prefix.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ctdb.sandbox import network
from ctdb.sandbox.topology import (
    STATE_ROOT,
    NodeSpec,
    SandboxError,
    Topology,
    add_node,
    check_name,
    nodes_file,
    plan,
    public_addresses_file,
)

BIN = Path(sys.executable).parent
NFS_SCRIPT = Path(__file__).resolve().parents[2] / "nfs_scripts" / "events" / "legacy" / \
    "60.nfs.script"
T = TypeVar("T")
BACKENDS = ("netns", "nspawn")
IMPLS = ("pyctdb",)
LOCKS = ("none", "fcntl", "etcd")
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 20.0,
             interval: float = 0.05) -> T:
    """Poll *fn* until it returns something truthy; fail naming *what* at the deadline."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = fn()
        except Exception as exc:  # remembered for the failure message
            value, last = None, exc
        if value:
            return value
        if time.monotonic() > deadline:
            raise SandboxError(f"timed out after {timeout:g}s waiting for {what}"
                               + (f" (last error: {last})" if last else ""))
        time.sleep(interval)


@dataclass
class Options:
    """What ``up`` was asked for; saved with the sandbox."""

    name: str = "sbx"
    nodes: int = 3
    backend: str = "netns"
    public_ips: int = 0
    ipv6: bool = False
    services: list[str] = field(default_factory=list)
    lock: str = "none"
    impl: str = "pyctdb"
    index: int = 0
    key: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    # nspawn only: False boots clean nodes, without this venv's ctdb.service and without
    # ctdbd (for installing pyctdb's package in a node: tests/test_packaging.py).
    pyctdb_unit: bool = True


class Backend(Protocol):
    """How a node's processes run: plain network namespaces or systemd containers."""

    def start(self, sb: Sandbox, node: NodeSpec, args: Sequence[str] = (),
              env: dict[str, str] | None = None) -> None: ...

    def stop(self, sb: Sandbox, node: NodeSpec, timeout: float) -> None: ...

    def exec_argv(self, sb: Sandbox, node: NodeSpec, argv: Sequence[str]) -> list[str]: ...

    def node_env(self, sb: Sandbox, node: NodeSpec) -> dict[str, str]: ...


class Sandbox:
    def __init__(self, options: Options, topo: Topology | None = None) -> None:
        self.options = options
        self.topo = topo or plan(options.name, options.nodes, options.public_ips, options.ipv6,
                                 options.index)
        self.backend = make_backend(options.backend)

    # -- state ---------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return self.topo.root

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self.options), indent=2))
        tmp.replace(self.state_file)

    @classmethod
    def load(cls, name: str) -> Sandbox:
        path = STATE_ROOT / check_name(name) / "state.json"
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            raise SandboxError(f"no sandbox named {name!r} is up") from None
        except (OSError, ValueError) as exc:
            raise SandboxError(f"{path}: unreadable sandbox state: {exc}") from None
        return cls(Options(**data))

    # -- life cycle ----------------------------------------------------------------
    def up(self, progress: Callable[[str], None] = lambda _msg: None) -> None:
        check_environment(self.options)
        destroy(self.options.name)
        self.options.index = free_index(self.options.name)
        self.topo = plan(self.options.name, self.options.nodes, self.options.public_ips,
                         self.options.ipv6, self.options.index)
        if not self.options.key:
            from ctdb.transport.auth import generate_key

            self.options.key = generate_key()
        self.save()
        try:
            step = _Stepper(progress)
            network.build(self.topo)
            step(f"networks: private 198.18.{2 * self.topo.index + 1}.0/24, public "
                 f"198.18.{2 * self.topo.index + 2}.0/24, client {self.topo.client_ip}")
            for node in self.topo.nodes:
                self.write_config(node)
            step(f"configuration for {len(self.topo.nodes)} nodes")
            if self.options.services:
                from ctdb.sandbox import services

                services.prepare(self)
                step(f"shared storage for {', '.join(self.options.services)} at "
                     f"{services.storage(self)} (nodes: {services.STORAGE})")
            if self.options.lock == "etcd":
                for node in self.topo.nodes:
                    self.start_etcd(node)
                wait_for("the etcd cluster to be healthy", self.etcd_healthy, timeout=30)
                step(f"etcd cluster of {len(self.topo.nodes)} members on the private network")
            for node in self.topo.nodes:
                self.backend.start(self, node)
            self.save()
            if not self.options.pyctdb_unit:
                step(f"booted {len(self.topo.nodes)} nodes without ctdbd")
                return
            step(f"started ctdbd on {len(self.topo.nodes)} nodes ({self.options.backend})")
            for node in self.topo.nodes:
                self.wait_ready(node.pnn)
            step("every node answers ctdb ping")
        except BaseException:
            self.save()
            raise

    def __enter__(self) -> Sandbox:
        """``with Sandbox(options) as sb:`` brings it up and always down again."""
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def down(self) -> None:
        for node in self.topo.nodes:
            with contextlib.suppress(SandboxError, OSError):
                self.backend.stop(self, node, timeout=10.0)
        destroy(self.options.name)

    def write_config(self, node: NodeSpec) -> None:
        base = node.base
        base.mkdir(parents=True, exist_ok=True)
        lock = ""
        if self.options.lock == "fcntl":
            shared = self.root / "shared"
            shared.mkdir(exist_ok=True)
            lock = f"    cluster lock = {shared / 'cluster.lock'}\n"
        elif self.options.lock == "etcd":
            lock = (f"    cluster lock = !{sys.executable} -m ctdb.clusterd.etcd_lock "
                    f"--endpoints {self.etcd_endpoints()} --ttl 1 --timeout 0.5 "
                    f"pyctdb/{self.options.name}/lock\n")
        (base / "ctdb.conf").write_text(
            "[logging]\n"
            f"    location = file:{node.log}\n"
            "    log level = INFO\n"
            "[cluster]\n"
            f"{lock}"
            f"    key file = {base / 'cluster.key'}\n"
            "[paths]\n"
            f"    run directory = {node.run_dir}\n"
            f"    state directory = {node.state_dir}\n"
            + ("[services]\n"
               f"    samba = {'true' if 'smb' in self.options.services else 'false'}\n"
               f"    nfs = {'ganesha' if 'nfs' in self.options.services else 'none'}\n"
               if self.options.services else "")
        )
        legacy = base / "events" / "legacy"  # ctdbd's own events, as in CTDB's layout
        legacy.mkdir(parents=True, exist_ok=True)
        if "nfs" in self.options.services:
            # pyctdb's NFS event script: grace on moves, Ganesha's health.
            link = legacy / NFS_SCRIPT.name
            link.unlink(missing_ok=True)
            link.symlink_to(NFS_SCRIPT)
        (base / "nodes").write_text(nodes_file(self.topo))
        (base / "public_addresses").write_text(public_addresses_file(self.topo))
        key = base / "cluster.key"
        key.write_text(self.options.key + "\n")
        key.chmod(0o600)

    # -- etcd, for --lock etcd -------------------------------------------------------
    def etcd_endpoints(self) -> str:
        return ",".join(f"http://{n.private_ip}:{ETCD_CLIENT_PORT}" for n in self.topo.nodes)

    def start_etcd(self, node: NodeSpec) -> None:
        """One etcd member per node, on the private network, tuned for fast leases."""
        data = node.root / "etcd"
        data.mkdir(parents=True, exist_ok=True, mode=0o700)
        cluster = ",".join(f"n{n.pnn}=http://{n.private_ip}:{ETCD_PEER_PORT}"
                           for n in self.topo.nodes)
        ip = node.private_ip
        with open(node.root / "etcd.log", "ab") as out:
            subprocess.Popen(
                ["ip", "netns", "exec", node.netns, "etcd", "--name", f"n{node.pnn}",
                 "--data-dir", str(data),
                 "--listen-peer-urls", f"http://{ip}:{ETCD_PEER_PORT}",
                 "--initial-advertise-peer-urls", f"http://{ip}:{ETCD_PEER_PORT}",
                 "--listen-client-urls", f"http://{ip}:{ETCD_CLIENT_PORT}",
                 "--advertise-client-urls", f"http://{ip}:{ETCD_CLIENT_PORT}",
                 "--initial-cluster", cluster, "--initial-cluster-state", "new",
                 "--initial-cluster-token", f"pctdb-{self.options.name}",
                 "--heartbeat-interval", "50", "--election-timeout", "500",
                 # a healed member must not depose the leader of the majority
                 "--pre-vote"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)

    def etcd_healthy(self) -> bool:
        node = self.topo.nodes[0]
        r = subprocess.run(["ip", "netns", "exec", node.netns, "etcdctl",
                            f"--endpoints={self.etcd_endpoints()}", "endpoint", "health"],
                           capture_output=True, text=True, check=False, timeout=10)
        return r.returncode == 0

    def wait_ready(self, pnn: int, timeout: float = 30.0) -> None:
        """Until ctdbd answers: masterd registers only once all its daemons are ready."""
        wait_for(f"node {pnn}'s ctdbd to answer",
                 lambda: self.ctdb(pnn, "getpid", check=False).returncode == 0, timeout)

    def start(self, pnn: int, *args: str, env: dict[str, str] | None = None) -> None:
        """Start the node's ctdbd, with extra arguments and environment if given."""
        self.backend.start(self, self.topo.node(pnn), args, env)
        self.save()

    def stop(self, pnn: int, timeout: float = 15.0) -> None:
        self.backend.stop(self, self.topo.node(pnn), timeout)
        self.options.pids.pop(str(pnn), None)
        self.save()

    def restart(self, pnn: int) -> None:
        self.stop(pnn)
        self.start(pnn)
        self.wait_ready(pnn)

    # -- commands in nodes -----------------------------------------------------------
    def exec(self, pnn: int, argv: Sequence[str], check: bool = False,
             timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        node = self.topo.node(pnn)
        result = subprocess.run(self.backend.exec_argv(self, node, argv), text=True,
                                capture_output=True, timeout=timeout, check=False,
                                env=self.backend.node_env(self, node))
        if check and result.returncode != 0:
            raise SandboxError(f"{' '.join(argv)} on node {pnn} failed ({result.returncode}):"
                               f" {result.stderr.strip()}")
        return result

    def ctdb(self, pnn: int, *args: str, check: bool = True,
             timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return self.exec(pnn, [str(BIN / "ctdb"), *args], check=check, timeout=timeout)

    def client_argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.topo.client, *argv]

    def pid(self, pnn: int) -> int | None:
        """The node's ctdbd; a backend whose init restarts ctdbd (nspawn) knows the new one."""
        find = getattr(self.backend, "ctdbd_pid", None)
        if find is not None:
            current: int | None = find(self.topo.node(pnn))
            if current is not None:
                return current
        return self.options.pids.get(str(pnn))

    def children(self, pnn: int) -> dict[str, int]:
        """The node's ctdbd's children by process name."""
        pid = self.pid(pnn)
        if pid is None:
            return {}
        out = subprocess.run(["ps", "-o", "pid=,comm=", "--ppid", str(pid)],
                             capture_output=True, text=True, check=False).stdout
        return {name.strip(): int(p) for p, name in (ln.split(None, 1) for ln in out.splitlines())}

    def log_text(self, pnn: int) -> str:
        log = self.topo.node(pnn).log
        return log.read_text(errors="replace") if log.exists() else ""

    # -- faults ------------------------------------------------------------------------
    def kill(self, pnn: int, daemon: str | None = None) -> None:
        """SIGKILL the node's daemons (or one, e.g. ``transport``); its kernel keeps going."""
        if daemon is None:
            pid = self.pid(pnn)
            targets = [pid, *self.children(pnn).values()] if pid else []
        else:
            name = daemon if daemon.startswith("ctdb-") else f"ctdb-{daemon}"
            found = self.children(pnn).get(name)
            if found is None:
                raise SandboxError(f"node {pnn} runs no {name}")
            targets = [found]
        for target in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, signal.SIGKILL)

    def poweroff(self, pnn: int) -> None:
        """The node is gone at once: links cut first so no FIN escapes, then every process."""
        node = self.topo.node(pnn)
        network.cut(self.topo, node, "all")
        network.kill_all(node.netns, signal.SIGKILL)
        self.options.pids.pop(str(pnn), None)
        self.save()

    def freeze(self, pnn: int) -> None:
        network.kill_all(self.topo.node(pnn).netns, signal.SIGSTOP)

    def thaw(self, pnn: int) -> None:
        network.kill_all(self.topo.node(pnn).netns, signal.SIGCONT)

    def cut(self, pnn: int, which: str = "all") -> None:
        network.cut(self.topo, self.topo.node(pnn), which)

    def heal(self, pnn: int | None = None) -> None:
        for node in self.topo.nodes if pnn is None else [self.topo.node(pnn)]:
            network.heal(self.topo, node)

    def loss(self, pnn: int, percent: int) -> None:
        network.loss(self.topo.node(pnn), percent)

    def linkdown(self, pnn: int, iface: str) -> None:
        network.link(self.topo.node(pnn), iface, up=False)

    def linkup(self, pnn: int, iface: str) -> None:
        network.link(self.topo.node(pnn), iface, up=True)

    def partition(self, groups: list[list[int]]) -> None:
        network.partition(self.topo, groups)

    def add_node(self) -> int:
        """A new node joins: every node's nodes file grows, the new node starts."""
        self.topo = add_node(self.topo)
        self.options.nodes = len(self.topo.nodes)
        node = self.topo.nodes[-1]
        network.add_node(self.topo, node)
        for n in self.topo.nodes:
            self.write_config(n)
        self.backend.start(self, node)
        self.save()
        self.wait_ready(node.pnn)
        return node.pnn

    def status(self) -> dict[str, Any]:
        nodes = []
        for node in self.topo.nodes:
            pid = self.pid(node.pnn)
            alive = pid is not None and Path(f"/proc/{pid}").exists()
            state = "down"
            if alive:
                r = self.ctdb(node.pnn, "ping", check=False, timeout=5)
                state = "running" if r.returncode == 0 else "not answering"
            nodes.append({"pnn": node.pnn, "netns": node.netns, "pid": pid, "state": state,
                          "private": node.private_ip, "public": node.public_ip,
                          "base": str(node.base)})
        return {"name": self.options.name, "backend": self.options.backend,
                "impl": self.options.impl, "client": self.topo.client_ip,
                "services": list(self.options.services),
                "public_ips": list(self.topo.public_ips + self.topo.public_ips6),
                "nodes": nodes}


class _Stepper:
    def __init__(self, progress: Callable[[str], None]) -> None:
        self.progress = progress
        self.last = time.monotonic()

    def __call__(self, what: str) -> None:
        now = time.monotonic()
        self.progress(f"{what} ({now - self.last:.2f}s)")
        self.last = now


def check_environment(options: Options) -> None:
    if os.geteuid() != 0:
        raise SandboxError("ctdb-sandbox needs root (it creates network namespaces)")
    if options.backend not in BACKENDS:
        raise SandboxError(f"unknown backend {options.backend!r}: {', '.join(BACKENDS)}")
    if options.impl not in IMPLS:
        raise SandboxError(f"--impl {options.impl} is not available yet; available: "
                           + ", ".join(IMPLS))
    if not options.pyctdb_unit and options.backend != "nspawn":
        raise SandboxError("--no-pyctdb-unit needs --backend nspawn")
    if options.lock not in LOCKS:
        raise SandboxError(f"--lock {options.lock} is not available yet; available: "
                           + ", ".join(LOCKS))
    from ctdb.sandbox import services

    services.check(options.services, options.backend)
    tools = [("ip", "iproute2"), ("nft", "nftables")]
    if options.lock == "etcd":
        tools += [("etcd", "etcd-server"), ("etcdctl", "etcd-client")]
    for tool, package in tools:
        if shutil.which(tool) is None:
            raise SandboxError(f"{tool} is missing: apt-get install {package}")


def free_index(name: str) -> int:
    """The lowest address-block index no other live sandbox uses."""
    used = set()
    if STATE_ROOT.exists():
        for state in STATE_ROOT.glob("*/state.json"):
            if state.parent.name == name:
                continue
            with contextlib.suppress(OSError, ValueError):
                used.add(int(json.loads(state.read_text()).get("index", 0)))
    return next(i for i in range(100) if i not in used)


def destroy(name: str) -> list[str]:
    """Remove every trace of sandbox *name*: processes, namespaces, state directory."""
    from ctdb.sandbox.nspawn_backend import cleanup as cleanup_nspawn

    cleanup_nspawn(name)
    gone = network.teardown(f"pctdb-{name}-")
    root = STATE_ROOT / name
    if root.exists():
        shutil.rmtree(root, ignore_errors=True)
    return gone


def make_backend(name: str) -> Backend:
    if name == "netns":
        from ctdb.sandbox.netns_backend import NetnsBackend

        return NetnsBackend()
    if name == "nspawn":
        from ctdb.sandbox.nspawn_backend import NspawnBackend

        backend: Backend = NspawnBackend()
        return backend
    raise SandboxError(f"unknown backend {name!r}")
