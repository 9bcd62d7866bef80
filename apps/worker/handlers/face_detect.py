"""`face_detect`: OpenCV Haar cascades; boxes with scores, and the image with them drawn."""

from __future__ import annotations

from dataclasses import asdict

from apps.common.task_types.face_detect import FaceDetectInput
from apps.worker.handlers import HandlerContext, Output, OutputImage
from apps.worker.imaging.faces import annotate, detect_faces

TASK_TYPE = "face_detect"


def run(task_input: FaceDetectInput, ctx: HandlerContext) -> Output:
    image = ctx.image("image")
    boxes = detect_faces(image, min_size=task_input.min_size, max_faces=task_input.max_faces)
    ctx.progress(0.8)
    images = []
    if task_input.annotate:
        images.append(OutputImage(annotate(image, boxes), task_input.output_format.value))
    return Output(images=images, extra={"faces": [asdict(box) for box in boxes]})
