"""``ctdbd``: start a node from ``CTDB_BASE`` as CTDB's daemon does.

``--foreground`` (or CTDB's ``--interactive``) stays attached, as systemd's
Type=notify unit runs it; otherwise ctdbd detaches.  ``--single-process`` hosts every
daemon as a task in one process.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ctdb import logs
from ctdb.errors import CtdbError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ctdbd", description="pyctdb cluster node daemon")
    p.add_argument("--foreground", action="store_true", help="do not detach")
    p.add_argument("-i", "--interactive", action="store_true",
                   help="do not detach and log to stderr")
    p.add_argument("--single-process", action="store_true",
                   help="host all daemons in one process")
    p.add_argument("--base", type=Path, help="configuration directory (default $CTDB_BASE)")
    p.add_argument("--release-ips", action="store_true",
                   help="remove this node's public addresses and exit (the unit's "
                        "ExecStopPost: after a crash nothing else would)")
    return p.parse_args(argv)


def _detach() -> None:
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    fd = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(fd, target)
    os.close(fd)


def release_ips(base: Path | None) -> int:
    """Delete every configured public address present on this node's interfaces."""
    import asyncio

    from ctdb.config import load
    from ctdb.failoverd.netlink import Netlink

    try:
        config = load(base)
    except CtdbError as exc:
        print(f"ctdbd: {exc}", file=sys.stderr)
        return 1
    public = {p.address.ip for p in config.public_addresses or []}

    async def run() -> int:
        removed = 0
        async with Netlink() as nl:
            for existing in await nl.addresses():
                if existing.address.ip in public:
                    await nl.del_address(existing.interface, existing.address)
                    removed += 1
        return removed

    try:
        removed = asyncio.run(run())
    except CtdbError as exc:
        print(f"ctdbd: {exc}", file=sys.stderr)
        return 1
    if removed:
        print(f"ctdbd: removed {removed} public address(es) left behind", file=sys.stderr)
    _remove_gate()
    return 0


def _remove_gate() -> None:
    """failoverd's nftables gate (failoverd.gate), which a killed ctdbd leaves behind."""
    import shutil
    import subprocess

    from ctdb.failoverd.gate import TABLE

    nft = shutil.which("nft")
    if nft is None:
        return
    for family in ("inet", "arp"):
        subprocess.run([nft, "delete", "table", family, TABLE], capture_output=True,
                       check=False)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from ctdb.masterd.masterd import run_node
    from ctdb.masterd.process import set_process_name
    from ctdb.node import NodeContext

    if args.release_ips:
        return release_ips(args.base)
    try:
        node = NodeContext.load(args.base)
        if args.base is not None:
            os.environ["CTDB_BASE"] = str(args.base)
        location = "stderr" if args.interactive else node.config.conf.log_location
        logs.setup(location, node.config.conf.log_level, "ctdbd")
    except CtdbError as exc:
        print(f"ctdbd: {exc}", file=sys.stderr)
        return 1
    if args.interactive:
        os.environ["CTDB_LOG_LOCATION"] = "stderr"
    if not (args.foreground or args.interactive):
        _detach()
    set_process_name("ctdbd")
    node.run_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    pidfile = node.run_dir / "ctdbd.pid"

    def started() -> None:
        pidfile.write_text(f"{os.getpid()}\n")

    try:
        return run_node(node, args.single_process, started)
    finally:
        if pidfile.exists() and pidfile.read_text().strip() == str(os.getpid()):
            pidfile.unlink()


if __name__ == "__main__":
    sys.exit(main())
