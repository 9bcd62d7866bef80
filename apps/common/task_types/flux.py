from apps.common.task_types import TaskType
from apps.common.wire.contracts import FluxInput

TASK_TYPE = TaskType(
    name="flux",
    description="Text to image with FLUX (also at POST /flux).",
    input_model=FluxInput,
    queue="gpu",
    runs_on="inference",
    result_keys={"prompt": "the prompt used (after refinement, when asked)"},
)
