"""`python -m apps.notifier`: WebSocket fan-out, long-poll waits and event ingest."""

from apps.common.service.serve import serve
from apps.notifier.main import create_app
from apps.notifier.settings import NotifierSettings

serve(
    "notifier",
    NotifierSettings,
    create_app,
    "Fluxgate notifier: pushes job progress and results to WebSocket clients.",
)
