"""failoverd: public IP address failover (allocation, takeover and release)."""
