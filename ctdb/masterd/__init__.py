"""masterd: the node's process manager, the ``ctdbd`` command."""
