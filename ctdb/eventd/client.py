"""How other daemons ask the node's eventd for an event.

A node without eventd (a test's reduced daemon set) has no event scripts: the event
then counts as run, with no scripts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ctdb.errors import CtdbError, RemoteError
from ctdb.eventd import policy
from ctdb.eventd.messages import EventResult, RunEventRequest
from ctdb.eventd.runner import TIMEDOUT
from ctdb.protocol import NODE_CURRENT, Address, ErrorCode, Service
from ctdb.transport.client import Client

log = logging.getLogger(__name__)

MARGIN = 2.0  # seconds a request waits beyond the event's own timeout


def _name(node: int) -> str:
    return "this node" if node == NODE_CURRENT else str(node)


async def run_event(client: Client, node: int, event: str, args: Sequence[str] = (),
                    timeout: float = 30.0) -> bool:
    """Run a ``legacy`` event on *node*; True when it succeeded by CTDB's rules."""
    try:
        reply = await client.request(Address(node, Service.EVENTD),
                                     RunEventRequest("legacy", event, list(args),
                                                     int(timeout * 1000)),
                                     timeout=timeout + MARGIN)
    except RemoteError as exc:
        if exc.code == ErrorCode.NO_SUCH_SERVICE:
            return True
        log.error("event %s on node %s: %s", event, _name(node), exc)  # noqa: TRY400
        return False
    except CtdbError as exc:
        log.error("event %s on node %s: %s", event, _name(node), exc)  # noqa: TRY400
        return False
    if not isinstance(reply, EventResult):
        log.error("event %s on node %s: unexpected reply %s", event, _name(node),
                  type(reply).__name__)
        return False
    if reply.status == TIMEDOUT and policy.succeeded_status(event, reply.status):
        log.warning("ignoring hung script for %s event on node %s", event, _name(node))
    return policy.succeeded_status(event, reply.status)
