"""Text work for the worker's task handlers: prompt refinement and translation (no Celery, no HTTP).

Importing this package is cheap: torch and transformers load only when a translator is built.
"""

from __future__ import annotations


class Stopped(Exception):
    """Work was cancelled cooperatively: `should_stop()` answered True between two batches."""


class TextInputError(ValueError):
    """An input the user must fix; `field` names it (for the `{"error": {"field"}}` body)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
