"""Face detection with MediaPipe's BlazeFace, short and full range, through the Tasks API.

Both models are prepared into the models folder by :mod:`.model_setup`
(``face_detection_short_range.tflite`` and
``face_detection_full_range_sparse.tflite``, Google, Apache-2.0).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from . import mediapipe_tasks
from .errors import CaptureError

SHORT_RANGE_FILE = "face_detection_short_range.tflite"
FULL_RANGE_FILE = "face_detection_full_range_sparse.tflite"
# Boxes of one face overlapping more than this (IoU) are merged by MediaPipe's NMS.
SUPPRESSION_IOU = 0.3


@dataclasses.dataclass
class Detection:
    """One face: ``box`` (x0, y0, x1, y1) in image pixels, ``score`` in [0, 1]."""

    box: np.ndarray
    score: float


class FaceDetector:
    """BlazeFace short range (faces near the camera) with a full-range fallback.

    The short-range model runs first; when it finds nothing, or when several
    faces are wanted, the full-range model runs too and overlapping boxes are
    merged, so distant and small faces are found as well.

    ``models_dir``: the prepared models folder (None: the default one).
    ``min_score``: detections scoring less are dropped.
    """

    def __init__(self, models_dir=None, min_score: float = 0.7):
        if models_dir is None:
            from .model_setup import default_models_dir

            models_dir = default_models_dir()
        short, full = (_read_model(models_dir, name) for name in (SHORT_RANGE_FILE, FULL_RANGE_FILE))
        vision = mediapipe_tasks.vision()
        self.min_score = min_score  # the graphs keep their own threshold too: filter again here
        self._short = _create(vision, short, min_score)
        self._full = _create(vision, full, min_score)
        self._closer = mediapipe_tasks.close_with(self, (self._short, self._full))
        blank = mediapipe_tasks.image_from_bgr(np.zeros((64, 64, 3), np.uint8))
        self._short.detect(blank)  # graphs finish initialising on their first image
        self._full.detect(blank)

    def close(self):
        self._closer()

    def detect(self, image_bgr: np.ndarray, max_faces: int = 1) -> list[Detection]:
        """Faces in an image (BGR, uint8, (H, W, 3)), best first, at most ``max_faces``."""
        image = mediapipe_tasks.image_from_bgr(image_bgr)
        found = [d for d in _run(self._short, image) if d.score >= self.min_score]
        if not found or max_faces > 1:
            found = _merge(found + _run(self._full, image))
        found = [d for d in found if d.score >= self.min_score]
        found.sort(key=lambda d: d.score, reverse=True)
        return found[:max_faces]


def _read_model(models_dir, name: str) -> bytes:
    path = os.path.join(str(models_dir), name)
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as err:
        raise CaptureError(
            f"The face detector {name} is not prepared in {models_dir} ({err.strerror}): "
            "run `python scripts/fetch_models.py` (or Prepare Models in the add-on's preferences)."
        ) from err


def _create(vision, model: bytes, min_score: float):
    options = vision.FaceDetectorOptions(
        base_options=mediapipe_tasks.base_options(model),
        running_mode=vision.RunningMode.IMAGE,
        min_detection_confidence=min_score,
        min_suppression_threshold=SUPPRESSION_IOU,
    )
    return vision.FaceDetector.create_from_options(options)


def _run(task, image) -> list[Detection]:
    detections = []
    for item in task.detect(image).detections:
        box = item.bounding_box  # whole pixels: origin (top-left) and size
        x0, y0 = float(box.origin_x), float(box.origin_y)
        detections.append(
            Detection(np.array([x0, y0, x0 + box.width, y0 + box.height]), float(item.categories[0].score))
        )
    return detections


def box_iou(a, b) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _merge(detections: list[Detection], iou: float = 0.3) -> list[Detection]:
    kept: list[Detection] = []
    for det in sorted(detections, key=lambda d: d.score, reverse=True):
        if all(box_iou(det.box, other.box) < iou for other in kept):
            kept.append(det)
    return kept
