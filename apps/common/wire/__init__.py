"""What crosses a process boundary: pydantic contracts, Celery names, the broker message."""
