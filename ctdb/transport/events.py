"""What transportd tells local subscribers about its links."""

from __future__ import annotations

from ctdb.protocol.codec import U32, message


@message(0x0018)
class ReloadNodes:
    """Ask transportd to re-read the nodes file (``ctdb reloadnodes``)."""


@message(0x0017)
class LinkEvent:
    """The link to node *pnn* came up or went down (published to local subscribers)."""

    pnn: U32
    connected: bool
