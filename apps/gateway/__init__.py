"""The gateway: the public REST API."""
