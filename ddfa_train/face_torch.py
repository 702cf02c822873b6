"""The BFM face of 3DDFA-V2 in PyTorch: parameters to vertices and landmarks, differentiably.

Conventions as in :mod:`ddfa_blender.core.reconstruct`: a parameter vector
(62) is a 3x4 pose ``T`` (row-major), 40 shape and 10 expression
coefficients, de-normalised as ``param = raw * std + mean`` from the network's
raw output. ``V3d(p) = T [S_mean + A alpha; 1]`` puts BFM points (micrometres)
in the crop's pixel frame with y up (1-based, MATLAB style); :meth:`to_crop`
turns that into 0-based, y-down crop pixels.

Dense losses use every ``vertex_step``-th vertex of the 38,365-vertex face
(the default 8 keeps 4,796 vertices: the vertex error of a parameter change
is a smooth function over the face, so the subsample changes it by well
under 1 % while making a training step several times cheaper).
"""

from __future__ import annotations

import numpy as np
import torch

from ddfa_blender.core.face_model import FaceModel
from ddfa_blender.core.reconstruct import CROP_SIZE

DEFAULT_VERTEX_STEP = 8


class TorchFace:
    """Bases of the face on a vertex subset, as float32 tensors (see the module doc)."""

    def __init__(self, face: FaceModel, param_mean, param_std, vertex_step: int = DEFAULT_VERTEX_STEP):
        keep = np.arange(0, face.n_vertices, vertex_step)
        self.mean = torch.from_numpy(face.mean[keep].astype(np.float32))  # (K, 3)
        self.shape_basis = torch.from_numpy(face.shape_basis[keep].astype(np.float32))  # (K, 3, 40)
        self.expr_basis = torch.from_numpy(face.expr_basis[keep].astype(np.float32))  # (K, 3, 10)
        lv = face.landmark_vertex
        self.lmk_mean = torch.from_numpy(face.mean[lv].astype(np.float32))
        self.lmk_shape = torch.from_numpy(face.shape_basis[lv].astype(np.float32))
        self.lmk_expr = torch.from_numpy(face.expr_basis[lv].astype(np.float32))
        self.param_mean = torch.as_tensor(np.asarray(param_mean, dtype=np.float32))
        self.param_std = torch.as_tensor(np.asarray(param_std, dtype=np.float32))

    @property
    def n_vertices(self) -> int:
        return self.mean.shape[0]

    def denormalise(self, raw):
        """De-normalised parameters (B, 62) from raw network outputs (B, 62)."""
        return raw * self.param_std + self.param_mean

    def normalise(self, param):
        """Raw (z-scored) parameters (B, 62) from de-normalised ones."""
        return (param - self.param_mean) / self.param_std

    @staticmethod
    def split(param):
        """Pose (B, 3, 4), shape (B, 40), expression (B, 10) of de-normalised parameters."""
        return param[:, :12].reshape(-1, 3, 4), param[:, 12:52], param[:, 52:62]

    def shape_points(self, param, landmarks: bool = False):
        """``S = S_mean + A alpha`` (B, K, 3) in BFM units, before the pose."""
        _, shape, expr = self.split(param)
        if landmarks:
            mean, a_shp, a_exp = self.lmk_mean, self.lmk_shape, self.lmk_expr
        else:
            mean, a_shp, a_exp = self.mean, self.shape_basis, self.expr_basis
        return mean + torch.einsum("kcn,bn->bkc", a_shp, shape) + torch.einsum("kcn,bn->bkc", a_exp, expr)

    def vertices(self, param, landmarks: bool = False):
        """``V3d(p)`` (B, K, 3): posed points, crop pixels, y up (MATLAB 1-based)."""
        pose = self.split(param)[0]
        points = self.shape_points(param, landmarks)
        return torch.einsum("bij,bkj->bki", pose[:, :, :3], points) + pose[:, None, :, 3]

    @staticmethod
    def to_crop(points):
        """0-based, y-down crop pixels (B, K, 2) from posed points (B, K, 3)."""
        return torch.stack([points[..., 0] - 1.0, CROP_SIZE - points[..., 1]], dim=-1)

    def landmarks_crop(self, param):
        """The 68 landmarks (B, 68, 2), 0-based y-down crop pixels."""
        return self.to_crop(self.vertices(param, landmarks=True))


def landmark_head_crop(raw_lmk):
    """The landmark head's output (B, 136) as crop pixels (B, 68, 2)."""
    return torch.stack([raw_lmk[:, :68], raw_lmk[:, 68:]], dim=-1) * (CROP_SIZE / 2) + CROP_SIZE / 2


def landmark_head_raw(points):
    """Inverse of :func:`landmark_head_crop`: (B, 68, 2) crop pixels to (B, 136)."""
    scaled = (points - CROP_SIZE / 2) / (CROP_SIZE / 2)
    return torch.cat([scaled[..., 0], scaled[..., 1]], dim=-1)
