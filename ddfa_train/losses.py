"""Training losses of 3DDFA-V2 (VDC, WPDC, fWPDC, lrr) and 2DASL-style self-supervision.

Notation: ``raw`` is the network's z-scored output (B, 62), ``target_raw``
the label in the same space; de-normalised parameters ``p = raw * std + mean``
(see :mod:`.face_torch`). Distances are in 120-px crop pixels.

* :func:`vdc`: vertex distance cost, the mean over vertices of
  ``|V3d(p) - V3d(p_g)|^2``.
* :func:`wpdc`: weighted parameter distance cost by its definition:
  ``w_i = |V3d(p^(i)) - V3d(p_g)|``, where ``p^(i)`` is the label with only
  parameter i taken from the prediction; weights are normalised by their
  maximum ``Z`` over the 62 parameters, held constant (no gradient), and the
  loss is ``sum_i (w_i / Z) (raw_i - target_raw_i)^2`` (mean over the batch).
  It builds 62 faces per sample: a reference, not for training.
* :func:`fwpdc`: the same value in closed form (3DDFA-V2's Algorithm 2):
  with ``S = S_mean + A alpha_g`` built once, ``w_T[r, c] = |dT[r, c]|
  |S[:, c]|`` for c = 1..3, ``w_T[r, 4] = |dT[r, 4]| sqrt(N)``, and
  ``w_alpha[i] = f |d alpha_i| |A[:, i]|`` with ``f`` the scale of the
  label's pose (exact when that pose is a scaled rotation).
* :func:`lrr_weighted`: the landmark-regression regulariser, the landmark
  head's squared error added with weight ``|l_main| / |l_lrr|``.
* :func:`landmark_2d`: 2DASL's 2-D landmark loss: the projected 3-D
  landmarks of the prediction against 2-D landmarks, central points (brows,
  eyes, nose, mouth: 17..67) weighted ``CENTRAL_WEIGHT`` times the jaw line.
* :func:`cycle_2d`: the 2-D -> 3-D -> 2-D cycle: the 3-D landmarks rebuilt
  from the parameter head, projected, must land on the landmark head's 2-D
  points.
* :func:`prior`: keeps shape and expression plausible against the BFM prior
  as the regressor learnt it: a penalty on z-scores beyond ``PRIOR_SIGMAS``.
* :func:`temporal_consistency`: the short-video synthesis's point, stated as
  a loss: the frames of a synthetic clip show one face under different
  in-plane moves (similarity transforms), so the predicted landmarks, each
  frame's mapped back through the inverse of its own move, must coincide.
  Needs no label, so it also applies to clips of other faces.
* :func:`distillation`: the stock network as teacher on clips of other
  faces: the student's vertex distance to the teacher's parameters plus its
  landmark head's squared distance to the teacher's.
"""

from __future__ import annotations

import math

import torch

from .face_torch import TorchFace, landmark_head_crop

CENTRAL_WEIGHT = 2.0
PRIOR_SIGMAS = 3.0
ALPHA = slice(12, 62)


def vdc(face: TorchFace, raw, target_raw):
    """Mean squared vertex distance (crop px^2) between prediction and label."""
    difference = face.vertices(face.denormalise(raw)) - face.vertices(face.denormalise(target_raw))
    return difference.pow(2).sum(-1).mean()


def wpdc_weights(face: TorchFace, raw, target_raw):
    """``w_i`` (B, 62) by the definition: vertex error of taking parameter i alone from ``raw``."""
    batch = raw.shape[0]
    eye = torch.eye(62, dtype=raw.dtype)
    mixed = target_raw[:, None, :] * (1 - eye) + raw[:, None, :] * eye  # (B, 62, 62)
    posed = face.vertices(face.denormalise(mixed.reshape(-1, 62))).reshape(batch, 62, -1, 3)
    truth = face.vertices(face.denormalise(target_raw))[:, None]
    return (posed - truth).pow(2).sum(dim=(-1, -2)).sqrt()


def fwpdc_weights(face: TorchFace, raw, target_raw):
    """The same weights (B, 62) in closed form (see the module doc)."""
    p, g = face.denormalise(raw), face.denormalise(target_raw)
    shape = face.shape_points(g)  # (B, K, 3)
    column_norm = shape.pow(2).sum(dim=1).sqrt()  # (B, 3): |S[:, c]|
    n = face.n_vertices
    pose_norm = torch.cat([column_norm, torch.full_like(column_norm[:, :1], math.sqrt(n))], dim=1)
    w_pose = (p[:, :12] - g[:, :12]).abs().reshape(-1, 3, 4) * pose_norm[:, None, :]
    basis = torch.cat([face.shape_basis, face.expr_basis], dim=-1)  # (K, 3, 50)
    basis_norm = basis.pow(2).sum(dim=(0, 1)).sqrt()  # (50,)
    scale = g[:, :12].reshape(-1, 3, 4)[:, :, :3].pow(2).sum(dim=(1, 2)).div(3).sqrt()  # (B,)
    w_alpha = scale[:, None] * (p[:, ALPHA] - g[:, ALPHA]).abs() * basis_norm
    return torch.cat([w_pose.reshape(-1, 12), w_alpha], dim=1)


def weighted_parameter_cost(weights, raw, target_raw):
    """``mean_b sum_i (w_i / Z) (raw_i - target_raw_i)^2`` with weights held constant."""
    weights = weights.detach()
    z = weights.max(dim=1, keepdim=True).values.clamp_min(1e-12)
    return ((weights / z) * (raw - target_raw).pow(2)).sum(dim=1).mean()


def wpdc(face: TorchFace, raw, target_raw):
    """WPDC by its definition (reference implementation; see the module doc)."""
    return weighted_parameter_cost(wpdc_weights(face, raw, target_raw), raw, target_raw)


def fwpdc(face: TorchFace, raw, target_raw):
    """fWPDC: WPDC's value with the weights in closed form."""
    return weighted_parameter_cost(fwpdc_weights(face, raw, target_raw), raw, target_raw)


def lrr(raw_lmk, target_points):
    """Landmark head (B, 136) against target landmarks (B, 68, 2): mean squared crop px."""
    return (landmark_head_crop(raw_lmk) - target_points).pow(2).sum(-1).mean()


def lrr_weighted(main, auxiliary):
    """``l_main + (|l_main| / |l_lrr|) l_lrr``, the ratio held constant."""
    ratio = main.detach().abs() / auxiliary.detach().abs().clamp_min(1e-12)
    return main + ratio * auxiliary


def central_weights(dtype=torch.float32):
    """Per-landmark weights (68,): 1 on the jaw line (0..16), ``CENTRAL_WEIGHT`` elsewhere."""
    weights = torch.full((68,), CENTRAL_WEIGHT, dtype=dtype)
    weights[:17] = 1.0
    return weights


def landmark_2d(face: TorchFace, raw, target_points, mask=None):
    """Weighted mean squared 2-D error (crop px^2) of the projected 3-D landmarks.

    ``target_points`` (B, 68, 2) crop px; ``mask`` (B,) true where the sample has 2-D labels.
    """
    projected = face.landmarks_crop(face.denormalise(raw))
    error = (projected - target_points).pow(2).sum(-1) * central_weights(raw.dtype)
    per_sample = error.sum(-1) / central_weights(raw.dtype).sum()
    if mask is None:
        return per_sample.mean()
    return (per_sample * mask).sum() / mask.sum().clamp_min(1)


def cycle_2d(face: TorchFace, raw, raw_lmk):
    """Mean squared crop-px distance between the projected 3-D landmarks and the landmark head."""
    projected = face.landmarks_crop(face.denormalise(raw))
    return (projected - landmark_head_crop(raw_lmk)).pow(2).sum(-1).mean()


def prior(raw):
    """Mean squared excess of the shape and expression z-scores beyond ``PRIOR_SIGMAS``."""
    return torch.relu(raw[:, ALPHA].abs() - PRIOR_SIGMAS).pow(2).mean()


def unmove_points(points, moves):
    """Crop points (B, K, 2) mapped back through moves (B, 2, 3) ``c' = A c + b``: ``A^-1 (c' - b)``."""
    linear, offset = moves[:, :, :2], moves[:, :, 2]
    return torch.einsum("bij,bkj->bki", torch.linalg.inv(linear), points - offset[:, None, :])


def temporal_consistency(face: TorchFace, raw, moves, frames: int):
    """Mean squared spread (crop px^2) of a clip's landmarks, each frame's mapped back.

    ``raw`` (B, 62) for B = clips x ``frames`` samples stored clip-major, ``moves`` (B, 2, 3)
    the in-plane move of each sample's crop. Zero exactly when the predicted 68 landmarks
    transform with the similarity transform from frame to frame.
    """
    back = unmove_points(face.landmarks_crop(face.denormalise(raw)), moves).reshape(-1, frames, 68, 2)
    return (back - back.mean(dim=1, keepdim=True)).pow(2).sum(-1).mean()


def distillation(face: TorchFace, raw, raw_lmk, teacher_raw, teacher_lmk):
    """Vertex distance (crop px^2) to the teacher's parameters plus the landmark heads' distance."""
    heads = (landmark_head_crop(raw_lmk) - landmark_head_crop(teacher_lmk)).pow(2).sum(-1).mean()
    return vdc(face, raw, teacher_raw) + heads
