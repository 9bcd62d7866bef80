"""`python -m apps.inference`: one model server (one per GPU)."""

from apps.common.service.serve import serve
from apps.common.service.settings import get_settings
from apps.inference.main import create_app
from apps.inference.settings import InferenceSettings

settings = get_settings(InferenceSettings)
serve(
    name="inference",
    description="Fluxgate inference server: runs FLUX pipelines and streams progress and images.",
    settings=settings,
    host=settings.inference_host,
    port=settings.inference_port,
    app_factory=create_app,
)
