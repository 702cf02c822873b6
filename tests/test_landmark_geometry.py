"""MediaPipe's landmarks reduced to head-frame measurements (core/landmark_geometry.py)."""

import numpy as np
import pytest

from ddfa_blender.core import landmark_geometry as lg

MEASURED = [i for i, c in enumerate(lg.COLUMNS) if c not in lg.FRAME_COLUMNS]


def facing_camera(seed=0) -> np.ndarray:
    """A face-like cloud (478, 3) in MediaPipe's crop coordinates (x right, y down, z away)
    looking at the camera: the performer's left eye on the image's right."""
    rng = np.random.default_rng(seed)
    points = np.column_stack([rng.uniform(-0.2, 0.2, 478), rng.uniform(-0.25, 0.25, 478),
                              rng.uniform(-0.05, 0.05, 478)]) + [0.5, 0.5, 0.0]
    for index, (x, y, z) in {33: (0.36, 0.42, 0.0), 133: (0.45, 0.42, 0.0), 362: (0.55, 0.42, 0.0),
                             263: (0.64, 0.42, 0.0), 168: (0.5, 0.42, -0.02), 1: (0.5, 0.55, -0.06),
                             151: (0.5, 0.25, -0.01)}.items():
        points[index] = (x, y, z)
    return points


def turned(points, yaw_pitch_roll_deg, scale, shift) -> np.ndarray:
    yaw, pitch, roll = np.radians(yaw_pitch_roll_deg)
    ry = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    rx = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    rz = np.array([[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1]])
    centre = points.mean(axis=0)
    return (points - centre) @ (rz @ rx @ ry).T * scale + centre + shift


def test_measurements_ignore_head_rotation_size_and_position():
    face = facing_camera()
    row = lg.measure(face)
    assert row.shape == (len(lg.COLUMNS),) and row.dtype == np.float32
    for angles, scale, shift in (((25.0, -10.0, 8.0), 0.6, (0.1, -0.05, 0.0)), ((-30.0, 14.0, -9.0), 1.3, (0.0, 0.0, 0.2))):
        moved = lg.measure(turned(face, angles, scale, shift))
        np.testing.assert_allclose(moved[MEASURED], row[MEASURED], atol=2e-5)
    batch = lg.measure(np.stack([face, turned(face, (10.0, 0.0, 0.0), 1.0, 0.0)]))
    assert batch.shape == (2, len(lg.COLUMNS))


def test_a_raised_left_mouth_corner_reads_on_the_performers_left():
    face = facing_camera()
    raised = face.copy()
    raised[291, 1] -= 0.02  # image y is down: the corner on the image's right (performer's left) goes up
    before, after = (dict(zip(lg.COLUMNS, lg.measure(f))) for f in (face, raised))
    eye_distance = (0.64 + 0.55) / 2 - (0.45 + 0.36) / 2  # between the eye centres
    assert after["corner_up_Left"] - before["corner_up_Left"] == pytest.approx(0.02 / eye_distance, rel=0.03)
    assert after["corner_up_Right"] == before["corner_up_Right"]
