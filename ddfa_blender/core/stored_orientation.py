"""How a still is stored versus how a player shows it.

A phone stores a photo as the sensor saw it and writes the turn (and mirror)
that shows it upright in its EXIF orientation tag. The capture reads stills
upright (OpenCV applies the tag), but a program that shows the stored pixels
(Blender's image loader ignores the tag) needs that turn too.
:func:`still_orientation` finds it by comparing the stored and the upright
decodings of the file, so it holds for every format and tag value OpenCV
understands without reading EXIF itself.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Orientation:
    """From stored to upright pixels: mirror left-right first (``flip_x``), then turn
    clockwise by ``turn`` degrees (0, 90, 180 or 270)."""

    turn: int = 0
    flip_x: bool = False


UPRIGHT = Orientation()


def apply(image: np.ndarray, orientation: Orientation) -> np.ndarray:
    """``image`` (H, W, ...) as ``orientation`` shows it."""
    if orientation.flip_x:
        image = image[:, ::-1]
    return np.rot90(image, -orientation.turn // 90)  # np.rot90 turns counter-clockwise


def still_orientation(path: str) -> Orientation:
    """The orientation that shows still ``path``'s stored pixels upright (as OpenCV and
    players show it); :data:`UPRIGHT` when the file has no orientation tag or cannot be
    decoded (the capture reports unreadable files itself)."""
    import cv2

    data = np.fromfile(path, dtype=np.uint8)
    upright = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    stored = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
    if upright is None or stored is None:
        return UPRIGHT
    for flip_x in (False, True):
        for turn in (0, 90, 180, 270):
            candidate = Orientation(turn, flip_x)
            shown = apply(stored, candidate)
            if shown.shape == upright.shape and np.array_equal(shown, upright):
                return candidate
    return UPRIGHT
