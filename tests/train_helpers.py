"""A small random face model for the training tests (no ../shared needed)."""

import numpy as np

from ddfa_blender.core.face_model import FaceModel


def random_face(rng, vertices: int = 300) -> FaceModel:
    """A FaceModel with random mean and bases on ``vertices`` points, BFM-like magnitudes (um)."""
    mean = rng.normal(0, 40000, (vertices, 3)).astype(np.float32)
    shape_basis = rng.normal(0, 300, (vertices, 3, 40)).astype(np.float32)
    expr_basis = rng.normal(0, 2, (vertices, 3, 10)).astype(np.float32)
    return FaceModel(
        mean, shape_basis, expr_basis, np.zeros((0, 3), np.int32), np.zeros((vertices, 2), np.float32),
        rng.choice(vertices, 68, replace=False),
    )


def random_rotation(rng) -> np.ndarray:
    """A uniformly random proper rotation (3, 3)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def random_params(rng, count: int, mean, std) -> np.ndarray:
    """De-normalised parameters (count, 62) whose poses are true scaled rotations."""
    param = mean + rng.normal(size=(count, 62)) * std
    for row in param:
        scale = 8e-4 * rng.uniform(0.8, 1.2)
        pose = np.c_[scale * random_rotation(rng), rng.uniform(30, 90, 3)]
        row[:12] = pose.reshape(12)
    return param
