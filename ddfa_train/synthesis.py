"""3-D aided short-video synthesis: short clips made from one frame, with exact labels.

3DDFA-V2 turns each still into an n-frame clip by in-plane moves (similarity
transforms of the image) and out-of-plane moves (the fitted 3-D face,
textured from the image, re-rendered at a perturbed pose), so the network
sees how its output must move when the face moves a little: what makes it
stable on video. Here a clip starts at a random similarity transform of the
crop and drifts by a few per cent per frame, as a tracked crop does between
frames; :mod:`.rerender` adds the out-of-plane moves.

Frames: ``c`` is a 0-based, y-down crop pixel of the tracker's 120-px crop;
a move is ``c' = A c + b`` with ``A = rho * rotation(theta)``. A label
``param`` (crop frame, :mod:`ddfa_blender.core.reconstruct`) moves with it
exactly (:func:`move_param`), so the moved label's landmarks are the moved
landmarks. Context crops (see :mod:`.footage`) hold the crop at an offset
of ``MARGIN`` px, so moves find real pixels.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ddfa_blender.core.reconstruct import CROP_SIZE

from .footage import CONTEXT_SIZE

MARGIN = (CONTEXT_SIZE - CROP_SIZE) // 2
CENTRE = (CROP_SIZE - 1) / 2.0
_FLIP = np.diag([1.0, -1.0])  # crop y down <-> model y up
_MODEL_OFFSET = np.array([1.0, CROP_SIZE])  # model (1-based, y up) = FLIP c + offset


@dataclasses.dataclass
class MoveSpread:
    """Spread of a clip's first move (standard deviations) and of its per-frame drift."""

    angle_deg: float = 4.0
    log_scale: float = 0.04
    shift: float = 0.03  # of the crop size
    drift_angle_deg: float = 1.0
    drift_log_scale: float = 0.01
    drift_shift: float = 0.01


def similarity(angle_deg: float, log_scale: float, shift) -> tuple[np.ndarray, np.ndarray]:
    """``(A, b)`` of a move about the crop centre: rotate, scale, then shift (crop px)."""
    theta = np.radians(angle_deg)
    linear = np.exp(log_scale) * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    offset = CENTRE - linear @ np.array([CENTRE, CENTRE]) + np.asarray(shift, dtype=np.float64)
    return linear, offset


def move_param(param, linear, offset) -> np.ndarray:
    """The label (62,) of a crop moved by ``c' = A c + b`` (see the module doc)."""
    param = np.asarray(param, dtype=np.float64).copy()
    pose = param[:12].reshape(3, 4)
    model_linear = _FLIP @ linear @ _FLIP
    model_offset = _FLIP @ (linear @ (-_FLIP @ _MODEL_OFFSET) + offset) + _MODEL_OFFSET
    rho = np.sqrt(abs(np.linalg.det(linear)))
    moved = np.empty((3, 4))
    moved[:2] = model_linear @ pose[:2]
    moved[:2, 3] += model_offset
    moved[2] = rho * pose[2]
    param[:12] = moved.reshape(12)
    return param


def move_points(points, linear, offset) -> np.ndarray:
    """Crop points (..., 2) moved by ``c' = A c + b``."""
    return np.asarray(points) @ np.asarray(linear).T + offset


def render_move(context, linear, offset) -> np.ndarray:
    """The 120-px crop (BGR uint8) seen after the move, sampled from a context crop."""
    import cv2

    inverse = np.linalg.inv(linear)
    # crop pixel c' samples context pixel A^-1 (c' - b) + MARGIN
    matrix = np.c_[inverse, -inverse @ offset + MARGIN]
    return cv2.warpAffine(
        context, matrix, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )


def clip_moves(rng: np.random.Generator, frames: int, spread: MoveSpread) -> list:
    """``frames`` moves ``(A, b)``: a random start, then a random drift per frame."""
    angle = rng.normal(0, spread.angle_deg)
    log_scale = rng.normal(0, spread.log_scale)
    shift = rng.normal(0, spread.shift * CROP_SIZE, 2)
    moves = []
    for _ in range(frames):
        moves.append(similarity(angle, log_scale, shift))
        angle += rng.normal(0, spread.drift_angle_deg)
        log_scale += rng.normal(0, spread.drift_log_scale)
        shift = shift + rng.normal(0, spread.drift_shift * CROP_SIZE, 2)
    return moves


def photometric(rng: np.random.Generator, crops: np.ndarray) -> np.ndarray:
    """One gain and bias per clip, and fresh sensor-like noise per frame (uint8 in and out)."""
    gain = np.exp(rng.normal(0, 0.1))
    bias = rng.normal(0, 8)
    noisy = crops.astype(np.float32) * gain + bias + rng.normal(0, 2.0, crops.shape)
    return np.clip(noisy, 0, 255).round().astype(np.uint8)
