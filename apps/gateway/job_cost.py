"""What a submitted job costs, and the limits one job must stay under: FLUXGATE_MAX_JOB_COST, and
its key's `max_cost` (which a costlier job could never fit under, however long it waited)."""

from __future__ import annotations

from collections.abc import Mapping

from apps.common.images import ImageInfo
from apps.common.security.apikeys import ApiKey
from apps.common.service.errors import TooExpensive
from apps.common.task_types import ImageSizes, TaskType
from apps.common.wire.contracts import StrictModel
from apps.gateway.settings import GatewaySettings


def price_job(
    spec: TaskType,
    task_input: StrictModel,
    uploads: Mapping[str, ImageInfo],
    *,
    input_path: str,
    caller: ApiKey | None,
    settings: GatewaySettings,
) -> float:
    """The job's cost (`TaskType.cost`: uploads by their decoded size, images given by URL at
    the pixel bound); `too_expensive` naming the field to lower (under `input_path`) when it is
    over a limit."""
    sizes = ImageSizes(
        {name: (info.width, info.height) for name, info in uploads.items()},
        max_pixels=settings.input_image_max_pixels,
    )
    cost = spec.cost(task_input, sizes)
    limit = settings.max_job_cost
    over = f"the limit of {limit:g} for one job"
    if caller is not None and caller.max_cost is not None and caller.max_cost < limit:
        limit = caller.max_cost
        over = f"key {caller.id}'s max_cost of {limit:g}, so it could never run"
    if cost > limit:
        field = input_path + spec.field_to_lower(task_input, sizes)
        raise TooExpensive(
            f"this job costs {cost} megapixel-steps, over {over}: lower {field}", field=field
        )
    return cost
