"""`python -m apps.gateway`: the public REST API."""

from apps.common.service.serve import serve
from apps.gateway.main import create_app
from apps.gateway.settings import GatewaySettings

serve(
    "gateway",
    GatewaySettings,
    create_app,
    "Fluxgate gateway: accepts jobs (POST /flux), answers status and cancel.",
)
