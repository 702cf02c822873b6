"""Preview videos: the footage with each tracked face's 68 landmarks and head axes drawn.

A second take (for example the smoothed one) can be drawn over the first in
another colour, or beside it, so the effect of smoothing can be seen.
"""

from __future__ import annotations

import os

import numpy as np

from .errors import CaptureError
from .pose import image_pose, quaternion_to_matrix
from .sources import footage_exists, open_source
from .take import Take

# Index runs of the 68-point scheme drawn as polylines: (first, last, closed).
CONTOURS = [
    (0, 16, False), (17, 21, False), (22, 26, False), (27, 30, False), (31, 35, False),
    (36, 41, True), (42, 47, True), (48, 59, True), (60, 67, True),
]
AXIS_LENGTH_UM = 80_000.0
AXIS_COLOURS = [(0, 0, 255), (0, 200, 0), (255, 80, 0)]  # BGR for x, y, z
RAW_COLOUR = (60, 220, 255)
SECOND_COLOUR = (255, 120, 255)


def write_preview(take: Take, output_path: str, second: Take | None = None, layout: str = "overlay",
                  progress=None, labels=("raw", "smoothed")) -> int:
    """Draw ``take`` (and ``second``, if given) over its footage into ``output_path`` (MP4).

    ``layout`` is ``"overlay"`` (both on one frame) or ``"side"`` (``take``
    left, ``second`` right); with a second take, ``labels`` name the two in
    their colours. Returns the number of frames written. The file is checked
    afterwards (OpenCV's writer fails silently, e.g. on a full disk): an
    incomplete one is a ``CaptureError``. Write to a temporary name and rename
    it (see :mod:`.atomic_file`) to keep a previous preview safe.
    """
    import cv2

    if not footage_exists(take.source):
        raise CaptureError(
            f"Cannot draw a preview: the take's footage {take.source or '(none)'} is not there; "
            "put it back or capture again."
        )
    source = open_source(take.source, take.fps)
    width, height = source.image_size
    if (width, height) != tuple(take.image_size):
        source.close()
        raise CaptureError(
            f"The footage {take.source} is {width}x{height} but the take was captured from "
            f"{take.image_size[0]}x{take.image_size[1]} footage; capture it again."
        )
    size = (width * 2, height) if second is not None and layout == "side" else (width, height)
    folder = os.path.dirname(os.path.abspath(output_path))
    if not os.path.isdir(folder):
        source.close()
        raise CaptureError(f"Cannot write preview {output_path}: folder {folder} does not exist.")
    writer = cv2.VideoWriter(output_path, cv2.VideoWriter_fourcc(*"mp4v"), take.fps, size)
    if not writer.isOpened():
        source.close()
        raise CaptureError(f"Cannot write preview {output_path}: OpenCV could not open an MP4 writer there.")
    rows = _RowsByFrame(take)
    second_rows = _RowsByFrame(second) if second is not None else None
    written = 0
    try:
        for frame in source:
            image = frame.image.copy()
            for row in rows.get(frame.number):
                draw_face(image, take, row, RAW_COLOUR)
            if second is not None and layout == "side":
                right = frame.image.copy()
                for row in second_rows.get(frame.number):
                    draw_face(right, second, row, SECOND_COLOUR)
                _label(image, labels[0], RAW_COLOUR, 0)
                _label(right, labels[1], SECOND_COLOUR, 0)
                image = np.concatenate([image, right], axis=1)
            elif second is not None:
                for row in second_rows.get(frame.number):
                    draw_face(image, second, row, SECOND_COLOUR)
                _label(image, labels[0], RAW_COLOUR, 0)
                _label(image, labels[1], SECOND_COLOUR, 1)
            writer.write(image)
            written += 1
            if progress is not None:
                progress(written, source.frame_count)
    finally:
        writer.release()
        source.close()
    check_video(output_path, written, "preview")
    return written


def check_video(path: str, frames: int, what: str = "video") -> None:
    """Raise ``CaptureError`` unless ``path`` is a playable video of ``frames`` frames."""
    import cv2

    reader = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    try:
        ok = reader.isOpened() and int(reader.get(cv2.CAP_PROP_FRAME_COUNT)) == frames
    finally:
        reader.release()
    if not ok:
        raise CaptureError(
            f"The {what} {path} could not be written completely (is the disk full?); "
            "free some space or choose another folder."
        )


def draw_face(image: np.ndarray, take: Take, row: int, colour) -> None:
    """Draw one row's landmarks (contours and points) and head axes onto a BGR image."""
    import cv2

    points = take.lmk68[row, :, :2]
    pixels = np.round(points).astype(np.int32)
    for first, last, closed in CONTOURS:
        cv2.polylines(image, [pixels[first : last + 1]], closed, colour, 1, cv2.LINE_AA)
    for x, y in pixels:
        cv2.circle(image, (int(x), int(y)), 2, colour, -1, cv2.LINE_AA)
    pose = image_pose(take.param[row : row + 1], take.roi[row : row + 1])
    rotation = quaternion_to_matrix(pose.rotation[0])
    start = pose.translation[0, :2] * [1.0, -1.0]  # pose frame y up -> image y down
    for axis in range(3):
        tip = pose.scale[0] * AXIS_LENGTH_UM * rotation[:, axis]
        end = start + np.array([tip[0], -tip[1]])  # camera y up -> image y down
        cv2.line(image, tuple(np.round(start).astype(int)), tuple(np.round(end).astype(int)),
                 AXIS_COLOURS[axis], 2, cv2.LINE_AA)


def _label(image: np.ndarray, text: str, colour, line: int) -> None:
    import cv2

    origin = (12, 32 + 30 * line)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.9, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.9, colour, 2, cv2.LINE_AA)


class _RowsByFrame:
    """The valid rows of each source frame, from sorted arrays (no per-frame Python objects)."""

    def __init__(self, take: Take):
        rows = np.flatnonzero(take.valid)
        order = np.argsort(take.frame[rows], kind="stable")
        self._rows = rows[order]
        self._frames = take.frame[self._rows]

    def get(self, number: int) -> np.ndarray:
        lo, hi = np.searchsorted(self._frames, [number, number + 1])
        return self._rows[lo:hi]
