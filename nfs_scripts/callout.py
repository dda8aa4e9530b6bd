"""``pyctdb-nfs-callout``: CTDB's NFS callout interface, for NFS-Ganesha.

CTDB's 60.nfs event script delegates to a callout (``CTDB_NFS_CALLOUT``) with these
operations; ``nfs_scripts/events/legacy/60.nfs.script`` does the same, so CTDB's own
``nfs-ganesha-callout`` could run in this one's place.  What each does here:

* ``register``: the operations this callout wants, one per line;
* ``startipreallocate``: a grace period on this node, so no client can take state that
  another client is about to reclaim through a moved address (every node runs this
  before any address is released);
* ``takeip IP``: a grace period for that address, loading its clients' records from the
  recovery directory on shared storage, so they reclaim their opens and locks here;
  then its NFSv3 clients (recorded by rpc.statd's ha-callout, ``pyctdb-statd-callout``)
  are sent SM_NOTIFY so they reclaim their locks: detached, under its own deadline, so
  the takeover never waits for it (nfs_scripts/statd_callout.py);
* ``releaseip IP``: Ganesha forgets that address's clients (they reclaim elsewhere);
* ``monitor-post``: Ganesha answers over D-Bus, or the node is unhealthy;
* ``startup``, ``shutdown``, ``start``, ``stop``, ``monitor-pre``: nothing; serviced
  starts and stops the service (docs/events.md).

Exit status 0 on success; 1 with one line on stderr naming what failed.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from ctdb.errors import CtdbError

OPERATIONS = ("register", "startup", "shutdown", "start", "stop", "monitor-pre",
              "monitor-post", "takeip", "releaseip", "startipreallocate")
HANDLED = ("startipreallocate", "takeip", "releaseip", "monitor-post")
TIMEOUT = 10.0


async def _with_bus(action: Callable[[Any], Coroutine[Any, Any, None]]) -> None:
    from netfs import dbus  # noqa: PLC0415 - register and no-ops stay fast

    bus = await dbus.connect(os.environ.get("PYCTDB_GANESHA_BUS") or None)
    try:
        await action(bus)
    finally:
        bus.disconnect()


async def _run(op: str, args: list[str]) -> None:
    from netfs import ganesha, health  # noqa: PLC0415 - as above

    if op == "startipreallocate":
        await _with_bus(lambda bus: ganesha.grace(bus, None, timeout=TIMEOUT))
    elif op == "takeip":
        await _with_bus(lambda bus: ganesha.grace(bus, args[0], timeout=TIMEOUT))
    elif op == "releaseip":
        await _with_bus(lambda bus: ganesha.grace(bus, args[0], ganesha.GraceEvent.RELEASE_IP,
                                                  timeout=TIMEOUT))
    elif op == "monitor-post":
        ok, why = await health.ganesha_alive(timeout=TIMEOUT)
        if not ok:
            raise CtdbError(why)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in OPERATIONS:
        print(f"usage: pyctdb-nfs-callout {{{'|'.join(OPERATIONS)}}} [IP]", file=sys.stderr)
        return 1
    op, rest = args[0], args[1:]
    if op == "register":
        print("\n".join(HANDLED))
        return 0
    if op in ("takeip", "releaseip") and len(rest) != 1:
        print(f"pyctdb-nfs-callout: {op} needs one address", file=sys.stderr)
        return 1
    if op not in HANDLED:
        return 0
    try:
        asyncio.run(_run(op, rest))
    except (CtdbError, OSError, ValueError, TimeoutError) as exc:
        print(f"pyctdb-nfs-callout: {op} failed: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    if op == "takeip":
        _notify_statd_clients(rest[0])
    return 0


def _notify_statd_clients(ip: str) -> None:
    """Start SM_NOTIFY for *ip*'s NFSv3 clients, in the grace just begun; a failure to
    start it is reported, and does not fail the takeover."""
    from nfs_scripts import statd_callout  # noqa: PLC0415 - register stays fast

    try:
        statd_callout.spawn_notify([ip])
    except OSError as exc:
        print(f"pyctdb-nfs-callout: takeip {ip}: cannot start the NFSv3 client notify: "
              f"{exc.strerror or exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
