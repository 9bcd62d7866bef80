from apps.common.task_types import TaskType
from apps.common.task_types._cost import ImageSizes, cpu_image_cost
from apps.common.task_types._fields import ImageField
from apps.common.wire.contracts import OutputFormat, StrictModel


class FaceSwapInput(StrictModel):
    # The face to use.
    image: ImageField
    # The picture to put it in.
    target_image: ImageField
    output_format: OutputFormat = OutputFormat.PNG


def cost(_task_input: FaceSwapInput, sizes: ImageSizes) -> float:
    return cpu_image_cost(sizes, "image", "target_image")


TASK_TYPE = TaskType(
    name="face_swap",
    description="Put the face of `image` into `target_image` (aligned, colour-matched, "
    "seamless-cloned).",
    input_model=FaceSwapInput,
    queue="cpu",
    runs_on="worker",
    cost_formula=cost,
    cost_fields=("target_image", "image"),
    image_fields=("image", "target_image"),
    result_keys={"source_face": "box used in image", "target_face": "box replaced"},
)
