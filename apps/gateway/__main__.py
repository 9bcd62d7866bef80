"""`python -m apps.gateway`: the public REST API."""

from apps.common.service.serve import serve
from apps.common.service.settings import get_settings
from apps.gateway.main import create_app
from apps.gateway.settings import GatewaySettings

settings = get_settings(GatewaySettings)
serve(
    name="gateway",
    description="Fluxgate gateway: accepts jobs (POST /flux), answers status and cancel.",
    settings=settings,
    host=settings.gateway_host,
    port=settings.gateway_port,
    app_factory=create_app,
)
