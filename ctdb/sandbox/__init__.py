"""A whole cluster on one machine, for trying pyctdb, demos, tests and benchmarks.

Nodes are network namespaces on a bridge (addresses from 198.18.0.0/15 only, no
route out), each running the real ``ctdbd`` from its own CTDB_BASE.
"""
