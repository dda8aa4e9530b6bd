"""Entry point of one daemon child: ``python -m ctdb.masterd.child NAME``.

masterd passes the write end of a pipe in ``CTDB_READY_FD``; the child writes one
byte to it once it serves.  SIGTERM cancels the daemon, which then shuts down in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import signal
import sys

from ctdb import logs
from ctdb.errors import EXIT_FATAL, CtdbError, FatalError
from ctdb.masterd import registry
from ctdb.masterd.process import die_with_parent, set_process_name
from ctdb.node import NodeContext

log = logging.getLogger(__name__)


def ready_callback() -> None:
    fd = int(os.environ.pop("CTDB_READY_FD", "-1"))
    if fd >= 0:
        with contextlib.suppress(OSError):
            os.write(fd, b"R")
            os.close(fd)


def dump_tasks() -> None:
    """SIGUSR1: log where every task of this daemon waits (for debugging a hang)."""
    for t in asyncio.all_tasks():
        out = io.StringIO()
        t.print_stack(file=out)
        log.warning("task %s:\n%s", t.get_name(), out.getvalue())


async def serve(runnable: registry.Runnable) -> None:
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("serve() must run as a task")
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
    with contextlib.suppress(asyncio.CancelledError):
        await runnable.run(ready_callback)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m ctdb.masterd.child DAEMON", file=sys.stderr)
        return 2
    spec = registry.find(args[0])
    set_process_name(spec.process_name)
    die_with_parent()
    try:
        node = NodeContext.load()
        logs.setup(os.environ.get("CTDB_LOG_LOCATION") or node.config.conf.log_location,
                   os.environ.get("CTDB_LOG_LEVEL") or node.config.conf.log_level,
                   spec.process_name)
        runnable = spec.create(node)
    except CtdbError as exc:
        print(f"{spec.process_name}: {exc}", file=sys.stderr)
        return 1
    try:
        asyncio.run(serve(runnable))
    except FatalError as exc:
        log.critical("%s: %s; stopping the node", spec.process_name, exc)
        return EXIT_FATAL
    return 0


if __name__ == "__main__":
    sys.exit(main())
