"""The node's file services as data: which systemd units each is, and how to check it.

serviced starts, stops, watches and restarts these units; their health checks go
deeper than the unit's state (a running smbd that does not listen is not serving).
Which services a node manages comes from ctdb.conf's ``[services]`` section.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceDef:
    name: str  # "smb", "nfs": what ``ctdb service list`` shows
    units: tuple[str, ...]  # started in this order, stopped in reverse
    check: str = ""  # the deeper health check: "smbd" (port 445), "ganesha" (D-Bus), ""


def services_from_conf(settings: Mapping[str, bool | str]) -> list[ServiceDef]:
    """The services ``[services]`` asks for, in start order."""
    out: list[ServiceDef] = []
    if settings.get("winbind"):
        out.append(ServiceDef("winbind", ("winbind.service",)))
    if settings.get("samba"):
        units = ("smbd.service", "nmbd.service") if settings.get("nmbd") else ("smbd.service",)
        out.append(ServiceDef("smb", units, "smbd"))
    nfs = settings.get("nfs", "none")
    if nfs == "ganesha":
        out.append(ServiceDef("nfs", ("nfs-ganesha.service",), "ganesha"))
    elif nfs == "kernel":
        out.append(ServiceDef("nfs", ("nfs-server.service",)))
    return out
