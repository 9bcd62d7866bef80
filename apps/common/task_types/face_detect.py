from pydantic import Field

from apps.common.task_types import TaskType
from apps.common.task_types._cost import ImageSizes, cpu_image_cost
from apps.common.task_types._fields import ImageField
from apps.common.wire.contracts import OutputFormat, StrictModel


class FaceDetectInput(StrictModel):
    image: ImageField
    # Faces smaller than this many pixels (on the image's long side up to 1024) are ignored.
    min_size: int = Field(default=24, ge=8, le=1024)
    max_faces: int | None = Field(default=None, ge=1, le=100)
    # Also return the image with the boxes drawn on it.
    annotate: bool = True
    output_format: OutputFormat = OutputFormat.PNG


def cost(_task_input: FaceDetectInput, sizes: ImageSizes) -> float:
    return cpu_image_cost(sizes, "image")


TASK_TYPE = TaskType(
    name="face_detect",
    description="Find faces (OpenCV Haar cascades): boxes with scores and an annotated image.",
    input_model=FaceDetectInput,
    queue="cpu",
    runs_on="worker",
    cost_formula=cost,
    cost_fields=("image",),
    image_fields=("image",),
    result_keys={"faces": "[{x, y, width, height, score}], best first"},
)
