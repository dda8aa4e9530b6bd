"""NFS event script and callouts that eventd runs (grace on moves, health, recovery)."""
