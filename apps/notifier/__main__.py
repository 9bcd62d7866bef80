"""`python -m apps.notifier`: WebSocket fan-out, long-poll waits and event ingest."""

from apps.common.service.serve import serve
from apps.common.service.settings import get_settings
from apps.notifier.main import create_app
from apps.notifier.settings import NotifierSettings

settings = get_settings(NotifierSettings)
serve(
    name="notifier",
    description="Fluxgate notifier: pushes job progress and results to WebSocket clients.",
    settings=settings,
    host=settings.notifier_host,
    port=settings.notifier_port,
    app_factory=create_app,
)
