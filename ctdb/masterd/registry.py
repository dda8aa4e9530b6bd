"""Which daemons a node runs, in start order: data, not code.

Each entry names a factory ``module:function`` taking the ``NodeContext`` and
returning an object with ``async run(ready)``.  Daemons that do not exist yet are
simply absent from this table.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol

from ctdb.node import NodeContext


class Runnable(Protocol):
    """A daemon's body: serves until cancelled, calls *ready* once it serves."""

    async def run(self, ready: Any = None) -> None: ...


@dataclass(frozen=True, slots=True)
class DaemonSpec:
    name: str
    factory: str

    @property
    def process_name(self) -> str:
        return f"ctdb-{self.name}"

    def create(self, node: NodeContext) -> Runnable:
        module, _, attr = self.factory.partition(":")
        fn = getattr(importlib.import_module(module), attr)
        runnable: Runnable = fn(node)
        return runnable


DAEMONS: tuple[DaemonSpec, ...] = (
    DaemonSpec("transport", "ctdb.transport.service:create"),
    DaemonSpec("eventd", "ctdb.eventd.daemon:create"),
    DaemonSpec("serviced", "ctdb.serviced.daemon:create"),
    DaemonSpec("clusterd", "ctdb.clusterd.daemon:create"),
    DaemonSpec("failoverd", "ctdb.failoverd.daemon:create"),
)


def find(name: str, daemons: tuple[DaemonSpec, ...] = DAEMONS) -> DaemonSpec:
    for spec in daemons:
        if spec.name == name:
            return spec
    raise KeyError(f"no daemon named {name!r}")
