"""Head pose: the 3x4 scaled pose of 3DDFA-V2, quaternions, and the Blender frame.

Frames used here:

* **BFM frame**: the face model's own axes (see :mod:`.face_model`): x image
  right, y up, z toward the viewer, micrometres.
* **Camera frame (y up)**: the regressor's orthographic view. ``P = [s*Q | t]``
  maps a BFM point X to ``s*Q@X + t``; Q is a rotation, s in pixels per
  micrometre, x right, y up, z toward the viewer. For a frontal face Q = I.
* **Blender frame**: right-handed, Z up, metres. A head at rest faces -Y, the
  convention of avatars; the camera looks along +Y. The change of axes is
  ``BLENDER_FROM_BFM``: x -> X, y (up) -> Z, z (toward viewer) -> -Y.

The regressed 3x3 block is close to, but not exactly, a scaled rotation; the
decomposition takes the nearest one in the least-squares sense (polar
decomposition through the SVD), so compose(decompose(P)) == P whenever P is a
true scaled rotation.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .face_model import MICROMETRES_TO_METRES

BLENDER_FROM_BFM = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
DEFAULT_LENS_MM = 50.0
# Centroid of the 3DDFA-V2 mean face (the 38,365 vertices of bfm_face.npz), BFM frame, um.
FACE_CENTROID_UM = (-766.0, -4186.0, 74231.0)
SENSOR_WIDTH_MM = 36.0


def split_param(param):
    """Split (..., 62) parameters into pose (..., 3, 4), shape (..., 40), expression (..., 10)."""
    param = np.asarray(param)
    return (
        param[..., :12].reshape(*param.shape[:-1], 3, 4),
        param[..., 12:52],
        param[..., 52:62],
    )


def decompose_pose(pose):
    """Split (..., 3, 4) scaled poses into scale (...), rotation (..., 3, 3), translation (..., 3).

    ``scale * rotation`` is the closest scaled rotation to ``pose[..., :3]``
    (Frobenius norm); ``rotation`` is proper (determinant +1).
    """
    pose = np.asarray(pose, dtype=np.float64)
    scale = np.full(pose.shape[:-2], np.nan)
    rotation = np.full(pose.shape[:-2] + (3, 3), np.nan)
    finite = np.isfinite(pose).all(axis=(-2, -1))
    u, sigma, vt = np.linalg.svd(pose[finite][..., :3])
    flip = np.sign(np.linalg.det(u @ vt))
    sigma[..., 2] *= flip
    u[..., :, 2] *= flip[..., None]
    rotation[finite] = u @ vt
    scale[finite] = sigma.mean(axis=-1)
    return scale, rotation, pose[..., 3].copy()


def compose_pose(scale, rotation, translation):
    """Inverse of :func:`decompose_pose`: (..., 3, 4) from scale, rotation and translation."""
    scale = np.asarray(scale, dtype=np.float64)
    linear = scale[..., None, None] * np.asarray(rotation, dtype=np.float64)
    return np.concatenate([linear, np.asarray(translation, dtype=np.float64)[..., None]], axis=-1)


def matrix_to_quaternion(rotation):
    """Quaternions (..., 4) as (w, x, y, z) with w >= 0 from rotation matrices (..., 3, 3)."""
    m = np.asarray(rotation, dtype=np.float64)
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    # Four candidate magnitudes; use the largest for numerical stability.
    cand = np.stack(
        [
            1.0 + trace,
            1.0 + 2.0 * m[..., 0, 0] - trace,
            1.0 + 2.0 * m[..., 1, 1] - trace,
            1.0 + 2.0 * m[..., 2, 2] - trace,
        ],
        axis=-1,
    )
    best = np.argmax(cand, axis=-1)
    root = np.sqrt(np.maximum(np.take_along_axis(cand, best[..., None], -1)[..., 0], 1e-300))
    q = np.empty(m.shape[:-2] + (4,))
    d21, d02, d10 = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]
    s21, s02, s10 = m[..., 2, 1] + m[..., 1, 2], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 0] + m[..., 0, 1]
    rows = [
        (root, d21 / root, d02 / root, d10 / root),
        (d21 / root, root, s10 / root, s02 / root),
        (d02 / root, s10 / root, root, s21 / root),
        (d10 / root, s02 / root, s21 / root, root),
    ]
    for index, row in enumerate(rows):
        sel = best == index
        q[sel] = np.stack([c[sel] for c in row], axis=-1)
    q *= 0.5
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def quaternion_to_matrix(quaternion):
    """Rotation matrices (..., 3, 3) from (w, x, y, z) quaternions (..., 4), any norm."""
    q = np.asarray(quaternion, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def make_continuous(quaternions):
    """Flip signs along axis 0 so each quaternion has a non-negative dot with the previous one.

    q and -q are the same rotation, but keyframe interpolation between them
    spins the long way round. NaN rows (frames without a face) are kept and
    skipped: continuity is taken across them.
    """
    q = np.array(quaternions, dtype=np.float64)
    previous = None
    for i in range(len(q)):
        if np.isnan(q[i, 0]):
            continue
        if previous is not None and np.dot(q[i], previous) < 0:
            q[i] = -q[i]
        previous = q[i]
    return q


@dataclasses.dataclass
class HeadPose:
    """Per-frame head transforms in the Blender frame (see module doc).

    ``rotation``: (N, 4) quaternions (w, x, y, z), continuous in sign; the
    rotation of a head mesh built in the Blender frame from BFM vertices.
    ``location``: (N, 3) metres, the BFM origin relative to the camera centre
    on Blender axes (the camera looks along +Y: location Y is the depth); the
    origin sits about 7 cm behind the face surface, inside the head.
    ``scale_px``: (N,) image pixels per micrometre at the head (weak perspective).
    Rows without a face are NaN.
    """

    rotation: np.ndarray
    location: np.ndarray
    scale_px: np.ndarray


def focal_length_px(image_size, lens_mm=DEFAULT_LENS_MM, sensor_mm=SENSOR_WIDTH_MM) -> float:
    """Focal length in pixels of a camera whose sensor width spans the image width."""
    return float(image_size[0]) * lens_mm / sensor_mm


def image_pose(param, roi):
    """Scale (N,) px/um, rotation (N, 3, 3) camera-from-BFM and origin (N, 2) image px.

    The image-space version of the crop-space pose: ``origin`` is where the
    BFM origin projects in the image (0-based pixels, y down).
    """
    from .reconstruct import CROP_SIZE, crop_to_image, model_to_crop

    pose, _, _ = split_param(np.asarray(param, dtype=np.float64))
    scale, rotation, _ = decompose_pose(pose)
    roi = np.asarray(roi, dtype=np.float64)
    crop_scale = ((roi[:, 2] - roi[:, 0]) + (roi[:, 3] - roi[:, 1])) / (2.0 * CROP_SIZE)
    origin = crop_to_image(model_to_crop(pose, np.zeros((len(pose), 1, 3))), roi)[:, 0, :2]
    return scale * crop_scale, rotation, origin


def head_pose_blender(param, roi, image_size, lens_mm=DEFAULT_LENS_MM, pivot_um=FACE_CENTROID_UM) -> HeadPose:
    """Head rotation and location in the Blender frame for each row of a take.

    The regressor's camera is orthographic (weak perspective); Blender's is a
    pinhole of ``lens_mm`` on a 36 mm wide sensor (horizontal fit) at the
    origin, looking along +Y. The two agree best around the face itself, so
    the conversion is anchored at ``pivot_um`` (a BFM point, by default the
    mean face's centroid): the pivot lands where the footage shows it, at
    depth focal_px / scale_px (the BFM is in real units), and the head's
    origin follows rigidly. Anchoring at the BFM origin instead, 7 cm behind
    the face, would make the face look about 7% too large at 1 m.
    """
    scale_px, rotation, origin = image_pose(param, roi)
    focal = focal_length_px(image_size, lens_mm)
    centre = (np.asarray(image_size, dtype=np.float64) - 1.0) / 2.0
    pivot = rotation @ np.asarray(pivot_um, dtype=np.float64)  # camera frame, y up, z to viewer
    pivot_u = origin[:, 0] + scale_px * pivot[:, 0]
    pivot_v = origin[:, 1] - scale_px * pivot[:, 1]
    pivot_camera = np.stack(
        [(pivot_u - centre[0]) / scale_px, -(pivot_v - centre[1]) / scale_px, -focal / scale_px], axis=-1
    )
    origin_camera = pivot_camera - pivot
    location = origin_camera @ BLENDER_FROM_BFM.T * MICROMETRES_TO_METRES
    blender_rotation = BLENDER_FROM_BFM @ rotation @ BLENDER_FROM_BFM.T
    quaternion = matrix_to_quaternion(blender_rotation)
    invalid = ~np.isfinite(scale_px)
    quaternion[invalid] = np.nan
    return HeadPose(make_continuous(quaternion), location, scale_px)
