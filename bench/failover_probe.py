"""A failover probe, run inside a client namespace: ``python -m bench.failover_probe
--address A --victim-mac MAC``; prints ``ready``, waits for ``go`` on stdin, then one
JSON line once a TCP connect to A:PORT succeeds through a MAC other than the victim's.

Every ``--interval`` seconds (default 2 ms) a new non-blocking connect is started, and up
to ``--attempt-timeout`` seconds' worth stay outstanding at once: while the client's
neighbour entry for A still names a node that no longer holds A, SYNs to it vanish, and
a later attempt (sent after a gratuitous ARP updated the entry) must not wait for an
earlier one's one-second SYN retransmission.  A refused connect (RST: the address is
there, nothing listens) fails at once and is simply counted.

Which node answered: a connect that succeeded sent its SYN to the MAC of the client's
neighbour entry for A, and only the node owning that MAC can have answered (another
node's kernel drops a frame for an address it does not hold).  So after each successful
connect the entry is read from ``/proc/net/arp`` (this namespace's, one small file read,
no netlink) and compared with the victim's public interface's MAC.  The entry could only
have changed between the SYN and the read through a gratuitous ARP from the new owner,
and then the victim (whose service is down) did not answer either: a success is never
credited to the wrong side.  The time reported is the moment the connect completed
(``time.monotonic()``, the same clock as the caller's in any namespace), before the read.

Imports nothing of pyctdb: the probe costs the same whichever cluster it watches.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import select
import socket
import struct
import sys
import time
from typing import Any

ARP_COMPLETE = 0x2


def arp_mac(address: str) -> str | None:
    """The MAC of this namespace's complete neighbour entry for *address*."""
    with open("/proc/net/arp") as f:
        next(f, None)
        for line in f:
            fields = line.split()
            if len(fields) >= 4 and fields[0] == address and int(fields[2], 16) & ARP_COMPLETE:
                return fields[3].lower()
    return None


def _abort(sock: socket.socket) -> None:
    """Close with a RST (no FIN handshake, no TIME_WAIT left in the namespace)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Prober:
    """Overlapping non-blocking connects; :meth:`run` until another node answers."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.victim = args.victim_mac.lower()
        self.target = (args.address, args.port)
        self.poller = select.poll()
        self.pending: dict[int, tuple[socket.socket, float]] = {}
        self.counts = {"attempts": 0, "refused": 0, "unanswered": 0, "victim_answers": 0,
                       "other_errors": 0}
        self.first_refused: float | None = None
        self.last_victim: float | None = None
        self.start = time.monotonic()

    def launch(self, now: float) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        self.counts["attempts"] += 1
        rc = sock.connect_ex(self.target)
        if rc in (errno.EINPROGRESS, 0):
            self.pending[sock.fileno()] = (sock, now)
            self.poller.register(sock.fileno(), select.POLLOUT)
        else:
            self.counts["other_errors"] += 1
            sock.close()

    def expire(self, now: float) -> None:
        for fd, (sock, started) in list(self.pending.items()):
            if now - started > self.args.attempt_timeout:
                self.poller.unregister(fd)
                del self.pending[fd]
                self.counts["unanswered"] += 1
                _abort(sock)

    def completed(self, fd: int, done: float) -> bool:
        """One connect finished: True when another node than the victim answered."""
        sock, _started = self.pending.pop(fd)
        self.poller.unregister(fd)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err != 0:
            if err == errno.ECONNREFUSED:
                self.counts["refused"] += 1
                if self.first_refused is None:
                    self.first_refused = done
            else:
                self.counts["other_errors"] += 1
            sock.close()
            return False
        mac = arp_mac(self.args.address)
        _abort(sock)
        if mac is not None and mac != self.victim:
            return True
        self.counts["victim_answers"] += 1
        self.last_victim = done
        return False

    def result(self, t: float | None) -> dict[str, Any]:
        for sock, _t in self.pending.values():
            _abort(sock)
        self.pending.clear()
        return {"t": t, "mac": arp_mac(self.args.address) if t is not None else None,
                "start": self.start, "first_refused": self.first_refused,
                "last_victim_answer": self.last_victim, **self.counts}

    def run(self) -> dict[str, Any]:
        clock = time.monotonic
        deadline = self.start + self.args.timeout
        next_launch = self.start
        while (now := clock()) < deadline:
            if now >= next_launch:
                self.launch(now)
                next_launch = max(next_launch + self.args.interval, now)
            self.expire(now)
            wait_ms = max(0, math.ceil((next_launch - clock()) * 1000))
            for fd, _event in self.poller.poll(wait_ms):
                done = clock()
                if self.completed(fd, done):
                    return self.result(done)
        return self.result(None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.failover_probe")
    p.add_argument("--address", required=True)
    p.add_argument("--port", type=int, default=445)
    p.add_argument("--victim-mac", required=True)
    p.add_argument("--interval", type=float, default=0.002)
    p.add_argument("--attempt-timeout", type=float, default=0.2)
    p.add_argument("--timeout", type=float, default=30.0)
    args = p.parse_args(argv)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    print(json.dumps(Prober(args).run()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
