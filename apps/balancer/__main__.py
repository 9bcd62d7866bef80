"""`python -m apps.balancer`: the inference load balancer."""

from apps.balancer.main import create_app
from apps.balancer.settings import BalancerSettings
from apps.common.service.serve import serve

serve(
    "balancer",
    BalancerSettings,
    create_app,
    "Fluxgate balancer: forwards inference calls to the least-loaded inference server.",
)
