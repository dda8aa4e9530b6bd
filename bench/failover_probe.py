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

Two optional extras, for benchmarks that also look for an address answered by two nodes
(``bench.failover``); without them the probe behaves as described above:

* ``--arp-iface IFACE --arp-source IP``: every ``--arp-interval`` seconds (20 ms) a
  broadcast ARP request for A is sent from a raw socket on IFACE, from IP (an otherwise
  unused address of the client's subnet) and a locally administered MAC that changes
  with every request (``02:bf:a9:00:00:NN``, NN the request's number modulo 64).  Every
  node that answers ARP for A replies to that MAC, so each reply names its request, and
  the client's kernel drops the replies (they are not for its MAC): its neighbour table
  and so the connect probe are untouched.  The MACs answering each request are the
  ``arp`` timeline: ``[[t, [mac, ...]], ...]``, one entry each time the set changes (t
  the request's send time); a request's set is final once two more were sent.
* ``--follow``: after the JSON line, keep probing until ``stop`` arrives on stdin (or
  ``--follow-timeout``), then print a second JSON line: the counts so far, the ``arp``
  timeline, ``connects`` (the outcome of every connect by its start time, one entry per
  change: ``victim``, ``other``, ``unanswered``, ``refused``, ``error``) and
  ``victim_after_other``: the completion times of connects the victim answered after
  another node had first answered (the first line's ``t``).

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
ETH_P_ARP = 0x0806
ARP_ROUNDS = 64  # distinct source MACs of the ARP watcher (a reply names its request)
ARP_SETTLE = 2  # a request's answers are final once this many later requests were sent
TIMELINE_CAP = 5000  # entries kept per timeline


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


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


class ArpWatch:
    """Who answers ARP for the address: see the module's docstring."""

    def __init__(self, iface: str, address: str, source_ip: str, interval: float) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
        self.sock.bind((iface, ETH_P_ARP))
        self.sock.setblocking(False)
        self.target = socket.inet_aton(address)
        self.source = socket.inet_aton(source_ip)
        self.interval = interval
        self.next_send = 0.0
        self.rounds = 0  # requests sent
        self.sent: dict[int, float] = {}  # request number -> send time, until final
        self.answers: dict[int, set[str]] = {}
        self.state: list[str] | None = None
        self.timeline: list[list[Any]] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    @staticmethod
    def _mac(n: int) -> bytes:
        return bytes([0x02, 0xBF, 0xA9, 0x00, 0x00, n % ARP_ROUNDS])

    def send(self, now: float) -> None:
        n = self.rounds
        mac = self._mac(n)
        frame = (b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
                 + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
                 + mac + self.source + b"\x00" * 6 + self.target)
        with contextlib.suppress(OSError):
            self.sock.send(frame)
        self.sent[n] = now
        self.answers[n] = set()
        self.rounds += 1
        self.next_send = max(self.next_send + self.interval, now)
        self._settle(final_before=self.rounds - ARP_SETTLE)

    def receive(self) -> None:
        while True:
            try:
                frame = self.sock.recv(128)
            except (BlockingIOError, InterruptedError):
                return
            if len(frame) < 42 or frame[12:14] != struct.pack("!H", ETH_P_ARP):
                continue
            op = struct.unpack("!H", frame[20:22])[0]
            tha = frame[32:38]
            if op != 2 or frame[28:32] != self.target or tha[:5] != self._mac(0)[:5]:
                continue
            # The newest request with this MAC (a reply is never 64 requests late).
            n = self.rounds - 1 - ((self.rounds - 1 - tha[5]) % ARP_ROUNDS)
            if n in self.answers:
                self.answers[n].add(_mac_text(frame[22:28]))

    def _settle(self, final_before: int) -> None:
        for n in sorted(k for k in self.sent if k < final_before):
            macs = sorted(self.answers.pop(n))
            at = self.sent.pop(n)
            if macs != self.state and len(self.timeline) < TIMELINE_CAP:
                self.timeline.append([at, macs])
            self.state = macs

    def finish(self) -> list[list[Any]]:
        self._settle(final_before=self.rounds)
        return self.timeline

    def close(self) -> None:
        self.sock.close()


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
        self.next_launch = self.start
        # --follow: every connect's (start, end, outcome); the first other answer.
        self.record = bool(getattr(args, "follow", False))
        self.events: list[tuple[float, float, str]] = []
        self.first_other: float | None = None
        self.arp: ArpWatch | None = None
        if getattr(args, "arp_iface", None):
            self.arp = ArpWatch(args.arp_iface, args.address, args.arp_source,
                                args.arp_interval)
            self.arp.next_send = self.start
            self.poller.register(self.arp.fileno(), select.POLLIN)

    def _event(self, started: float, done: float, outcome: str) -> None:
        if self.record:
            self.events.append((started, done, outcome))

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
            self._event(now, now, "error")
            sock.close()

    def expire(self, now: float) -> None:
        for fd, (sock, started) in list(self.pending.items()):
            if now - started > self.args.attempt_timeout:
                self.poller.unregister(fd)
                del self.pending[fd]
                self.counts["unanswered"] += 1
                self._event(started, now, "unanswered")
                _abort(sock)

    def completed(self, fd: int, done: float) -> bool:
        """One connect finished: True when another node than the victim answered."""
        sock, started = self.pending.pop(fd)
        self.poller.unregister(fd)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err != 0:
            if err == errno.ECONNREFUSED:
                self.counts["refused"] += 1
                if self.first_refused is None:
                    self.first_refused = done
                self._event(started, done, "refused")
            else:
                self.counts["other_errors"] += 1
                self._event(started, done, "error")
            sock.close()
            return False
        mac = arp_mac(self.args.address)
        _abort(sock)
        if mac is not None and mac != self.victim:
            if self.first_other is None:
                self.first_other = done
            self._event(started, done, "other")
            return True
        self.counts["victim_answers"] += 1
        self.last_victim = done
        self._event(started, done, "victim")
        return False

    def abort_pending(self) -> None:
        for fd, (sock, _t) in self.pending.items():
            with contextlib.suppress(KeyError, ValueError):
                self.poller.unregister(fd)
            _abort(sock)
        self.pending.clear()

    def report(self, t: float | None) -> dict[str, Any]:
        return {"t": t, "mac": arp_mac(self.args.address) if t is not None else None,
                "start": self.start, "first_refused": self.first_refused,
                "last_victim_answer": self.last_victim, **self.counts}

    def result(self, t: float | None) -> dict[str, Any]:
        self.abort_pending()
        report = self.report(t)
        if self.arp is not None:
            report["arp"] = self.arp.finish()
            report["arp_requests"] = self.arp.rounds
        return report

    def _loop(self, deadline: float, until_other: bool, stdin_fd: int | None = None
              ) -> float | None:
        """Probe until *deadline*; the time another node first answered when
        *until_other*, else until a line arrives on *stdin_fd* (None either way)."""
        clock = time.monotonic
        arp = self.arp
        while (now := clock()) < deadline:
            if now >= self.next_launch:
                self.launch(now)
                self.next_launch = max(self.next_launch + self.args.interval, now)
            if arp is not None and now >= arp.next_send:
                arp.send(now)
            self.expire(now)
            wake = self.next_launch if arp is None else min(self.next_launch, arp.next_send)
            wait_ms = max(0, math.ceil((wake - clock()) * 1000))
            for fd, _event in self.poller.poll(wait_ms):
                done = clock()
                if arp is not None and fd == arp.fileno():
                    arp.receive()
                elif fd == stdin_fd:
                    return None
                elif fd in self.pending and self.completed(fd, done) and until_other:
                    return done
        return None

    def run(self) -> dict[str, Any]:
        t = self._loop(self.start + self.args.timeout, until_other=True)
        if self.record:
            return self.report(t)  # the connects go on: see follow()
        return self.result(t)

    def follow(self, stdin_fd: int) -> dict[str, Any]:
        """Go on probing until a line on *stdin_fd*: the timelines (module docstring)."""
        self.poller.register(stdin_fd, select.POLLIN)
        self._loop(time.monotonic() + self.args.follow_timeout, until_other=False,
                   stdin_fd=stdin_fd)
        report = self.result(self.first_other)
        report["end"] = time.monotonic()
        connects: list[list[Any]] = []
        for started, _done, outcome in sorted(self.events):
            if (not connects or connects[-1][1] != outcome) and len(connects) < TIMELINE_CAP:
                connects.append([started, outcome])
        report["connects"] = connects
        first = self.first_other
        report["victim_after_other"] = [] if first is None else [
            done for _s, done, outcome in self.events
            if outcome == "victim" and done > first][:TIMELINE_CAP]
        return report

    def close(self) -> None:
        self.abort_pending()
        if self.arp is not None:
            self.arp.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.failover_probe")
    p.add_argument("--address", required=True)
    p.add_argument("--port", type=int, default=445)
    p.add_argument("--victim-mac", required=True)
    p.add_argument("--interval", type=float, default=0.002)
    p.add_argument("--attempt-timeout", type=float, default=0.2)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--arp-iface", help="watch who answers ARP for the address, from here")
    p.add_argument("--arp-source", help="the ARP watcher's sender address (unused by anyone)")
    p.add_argument("--arp-interval", type=float, default=0.02)
    p.add_argument("--follow", action="store_true",
                   help="after the result, go on until 'stop' on stdin; print the timelines")
    p.add_argument("--follow-timeout", type=float, default=120.0)
    args = p.parse_args(argv)
    if args.arp_iface and not args.arp_source:
        p.error("--arp-iface needs --arp-source")
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    prober = Prober(args)
    try:
        print(json.dumps(prober.run()), flush=True)
        if args.follow:
            print(json.dumps(prober.follow(sys.stdin.fileno())), flush=True)
    finally:
        prober.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
