"""failoverd's messages (type numbers 0x0400-0x04FF)."""

from __future__ import annotations

from ctdb.protocol.codec import U32, message, struct

UNHOSTED = 0xFFFFFFFF


@struct
class PublicIPInfo:
    address: str  # "198.18.2.100/24"
    interfaces: str  # "eth1,eth2"


@message(0x0400)
class IPState:
    """Every failoverd tells every other what it may host and what it hosts now."""

    pnn: U32
    can_host: list[PublicIPInfo]
    held: list[str]  # addresses without prefix
    gate_ms: U32 = 0  # its IPv4 addresses go dark this long after its last renewal (0: no gate)


@message(0x0401)
class TakeIP:
    """The leader orders a node to host an address (the header carries its term)."""

    address: str  # with prefix
    interfaces: str


@message(0x0402)
class ReleaseIP:
    """The leader orders a node to stop hosting an address."""

    address: str


@struct
class IPEntry:
    address: str
    pnn: U32  # UNHOSTED when nobody hosts it
    interfaces: str = ""
    active: str = ""  # the interface it is on, on its holder
    local: bool = False  # in the answering node's public_addresses


@message(0x0403)
class IPListRequest:
    pass


@message(0x0404)
class IPList:
    pnn: U32
    ips: list[IPEntry]


@message(0x0405)
class MoveIPRequest:
    """Move an address to node *pnn* (``ctdb moveip``); handled by the leader."""

    address: str
    pnn: U32


@message(0x0406)
class IPReallocateRequest:
    """Run a takeover run now (``ctdb ipreallocate``); handled by the leader."""


@struct
class IfaceInfo:
    name: str
    up: bool
    references: U32  # public addresses on it now


@message(0x0407)
class IfacesRequest:
    pass


@message(0x0408)
class IfacesReply:
    pnn: U32
    interfaces: list[IfaceInfo]


@message(0x0409)
class ReloadIPsRequest:
    """Re-read this node's public_addresses (``ctdb reloadips``): addresses gone from the
    file are released, new ones offered."""


@message(0x040A)
class AddIPRequest:
    """Offer one more address on this node until ctdbd restarts (``ctdb addip``)."""

    address: str  # with prefix
    interfaces: str  # "eth1,eth2"


@message(0x040B)
class DelIPRequest:
    """Stop offering an address on this node, releasing it first (``ctdb delip``)."""

    address: str


@message(0x040C)
class PublicChanged:
    """What reloadips/addip/delip changed on a node."""

    added: list[str]
    removed: list[str]


@struct
class ConnInfo:
    server: str  # the public address
    server_port: U32
    client: str
    client_port: U32


@message(0x040D)
class Tickles:
    """Every node tells every other the TCP connections to the addresses it holds, so
    whoever takes an address over can tickle its clients (see failoverd.tickle)."""

    pnn: U32
    conns: list[ConnInfo]


@message(0x040E)
class GetTicklesRequest:
    """The known connections to an address (``ctdb gettickles IP [PORT]``; port 0: any)."""

    address: str
    port: U32 = 0


@message(0x040F)
class TickleList:
    address: str
    conns: list[ConnInfo]


@message(0x0410)
class SetIfaceLinkRequest:
    """``ctdb setifacelink IFACE up|down``: what an event script found; it stands until
    the kernel next reports a change of that link."""

    interface: str
    up: bool


@message(0x0411)
class AddTicklesRequest:
    """``ctdb addtickle`` / ``deltickle``: connections an event script tracks itself."""

    conns: list[ConnInfo]
    add: bool
