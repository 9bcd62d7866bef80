"""`python -m apps.inference`: one model server (one per GPU)."""

from apps.common.service.serve import serve
from apps.inference.main import create_app
from apps.inference.settings import InferenceSettings

serve(
    "inference",
    InferenceSettings,
    create_app,
    "Fluxgate inference server: runs FLUX pipelines and streams progress and images.",
)
