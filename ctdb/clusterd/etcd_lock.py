"""A cluster lock helper on etcd, speaking CTDB's mutex helper protocol.

    [cluster]
        cluster lock = !/usr/bin/python3 -m ctdb.clusterd.etcd_lock \
            --endpoints http://198.18.1.1:2379,http://198.18.1.2:2379 --ttl 2 pyctdb/lock

It prints ``0`` once it holds the lock (``1`` contention, ``2`` timeout, ``3`` error,
then exits) and keeps it while it runs: the key is attached to an etcd lease that it
renews every third of the TTL.  The lock is lost - and the helper exits, which tells
clusterd to step down at once - when a renewal fails for longer than the lease can
outlive it.  SIGTERM revokes the lease (an instant hand-over); when clusterd dies the
helper notices its parent changed and exits too.  Only the standard library: it talks to
etcd's v3 JSON gateway over HTTP.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from typing import Any

TAKEN, CONTENTION, TIMEOUT, ERROR = "0", "1", "2", "3"


class EtcdError(Exception):
    pass


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Etcd:
    def __init__(self, endpoints: list[str], timeout: float) -> None:
        self.endpoints = endpoints
        self.timeout = timeout
        self.current = 0

    def call(self, path: str, body: dict[str, Any], timeout: float | None = None,
             deadline: float | None = None) -> Any:
        """POST to the first endpoint that answers; EtcdError when none does.

        With a *deadline* (time.monotonic()) the whole call, every endpoint tried
        included, ends by then: a renewal must never outlast the lease it renews.
        """
        last: Exception | None = None
        for i in range(len(self.endpoints)):
            per_try = timeout or self.timeout
            if deadline is not None:
                per_try = min(per_try, deadline - time.monotonic())
                if per_try <= 0:
                    break
            url = self.endpoints[(self.current + i) % len(self.endpoints)]
            # Endpoints are checked to be http(s) URLs in main().
            req = urllib.request.Request(f"{url}/v3/{path}",  # noqa: S310
                                         data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=per_try) as resp:  # noqa: S310
                    self.current = (self.current + i) % len(self.endpoints)
                    return json.loads(resp.read() or b"{}")
            except (OSError, ValueError, urllib.error.URLError) as exc:
                last = exc
        raise EtcdError(f"no etcd endpoint answered: {last}")


def take(etcd: Etcd, key: str, ttl: int) -> tuple[str, str]:
    """Try once: (result, lease id)."""
    lease = etcd.call("lease/grant", {"TTL": ttl})
    lease_id = str(lease.get("ID", ""))
    if not lease_id:
        return ERROR, ""
    txn = {
        "compare": [{"key": _b64(key), "target": "CREATE", "create_revision": "0"}],
        "success": [{"request_put": {"key": _b64(key), "value": _b64(str(os.getpid())),
                                     "lease": lease_id}}],
    }
    result = etcd.call("kv/txn", txn)
    if result.get("succeeded"):
        return TAKEN, lease_id
    etcd.call("kv/lease/revoke", {"ID": lease_id})
    return CONTENTION, ""


def hold(etcd: Etcd, lease_id: str, ttl: int, parent: int) -> int:
    """Renew until told to stop, the parent goes, or the lease may have lapsed."""
    stop = False

    def on_term(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    period = ttl / 3
    # When the lease was last surely renewed: the time a successful keepalive was *sent*
    # (etcd renews on receipt, so the lease lives at least ttl from then).
    last_ok = time.monotonic()
    while not stop and os.getppid() == parent:
        # Give up before the lease can lapse, so no two holders ever overlap.
        give_up = last_ok + ttl - period
        sent = time.monotonic()
        if sent >= give_up:
            print("etcd_lock: cannot renew the lease in time; giving the lock up",
                  file=sys.stderr)
            return 1
        try:
            answer = etcd.call("lease/keepalive", {"ID": lease_id}, timeout=period,
                               deadline=give_up)
            result = answer.get("result", answer)
            if int(result.get("TTL", 0)) <= 0:
                print("etcd_lock: lease expired", file=sys.stderr)
                return 1
            last_ok = sent
        except EtcdError as exc:
            print(f"etcd_lock: cannot renew the lease: {exc}", file=sys.stderr)
        wake = min(time.monotonic() + period, last_ok + ttl - period)
        while not stop and time.monotonic() < wake and os.getppid() == parent:
            time.sleep(min(0.05, max(0.0, wake - time.monotonic())))
    with contextlib.suppress(EtcdError):
        etcd.call("kv/lease/revoke", {"ID": lease_id}, timeout=1.0)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ctdb_etcd_lock")
    p.add_argument("--endpoints", required=True, help="comma-separated etcd client URLs")
    p.add_argument("--ttl", type=int, default=2, help="lease seconds (default 2)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds per etcd request")
    p.add_argument("key", nargs="?", default="pyctdb/cluster-lock")
    args = p.parse_args(argv)
    parent = os.getppid()
    endpoints = [e.rstrip("/") for e in args.endpoints.split(",") if e]
    if not endpoints or not all(e.startswith(("http://", "https://")) for e in endpoints):
        print("etcd_lock: --endpoints must be http:// or https:// URLs", file=sys.stderr)
        sys.stdout.write(ERROR)
        return 2
    etcd = Etcd(endpoints, args.timeout)
    try:
        result, lease = take(etcd, args.key, max(1, args.ttl))
    except EtcdError as exc:
        print(f"etcd_lock: {exc}", file=sys.stderr)
        result, lease = TIMEOUT, ""
    sys.stdout.write(result)
    sys.stdout.flush()
    if result != TAKEN:
        return 0
    return hold(etcd, lease, max(1, args.ttl), parent)


if __name__ == "__main__":
    sys.exit(main())
