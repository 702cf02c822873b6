"""From 3DDFA-V2 parameters to points in the image: crops, landmarks, dense mesh.

Image coordinates are 0-based pixels, y down, the centre of the top-left
pixel at (0, 0) (OpenCV's convention): the image spans [-0.5, W - 0.5].

Crop frame: the regressor sees a 120x120 crop of a square ROI box
``(x0, y0, x1, y1)`` given in those coordinates; the box's edges are the
crop's outer pixel edges, so crop pixel i samples image coordinate
``x0 + (i + 0.5) * (x1 - x0) / 120``.

The network's pose maps BFM points into MATLAB-style 1-based crop coordinates
with y up; ``model_to_crop`` converts to 0-based y-down crop pixels
(``x - 1``, ``120 - y``, ``z - 1``) as in the published model. z keeps the
pixel scale and points toward the camera.
"""

from __future__ import annotations

import numpy as np

from .face_model import FaceModel
from .pose import split_param

CROP_SIZE = 120


def crop_affine(roi, size: int = CROP_SIZE) -> np.ndarray:
    """The 2x3 affine matrix taking image pixels to crop pixels for one ROI box."""
    x0, y0, x1, y1 = (float(v) for v in roi)
    sx, sy = size / (x1 - x0), size / (y1 - y0)
    return np.array(
        [[sx, 0.0, -x0 * sx - 0.5], [0.0, sy, -y0 * sy - 0.5]], dtype=np.float64
    )


def crop_to_image(points, roi) -> np.ndarray:
    """Map crop-frame points (N, K, 3) (0-based, y down) to image pixels for ROIs (N, 4).

    z is scaled by the mean of the x and y scales.
    """
    points = np.asarray(points, dtype=np.float64)
    roi = np.asarray(roi, dtype=np.float64)
    sx = (roi[:, 2] - roi[:, 0]) / CROP_SIZE
    sy = (roi[:, 3] - roi[:, 1]) / CROP_SIZE
    out = np.empty_like(points)
    out[..., 0] = roi[:, None, 0] + (points[..., 0] + 0.5) * sx[:, None]
    out[..., 1] = roi[:, None, 1] + (points[..., 1] + 0.5) * sy[:, None]
    out[..., 2] = points[..., 2] * ((sx + sy) / 2.0)[:, None]
    return out


def model_to_crop(pose, points) -> np.ndarray:
    """Apply 3x4 poses (N, 3, 4) to BFM points (N, K, 3); 0-based y-down crop pixels."""
    pose = np.asarray(pose, dtype=np.float64)
    out = np.einsum("nij,nkj->nki", pose[:, :, :3], points) + pose[:, None, :, 3]
    out[..., 0] -= 1.0
    out[..., 1] = CROP_SIZE - out[..., 1]
    out[..., 2] -= 1.0
    return out


def landmarks_crop(face: FaceModel, param) -> np.ndarray:
    """The 68 landmarks (N, 68, 3) in crop pixels for parameters (N, 62)."""
    pose, shape, expr = split_param(np.asarray(param, dtype=np.float64))
    return model_to_crop(pose, face.landmarks(shape, expr))


def landmarks_image(face: FaceModel, param, roi) -> np.ndarray:
    """The 68 landmarks (N, 68, 3) in image pixels for parameters (N, 62) and ROIs (N, 4)."""
    return crop_to_image(landmarks_crop(face, param), roi)


def dense_image(face: FaceModel, param, roi) -> np.ndarray:
    """All 38,365 vertices (V, 3) in image pixels for one frame's parameters (62,) and ROI (4,)."""
    pose, shape, expr = split_param(np.asarray(param, dtype=np.float64))
    verts = face.vertices(shape, expr)[None]
    return crop_to_image(model_to_crop(pose[None], verts), np.asarray(roi)[None])[0]


def network_landmarks_crop(raw_lmk) -> np.ndarray:
    """The landmark head's output (N, 136) as (N, 68, 2) crop pixels (x row, then y row)."""
    raw_lmk = np.asarray(raw_lmk, dtype=np.float64)
    return np.stack([raw_lmk[:, :68], raw_lmk[:, 68:]], axis=-1) * (CROP_SIZE / 2) + CROP_SIZE / 2


def roi_from_landmarks(points) -> np.ndarray:
    """Square ROI (4,) framing 2-D landmarks (68, 2) as the regressor was trained.

    The box is centred on the landmarks' bounding box; its side is sqrt(2)
    times the longer side of that bounding box.
    """
    points = np.asarray(points, dtype=np.float64)
    low, high = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
    centre = (low + high) / 2.0
    half = np.sqrt(2.0) * (high - low).max() / 2.0
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])
