"""API keys, signatures for webhooks and internal calls, and the SSRF guard for outbound URLs."""
