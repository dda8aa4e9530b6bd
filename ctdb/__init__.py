"""pyctdb: a cluster manager for Samba and NFS file serving, in CTDB's lineage."""

__version__ = "0.1.0"
