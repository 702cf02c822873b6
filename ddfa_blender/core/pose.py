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


def quaternion_multiply(a, b):
    """Hamilton product ``a * b`` of (..., 4) quaternions (w, x, y, z)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def quaternion_conjugate(q):
    """Inverse of unit quaternions (..., 4)."""
    q = np.array(q, dtype=np.float64)
    q[..., 1:] *= -1.0
    return q


def quaternion_log(q):
    """Rotation vectors (..., 3), radians, of unit quaternions (..., 4); q and -q agree.

    The shorter arc is taken, so the angle is at most pi.
    """
    q = np.asarray(q, dtype=np.float64)
    q = np.where(q[..., :1] < 0, -q, q)
    vector_norm = np.linalg.norm(q[..., 1:], axis=-1)
    angle = 2.0 * np.arctan2(vector_norm, q[..., 0])
    # angle / sin(angle / 2) -> 2 as the angle -> 0.
    factor = np.where(vector_norm > 1e-12, angle / np.maximum(vector_norm, 1e-300), 2.0)
    return q[..., 1:] * factor[..., None]


def quaternion_exp(rotation_vector):
    """Unit quaternions (..., 4) of rotation vectors (..., 3) in radians."""
    v = np.asarray(rotation_vector, dtype=np.float64)
    angle = np.linalg.norm(v, axis=-1)
    half = 0.5 * angle
    factor = np.where(angle > 1e-12, np.sin(half) / np.maximum(angle, 1e-300), 0.5)
    return np.concatenate([np.cos(half)[..., None], v * factor[..., None]], axis=-1)


def slerp(q0, q1, fraction):
    """Rotations a ``fraction`` (...) of the way from q0 to q1 (..., 4), shorter arc."""
    step = quaternion_log(quaternion_multiply(quaternion_conjugate(q0), q1))
    return quaternion_multiply(q0, quaternion_exp(step * np.asarray(fraction)[..., None]))


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


@dataclasses.dataclass
class ImagePose:
    """Rows of 3x4 poses split into image-frame channels (see the module doc).

    ``scale`` (N,) image px per micrometre; ``rotation`` (N, 4) quaternions
    (w, x, y, z), w >= 0, camera-from-BFM in the image pose frame (x right,
    y up, z toward the camera); ``translation`` (N, 3) image pixels of the BFM
    origin in that frame (x, -y, z of the image); ``residual`` (N, 3, 3)
    ``E`` with ``M = s R (I + E)``.
    """

    scale: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    residual: np.ndarray


_Y_UP = np.diag([1.0, -1.0, 1.0])


def _pose_output_to_image(roi):
    """The affine map ``y -> G y + g`` from a pose's output ``P @ [X, 1]`` to image pixels.

    Measured through :func:`.reconstruct.model_to_crop` and
    :func:`.reconstruct.crop_to_image` themselves, so it always follows their
    conventions; returns ``G`` (N, 3, 3) and ``g`` (N, 3) for ROIs (N, 4).
    """
    from .reconstruct import crop_to_image, model_to_crop  # reconstruct imports this module

    roi = np.asarray(roi, dtype=np.float64)
    probes = np.vstack([np.zeros(3), np.eye(3)])
    pose = np.zeros((len(roi), 4, 3, 4))
    pose[..., 3] = probes
    image = crop_to_image(
        model_to_crop(pose.reshape(-1, 3, 4), np.zeros((4 * len(roi), 1, 3))).reshape(-1, 4, 3),
        roi,
    )
    offset = image[:, 0]
    return np.swapaxes(image[:, 1:] - offset[:, None], -1, -2), offset


def image_pose(param, roi) -> ImagePose:
    """The pose of ``param`` (N, 62) in crop space of ``roi`` (N, 4) as an :class:`ImagePose`.

    Rows with NaN come out NaN.
    """
    param = np.asarray(param, dtype=np.float64)
    crop_pose = param[:, :12].reshape(-1, 3, 4)
    to_image, offset = _pose_output_to_image(roi)
    linear = _Y_UP @ to_image @ crop_pose[:, :, :3]
    translation = np.einsum(
        "ij,nj->ni", _Y_UP, np.einsum("nij,nj->ni", to_image, crop_pose[:, :, 3]) + offset
    )
    scale, rotation, _ = decompose_pose(np.concatenate([linear, translation[:, :, None]], axis=-1))
    residual = (
        np.einsum("nji,njk->nik", rotation, linear) / scale[:, None, None] - np.eye(3)
    )
    quaternion = np.full((len(param), 4), np.nan)
    finite = np.isfinite(scale)
    quaternion[finite] = matrix_to_quaternion(rotation[finite])
    return ImagePose(scale, quaternion, translation, residual)


def crop_param(pose: ImagePose, roi, shape, expression) -> np.ndarray:
    """Inverse of :func:`image_pose`: float64 param (N, 62) in crop space of ``roi`` (N, 4)."""
    to_image, offset = _pose_output_to_image(roi)
    from_image = np.linalg.inv(to_image)
    rotation = quaternion_to_matrix(pose.rotation)
    linear = pose.scale[:, None, None] * rotation @ (np.eye(3) + pose.residual)
    crop_linear = from_image @ _Y_UP @ linear
    image_origin = np.einsum("ij,nj->ni", _Y_UP, pose.translation)
    t = np.einsum("nij,nj->ni", from_image, image_origin - offset)
    pose34 = np.concatenate([crop_linear, t[:, :, None]], axis=-1).reshape(-1, 12)
    return np.concatenate(
        [pose34, np.asarray(shape, dtype=np.float64), np.asarray(expression, dtype=np.float64)],
        axis=-1,
    )


def ray_rotation(points) -> np.ndarray:
    """Rotations (N, 3, 3) turning the optical axis onto the rays to ``points`` (N, 3), the shortest way.

    Camera frame y up, z toward the viewer: the optical axis is (0, 0, -1).
    A weak-perspective regressor reports a face's rotation as seen along the
    ray to it; turning that by the ray's rotation gives the rotation in the
    camera frame. Rows with NaN come out NaN.
    """
    ray = np.asarray(points, dtype=np.float64)
    ray = ray / np.linalg.norm(ray, axis=-1, keepdims=True)
    axis = np.stack([ray[:, 1], -ray[:, 0], np.zeros(len(ray))], axis=-1)  # (0, 0, -1) x ray
    cosine = -ray[:, 2]
    cross = np.zeros((len(ray), 3, 3))
    cross[:, 0, 2], cross[:, 1, 2] = axis[:, 1], -axis[:, 0]
    cross[:, 2, 0], cross[:, 2, 1] = -axis[:, 1], axis[:, 0]
    return np.eye(3) + cross + cross @ cross / (1.0 + cosine)[:, None, None]


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

    The crop shows the face as the camera sees it along the ray to the pivot,
    so the regressed rotation is relative to that ray: the ray's turn away
    from the optical axis (:func:`ray_rotation`) is added. Without it a face
    5 degrees off-axis came out turned 5 more degrees (synthetic heads with
    known rotation: yaw error against the off-axis angle, slope 1.0); a face
    that looks into the lens faces the camera wherever it is in the frame.
    """
    image = image_pose(param, roi)
    scale_px, rotation = image.scale, quaternion_to_matrix(image.rotation)
    origin = np.stack([image.translation[:, 0], -image.translation[:, 1]], axis=-1)
    focal = focal_length_px(image_size, lens_mm)
    centre = (np.asarray(image_size, dtype=np.float64) - 1.0) / 2.0
    pivot = rotation @ np.asarray(pivot_um, dtype=np.float64)  # camera frame, y up, z to viewer
    pivot_u = origin[:, 0] + scale_px * pivot[:, 0]
    pivot_v = origin[:, 1] - scale_px * pivot[:, 1]
    pivot_camera = np.stack(
        [(pivot_u - centre[0]) / scale_px, -(pivot_v - centre[1]) / scale_px, -focal / scale_px], axis=-1
    )
    # The crop shows the face as seen along the ray to it, not along the optical axis.
    rotation = ray_rotation(pivot_camera) @ rotation
    origin_camera = pivot_camera - rotation @ np.asarray(pivot_um, dtype=np.float64)
    location = origin_camera @ BLENDER_FROM_BFM.T * MICROMETRES_TO_METRES
    blender_rotation = BLENDER_FROM_BFM @ rotation @ BLENDER_FROM_BFM.T
    quaternion = matrix_to_quaternion(blender_rotation)
    invalid = ~np.isfinite(scale_px)
    quaternion[invalid] = np.nan
    return HeadPose(make_continuous(quaternion), location, scale_px)
