"""The 3DDFA-V2 face model: the neck-less Basel Face Model mesh and its linear bases.

Model frame ("BFM frame"): x toward the image right of a frontal face (the
performer's left), y up, z out of the face toward the viewer; units are BFM
units, i.e. micrometres (a face is about 150,000 wide). A face is

    vertices = mean + shape_basis @ shape_coeffs + expr_basis @ expr_coeffs

with 40 identity (shape) and 10 expression coefficients, as regressed by the
3DDFA-V2 network (``param[12:52]`` and ``param[52:62]``).
"""

from __future__ import annotations

import numpy as np

from .errors import CaptureError

N_SHAPE = 40
N_EXPR = 10
MICROMETRES_TO_METRES = 1e-6


class FaceModel:
    """The 38,365-vertex face mesh with shape and expression bases (see module doc)."""

    def __init__(self, mean, shape_basis, expr_basis, triangles, uv, landmark_vertex):
        self.mean = np.asarray(mean, dtype=np.float32)
        self.shape_basis = np.asarray(shape_basis, dtype=np.float32)
        self.expr_basis = np.asarray(expr_basis, dtype=np.float32)
        self.triangles = np.asarray(triangles, dtype=np.int32)
        self.uv = np.asarray(uv, dtype=np.float32)
        self.landmark_vertex = np.asarray(landmark_vertex, dtype=np.int64)
        # Landmark-only bases: reconstructing 68 points per frame must not touch the dense mesh.
        self._lmk_mean = self.mean[self.landmark_vertex]
        self._lmk_shape = self.shape_basis[self.landmark_vertex]
        self._lmk_expr = self.expr_basis[self.landmark_vertex]

    @classmethod
    def load(cls, path) -> "FaceModel":
        """Read ``bfm_face.npz`` as written by model setup."""
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(
                    data["mean"],
                    data["shape_basis"],
                    data["expr_basis"],
                    data["triangles"],
                    data["uv"],
                    data["landmark_vertex"],
                )
        except (OSError, KeyError, ValueError, EOFError) as err:
            raise CaptureError(
                f"Face model {path} is missing or corrupt ({err}); "
                "run `python scripts/fetch_models.py`."
            ) from err

    @property
    def n_vertices(self) -> int:
        return len(self.mean)

    def vertices(self, shape_coeffs, expr_coeffs=None) -> np.ndarray:
        """Dense vertices (38365, 3), BFM frame and units, for one face."""
        verts = self.mean + self.shape_basis @ np.asarray(shape_coeffs, dtype=np.float32)
        if expr_coeffs is not None:
            verts = verts + self.expr_basis @ np.asarray(expr_coeffs, dtype=np.float32)
        return verts

    def landmarks(self, shape_coeffs, expr_coeffs) -> np.ndarray:
        """The 68 landmarks (B, 68, 3), BFM frame and units, for a batch of coefficients.

        ``shape_coeffs`` is (B, 40) and ``expr_coeffs`` (B, 10).
        """
        shape_coeffs = np.asarray(shape_coeffs, dtype=np.float32)
        expr_coeffs = np.asarray(expr_coeffs, dtype=np.float32)
        return (
            self._lmk_mean[None]
            + np.einsum("kcn,bn->bkc", self._lmk_shape, shape_coeffs)
            + np.einsum("kcn,bn->bkc", self._lmk_expr, expr_coeffs)
        )
