"""In-process transportd nodes for tests, on 198.18.0.0/15 addresses in a namespace."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from ctdb.protocol import EchoRequest
from ctdb.protocol.codec import type_number
from ctdb.transport.daemon import Transportd, TransportSettings

KEY = [b"test-cluster-key-0123456789abcdef"]
OTHER_KEY = [b"another-key-0123456789abcdef0123"]
ECHO = 0x9001
PORT = 4379
ADDRS = ["198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.12", "198.18.0.50"]
PROXY = "198.18.0.12"
ECHO_TYPE = type_number(EchoRequest)


class Nodes:
    """Transportd instances of one test, each in its own run directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.daemons: dict[int, Transportd] = {}

    def run_dir(self, pnn: int) -> Path:
        return self.root / f"n{pnn}"

    async def start(self, pnn: int, nodes: dict[int, str | None] | None = None,
                    keys: list[bytes] = KEY) -> Transportd:
        nodes = nodes or {0: ADDRS[0], 1: ADDRS[1], 2: ADDRS[2]}
        settings = TransportSettings(pnn, nodes, self.run_dir(pnn), keys, PORT,
                                     keepalive_interval=0.2, keepalive_limit=5)
        daemon = Transportd(settings)
        ready = asyncio.Event()
        self.tasks[pnn] = asyncio.create_task(daemon.run(ready.set))
        async with asyncio.timeout(5):
            await ready.wait()
        self.daemons[pnn] = daemon
        return daemon

    async def stop(self, pnn: int) -> None:
        task = self.tasks.pop(pnn)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def stop_all(self) -> None:
        for pnn in list(self.tasks):
            await self.stop(pnn)
