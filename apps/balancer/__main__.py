"""`python -m apps.balancer`: the inference load balancer."""

from apps.balancer.main import create_app
from apps.balancer.settings import BalancerSettings
from apps.common.service.serve import serve
from apps.common.service.settings import get_settings

settings = get_settings(BalancerSettings)
serve(
    name="balancer",
    description="Fluxgate balancer: forwards inference calls to the least-loaded inference server.",
    settings=settings,
    host=settings.balancer_host,
    port=settings.balancer_port,
    app_factory=create_app,
)
