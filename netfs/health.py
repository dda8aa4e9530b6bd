"""Health checks of this node's file services, each answering ``(healthy, reason)``.

The reason is one line for ``ctdb status``-like output and logs, also when healthy.
Checks probe the service itself rather than its unit state: a SIGSTOPped smbd is
"active" to systemd and its kernel still completes TCP handshakes, so the smbd checks
are a listening socket (cheap, catches a daemon that closed its port) and a request it
must answer (``smbcontrol smbd ping``); Ganesha is asked over D-Bus for its exports.
"""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

TCP_LISTEN = 0x0A  # include/net/tcp_states.h
SMB_PORT = 445


@dataclass(frozen=True)
class TcpSocket:
    """One row of /proc/net/tcp or tcp6."""

    address: str
    port: int
    state: int
    remote: str = ""  # the peer, for connected sockets
    remote_port: int = 0


def _address(text: str, byteorder: Literal["little", "big"]) -> str:
    """An address as /proc prints it: hex of 32-bit words, each in host byte order."""
    raw = bytes.fromhex(text)
    if len(raw) not in (4, 16):
        raise ValueError(f"{len(raw)}-byte address")
    words = [raw[i:i + 4] for i in range(0, len(raw), 4)]
    if byteorder == "little":
        words = [w[::-1] for w in words]
    address = ipaddress.ip_address(b"".join(words))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return f"::ffff:{address.ipv4_mapped}"  # dotted on every Python version
    return str(address)


def parse_proc_net_tcp(text: str, byteorder: Literal["little", "big"] = sys.byteorder,
                       ) -> list[TcpSocket]:
    """The sockets of /proc/net/tcp or tcp6 text; a line that does not parse is skipped."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or not fields[0].endswith(":") or not fields[0][:-1].isdigit():
            continue  # the header, or garbage
        try:
            addr, _, port = fields[1].partition(":")
            raddr, _, rport = fields[2].partition(":")
            found.append(TcpSocket(_address(addr, byteorder), int(port, 16),
                                   int(fields[3], 16), _address(raddr, byteorder),
                                   int(rport, 16)))
        except ValueError:
            continue
    return found


def listening(sockets: Iterable[TcpSocket], port: int) -> list[str]:
    """Addresses with a socket listening on TCP *port* (``0.0.0.0``/``::`` for any)."""
    return sorted({s.address for s in sockets if s.port == port and s.state == TCP_LISTEN})


def tcp_listening(port: int, proc_net: Path = Path("/proc/net")) -> list[str]:
    """Addresses listening on TCP *port* in the network namespace *proc_net* shows.

    ``/proc/net`` is the caller's namespace; ``/proc/PID/net`` is PID's.
    """
    sockets: list[TcpSocket] = []
    for name in ("tcp", "tcp6"):
        try:
            sockets += parse_proc_net_tcp((proc_net / name).read_text())
        except FileNotFoundError:
            continue  # no IPv6 in this kernel
    return listening(sockets, port)


def smbd_listening(port: int = SMB_PORT,
                   proc_net: Path = Path("/proc/net")) -> tuple[bool, str]:
    try:
        found = tcp_listening(port, proc_net)
    except OSError as exc:
        return False, f"cannot read {proc_net}: {exc.strerror}"
    if not found:
        return False, f"nothing listens on TCP port {port}"
    return True, f"listening on TCP port {port} ({', '.join(found)})"


def parse_ping(output: str) -> list[int]:
    """The pids that answered ``smbcontrol ... ping`` (``PONG from pid N`` lines)."""
    pids = []
    for line in output.splitlines():
        words = line.split()
        if words[:3] == ["PONG", "from", "pid"] and len(words) > 3:
            pid = words[3].split(":")[-1]  # clustered Samba prints VNN:PID
            if pid.isdigit():
                pids.append(int(pid))
    return pids


def smbd_ping(timeout: float = 5.0, config: str | None = None,
              smbcontrol: str = "smbcontrol") -> tuple[bool, str]:
    """smbd's main process answers a ping through Samba's messaging (a request it serves)."""
    argv = [smbcontrol, *(["--configfile", config] if config else []), "--timeout",
            str(max(1, int(timeout))), "smbd", "ping"]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 1,
                                check=False)
    except FileNotFoundError:
        return False, f"{smbcontrol} is missing"
    except subprocess.TimeoutExpired:
        return False, f"smbd did not answer a ping within {timeout:g}s"
    pids = parse_ping(result.stdout)
    if result.returncode == 0 and pids:
        return True, f"smbd answers ping (pid {pids[0]})"
    said = (result.stderr or result.stdout).strip().splitlines()
    return False, f"smbd does not answer ping: {said[-1] if said else result.returncode}"


async def ganesha_alive(bus: Any = None, address: str | None = None,
                        timeout: float = 5.0) -> tuple[bool, str]:
    """NFS-Ganesha answers ShowExports over D-Bus (on *bus*, or a bus at *address*/system)."""
    from netfs import dbus, ganesha  # noqa: PLC0415 - smbd's checks need no D-Bus library

    own = bus is None
    try:
        async with asyncio.timeout(timeout):
            if own:
                bus = await dbus.connect(address)
            exports = await ganesha.show_exports(bus, timeout=timeout)
    except TimeoutError:
        return False, f"NFS-Ganesha did not answer over D-Bus within {timeout:g}s"
    except Exception as exc:  # whatever stops the answer is the verdict, not a crash
        return False, f"NFS-Ganesha does not answer over D-Bus: {exc or type(exc).__name__}"
    finally:
        if own and bus is not None:
            bus.disconnect()
    paths = ", ".join(e.path for e in exports if e.export_id != 0) or "none"
    return True, f"NFS-Ganesha answers over D-Bus, exports: {paths}"
