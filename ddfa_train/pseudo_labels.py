"""Pseudo-labels: the stock regressor's parameters refined against MediaPipe's 2-D landmarks.

For each usable frame the label is a 3DDFA-V2 parameter vector in that
frame's crop (see :mod:`ddfa_blender.core.reconstruct`) whose projected 68
landmarks match MediaPipe's (mapped by :mod:`.landmarks68`), as 2DASL
supervises a 3-D regressor with 2-D landmarks:

1. MediaPipe's points are low-passed in time (zero phase, ``CUTOFF_HZ``,
   within each run of consecutive frames): speech and expression put little
   energy above it, while both trackers' frame-to-frame noise does. The
   labels therefore do not jitter, and neither should a network trained on
   them.
2. A fit over all frames at once (Adam on the CPU): one identity (40 shape
   coefficients) shared by the whole footage, starting from the median of
   the stock regressor's; per frame a scaled rotation, the crop translation
   and 10 expression coefficients, starting from the stock regressor's.
   Terms: the weighted 2-D landmark error (central points count
   ``CENTRAL_WEIGHT`` times), the BFM prior on the expression, a pull of
   the rotation toward the stock regressor's (low-passed like the points),
   and a second-difference penalty on the landmarks through time.
3. Frames whose fitted landmarks stay more than ``MAX_RESIDUAL`` (of the
   face size) from the 2-D evidence are dropped (MediaPipe lost, occlusion).

The depth row of the pose is the fitted scaled rotation's; the depth
translation is the stock regressor's (it does not affect any projection).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ddfa_blender.core.metrics import face_size, lowpass_zero_phase
from ddfa_blender.core.pose import decompose_pose, matrix_to_quaternion, quaternion_log
from ddfa_blender.core.reconstruct import CROP_SIZE, landmarks_image

from .face_torch import TorchFace
from .footage import Footage
from .landmarks68 import mesh_to_68
from .losses import central_weights

CUTOFF_HZ = 6.0
MAX_RESIDUAL = 0.04
FIT_STEPS = 400
EXPRESSION_PRIOR = 0.01  # weight of the squared expression z-scores, per crop px^2
SMOOTHNESS = 2.0  # weight of squared second differences (crop px of landmark motion)
# Weight of the squared rotation change from the stock regressor's low-passed rotation, per
# rad^2: one degree costs about 0.6 crop px^2. A 68-point 2-D fit pins the head's rotation
# less well than the network, which sees the whole face; on the talking head, labels free to
# turn the head taught a yaw bias that did not carry over to the clip's other half.
ROTATION_PRIOR = 2000.0
MIN_RUN = 8


@dataclasses.dataclass
class Labels:
    """Per footage row: ``param`` (N, 62) crop frame, ``points`` (N, 68, 2) the low-passed 2-D
    evidence in crop px, ``residual`` (N,) fit error in face sizes, ``usable`` (N,) bool."""

    param: np.ndarray
    points: np.ndarray
    residual: np.ndarray
    usable: np.ndarray


def runs(footage: Footage, has: np.ndarray) -> list[np.ndarray]:
    """Index arrays of runs of consecutive frames (same clip, no gap) where ``has`` is true."""
    out, current = [], []
    for i in range(len(footage)):
        if not has[i]:
            if current:
                out.append(np.array(current))
            current = []
            continue
        step = 1.5 / footage.fps[footage.clip[i]]
        if current and (footage.clip[i] != footage.clip[current[-1]] or footage.time[i] - footage.time[current[-1]] > step):
            out.append(np.array(current))
            current = []
        current.append(i)
    if current:
        out.append(np.array(current))
    return out


def smoothed_points(footage: Footage, evidence: str = "mediapipe", face=None) -> tuple[np.ndarray, np.ndarray]:
    """The 2-D evidence (N, 68, 2) image px, low-passed per run, and where it exists (N,).

    ``evidence``: ``"mediapipe"`` (MediaPipe's points mapped to the 68) or ``"stock"``
    (the stock regressor's own landmarks; ``face`` is then the FaceModel).
    """
    if evidence == "stock":
        points = landmarks_image(face, footage.param, footage.roi)[..., :2]
    else:
        points = mesh_to_68(footage.mesh)
    has = np.isfinite(points).all(axis=(1, 2))
    out = points.copy()
    for run in runs(footage, has):
        if len(run) >= MIN_RUN:
            fps = footage.fps[footage.clip[run[0]]]
            out[run] = lowpass_zero_phase(points[run].reshape(len(run), -1), fps, CUTOFF_HZ).reshape(-1, 68, 2)
    return out, has


def image_to_crop(points, roi) -> np.ndarray:
    """Image pixels (N, K, 2) to 0-based crop pixels of ROIs (N, 4)."""
    roi = np.asarray(roi, dtype=np.float64)
    scale = CROP_SIZE / (roi[:, 2] - roi[:, 0])
    return (points - roi[:, None, :2]) * scale[:, None, None] - 0.5


def _rotation_matrix(vectors):
    """Rodrigues: rotation matrices (N, 3, 3) from rotation vectors (N, 3), radians."""
    angle = vectors.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    axis = vectors / angle
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(-1, 3, 3)
    eye = torch.eye(3, dtype=vectors.dtype).expand_as(k)
    sin, cos = torch.sin(angle)[..., None], torch.cos(angle)[..., None]
    return eye + sin * k + (1 - cos) * (k @ k)


def fit(footage: Footage, face: TorchFace, steps: int = FIT_STEPS, should_stop=None, evidence: str = "mediapipe", face_model=None) -> Labels:
    """Fit the pseudo-labels of every footage row (see the module doc and :func:`smoothed_points`)."""
    points_img, has = smoothed_points(footage, evidence, face_model)
    n = len(footage)
    points = image_to_crop(np.nan_to_num(points_img), footage.roi)
    scale0, rotation0, translation0 = decompose_pose(footage.param[:, :12].reshape(-1, 3, 4))
    rotvec0 = quaternion_log(matrix_to_quaternion(rotation0))
    anchor = rotvec0.copy()
    for run in runs(footage, np.ones(n, bool)):
        if len(run) >= MIN_RUN:
            anchor[run] = lowpass_zero_phase(rotvec0[run], footage.fps[footage.clip[run[0]]], CUTOFF_HZ)
    rotation_anchor = torch.tensor(anchor, dtype=torch.float64)
    mean, std = face.param_mean.double(), face.param_std.double()
    exp_mean, exp_std = mean[52:62], std[52:62]

    log_scale = torch.tensor(np.log(scale0), dtype=torch.float64, requires_grad=True)
    rotvec = torch.tensor(anchor, dtype=torch.float64, requires_grad=True)
    shift = torch.tensor(translation0[:, :2], dtype=torch.float64, requires_grad=True)
    expr = torch.tensor(footage.param[:, 52:62], dtype=torch.float64, requires_grad=True)
    shape = torch.tensor(np.median(footage.param[:, 12:52], axis=0), dtype=torch.float64, requires_grad=True)
    depth = torch.tensor(translation0[:, 2], dtype=torch.float64)
    target = torch.tensor(points, dtype=torch.float64)
    mask = torch.tensor(has, dtype=torch.float64)
    weights = central_weights(torch.float64)
    lmk_mean = face.lmk_mean.double()
    lmk_shape, lmk_expr = face.lmk_shape.double(), face.lmk_expr.double()
    neighbours = [run for run in runs(footage, np.ones(n, bool)) if len(run) >= 3]
    triples = np.concatenate([np.stack([r[:-2], r[1:-1], r[2:]], 1) for r in neighbours]) if neighbours else np.zeros((0, 3), int)
    triples = torch.as_tensor(triples)

    # Step sizes: about 0.3 degree of rotation, 0.15 crop px and 6 % of a coefficient's spread.
    optimiser = torch.optim.Adam(
        [
            {"params": [log_scale, rotvec], "lr": 0.006},
            {"params": [shift], "lr": 0.15},
            {"params": [expr], "lr": 0.06 * exp_std.mean().item()},
            {"params": [shape], "lr": 0.06 * std[12:52].mean().item()},
        ]
    )

    def project():
        linear = torch.exp(log_scale)[:, None, None] * _rotation_matrix(rotvec)
        body = lmk_mean + torch.einsum("kcn,n->kc", lmk_shape, shape) + torch.einsum("kcn,bn->bkc", lmk_expr, expr)
        posed = torch.einsum("bij,bkj->bki", linear[:, :2], body) + shift[:, None, :]
        return torch.stack([posed[..., 0] - 1.0, CROP_SIZE - posed[..., 1]], dim=-1), linear

    for _ in range(steps):
        if should_stop is not None and should_stop():
            from ddfa_blender.core.errors import CaptureCancelled

            raise CaptureCancelled()
        projected, _ = project()
        error = ((projected - target).pow(2).sum(-1) * weights).sum(-1) / weights.sum()
        data = (error * mask).sum() / mask.sum().clamp_min(1)
        prior = EXPRESSION_PRIOR * ((expr - exp_mean) / exp_std).pow(2).sum(-1).mean()
        smooth = 0.0
        if len(triples):
            # Landmark motion of the second difference, in crop px.
            second = projected[triples[:, 0]] - 2 * projected[triples[:, 1]] + projected[triples[:, 2]]
            smooth = SMOOTHNESS * second.pow(2).sum(-1).mean()
        turn = ROTATION_PRIOR * (rotvec - rotation_anchor).pow(2).sum(-1).mean()
        loss = data + prior + smooth + turn
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    with torch.no_grad():
        projected, linear = project()
    param = np.zeros((n, 62), dtype=np.float32)
    pose = np.concatenate([linear.numpy(), np.c_[shift.detach().numpy(), depth.numpy()][:, :, None]], axis=-1)
    param[:, :12] = pose.reshape(n, 12)
    param[:, 12:52] = shape.detach().numpy()
    param[:, 52:62] = expr.detach().numpy()
    distance = np.linalg.norm(projected.numpy() - points, axis=-1).mean(axis=-1)
    residual = distance / np.maximum(face_size(points), 1e-6)
    usable = has & (residual <= MAX_RESIDUAL)
    return Labels(param, points.astype(np.float32), residual.astype(np.float32), usable)
