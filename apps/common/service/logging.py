"""Logging set-up shared by the services: one line per record, JSON when asked for."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

import orjson
import structlog


def _dumps(value: Any, **_kwargs: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def configure_logging(level: str = "INFO", *, json: bool = False) -> None:
    """Route stdlib and structlog records to stderr in one format."""
    # Tracebacks as plain text, never with each frame's locals: rich's renderer (structlog's
    # default when rich is installed) spent 5-11 s of the event loop on one error with large
    # locals, and locals may hold a client's data or a secret.
    renderers: list[structlog.types.Processor] = (
        # orjson: the access line is written per request, the stdlib encoder costs more.
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer(serializer=_dumps)]
        if json
        else [
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            )
        ]
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        # The project's own records skip the stdlib machinery (a LogRecord, the handler's lock,
        # the formatter's second pass): the access line is written per request, and that path
        # was 8% of a gateway's CPU per submit (py-spy under bench-submit). The level filter
        # drops records below the level before any processor runs.
        processors=[*shared, structlog.stdlib.add_logger_name, *renderers],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=_NamedWriter.factory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            # Records of libraries (uvicorn, celery, httpx), in the same format.
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderers],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # One line per call from httpx would double every access line the callee already writes.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))


class _NamedWriter:
    """structlog's logger for the services' own records: a line per record on the stream of the
    time of configuring (a Celery worker later swaps sys.stderr for a proxy into logging, which
    would log every line twice), with the name `add_logger_name` reads. Like a stdlib handler,
    a write that fails (a closed or broken stderr) drops the line rather than failing whatever
    logged it."""

    _lock = threading.Lock()

    def __init__(self, stream: TextIO, name: str) -> None:
        self._stream = stream
        self.name = name

    def msg(self, message: str) -> None:
        try:
            with self._lock:
                self._stream.write(message + "\n")
                self._stream.flush()
        except (OSError, ValueError):
            pass

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg

    @classmethod
    def factory(cls, stream: TextIO) -> Callable[..., _NamedWriter]:
        return lambda *args: cls(stream, str(args[0]) if args else "")


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
