"""Nodes as systemd containers: each node boots a clone of this machine's OS.

A node is ``systemd-nspawn -b`` in the node's network namespace, on an overlay whose
lower layer is the host's ``/`` (read-only to the overlay) and whose upper layer is the
node's own directory.  Before boot the upper layer gets the node's ``/etc/hostname`` and
``/etc/machine-id``, masks for the units a node must not start, pyctdb's
``ctdb.service`` (``packaging/systemd/ctdb.service``) with a drop-in that runs this
venv's ``ctdbd`` with the node's ``CTDB_BASE``, and the unit enabled; with
``--services``, the file services' configuration and units (:mod:`ctdb.sandbox.services`,
which also adds the shared storage's bind and Ganesha's capability).  The node's
directory (``CTDB_BASE``, run and state directories, log) is bound into the container
at the same path, so ``ctdb`` run from the host with ``CTDB_BASE`` reaches its socket.

The overlay is mounted in a private mount namespace that only ``systemd-nspawn`` (and
the container) sees: it disappears with the container, never shows up in the host's
mount table and never blocks removing the sandbox's directory.  Its lower layer is
``/`` itself rather than a read-only bind of it: overlayfs never writes to a lower layer
and does not cross mounts, so the two are the same view, and there is no bind of the
host's root under the sandbox's directory for a ``shutil.rmtree`` to walk into.

With ``Options(pyctdb_unit=False)`` a node gets none of pyctdb's unit, drop-ins or
enablement and boots without ctdbd: a clean clone to install pyctdb's package in.

The node's systemd is real: ctdb.service's Restart=on-failure restarts a killed ctdbd
after 2 s (the sandbox's recorded pid is then stale; :meth:`NspawnBackend.ctdbd_pid`
finds the new one); ``freeze`` stops the container's systemd too.

Files per node: ``NODE/nspawn.pid`` (the systemd-nspawn process), ``NODE/nspawn.out``
(its console), ``SANDBOX/nspawn/node<PNN>/{upper,work,root}`` (the overlay's layers,
kept out of ``NODE`` so the container does not see its own upper layer).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ctdb.sandbox import services
from ctdb.sandbox.topology import STATE_ROOT, NodeSpec, SandboxError, check_name

if TYPE_CHECKING:
    from ctdb.sandbox.lab import Sandbox

BIN = Path(sys.executable).parent
UNIT = "ctdb.service"
UNIT_SOURCE = Path(__file__).resolve().parents[2] / "packaging" / "systemd" / UNIT
BOOT_TIMEOUT = 60.0
NSPAWN = "systemd-nspawn"

# Units a node must not start, masked whether or not they are installed (other work on this
# machine installs Samba, NFS-Ganesha, etcd, keepalived, Samba's ctdb...): the file
# services unless --services asks for them, the host's own databases and daemons,
# periodic jobs (eight nodes running apt-daily at once), and what a container does not need
# (consoles, logins) to keep a node small.  Templates (``name@.service``) mask every instance.
MASKED_UNITS = (
    # file services and their helpers: started by pyctdb's serviced, not at boot
    "smbd.service", "nmbd.service", "winbind.service", "samba.service",
    "samba-ad-dc.service", "samba-dcerpcd.service", "nfs-ganesha.service",
    "nfs-ganesha-lock.service", "nfs-server.service", "nfs-kernel-server.service",
    "nfs-mountd.service", "nfs-idmapd.service", "nfs-blkmap.service", "rpc-statd.service",
    "rpc-statd-notify.service", "rpc-gssd.service", "rpc-svcgssd.service",
    "run-rpc_pipefs.mount", "rpcbind.service", "rpcbind.socket", "proc-fs-nfsd.mount",
    # the peers the benchmarks run by hand, and the host's own services
    "keepalived.service", "etcd.service", "postgresql.service", "postgresql@.service",
    "ssh.service", "ssh.socket", "sshd.service", "cron.service", "anacron.service",
    "atd.service", "rsyslog.service", "exim4.service", "postfix.service", "docker.service",
    "containerd.service", "unattended-upgrades.service",
    # periodic jobs
    "apt-daily.timer", "apt-daily-upgrade.timer", "man-db.timer", "dpkg-db-backup.timer",
    "e2scrub_all.timer", "e2scrub_reap.service", "fstrim.timer", "logrotate.timer",
    "systemd-tmpfiles-clean.timer", "anacron.timer",
    # a tmpfs on /tmp would hide a venv or source tree bound there
    "tmp.mount",
    # a container needs no consoles, logins or clock
    "console-getty.service", "container-getty@.service", "getty@.service",
    "serial-getty@.service", "systemd-logind.service", "systemd-timesyncd.service",
    "systemd-pstore.service", "systemd-networkd-wait-online.service",
)

_SYSTEMD_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "%": "%%", "$": "$$"})


def _quote(word: str) -> str:
    """One word of a unit file's command line or Environment= assignment."""
    return '"' + word.translate(_SYSTEMD_ESCAPES) + '"'


# -- /proc ------------------------------------------------------------------------------
def _stat(pid: int) -> tuple[str, str, int] | None:
    """(comm, state, ppid) of *pid*, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    head, _, tail = text.rpartition(") ")
    fields = tail.split()
    try:
        return head.split(" (", 1)[1], fields[0], int(fields[1])
    except (IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[1] not in ("Z", "X")


def _start_time(pid: int) -> int | None:
    """When *pid* started, in clock ticks since boot (``stat`` field 22)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(") ")[2].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _read_pid_file(path: Path) -> tuple[int | None, int | None]:
    try:
        pid, started = path.read_text().split()
        return int(pid), int(started)
    except (OSError, ValueError):
        return None, None


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _children(ppid: int, comm: str | None = None) -> list[int]:
    found = []
    for pid in _pids():
        st = _stat(pid)
        if st is not None and st[2] == ppid and (comm is None or st[0] == comm):
            found.append(pid)
    return found


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _pid_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def pss_kib(pids: Iterable[int]) -> int:
    """Proportional set size of *pids* together, in KiB (from ``smaps_rollup``)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
    return total


# -- cgroups --------------------------------------------------------------------------------
# With --keep-unit and no systemd to allocate a scope, systemd-nspawn puts the container in
# "payload" (and itself in "supervisor") under the cgroup it was started in: containers
# started from one process would share one cgroup tree and their systemds would trip over
# each other's units (seen: "Failed to attach to cgroup /system.slice/...: No such file").
# So each node gets a cgroup of its own, CGROUP_DIR/NAME/node<PNN>, in the cgroup2
# hierarchy and in systemd's named v1 hierarchy when the host has one (hybrid layout).
CGROUP_DIR = "pyctdb-sandbox"


def _cgroup_roots() -> list[Path]:
    """Mount points of the cgroup2 hierarchy and of the v1 ``name=systemd`` one."""
    roots = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, options = fields[sep + 1], fields[sep + 3].split(",")
            if fstype == "cgroup2" or (fstype == "cgroup" and "name=systemd" in options):
                roots.append(Path(fields[4]))
    return roots


def _node_cgroups(node: NodeSpec) -> list[Path]:
    sandbox = node.root.parent.name
    return [root / CGROUP_DIR / sandbox / f"node{node.pnn}" for root in _cgroup_roots()]


def _kill_cgroups(paths: Iterable[Path]) -> None:
    """SIGKILL every process in these cgroup trees (cgroup2's ``cgroup.kill``)."""
    for path in paths:
        with contextlib.suppress(OSError):
            (path / "cgroup.kill").write_text("1")


def _remove_cgroups(paths: Iterable[Path], timeout: float = 2.0) -> None:
    """Remove these cgroup trees, deepest first, once their processes are gone."""
    deadline = time.monotonic() + timeout
    for path in paths:
        while path.is_dir():
            busy = False
            for parent, _dirs, _files in os.walk(path, topdown=False):
                try:
                    os.rmdir(parent)
                except FileNotFoundError:
                    pass
                except OSError:
                    busy = True
            if not busy or time.monotonic() > deadline:
                break
            time.sleep(0.02)


# -- the backend ----------------------------------------------------------------------------
class NspawnBackend:
    def __init__(self) -> None:
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._prebooted: set[int] = set()
        self._leaders: dict[int, int] = {}  # pnn: the container's systemd, host pid

    # paths
    @staticmethod
    def layers(node: NodeSpec) -> Path:
        """The directory holding the node's overlay layers (upper, work, root)."""
        return node.root.parent / "nspawn" / f"node{node.pnn}"

    @staticmethod
    def machine(node: NodeSpec) -> str:
        return node.netns

    # processes
    def nspawn_pid(self, node: NodeSpec) -> int | None:
        """The node's running systemd-nspawn process (or its wrappers, while they exec)."""
        pid, started = _read_pid_file(node.root / "nspawn.pid")
        self._reap()
        # The start time tells a reused pid from ours; it survives the wrappers' exec.
        if pid is None or not _alive(pid) or _start_time(pid) != started:
            return None
        return pid

    def leader(self, node: NodeSpec) -> int | None:
        """The container's init (systemd) as the host sees it, if the node is up."""
        nspawn = self.nspawn_pid(node)
        if nspawn is None:
            return None
        cached = self._leaders.get(node.pnn)
        st = _stat(cached) if cached is not None else None
        if st is not None and st[0] == "systemd" and st[2] == nspawn and st[1] not in "ZX":
            return cached
        for pid in _children(nspawn, "systemd"):
            if _alive(pid):
                self._leaders[node.pnn] = pid
                return pid
        return None

    def pids(self, node: NodeSpec) -> list[int]:
        """Every process of the node: systemd-nspawn and all of the container's processes."""
        nspawn = self.nspawn_pid(node)
        leader = self.leader(node)
        if nspawn is None:
            return []
        found = [nspawn]
        ns = _pid_ns(leader) if leader else None
        if ns is not None:
            found += [p for p in _pids() if p != nspawn and _pid_ns(p) == ns]
        return found

    def ctdbd_pid(self, node: NodeSpec) -> int | None:
        """The host's pid of the container's ctdbd (a child of the container's systemd)."""
        leader = self.leader(node)
        if leader is None:
            return None
        found = [p for p in _children(leader, "ctdbd") if _alive(p)]
        return found[0] if found else None

    # the Backend protocol
    def node_env(self, sb: Sandbox, node: NodeSpec) -> dict[str, str]:
        env = dict(os.environ)
        for var in ("NOTIFY_SOCKET", "DBUS_SYSTEM_BUS_ADDRESS", "WATCHDOG_USEC", "WATCHDOG_PID",
                    "LISTEN_FDS", "LISTEN_PID", "INVOCATION_ID"):
            env.pop(var, None)
        env["CTDB_BASE"] = str(node.base)
        env["PATH"] = f"{BIN}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        return env

    def exec_argv(self, sb: Sandbox, node: NodeSpec, argv: Sequence[str]) -> list[str]:
        leader = self.leader(node)
        if leader is None:
            raise SandboxError(f"node {node.pnn}'s container is not running")
        # `ip netns exec` first so that argv[0] is `ip`, as `ctdb-sandbox exec` expects; nsenter
        # then joins every namespace of the container (mount, pid, net, ipc, uts, cgroup), so
        # `systemctl` inside talks to the node's own systemd.
        return ["ip", "netns", "exec", node.netns, "nsenter", "-t", str(leader), "-a", *argv]

    def start(self, sb: Sandbox, node: NodeSpec, args: Sequence[str] = (),
              env: dict[str, str] | None = None) -> None:
        """Boot the node's container (or start ctdb.service in it), wait until ctdbd is ready.

        Booting is most of a node's start, so the first boot also boots every node of the
        sandbox that has never been booted (a fresh ``up``: all of them) and their own
        start() only waits for them.
        """
        if not sb.options.pyctdb_unit:
            if self._answering_leader(node) is None:
                self._kill_leftover(node)
                self._prepare(sb, node, args, env)
                self._boot(sb, node)
            self._wait_ready(node, unit=False)
            return
        if node.pnn in self._prebooted:
            self._prebooted.discard(node.pnn)
            self._wait_ready(node)
        leader = self._answering_leader(node)
        if leader is None:
            self._kill_leftover(node)
            self._prepare(sb, node, args, env)
            self._boot(sb, node)
            for other in sb.topo.nodes:
                if (other.pnn != node.pnn and not self.layers(other).exists()
                        and self.nspawn_pid(other) is None and other.base.is_dir()):
                    self._prepare(sb, other, (), None)
                    self._boot(sb, other)
                    self._prebooted.add(other.pnn)
        elif self._write_start_dropin(Path(f"/proc/{leader}/root"), node, args, env):
            self._systemctl(node, "daemon-reload")
            self._systemctl(node, "restart", UNIT, timeout=BOOT_TIMEOUT)
        else:
            self._systemctl(node, "start", UNIT, timeout=BOOT_TIMEOUT)
        self._wait_ready(node)
        pid = self.ctdbd_pid(node)
        if pid is None:
            raise SandboxError(f"node {node.pnn}: ctdb.service is active but no ctdbd is running")
        sb.options.pids[str(node.pnn)] = pid

    def stop(self, sb: Sandbox, node: NodeSpec, timeout: float) -> None:
        """Power the container off (SIGTERM to systemd-nspawn), kill it after *timeout*."""
        nspawn = self.nspawn_pid(node)
        if nspawn is None:
            self._forget(node)
            return
        # A frozen node cannot shut down: wake every process of it first.
        for pid in self.pids(node):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        with contextlib.suppress(ProcessLookupError):
            os.kill(nspawn, signal.SIGTERM)
        if self._wait_gone(nspawn, timeout):
            self._forget(node)
            return
        self._kill_leftover(node)
        raise SandboxError(f"node {node.pnn}'s container did not power off within {timeout:g}s;"
                           " killed it")

    # -- internals ------------------------------------------------------------------------
    def _answering_leader(self, node: NodeSpec) -> int | None:
        """The leader of a container whose systemd is up (not dying after a poweroff)."""
        leader = self.leader(node)
        if leader is None:
            return None
        try:
            state = self._systemctl(node, "is-system-running", check=False, timeout=5).stdout
        except SandboxError:
            return None
        return leader if state.strip() in ("running", "degraded", "starting") else None

    def _reap(self) -> None:
        """Collect our exited systemd-nspawn processes (kept for their exit status)."""
        for proc in self._procs.values():
            proc.poll()

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self._reap()
            if not _alive(pid):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def _forget(self, node: NodeSpec) -> None:
        pid, _ = _read_pid_file(node.root / "nspawn.pid")
        if pid is not None and pid in self._procs and self._procs[pid].poll() is not None:
            del self._procs[pid]
        with contextlib.suppress(FileNotFoundError):
            (node.root / "nspawn.pid").unlink()
        cgroups = _node_cgroups(node)
        _remove_cgroups(cgroups)
        # The last node gone: the sandbox's cgroup, then CGROUP_DIR (deepest first).
        for empty in [c.parent for c in cgroups] + [c.parent.parent for c in cgroups]:
            with contextlib.suppress(OSError):
                empty.rmdir()

    def _kill_leftover(self, node: NodeSpec) -> None:
        """SIGKILL what is left of an earlier container of this node and wait for it."""
        nspawn = self.nspawn_pid(node)
        if nspawn is None:
            self._forget(node)
            return
        for pid in reversed(self.pids(node)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _kill_cgroups(_node_cgroups(node))
        if not self._wait_gone(nspawn, 10.0):
            raise SandboxError(f"node {node.pnn}: systemd-nspawn {nspawn} does not die")
        self._forget(node)

    def _unit_text(self) -> str:
        try:
            return UNIT_SOURCE.read_text()
        except OSError as exc:
            raise SandboxError(f"the nspawn backend needs pyctdb's unit file: {exc}") from None

    def _prepare(self, sb: Sandbox, node: NodeSpec, args: Sequence[str],
                 env: dict[str, str] | None) -> None:
        """The node's files in the overlay's upper layer, written before boot."""
        layers = self.layers(node)
        layers.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sub in ("upper", "work", "root"):
            (layers / sub).mkdir(exist_ok=True)
        # The upper layer's top is the container's "/": 0700 there locks every service
        # user (messagebus...) out of the whole tree.
        (layers / "upper").chmod(0o755)
        node.run_dir.mkdir(parents=True, exist_ok=True)
        node.state_dir.mkdir(parents=True, exist_ok=True)
        upper = layers / "upper"
        etc = upper / "etc"
        system = etc / "systemd" / "system"
        system.mkdir(parents=True, exist_ok=True)
        (etc / "hostname").write_text(f"{self.machine(node)}\n")
        machine_id = etc / "machine-id"
        if not machine_id.exists():  # a node keeps its identity across reboots
            machine_id.write_text(f"{uuid.uuid4().hex}\n")
        for unit in services.masked_units(MASKED_UNITS, sb.options.services):
            link = system / unit
            if not link.is_symlink():
                link.unlink(missing_ok=True)
                link.symlink_to("/dev/null")
        if sb.options.pyctdb_unit:
            (system / UNIT).unlink(missing_ok=True)  # never write through a mask's symlink
            (system / UNIT).write_text(self._unit_text())
            dropins = system / f"{UNIT}.d"
            dropins.mkdir(exist_ok=True)
            (dropins / "sandbox.conf").write_text(self._sandbox_dropin(node))
            wants = system / "multi-user.target.wants"
            wants.mkdir(exist_ok=True)
            enabled = wants / UNIT
            enabled.unlink(missing_ok=True)
            enabled.symlink_to(f"/etc/systemd/system/{UNIT}")
            self._write_start_dropin(upper, node, args, env)
        services.write_node_files(upper, sb, node)

    @staticmethod
    def _sandbox_dropin(node: NodeSpec) -> str:
        path = f"{BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        return (
            "# Written by ctdb-sandbox: this venv's ctdbd with the node's CTDB_BASE.\n"
            "[Unit]\n"
            "ConditionFileNotEmpty=\n"
            f"ConditionFileNotEmpty={node.base / 'nodes'}\n"
            "[Service]\n"
            "ExecStart=\n"
            f"ExecStart={BIN / 'ctdbd'} --foreground\n"
            "# The unit's /usr/sbin/ctdbd is the package's, or Samba's (no --release-ips).\n"
            "ExecStopPost=\n"
            f"ExecStopPost={BIN / 'ctdbd'} --release-ips\n"
            f"Environment={_quote('CTDB_BASE=' + str(node.base))} {_quote('PATH=' + path)}\n"
            "# The venv may live under /tmp (a CI checkout): keep the real /tmp visible.\n"
            "PrivateTmp=no\n"
        )

    @staticmethod
    def _write_start_dropin(root: Path, node: NodeSpec, args: Sequence[str],
                            env: dict[str, str] | None) -> bool:
        """Extra ctdbd arguments and environment for this start (none: no drop-in).

        True when the drop-in changed, so a running ctdbd must restart to take it.
        """
        path = root / "etc" / "systemd" / "system" / f"{UNIT}.d" / "start.conf"
        if not args and not env:
            if path.exists():
                path.unlink()
                return True
            return False
        text = "# Written by ctdb-sandbox: Sandbox.start's arguments and environment.\n[Service]\n"
        if args:
            words = [str(BIN / "ctdbd"), "--foreground", *args]
            text += "ExecStart=\nExecStart=" + " ".join(_quote(w) for w in words) + "\n"
        for key, value in (env or {}).items():
            text += f"Environment={_quote(f'{key}={value}')}\n"
        path.parent.mkdir(parents=True, exist_ok=True)
        old = path.read_text() if path.exists() else None
        path.write_text(text)
        return old != text

    def _boot(self, sb: Sandbox, node: NodeSpec) -> None:
        for tool in (NSPAWN, "unshare", "nsenter"):
            if shutil.which(tool) is None:
                raise SandboxError(f"{tool} is missing: apt-get install systemd-container"
                                   " util-linux")
        layers = self.layers(node)
        overlay = (f"lowerdir=/,upperdir={layers / 'upper'},workdir={layers / 'work'}")
        binds = [f"--bind={node.root}"]
        # The venv and the source tree, at the same paths: always bound, since the clone
        # may not show them (another mount, or under /tmp, which the container's
        # systemd would cover with a tmpfs).
        code = [Path(sys.prefix), UNIT_SOURCE.parents[2]]
        binds += [f"--bind-ro={p}" for p in dict.fromkeys(
            code + _outside_root_fs((Path(sys.base_prefix),)))]
        shared = sb.root / "shared"  # the fcntl cluster lock, one file for every node
        if shared.is_dir():
            binds.append(f"--bind={shared}")
        capabilities = ["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK"]
        if "nfs" in sb.options.services:
            capabilities += services.NFS_CAPABILITIES
        nspawn = [
            NSPAWN, "--quiet", "--register=no", "--keep-unit", "--console=passive",
            "--link-journal=no", "--resolv-conf=off", "--timezone=off",
            f"--machine={self.machine(node)}",
            f"--network-namespace-path=/run/netns/{node.netns}",
            f"--capability={','.join(capabilities)}", "--boot",
            f"--directory={layers / 'root'}", *binds, *services.nspawn_args(sb),
        ]
        # In a mount namespace of its own: a tmpfs for systemd-nspawn's bookkeeping (its
        # propagation directory and image locks stay off the host's /run), then the overlay,
        # then systemd-nspawn in place of the shell.  Both mounts vanish with the container.
        # First into the node's own cgroups (see CGROUP_DIR).
        script = ('for cg in $3; do echo $$ > "$cg/cgroup.procs" || exit 1; done'
                  ' && mount -t tmpfs -o mode=0700 pctdb-nspawn /run/systemd/nspawn'
                  ' && mount -t overlay -o "$1" pctdb-overlay "$2" && shift 3 && exec "$@"')
        cgroups = _node_cgroups(node)
        _remove_cgroups(cgroups)  # an earlier boot's empty tree
        for cgroup in cgroups:
            cgroup.mkdir(parents=True, exist_ok=True)
        Path("/run/systemd/nspawn").mkdir(parents=True, exist_ok=True)
        argv = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                script, "sh", overlay, str(layers / "root"), " ".join(map(str, cgroups)),
                *nspawn]
        with open(node.root / "nspawn.out", "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self._procs[proc.pid] = proc
        (node.root / "nspawn.pid").write_text(f"{proc.pid} {_start_time(proc.pid)}\n")

    def _systemctl(self, node: NodeSpec, *args: str, check: bool = True,
                   timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """``systemctl ARGS`` run by the node's own systemd."""
        leader = self.leader(node)
        if leader is None:
            raise SandboxError(f"node {node.pnn}'s container is not running")
        try:
            result = subprocess.run(["nsenter", "-t", str(leader), "-a", "systemctl", *args],
                                    capture_output=True, text=True, check=False,
                                    timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SandboxError(f"node {node.pnn}: systemctl {' '.join(args)}: no answer"
                               f" within {timeout:g}s") from None
        if check and result.returncode != 0:
            raise SandboxError(f"node {node.pnn}: systemctl {' '.join(args)}: "
                               f"{(result.stderr or result.stdout).strip()}")
        return result

    def _why(self, node: NodeSpec) -> str:
        """What the node's console and journal say, for an error message."""
        lines: list[str] = []
        with contextlib.suppress(OSError):
            lines += (node.root / "nspawn.out").read_text(errors="replace").splitlines()[-5:]
        leader = self.leader(node)
        if leader is not None:
            with contextlib.suppress(SandboxError):
                failed = self._systemctl(node, "list-units", "--failed", "--plain",
                                         "--no-legend", check=False, timeout=5).stdout
                lines += [f"failed unit {ln.split()[0]}" for ln in failed.splitlines()
                          if ln.strip()]
            with contextlib.suppress(subprocess.SubprocessError):
                lines += subprocess.run(
                    ["nsenter", "-t", str(leader), "-a", "journalctl", "-u", UNIT, "-n", "5",
                     "--no-pager", "-q", "-o", "cat"], capture_output=True, text=True,
                    check=False, timeout=5).stdout.splitlines()
        return "; ".join(ln.strip() for ln in lines if ln.strip()) or "no clue"

    def _wait_ready(self, node: NodeSpec, unit: bool = True) -> None:
        """Until the container's systemd is up and ctdb.service is active (READY=1 sent).

        With Type=notify, ctdb.service is active only once ctdbd sent READY=1, and the
        system leaves ``starting`` only when the boot transaction (which holds
        ctdb.service) is done.  *unit* False: until the system is up.
        """
        deadline = time.monotonic() + BOOT_TIMEOUT
        system = "not started"
        while True:
            if self.nspawn_pid(node) is None:
                pid, _ = _read_pid_file(node.root / "nspawn.pid")
                proc = self._procs.get(pid) if pid is not None else None
                code = "" if proc is None or proc.returncode is None else \
                    f" (status {proc.returncode})"
                raise SandboxError(f"node {node.pnn}'s container exited while booting{code}: "
                                   f"{self._why(node)}")
            if self.leader(node) is not None:
                with contextlib.suppress(SandboxError):
                    system = self._systemctl(node, "is-system-running", check=False,
                                             timeout=5).stdout.strip() or "offline"
                if system in ("running", "degraded"):
                    if not unit:
                        return
                    state = self._systemctl(node, "show", "-p", "ActiveState", "--value", UNIT,
                                            check=False, timeout=5).stdout.strip()
                    if state == "active":
                        return
                    if state != "activating":
                        raise SandboxError(f"node {node.pnn}: system {system}, {UNIT} "
                                           f"{state}: {self._why(node)}")
                elif system in ("maintenance", "stopping"):
                    raise SandboxError(f"node {node.pnn}: system {system}: {self._why(node)}")
            if time.monotonic() > deadline:
                raise SandboxError(f"node {node.pnn} not ready after {BOOT_TIMEOUT:g}s "
                                   f"(system {system}): {self._why(node)}")
            time.sleep(0.05)


# -- cleanup of a whole sandbox ---------------------------------------------------------
def _sandbox_nspawns(name: str) -> list[int]:
    """systemd-nspawn processes (and their unshare/sh wrappers) booting sandbox *name*."""
    marker = f"--directory={STATE_ROOT / name}/nspawn/"
    found = []
    for pid in _pids():
        st = _stat(pid)
        if st is None or st[0] not in (NSPAWN, "unshare", "sh"):
            continue
        if any(arg.startswith(marker) for arg in _cmdline(pid)):
            found.append(pid)
    return found


def _mount_points() -> list[str]:
    """Every mount point in this mount namespace."""
    with open("/proc/self/mountinfo") as f:
        return [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
                for line in f]


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or under *root* in this mount namespace, deepest first."""
    found = [p for p in _mount_points() if p == str(root) or p.startswith(f"{root}/")]
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def _outside_root_fs(paths: Iterable[Path]) -> list[Path]:
    """Those of *paths* on a mount other than "/": the overlay's lower "/" does not show them.

    The clone sees the host's root file system only (overlayfs does not cross mounts), so
    a venv or source tree on another mount is bound into the container read-only.
    """
    points = _mount_points()
    found = []
    for path in paths:
        text = str(path)
        under = max((p for p in points if text == p or text.startswith(p.rstrip("/") + "/")),
                    key=len, default="/")
        if under != "/" and path not in found:
            found.append(path)
    return found


def cleanup(name: str) -> None:
    """Kill sandbox *name*'s containers and unmount whatever it mounted; never raises.

    For ``ctdb-sandbox down`` and crash cleanup, before the namespaces and the state
    directory go: every systemd-nspawn of the sandbox and every process in its
    containers (found by command line, pid namespace and cgroup) get SIGKILL, the
    sandbox's cgroups are removed, and any mount left under ``/run/pyctdb-sandbox/NAME``
    is detached (the overlays live in the containers' own mount namespaces, so normally
    there is none).
    """
    try:
        check_name(name)
    except SandboxError:
        return
    nspawns = _sandbox_nspawns(name)
    leaders = [c for p in nspawns for c in _children(p, "systemd")]
    namespaces = {ns for ns in map(_pid_ns, leaders) if ns}
    doomed = set(nspawns)
    if namespaces:
        doomed |= {p for p in _pids() if _pid_ns(p) in namespaces}
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    cgroups: list[Path] = []
    with contextlib.suppress(OSError, ValueError):
        cgroups = [root / CGROUP_DIR / name for root in _cgroup_roots()]
    _kill_cgroups(cgroups)
    deadline = time.monotonic() + 10.0
    while any(_alive(p) for p in nspawns) and time.monotonic() < deadline:
        time.sleep(0.02)
    _remove_cgroups(cgroups)
    for parent in {c.parent for c in cgroups}:  # CGROUP_DIR itself, once no sandbox uses it
        with contextlib.suppress(OSError):
            parent.rmdir()
    root = STATE_ROOT / name
    with contextlib.suppress(OSError):
        for point in _mounts_under(root):
            subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)
