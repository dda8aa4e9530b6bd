"""What a client sees: every public address asked, over and over, which node serves it.

Every node runs a tiny echo service that answers a connection with the node's name
(``start_echo``): it runs in the node's network namespace, so it answers on whatever
public address the node holds.  The probe runs in the client namespace and, every
``interval``, opens a connection to each address and reads the answer: a request and its
answer, not just a TCP handshake (a frozen node's kernel still completes handshakes).
It prints one JSON line per change of who serves an address::

    {"t": 1.234, "ip": "198.18.2.101", "node": "node1"}    # "node": null: no answer

``t`` is seconds since the probe started.  ``ctdb-sandbox probe`` runs it from the shell;
tests and the demo use ``Probe``.  ``python -m ctdb.sandbox.probe echo NAME PORT`` and
``... client IPS PORT SECONDS INTERVAL`` are the two programs.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ctdb.sandbox.lab import Sandbox

PORT = 7777
ANSWER_TIMEOUT = 0.05  # seconds a probe waits for one answer


def echo(name: str, port: int) -> None:
    """Answer every connection with *name* (the node's), then close it."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))  # noqa: S104 - the node's every address
    server.listen(64)
    while True:
        conn, _ = server.accept()
        try:
            conn.sendall(name.encode())
        except OSError:
            pass
        finally:
            conn.close()


def ask(ip: str, port: int, timeout: float = ANSWER_TIMEOUT) -> str | None:
    """The name the service at *ip* answers, or None."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((ip, port))
            return sock.recv(64).decode(errors="replace") or None
        except OSError:
            return None


def client(ips: Sequence[str], port: int, seconds: float, interval: float) -> None:
    """Print a JSON line whenever the answer for an address changes."""
    last: dict[str, str | None] = {}
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        for ip in ips:
            who = ask(ip, port)
            if ip not in last or last[ip] != who:
                last[ip] = who
                print(json.dumps({"t": round(time.monotonic() - started, 4), "ip": ip,
                                  "node": who}), flush=True)
        time.sleep(interval)


def start_echo(sb: Sandbox, port: int = PORT) -> None:
    """The echo service on every node (again: a second one cannot bind and exits)."""
    for node in sb.topo.nodes:
        argv = [sys.executable, "-m", "ctdb.sandbox.probe", "echo", f"node{node.pnn}",
                str(port)]
        if sb.options.backend == "nspawn":
            sb.exec(node.pnn, ["systemd-run", f"--unit=pyctdb-echo-{port}", "--collect",
                               *argv])
        else:  # gone with the node's namespace (``down`` kills what runs in it)
            subprocess.Popen(["ip", "netns", "exec", node.netns, *argv],
                             start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)


class Probe:
    """``with Probe(sb) as p: ...`` runs the client probe meanwhile; ``p.events`` after."""

    def __init__(self, sb: Sandbox, ips: Sequence[str] = (), port: int = PORT,
                 interval: float = 0.01, seconds: float = 3600.0) -> None:
        self.argv = sb.client_argv([sys.executable, "-m", "ctdb.sandbox.probe", "client",
                                    ",".join(ips or sb.topo.public_ips), str(port),
                                    str(seconds), str(interval)])
        self.events: list[dict[str, Any]] = []
        self._proc: subprocess.Popen[str] | None = None
        self._reader = threading.Thread()

    def __enter__(self) -> Probe:
        self._proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        """Events as they come, so a caller can wait for the first answers."""
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        for line in proc.stdout:
            if line.strip():
                self.events.append(json.loads(line))

    def __exit__(self, *exc: object) -> None:
        proc = self._proc
        if proc is None:
            return
        proc.terminate()
        proc.wait()
        self._reader.join(timeout=5)

    def outages(self, ip: str, after: float = 0.0) -> list[tuple[float, float, str | None,
                                                                  str | None]]:
        """(from, to, served before, served after) of each gap in answers for *ip*."""
        mine = [e for e in self.events if e["ip"] == ip]
        gaps = []
        before: str | None = None
        down: float | None = None
        for e in mine:
            if e["node"] is None and down is None and e["t"] >= after:
                down = e["t"]
            elif e["node"] is not None:
                if down is not None:
                    gaps.append((down, e["t"], before, e["node"]))
                    down = None
                before = e["node"]
        return gaps


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 3 and args[0] == "echo":
        echo(args[1], int(args[2]))
        return 0
    if len(args) == 5 and args[0] == "client":
        with contextlib.suppress(KeyboardInterrupt):
            client(args[1].split(","), int(args[2]), float(args[3]), float(args[4]))
        return 0
    print("usage: python -m ctdb.sandbox.probe echo NAME PORT | client IPS PORT SECONDS "
          "INTERVAL", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
