"""The ``ctdb`` admin command."""
