"""serviced's messages (type numbers 0x0600-0x06FF)."""

from __future__ import annotations

from ctdb.protocol.codec import U32, message, struct


@message(0x0600)
class StartServicesRequest:
    """Start the node's services and answer once they run (the node's startup)."""


@struct
class ServiceInfo:
    name: str
    units: list[str]
    states: list[str]  # "active/running" per unit
    wanted: bool  # serviced keeps it running now
    healthy: bool
    reason: str
    restarts: U32  # restarts by serviced in the policy's window


@message(0x0601)
class ServiceListRequest:
    pass


@message(0x0602)
class ServiceList:
    pnn: U32
    services: list[ServiceInfo]
