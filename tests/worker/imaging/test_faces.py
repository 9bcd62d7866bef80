"""Face detection on a real photo (skimage's astronaut) and on images with no face."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from apps.worker.imaging.faces import FaceBox, annotate, detect_faces

# Forehead to chin of the astronaut's face (512x512), checked by eye on the image.
ASTRONAUT_FACE = (178, 68, 92, 95)


def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())


def overlap(box: FaceBox, ref: tuple[int, int, int, int]) -> float:
    """Intersection over union of a detected box and a reference (x, y, w, h)."""
    rx, ry, rw, rh = ref
    ix = max(0, min(box.x + box.width, rx + rw) - max(box.x, rx))
    iy = max(0, min(box.y + box.height, ry + rh) - max(box.y, ry))
    inter = ix * iy
    return inter / (box.area + rw * rh - inter)


def test_the_astronaut_has_one_face_where_it_is() -> None:
    source = astronaut()
    before = source.tobytes()
    faces = detect_faces(source)
    assert len(faces) == 1
    assert overlap(faces[0], ASTRONAUT_FACE) > 0.7
    assert 0.9 < faces[0].score <= 1.0
    assert source.tobytes() == before


def test_a_large_image_maps_boxes_back_to_its_pixels() -> None:
    canvas = Image.new("RGB", (1500, 900), (120, 130, 140))
    canvas.paste(astronaut().resize((1024, 1024)), (400, 0))  # detected on a 1024x614 copy
    x, y, w, h = ASTRONAUT_FACE
    faces = detect_faces(canvas)
    assert len(faces) == 1
    assert overlap(faces[0], (400 + 2 * x, 2 * y, 2 * w, 2 * h)) > 0.7


def test_faces_come_best_first_and_max_faces_keeps_the_best() -> None:
    pair = Image.new("RGB", (1024, 512))
    pair.paste(astronaut(), (0, 0))
    pair.paste(astronaut().transpose(Image.Transpose.FLIP_LEFT_RIGHT), (512, 0))
    faces = detect_faces(pair)
    scores = [face.score for face in faces]
    assert scores == sorted(scores, reverse=True)
    best_two = detect_faces(pair, max_faces=2)
    assert best_two == faces[:2]
    x, y, w, h = ASTRONAUT_FACE
    mirrored = (1024 - x - w, y, w, h)
    left, right = sorted(best_two, key=lambda face: face.x)
    assert overlap(left, ASTRONAUT_FACE) > 0.7
    assert overlap(right, mirrored) > 0.7


def test_min_size_drops_smaller_faces() -> None:
    assert detect_faces(astronaut(), min_size=80) != []
    assert detect_faces(astronaut(), min_size=130) == []


@pytest.mark.parametrize("kind", ["flat", "noise", "gradient"])
def test_images_without_a_face_have_none(kind: str) -> None:
    rng = np.random.default_rng(7)
    if kind == "flat":
        pixels = np.full((300, 400, 3), 128, np.uint8)
    elif kind == "noise":
        pixels = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    else:
        pixels = np.repeat(np.linspace(0, 255, 400, dtype=np.uint8)[None, :, None], 300, 0)
        pixels = np.repeat(pixels, 3, 2)
    assert detect_faces(Image.fromarray(pixels)) == []


def test_annotate_draws_the_box_and_nothing_far_from_it() -> None:
    source = astronaut()
    before = source.tobytes()
    face = detect_faces(source)[0]
    drawn = annotate(source, [face])
    assert drawn.size == source.size and drawn.mode == "RGB"
    assert source.tobytes() == before
    old = np.asarray(source, dtype=np.int16)
    new = np.asarray(drawn, dtype=np.int16)
    # The outline: the box's left edge changed, painted in the box colour.
    edge = new[face.y + 5 : face.y + face.height - 5, face.x]
    assert np.abs(edge - old[face.y + 5 : face.y + face.height - 5, face.x]).mean() > 30
    assert (edge == (255, 40, 40)).all()
    # The score label sits above the box; the rest of the picture is untouched.
    assert (new[face.y + face.height + 10 :] == old[face.y + face.height + 10 :]).all()
    assert (new[:, face.x + face.width + 80 :] == old[:, face.x + face.width + 80 :]).all()


def test_annotate_without_boxes_is_a_plain_copy() -> None:
    source = astronaut().convert("RGBA")
    drawn = annotate(source, [])
    assert drawn.mode == "RGB"
    assert drawn.tobytes() == source.convert("RGB").tobytes()
