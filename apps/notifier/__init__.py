"""The notifier: events in, WebSocket fan-out, long-poll waits."""
