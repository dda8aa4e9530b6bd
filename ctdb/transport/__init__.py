"""transportd and the one transport client every daemon and tool uses.

Keep this module free of imports: the ``ctdb`` CLI loads ``ctdb.transport.sync``
and must not pay for asyncio.
"""
