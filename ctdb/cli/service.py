"""``ctdb service list|status``: the node's file services as serviced manages them."""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ctdb.cli.main import Session


def cmd_service(s: Session) -> int:
    from ctdb.cli.main import _json, _machine, _out
    from ctdb.protocol import Service
    from ctdb.serviced.messages import ServiceListRequest

    sub = s.opts.args[0] if s.opts.args else "list"
    if sub not in ("list", "status") or len(s.opts.args) > 1:
        print("Usage: ctdb service list|status [--json]", file=sys.stderr)
        return 1
    replies = s.replies(Service.SERVICED, ServiceListRequest())
    if s.opts.json:
        _json({"nodes": [{"pnn": pnn, "services": [
            {"name": i.name, "units": dict(zip(i.units, i.states, strict=True)),
             "wanted": i.wanted, "healthy": i.healthy, "reason": i.reason,
             "restarts": i.restarts} for i in reply.services]} for pnn, reply in replies]})
        return s.rc
    if s.opts.machine:
        _machine(s.opts, ["Node", "Service", "Units", "State", "Healthy", "Restarts"])
    for pnn, reply in replies:
        if not reply.services and not s.opts.machine:
            _out(f"No services managed on node {pnn}")
            continue
        for i in reply.services:
            state = ",".join(i.states)
            if s.opts.machine:
                _machine(s.opts, [pnn, i.name, ",".join(i.units), state, int(i.healthy),
                                  i.restarts])
            elif sub == "list":
                _out(f"{i.name:<8} {','.join(i.units):<28} {state}")
            else:
                health = "healthy" if i.healthy else f"UNHEALTHY: {i.reason}"
                wanted = "running" if i.wanted else "stopped"
                _out(f"node {pnn} {i.name}: {wanted}, {state}, {health}, "
                     f"{i.restarts} restarts")
    return s.rc
