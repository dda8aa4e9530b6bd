"""``pyctdb-statd-callout``: rpc.statd's HA callout, and SM_NOTIFY for moved addresses.

rpc.statd runs its ha-callout (``[statd] ha-callout`` in /etc/nfs.conf, or ``-H``)
as ``CALLOUT add-client MON_NAME MY_NAME`` when the lock manager asks it to monitor a
client, ``del-client`` when no longer, and ``sm-notify MON_NAME IP STATE`` when a
client tells it that it restarted.  statd does not say through which address the
client came, so, as CTDB's statd callout does, a client is recorded (or forgotten)
for every public address this node holds (:func:`held_addresses`: on its interfaces),
in the shared :class:`~nfs_scripts.statd.ClientStore`.  ``sm-notify`` needs
nothing here (statd itself tells the lock manager).

``notify [--timeout S] [IP...]`` (by default, for every address this node holds)
tells the clients recorded for each address that its server restarted, so they
reclaim their locks (NFSv3, NLM) here: the NFS callout starts it, detached, for each
address ``takeip`` gives this node (:func:`spawn_notify`), after Ganesha's grace for
it began.  Per address:

* its clients are taken out of the store first: those that reclaim are recorded again
  by statd's ``add-client`` meanwhile, which removing them afterwards would undo (a
  client not reached is dropped, as with CTDB);
* a private NSM state directory is filled: ``sm/<client>`` records in rpc.statd's
  format, an empty ``sm.bak/``, and a ``state`` number from the clock, so that it
  grows across the cluster; owned by rpc.statd's user, whom sm-notify then runs as;
* Debian's ``sm-notify -d -f -n -P DIR -v IP`` sends, from the address itself as the
  restarted server, the portmapper query for statd (GETPORT, program 100024) then
  SM_NOTIFY to each client.  ``-v IP`` names the server by the address's host name
  (DNS or /etc/hosts; sm-notify sends it again cut at its first dot) and refuses an
  address without one: for those, sm-notify runs without ``-v``, naming the server by
  its address, sent from whichever of the node's addresses the route picks (Linux
  clients match either the name or the sender).

All addresses are notified at once, under one deadline (``--timeout``, 10 s): when it
passes sm-notify is killed and that address's notify is reported as failed.

Exit status 0 on success; 1 with one line per failure on stderr (with ``--syslog``,
the detached notify's, to syslog).
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ctdb.errors import CtdbError
from nfs_scripts.statd import ClientStore, client_name, configured_store, server_address

PROG = "pyctdb-statd-callout"
USAGE = (f"usage: {PROG} {{add-client CLIENT [SERVER] | del-client CLIENT [SERVER] | "
         "sm-notify MON_NAME IP STATE | notify [--timeout SECONDS] [IP...]}")
NOTIFY_TIMEOUT = 10.0  # seconds for every address's notifications together
IP_TIMEOUT = 5.0  # seconds for `ip addr show` (statd waits for us)
DEFAULT_SCRIPT_VARDIR = Path("/var/lib/ctdb/scripts")  # as 60.nfs.script's
STATD_DIR = Path("/var/lib/nfs/sm")  # rpc.statd's: sm-notify runs as its owner
SM_NOTIFY = "sm-notify"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # rpc.statd's callouts may have no PATH
# An NSM monitor record, as rpc.statd writes them: the lock manager's address (here
# 127.0.0.1, stored as s_addr) and RPC program, version and procedure for callbacks
# (NLM, 4, 16: sm-notify reads none of these), 16 private bytes, then the client's
# name (where SM_NOTIFY goes) and the server's (sent in it unless -v names one).
MONITOR_RECORD = "{addr:08x} {prog:08x} {vers:08x} {proc:08x} {priv} {mon_name} {my_name}\n"
NLM_PROG, NLM_VERS, NLM_SM_NOTIFY = 100021, 4, 16


@dataclass(frozen=True)
class Outcome:
    """What notifying one address's clients came to."""

    ip: str
    clients: tuple[str, ...]
    ok: bool
    detail: str = ""

    def line(self) -> str:
        n = len(self.clients)
        count = f"{n} client{'' if n == 1 else 's'}"
        if self.ok:
            return f"notified {count} of {self.ip}" if n else f"no clients of {self.ip}"
        return f"notifying {count} of {self.ip} failed: {self.detail}"


def held_addresses(env: Mapping[str, str] | None = None) -> list[str]:
    """The public addresses this node holds: those in CTDB_BASE/public_addresses that
    are on its interfaces (failoverd adds one before ``takeip`` and removes it before
    ``releaseip``).  From the kernel, not the daemon: rpc.statd runs its callout as its
    own user, whom the daemon's socket refuses (as it refuses ``ctdb ip``)."""
    from ctdb.config import ctdb_base, load_public_addresses  # noqa: PLC0415

    env = os.environ if env is None else env
    try:
        public = {str(p.address.ip) for p in load_public_addresses(
            ctdb_base(env) / "public_addresses")}
    except FileNotFoundError:
        return []  # no public addresses on this node
    if not public:
        return []
    ip = shutil.which("ip", path=os.pathsep.join(p for p in (env.get("PATH", ""), SYSTEM_PATH)
                                                 if p)) or "ip"
    try:
        run = subprocess.run([ip, "-j", "addr", "show"], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=IP_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise CtdbError(f"ip addr show did not answer within {IP_TIMEOUT:.0f} s") from None
    if run.returncode != 0:
        raise CtdbError(f"ip addr show failed: {_last_line(run.stderr)}")
    try:
        local = {str(ipaddress.ip_address(a["local"])) for link in json.loads(run.stdout)
                 for a in link.get("addr_info", []) if "local" in a}
    except (ValueError, TypeError, KeyError) as exc:
        raise CtdbError(f"ip addr show: unexpected output ({exc})") from None
    return sorted(public & local,
                  key=lambda a: ipaddress.get_mixed_type_key(ipaddress.ip_address(a)))


def record(store: ClientStore, op: str, client: str, addresses: Iterable[str]) -> None:
    """add-client / del-client: *client* for each of this node's *addresses*."""
    for ip in addresses:
        if op == "add-client":
            store.add(ip, client)
        else:
            store.remove(ip, client)


def monitor_records(clients: Iterable[str], my_name: str) -> dict[str, str]:
    """sm-notify's notify list: a file per client (named by it), one record each."""
    loopback = struct.unpack("=I", socket.inet_aton("127.0.0.1"))[0]  # s_addr, as read
    return {c: MONITOR_RECORD.format(addr=loopback, prog=NLM_PROG, vers=NLM_VERS,
                                     proc=NLM_SM_NOTIFY, priv="0" * 32, mon_name=c,
                                     my_name=my_name)
            for c in clients}


def nsm_state(now: float) -> int:
    """An NSM state number from the clock: odd ("up"), growing across every node (as
    long as their clocks agree), within the 32-bit signed int sm-notify reads."""
    return (int(now) & 0x7FFFFFFF) | 1


def write_state_dir(directory: Path, clients: Sequence[str], my_name: str,
                    state: int) -> None:
    """Fill *directory* as sm-notify's ``-P`` state directory for *clients*."""
    (directory / "sm").mkdir()
    (directory / "sm.bak").mkdir()  # sm-notify moves sm/* here before it reads them
    for client, text in monitor_records(clients, my_name).items():
        (directory / "sm" / client).write_text(text)
    (directory / "state").write_bytes(struct.pack("=i", state))  # host order, as statd's
    owner = statd_owner()
    if owner is not None:
        # sm-notify drops root for the owner of sm/, as rpc.statd's does: statd's user.
        for path in (directory, *directory.rglob("*")):
            os.chown(path, *owner)


def statd_owner() -> tuple[int, int] | None:
    """The (uid, gid) rpc.statd runs as (its directory's owner) when we are root and
    it is another; else None."""
    if os.geteuid() != 0:
        return None
    try:
        st = STATD_DIR.stat()
    except FileNotFoundError:
        return None
    return None if st.st_uid == 0 else (st.st_uid, st.st_gid)


def host_name(ip: str) -> str | None:
    """The address's host name, as sm-notify -v looks it up; None without one."""
    try:
        name, _ = socket.getnameinfo((ip, 0), socket.NI_NAMEREQD)
    except (socket.gaierror, OSError):
        return None
    return name


def sm_notify_argv(program: str, directory: Path, ip: str, named: bool,
                   timeout: float) -> list[str]:
    """sm-notify in the foreground (-d: we wait, and read its log), forced (-f: it
    ran at boot), leaving the state file alone (-n), retrying no longer than we wait."""
    argv = [program, "-d", "-f", "-n", "-m", str(max(1, math.ceil(timeout / 60))),
            "-P", str(directory)]
    return [*argv, "-v", ip] if named else argv


def sm_notify_program(env: Mapping[str, str]) -> str:
    found = shutil.which(SM_NOTIFY, path=os.pathsep.join(
        p for p in (env.get("PATH", ""), SYSTEM_PATH) if p))
    if found is None:
        raise CtdbError("sm-notify is not installed (Debian: nfs-common)")
    return found


def _last_line(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def notify_address(store: ClientStore, ip: str, *, program: str, workdir: Path,
                   deadline: float, now: Callable[[], float] = time.time) -> Outcome:
    """Take *ip*'s clients out of the store and run sm-notify for them until *deadline*
    (time.monotonic())."""
    clients = tuple(store.clients(ip))
    if not clients:
        return Outcome(ip, clients, ok=True)
    for client in clients:
        store.remove(ip, client)
    named = host_name(ip) is not None
    workdir.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix=f"{ip}.", dir=workdir))
    try:
        write_state_dir(directory, clients, ip, nsm_state(now()))
        left = deadline - time.monotonic()
        if left <= 0:
            return Outcome(ip, clients, ok=False, detail="no time left")
        try:
            run = subprocess.run(sm_notify_argv(program, directory, ip, named, left),
                                 stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                 errors="replace", timeout=left, check=False)
        except subprocess.TimeoutExpired:
            return Outcome(ip, clients, ok=False,
                           detail=f"not all answered within {left:.1f} s")
        if run.returncode != 0:
            return Outcome(ip, clients, ok=False,
                           detail=f"sm-notify exited {run.returncode}: "
                                  f"{_last_line(run.stderr + run.stdout)}")
        note = "" if named else f"{ip} has no host name: named by its address"
        return Outcome(ip, clients, ok=True, detail=note)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def notify(store: ClientStore, ips: Sequence[str], *, timeout: float = NOTIFY_TIMEOUT,
           env: Mapping[str, str] | None = None) -> list[Outcome]:
    """Notify the clients of every address in *ips* at once; each address's outcome,
    in order, within *timeout* seconds (an address whose storage hangs included)."""
    env = os.environ if env is None else env
    program = sm_notify_program(env)
    workdir = Path(env.get("CTDB_SCRIPT_VARDIR") or DEFAULT_SCRIPT_VARDIR) / "nfs" / "sm-notify"
    deadline = time.monotonic() + timeout
    results: dict[str, Outcome] = {}

    def one(ip: str) -> None:
        try:
            results[ip] = notify_address(store, ip, program=program, workdir=workdir,
                                         deadline=deadline)
        except (CtdbError, OSError) as exc:
            results[ip] = Outcome(ip, (), ok=False, detail=str(exc) or type(exc).__name__)

    # Daemon threads: one stuck in the file system (a hung mount) is left behind.
    threads = [threading.Thread(target=one, args=(ip,), daemon=True) for ip in ips]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()) + 1.0)  # sm-notify is killed by then
    return [results.get(ip, Outcome(ip, (), ok=False, detail="timed out")) for ip in ips]


def spawn_notify(ips: Sequence[str]) -> None:
    """``notify --syslog IPS``, detached (own session, no pipes): nobody waits for it."""
    subprocess.Popen([sys.executable, "-m", "nfs_scripts.statd_callout", "notify",
                      "--syslog", *ips],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True, cwd="/")


class _Reporter:
    """One line per message: stderr, or syslog for the detached notify."""

    def __init__(self, use_syslog: bool) -> None:
        self.syslog = use_syslog
        if use_syslog:
            import syslog  # noqa: PLC0415

            syslog.openlog(PROG, syslog.LOG_PID, syslog.LOG_DAEMON)

    def __call__(self, message: str, *, error: bool = False) -> None:
        if self.syslog:
            import syslog  # noqa: PLC0415

            syslog.syslog(syslog.LOG_WARNING if error else syslog.LOG_NOTICE, message)
        elif error:
            print(f"{PROG}: {message}", file=sys.stderr)
        else:
            print(message)


def _parse_notify(args: list[str]) -> tuple[float, bool, list[str]]:
    timeout, use_syslog, ips = NOTIFY_TIMEOUT, False, []
    rest = iter(args)
    for arg in rest:
        if arg == "--syslog":
            use_syslog = True
        elif arg == "--timeout":
            text = next(rest, "")
            try:
                timeout = float(text)
            except ValueError:
                raise CtdbError(f"notify: --timeout {text!r} is not a number of seconds"
                                ) from None
            if not 0 < timeout <= 600:
                raise CtdbError(f"notify: --timeout {text} is not between 0 and 600 s")
        elif arg.startswith("-"):
            raise CtdbError(f"notify: unknown option {arg}")
        elif (ip := server_address(arg)) not in ips:
            ips.append(ip)
    return timeout, use_syslog, ips


def _notify(args: list[str]) -> int:
    timeout, use_syslog, ips = _parse_notify(args)
    report = _Reporter(use_syslog)
    try:
        ips = ips or held_addresses()
        store = configured_store()
        store.ensure(statd_owner())  # for statd's add-client, at this node's first takeip
        outcomes = notify(store, ips, timeout=timeout)
    except (CtdbError, OSError) as exc:
        report(f"notify failed: {exc or type(exc).__name__}", error=True)
        return 1
    for outcome in outcomes:
        if use_syslog and outcome.ok and not outcome.clients:
            continue  # every takeip runs this: no NFSv3 clients is no news
        report(outcome.line(), error=not outcome.ok)
        if outcome.ok and outcome.detail:
            report(outcome.detail)
    return 0 if all(o.ok for o in outcomes) else 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    op, rest = (args[0], args[1:]) if args else ("", [])
    try:
        if op in ("add-client", "del-client"):
            if len(rest) not in (1, 2):  # statd adds its own name: not needed
                print(f"{PROG}: {op} needs a client", file=sys.stderr)
                return 1
            client = client_name(rest[0])  # refused before anything is asked
            store = configured_store()
            record(store, op, client, held_addresses())
            return 0
        if op == "sm-notify":
            return 0  # a client restarted: statd tells the lock manager itself
        if op == "notify":
            return _notify(rest)
    except (CtdbError, OSError) as exc:
        print(f"{PROG}: {op} failed: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    print(USAGE, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
