"""serviced: the node's file services through systemd."""
