"""Redis: key names (one home for all of them), the client factory, shared Lua pieces."""
