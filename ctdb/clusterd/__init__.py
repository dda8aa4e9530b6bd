"""clusterd: membership, node flags and states, the leader and the cluster lock.

Keep this module free of imports: the ``ctdb`` CLI loads ``ctdb.clusterd.flags``.
"""
