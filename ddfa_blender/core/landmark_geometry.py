"""MediaPipe's face landmarks as a compact row of head-frame measurements.

The face landmarker (:mod:`.face_landmarker`) finds 478 landmarks per face
(the face mesh plus two irises). Storing them all would cost 5.7 kB per take
row; the ARKit solver (:mod:`.arkit`) needs far less: a few dozen distances
and offsets, measured in the head's own frame so that turning the head moves
none of them. :func:`measure` turns one face's landmarks into the row
recorded in the take as ``ch.mp_geometry`` (columns :data:`COLUMNS`, float32,
about 0.4 kB), NaN where the landmarker found no face.

Head frame (from landmarks that expressions hardly move): origin at the
bridge of the nose (168); x from the right eye's centre (corners 33, 133) to
the left eye's (263, 362), i.e. toward the performer's left; y up, at right
angles to x in the plane through the nose tip (1) and the forehead (151);
z toward the viewer. Unit: the distance between the two eye centres (about
6.3 cm on an adult). "Left" is the performer's left, as in ARKit; sided
measurements are mirrored so that for both sides a positive value means the
same motion (``corner_out``: away from the midline).

The last columns keep the head frame itself: its rotation as a quaternion
(w, x, y, z) in the landmarker's crop frame (x right, y up, z toward the
viewer) and the eye-centre distance in crop widths.

Landmark numbers are MediaPipe's face-mesh indices (checked by drawing them
on a rendered face); 468 and 473 are the centres of the right and left iris.
"""

from __future__ import annotations

import numpy as np

CHANNEL_NAME = "mp_geometry"
RIGHT_EYE = (33, 133)
LEFT_EYE = (263, 362)
NOSE_BRIDGE, NOSE_TIP, FOREHEAD = 168, 1, 151

# Per side: landmark numbers (performer's left: the 263/362 eye and the 291 mouth corner).
_SIDE_POINTS = {
    "Left": dict(sign=1.0, corner=291, inner_corner=308, upper_lip=267, upper_lip_outer=269,
                 upper_inner=312, lower_lip=314, lower_lip_outer=405, lower_inner=317,
                 eye_outer=263, eye_inner=362, lid_upper=(386, 385, 387), lid_lower=(374, 380, 373),
                 iris=473, brow_inner=(336, 285), brow_middle=(334, 282), brow_outer=(300, 276),
                 cheek_high=(346, 347), cheek=280, cheek_low=(425, 411), nose_wing=(327, 358),
                 nasolabial=436),
    "Right": dict(sign=-1.0, corner=61, inner_corner=78, upper_lip=37, upper_lip_outer=39,
                  upper_inner=82, lower_lip=84, lower_lip_outer=181, lower_inner=87,
                  eye_outer=33, eye_inner=133, lid_upper=(159, 158, 160), lid_lower=(145, 153, 144),
                  iris=468, brow_inner=(107, 55), brow_middle=(105, 52), brow_outer=(70, 46),
                  cheek_high=(117, 118), cheek=50, cheek_low=(205, 187), nose_wing=(98, 129),
                  nasolabial=216),
}
CENTRAL = ("lip_gap", "lip_gap_sides", "chin_up", "chin_side", "chin_forward", "jaw_side",
           "chin_side_of_nose", "chin_forward_of_nose", "mouth_side_of_nose",
           "mouth_width", "mouth_inner_width", "mouth_side", "mouth_inner_side", "upper_lip_up",
           "lower_lip_up", "lower_lip_over_chin", "upper_lip_height", "lower_lip_height",
           "lips_forward", "upper_lip_forward", "lower_lip_forward", "nose_base_up")
SIDED = ("corner_up", "corner_height", "corner_out", "corner_forward", "upper_lip_up",
         "upper_lip_outer_up", "lower_lip_up", "lower_lip_outer_up", "upper_lip_height",
         "lower_lip_height", "lip_gap", "lid_upper", "lid_lower", "lid_gap", "gaze_out", "gaze_up",
         "eye_height", "brow_inner_up", "brow_middle_up", "brow_outer_up", "brow_inner_out",
         "cheek_high_up", "cheek_up", "cheek_out", "cheek_low_out", "cheek_low_forward",
         "nose_wing_up", "nose_wing_out", "nasolabial_up")
FRAME_COLUMNS = ("head_qw", "head_qx", "head_qy", "head_qz", "head_eye_distance")
COLUMNS = CENTRAL + tuple(f"{name}_{side}" for side in ("Left", "Right") for name in SIDED) + FRAME_COLUMNS


def _needed() -> tuple[int, ...]:
    found = {NOSE_BRIDGE, NOSE_TIP, FOREHEAD, *RIGHT_EYE, *LEFT_EYE,
             0, 2, 13, 14, 17, 61, 78, 82, 87, 148, 152, 291, 308, 312, 317, 377}
    for points in _SIDE_POINTS.values():
        for value in points.values():
            if isinstance(value, tuple):
                found.update(value)
            elif isinstance(value, int):
                found.add(value)
    return tuple(sorted(found))


LANDMARKS = _needed()  # the landmark numbers :func:`measure` reads


def head_frame(points) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotation (..., 3, 3) (columns: the head's x, y, z axes), origin (..., 3) and scale (...).

    ``points``: landmarks (..., 478, 3) with y up and z toward the viewer.
    """
    right = points[..., list(RIGHT_EYE), :].mean(axis=-2)
    left = points[..., list(LEFT_EYE), :].mean(axis=-2)
    across = left - right
    scale = np.linalg.norm(across, axis=-1)
    x_axis = across / scale[..., None]
    up = points[..., FOREHEAD, :] - points[..., NOSE_TIP, :]
    z_axis = np.cross(x_axis, up)
    z_axis /= np.linalg.norm(z_axis, axis=-1, keepdims=True)
    y_axis = np.cross(z_axis, x_axis)
    return np.stack([x_axis, y_axis, z_axis], axis=-1), points[..., NOSE_BRIDGE, :], scale


def measure(landmarks) -> np.ndarray:
    """The ``mp_geometry`` row(s) (..., len(COLUMNS)) float32 of landmarks (..., 478, 3).

    ``landmarks``: MediaPipe's normalised landmarks of a square crop (x right
    and y down in crop widths, z away from the viewer at the same scale), or
    any array of the same layout and a common scale.
    """
    from .pose import matrix_to_quaternion

    points = np.asarray(landmarks, dtype=np.float64) * np.array([1.0, -1.0, -1.0])
    rotation, origin, scale = head_frame(points)
    local = np.einsum("...kc,...cd->...kd", points - origin[..., None, :], rotation) / scale[..., None, None]
    x, y, z = local[..., 0], local[..., 1], local[..., 2]
    lip_middle = (y[..., 13] + y[..., 14]) / 2.0
    f = {
        "lip_gap": y[..., 13] - y[..., 14],
        "lip_gap_sides": (y[..., 82] - y[..., 87] + y[..., 312] - y[..., 317]) / 2.0,
        "chin_up": y[..., 152],
        "chin_side": x[..., 152],
        "chin_forward": z[..., 152],
        "jaw_side": (x[..., 152] + x[..., 377] + x[..., 148]) / 3.0,
        # Against the nose base, about as deep as the chin: depth errors hardly leak in.
        "chin_side_of_nose": x[..., 152] - x[..., 2],
        "chin_forward_of_nose": z[..., 152] - z[..., 2],
        "mouth_side_of_nose": (x[..., 61] + x[..., 291] + x[..., 0] + x[..., 17]) / 4.0 - x[..., 2],
        "mouth_width": x[..., 291] - x[..., 61],
        "mouth_inner_width": x[..., 308] - x[..., 78],
        "mouth_side": (x[..., 61] + x[..., 291] + x[..., 0] + x[..., 17]) / 4.0,
        "mouth_inner_side": (x[..., 13] + x[..., 14]) / 2.0,
        "upper_lip_up": y[..., 0],
        "lower_lip_up": y[..., 17],
        "lower_lip_over_chin": y[..., 17] - y[..., 152],
        "upper_lip_height": y[..., 0] - y[..., 13],
        "lower_lip_height": y[..., 14] - y[..., 17],
        "lips_forward": (z[..., 0] + z[..., 17]) / 2.0,
        "upper_lip_forward": z[..., 0],
        "lower_lip_forward": z[..., 17],
        "nose_base_up": y[..., 2],
    }
    for side, s in _SIDE_POINTS.items():
        sign = s["sign"]

        def mean_y(ids):
            return y[..., list(ids)].mean(axis=-1)

        eye_y = (y[..., s["eye_outer"]] + y[..., s["eye_inner"]]) / 2.0
        eye_x = (x[..., s["eye_outer"]] + x[..., s["eye_inner"]]) / 2.0
        eye_width = np.abs(x[..., s["eye_outer"]] - x[..., s["eye_inner"]])
        lid_upper, lid_lower = mean_y(s["lid_upper"]) - eye_y, mean_y(s["lid_lower"]) - eye_y
        f.update({
            f"corner_up_{side}": y[..., s["corner"]] - lip_middle,
            f"corner_height_{side}": y[..., s["corner"]],
            f"corner_out_{side}": sign * x[..., s["corner"]],
            f"corner_forward_{side}": z[..., s["corner"]],
            f"upper_lip_up_{side}": y[..., s["upper_lip"]],
            f"upper_lip_outer_up_{side}": y[..., s["upper_lip_outer"]],
            f"lower_lip_up_{side}": y[..., s["lower_lip"]],
            f"lower_lip_outer_up_{side}": y[..., s["lower_lip_outer"]],
            f"upper_lip_height_{side}": y[..., s["upper_lip"]] - y[..., s["upper_inner"]],
            f"lower_lip_height_{side}": y[..., s["lower_inner"]] - y[..., s["lower_lip"]],
            f"lip_gap_{side}": y[..., s["upper_inner"]] - y[..., s["lower_inner"]],
            f"lid_upper_{side}": lid_upper,
            f"lid_lower_{side}": lid_lower,
            f"lid_gap_{side}": lid_upper - lid_lower,
            f"gaze_out_{side}": sign * (x[..., s["iris"]] - eye_x) / eye_width,
            f"gaze_up_{side}": (y[..., s["iris"]] - eye_y) / eye_width,
            f"eye_height_{side}": eye_y,
            f"brow_inner_up_{side}": mean_y(s["brow_inner"]),
            f"brow_middle_up_{side}": mean_y(s["brow_middle"]),
            f"brow_outer_up_{side}": mean_y(s["brow_outer"]),
            f"brow_inner_out_{side}": sign * x[..., s["brow_inner"][1]],
            f"cheek_high_up_{side}": mean_y(s["cheek_high"]),
            f"cheek_up_{side}": y[..., s["cheek"]],
            f"cheek_out_{side}": sign * x[..., s["cheek"]],
            f"cheek_low_out_{side}": sign * x[..., list(s["cheek_low"])].mean(axis=-1),
            f"cheek_low_forward_{side}": z[..., list(s["cheek_low"])].mean(axis=-1),
            f"nose_wing_up_{side}": mean_y(s["nose_wing"]),
            f"nose_wing_out_{side}": sign * x[..., s["nose_wing"][0]],
            f"nasolabial_up_{side}": y[..., s["nasolabial"]],
        })
    quaternion = matrix_to_quaternion(rotation)
    for i, name in enumerate(FRAME_COLUMNS[:4]):
        f[name] = quaternion[..., i]
    f["head_eye_distance"] = scale
    return np.stack([f[name] for name in COLUMNS], axis=-1).astype(np.float32)


def as_dict(values, columns=COLUMNS) -> dict[str, np.ndarray]:
    """``{column: (N,)}`` of a recorded ``mp_geometry`` array (N, len(columns)) (float64)."""
    values = np.asarray(values, dtype=np.float64)
    return {name: values[:, i] for i, name in enumerate(columns)}
