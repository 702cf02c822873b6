"""MediaPipe's 478 face-mesh landmarks as the 68 points of the 3DDFA-V2 network.

Each of the 68 points (multi-PIE order, as ``keypoints_sim`` of the BFM) is
a convex combination of one to three MediaPipe landmarks (:data:`MESH_TO_68`).
The table was fitted by :func:`fit_mapping` on the stock mb05 regressor's
landmarks and MediaPipe's on frames of ``obama.mp4``, ``single_face.mp4``,
``face_noface.mov`` and ``noface_face.mov`` (271 frames; the talking head,
used to measure adaptation, was left out), printed by
``benchmarks/calibrate_mesh68.py``. So the mapped points follow the
network's own 68-point convention on average over other people: a
performer-specific difference is what adaptation may learn, a convention
difference is not. Iris points (468-477) are never used (they move with
gaze). Residual on the calibration frames: 1.2 % of the face size on
average, 1.0 % inside the face, 1.9 % on the jaw line.
"""

from __future__ import annotations

import itertools

import numpy as np

from ddfa_blender.core.metrics import face_size

N_IRIS_FIRST = 468
CANDIDATES = 7

# (MediaPipe indices, weights) for each of the 68 points.
MESH_TO_68 = (
    ((127, 162), (0.762, 0.238)),
    ((234, 93), (0.948, 0.052)),
    ((93, 132), (0.745, 0.255)),
    ((132, 192), (0.749, 0.251)),
    ((58, 135), (0.657, 0.343)),
    ((136, 172, 211), (0.692, 0.227, 0.082)),
    ((150, 211), (0.925, 0.075)),
    ((149, 148), (0.578, 0.422)),
    ((148, 377), (0.548, 0.452)),
    ((377, 428, 378), (0.418, 0.109, 0.472)),
    ((379, 378, 431), (0.76, 0.178, 0.062)),
    ((365, 397, 379), (0.448, 0.334, 0.218)),
    ((397, 288), (0.535, 0.465)),
    ((361, 288, 411), (0.607, 0.36, 0.033)),
    ((323, 361), (0.666, 0.334)),
    ((454, 323), (0.823, 0.177)),
    ((356, 389), (0.92, 0.08)),
    ((71, 63, 225), (0.417, 0.31, 0.273)),
    ((68, 224, 104), (0.158, 0.481, 0.361)),
    ((105, 66, 27), (0.489, 0.466, 0.046)),
    ((66, 107, 28), (0.692, 0.22, 0.089)),
    ((107, 221, 222), (0.778, 0.043, 0.179)),
    ((336, 295, 442), (0.632, 0.1, 0.267)),
    ((296, 258), (0.849, 0.151)),
    ((334, 295), (0.761, 0.239)),
    ((283, 334, 298), (0.46, 0.211, 0.329)),
    ((300, 301), (0.902, 0.098)),
    ((6, 122, 417), (0.338, 0.292, 0.37)),
    ((419, 3), (0.575, 0.425)),
    ((5, 281, 4), (0.639, 0.089, 0.273)),
    ((1, 4), (0.565, 0.435)),
    ((97, 240), (0.518, 0.482)),
    ((97, 242), (0.768, 0.232)),
    ((2, 141, 164), (0.712, 0.11, 0.177)),
    ((326, 370), (0.736, 0.264)),
    ((326, 460), (0.571, 0.429)),
    ((7, 130, 160), (0.137, 0.421, 0.443)),
    ((161, 27, 158), (0.472, 0.288, 0.24)),
    ((157, 153, 222), (0.121, 0.438, 0.441)),
    ((190, 154), (0.53, 0.47)),
    ((22, 158), (0.596, 0.404)),
    ((144, 145, 160), (0.708, 0.133, 0.159)),
    ((398, 381, 384), (0.562, 0.365, 0.073)),
    ((258, 286, 374), (0.418, 0.148, 0.434)),
    ((387, 388), (0.903, 0.097)),
    ((359, 249, 467), (0.205, 0.515, 0.28)),
    ((390, 373, 254), (0.447, 0.453, 0.101)),
    ((380, 374, 385), (0.659, 0.314, 0.027)),
    ((61,), (1.0,)),
    ((40, 73), (0.574, 0.426)),
    ((37, 0), (0.829, 0.171)),
    ((0, 37), (0.887, 0.113)),
    ((267, 0), (0.625, 0.375)),
    ((303, 304), (0.682, 0.318)),
    ((291, 307, 408), (0.428, 0.408, 0.164)),
    ((404, 318), (0.798, 0.202)),
    ((316, 313, 15), (0.564, 0.334, 0.103)),
    ((14, 85, 18), (0.419, 0.189, 0.392)),
    ((84, 179), (0.693, 0.307)),
    ((91, 89, 180), (0.424, 0.169, 0.407)),
    ((78,), (1.0,)),
    ((82, 81), (0.703, 0.297)),
    ((13, 38), (0.844, 0.156)),
    ((312, 13), (0.958, 0.042)),
    ((307, 408), (0.499, 0.501)),
    ((14, 402), (0.499, 0.501)),
    ((87, 317), (0.615, 0.385)),
    ((87, 178), (0.544, 0.456)),
)


def mesh_to_68(mesh) -> np.ndarray:
    """The 68 points (..., 68, 2) from MediaPipe landmarks (..., 478, 2), same units."""
    mesh = np.asarray(mesh, dtype=np.float64)
    out = np.empty(mesh.shape[:-2] + (68, 2))
    for k, (indices, weights) in enumerate(MESH_TO_68):
        out[..., k, :] = np.tensordot(mesh[..., list(indices), :], np.asarray(weights), axes=([-2], [0]))
    return out


def fit_mapping(lmk68, mesh) -> list[tuple[tuple[int, ...], tuple[float, ...]]]:
    """Fit :data:`MESH_TO_68` from paired frames: landmarks (F, 68, 2) and mesh (F, 478, 2).

    Coordinates are normalised per frame (box centre, face size). For each
    point, among the ``CANDIDATES`` mesh points nearest on median, the convex
    combination of one to three of them with the lowest mean distance wins
    (an affine least-squares fit, kept only when all weights are >= 0).
    """
    lmk68 = np.asarray(lmk68, dtype=np.float64)
    mesh = np.asarray(mesh, dtype=np.float64)[:, :N_IRIS_FIRST]
    centre = (lmk68.max(axis=1) + lmk68.min(axis=1)) / 2
    size = face_size(lmk68)[:, None, None]
    target = (lmk68 - centre[:, None]) / size
    source = (mesh - centre[:, None]) / size
    table = []
    for k in range(68):
        spread = np.median(np.linalg.norm(source - target[:, k : k + 1], axis=-1), axis=0)
        best = None
        for count in (1, 2, 3):
            for combo in itertools.combinations(np.argsort(spread)[:CANDIDATES], count):
                weights = _affine_fit(source[:, combo], target[:, k])
                if weights is None:
                    continue
                error = np.mean(np.linalg.norm(np.einsum("fcd,c->fd", source[:, combo], weights) - target[:, k], axis=-1))
                if best is None or error < best[0] - 1e-4:
                    best = (error, combo, weights)
        table.append((tuple(int(i) for i in best[1]), tuple(round(float(w), 3) for w in best[2])))
    return table


def _affine_fit(points, target):
    """Weights (C,) summing to 1 that best map points (F, C, 2) to target (F, 2); None if any < 0."""
    count = points.shape[1]
    if count == 1:
        return np.ones(1)
    a = (points[:, 1:] - points[:, :1]).transpose(0, 2, 1).reshape(-1, count - 1)
    b = (target - points[:, 0]).reshape(-1)
    rest, *_ = np.linalg.lstsq(a, b, rcond=None)
    weights = np.r_[1.0 - rest.sum(), rest]
    return None if (weights < 0).any() else weights
