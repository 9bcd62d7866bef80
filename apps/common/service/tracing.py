"""OpenTelemetry traces, off unless `FLUXGATE_OTEL_ENDPOINT` names an OTLP/HTTP collector.

One trace follows a task: the gateway's request, the Celery publish and the worker's run (context
in the message headers), the worker's calls to the balancer, inference server and notifier
(`traceparent` on each HTTP call). The official instrumentation packages do the propagation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from apps.common.service.logging import get_logger
from apps.common.service.settings import CommonSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

log = get_logger(__name__)
_QUIET_URLS = "healthz,readyz,metrics,load"
_state = {"on": False}


def setup_tracing(service: str, settings: CommonSettings) -> bool:
    """Install the tracer provider and instrument httpx; True when tracing is on.

    Call it in the process that does the work: after the fork, in a Celery pool process.
    """
    if not settings.otel_endpoint:
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": f"fluxgate-{service}"}))
    endpoint = settings.otel_endpoint.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    HTTPXClientInstrumentor().instrument()
    _state["on"] = True
    log.info("tracing on", endpoint=endpoint)
    return True


def instrument_app(app: FastAPI, service: str, settings: CommonSettings) -> None:
    """Trace an HTTP service's requests (and its own outgoing calls)."""
    if not setup_tracing(service, settings):
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls=_QUIET_URLS)


def instrument_celery() -> None:
    """Trace Celery publishes and runs in this process (once `setup_tracing` turned tracing on)."""
    if not _state["on"]:
        return
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    CeleryInstrumentor().instrument()


def inject_trace_context(carrier: dict[str, Any]) -> None:
    """Put the current trace context into a message's headers (a Celery message written without
    Celery's publish signals), where the worker's Celery instrumentation finds it."""
    if not _state["on"]:
        return
    from opentelemetry import propagate

    propagate.inject(carrier)


def fastapi_options() -> dict[str, Any]:
    """Keyword arguments for every service's `FastAPI(...)`: FastAPI's own telemetry off.

    Tracing goes through the official instrumentation (`instrument_app`) when it is on. FastAPI's
    built-in telemetry (0.16x) asks the OpenTelemetry API on every request and connection whether
    a provider is set; at 10,000 WebSocket connections that alone was an eighth of the notifier's
    CPU (py-spy)."""
    import inspect

    from fastapi import FastAPI

    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
