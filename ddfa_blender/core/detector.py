"""Face detection with MediaPipe's BlazeFace (both models ship inside the mediapipe wheel)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys

import numpy as np


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
    """

    def __init__(self, min_score: float = 0.7):
        with native_stderr_silenced():  # MediaPipe's start-up chatter is not for users
            from mediapipe.python.solutions import face_detection

            self.min_score = min_score  # the graphs keep their own lower threshold: filter again here
            self._short = face_detection.FaceDetection(model_selection=0, min_detection_confidence=min_score)
            self._full = face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_score)
            blank = np.zeros((64, 64, 3), np.uint8)
            self._short.process(blank)  # graphs initialise (and log) on their first image
            self._full.process(blank)

    def close(self):
        self._short.close()
        self._full.close()

    def detect(self, image_bgr: np.ndarray, max_faces: int = 1) -> list[Detection]:
        """Faces in an image (BGR, uint8, (H, W, 3)), best first, at most ``max_faces``."""
        rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
        found = [d for d in _run(self._short, rgb) if d.score >= self.min_score]
        if not found or max_faces > 1:
            found = _merge(found + _run(self._full, rgb))
        found = [d for d in found if d.score >= self.min_score]
        found.sort(key=lambda d: d.score, reverse=True)
        return found[:max_faces]


@contextlib.contextmanager
def native_stderr_silenced():
    """Send the process's file descriptor 2 to /dev/null for the duration (Python's own
    ``sys.stderr`` object stays; only native libraries' direct writes are dropped)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. some embedded consoles)
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _run(model, rgb) -> list[Detection]:
    height, width = rgb.shape[:2]
    result = model.process(rgb)
    detections = []
    for item in result.detections or []:
        rel = item.location_data.relative_bounding_box
        box = np.array(
            [rel.xmin * width, rel.ymin * height, (rel.xmin + rel.width) * width, (rel.ymin + rel.height) * height]
        )
        detections.append(Detection(box, float(item.score[0])))
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
