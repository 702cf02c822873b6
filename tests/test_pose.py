"""Pose maths: decomposition round trips, quaternions, the Blender frame."""

import numpy as np
import pytest

from ddfa_blender.core import pose


def random_rotations(rng, n):
    q = rng.normal(size=(n, 4))
    return pose.quaternion_to_matrix(q)


def test_compose_decompose_round_trip():
    rng = np.random.default_rng(0)
    rotation = random_rotations(rng, 50)
    scale = rng.uniform(1e-4, 1e-3, 50)
    translation = rng.normal(size=(50, 3)) * 60
    s, r, t = pose.decompose_pose(pose.compose_pose(scale, rotation, translation))
    np.testing.assert_allclose(s, scale, rtol=1e-10)
    np.testing.assert_allclose(r, rotation, atol=1e-10)
    np.testing.assert_allclose(t, translation, atol=1e-10)


def test_decompose_takes_nearest_proper_scaled_rotation():
    rng = np.random.default_rng(1)
    rotation = random_rotations(rng, 1)[0]
    noisy = 5e-4 * rotation + rng.normal(size=(3, 3)) * 2e-5
    s, r, _ = pose.decompose_pose(np.concatenate([noisy, np.zeros((3, 1))], axis=1))
    assert np.isclose(np.linalg.det(r), 1.0)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    best = np.linalg.norm(noisy - s * r)
    for _ in range(200):  # no nearby scaled rotation fits better
        delta = pose.quaternion_to_matrix(np.r_[1.0, rng.normal(size=3) * 1e-2])
        scale = s * (1 + rng.normal() * 1e-2)
        assert np.linalg.norm(noisy - scale * delta @ r) >= best - 1e-12


def test_decompose_keeps_nan_rows_nan():
    poses = np.zeros((2, 3, 4))
    poses[0, :, :3] = np.eye(3) * 2
    poses[1] = np.nan
    s, r, _ = pose.decompose_pose(poses)
    assert s[0] == pytest.approx(2) and np.isnan(s[1]) and np.isnan(r[1]).all()


def test_quaternion_round_trip_including_half_turns():
    rng = np.random.default_rng(2)
    half_turns = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0.6, 0.8, 0]], float)
    q = np.concatenate([rng.normal(size=(100, 4)), half_turns])
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    back = pose.matrix_to_quaternion(pose.quaternion_to_matrix(q))
    same = np.abs(np.sum(back * q, axis=1))
    np.testing.assert_allclose(same, 1.0, atol=1e-10)
    assert (back[:, 0] >= 0).all()


def test_make_continuous_flips_signs_and_skips_gaps():
    rng = np.random.default_rng(3)
    axis_angles = np.cumsum(rng.normal(size=(40, 3)) * 0.05, axis=0)
    angle = np.linalg.norm(axis_angles, axis=1, keepdims=True)
    q = np.concatenate([np.cos(angle / 2), np.sin(angle / 2) * axis_angles / angle], axis=1)
    flipped = q * rng.choice([-1.0, 1.0], size=(40, 1))
    flipped[10:13] = np.nan
    out = pose.make_continuous(flipped)
    valid = ~np.isnan(out[:, 0])
    dots = np.sum(out[valid][1:] * out[valid][:-1], axis=1)
    assert (dots > 0).all()
    assert np.isnan(out[10:13]).all()


def test_blender_axes_are_a_proper_rotation():
    c = pose.BLENDER_FROM_BFM
    np.testing.assert_allclose(c @ c.T, np.eye(3))
    assert np.isclose(np.linalg.det(c), 1.0)
    np.testing.assert_allclose(c @ [0, 0, 1], [0, -1, 0])  # toward the viewer -> -Y
    np.testing.assert_allclose(c @ [0, 1, 0], [0, 0, 1])  # up -> Z


def frontal_param(scale_px, centre_crop, yaw=0.0):
    """Parameters of a face turned by ``yaw`` (radians, about the up axis) in a crop."""
    rot = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    p = np.zeros(62)
    # crop x_0based = x - 1, y_0based = 120 - y: put the origin at the requested crop pixel
    t = [centre_crop[0] + 1, 120 - centre_crop[1], 0]
    p[:12] = np.concatenate([scale_px * rot, np.array(t)[:, None]], axis=1).ravel()
    return p


def centred_param(scale_px, yaw=0.0):
    """A face turned by ``yaw`` whose centroid (the conversion's pivot) sits at the crop's centre."""
    rot = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    offset = scale_px * (rot @ np.array(pose.FACE_CENTROID_UM))  # crop px, y up
    return frontal_param(scale_px, (59.5 - offset[0], 59.5 + offset[1]), yaw)


def test_head_pose_frontal_face_in_the_centre():
    image_size = (1280, 720)
    roi = np.array([[459.5, 179.5, 819.5, 539.5]])  # 360 px box centred on the image centre
    param = centred_param(4e-4)[None]
    head = pose.head_pose_blender(param, roi, image_size)
    np.testing.assert_allclose(head.rotation[0], [1, 0, 0, 0], atol=1e-12)
    scale_px = 4e-4 * 3
    focal = pose.focal_length_px(image_size)
    np.testing.assert_allclose(head.scale_px, [scale_px])
    # The centroid on the optical axis at depth focal / scale; the origin behind and around it.
    expected = pose.BLENDER_FROM_BFM @ (np.array([0.0, 0.0, -focal / scale_px]) - pose.FACE_CENTROID_UM) * 1e-6
    np.testing.assert_allclose(head.location[0], expected, atol=1e-9)


def test_pinhole_camera_reproduces_the_weak_perspective_around_the_face(models_dir):
    """Projecting the posed mean face with Blender's pinhole camera lands on the landmarks."""
    from ddfa_blender.core.engine import load_face_model
    from ddfa_blender.core.reconstruct import landmarks_image

    face = load_face_model(models_dir)
    np.testing.assert_allclose(face.mean.mean(axis=0), pose.FACE_CENTROID_UM, atol=1.0)
    image_size = (1280, 720)
    roi = np.array([[500.0, 150.0, 800.0, 450.0]])
    param = frontal_param(4e-4, (60.0, 58.0), yaw=0.4)[None]
    param[0, 12:] = 0.0
    head = pose.head_pose_blender(param, roi, image_size)
    rotation = pose.quaternion_to_matrix(head.rotation[0])
    points = face.landmarks(np.zeros((1, 40)), np.zeros((1, 10)))[0] @ pose.BLENDER_FROM_BFM.T * 1e-6
    world = points @ rotation.T + head.location[0]
    focal = pose.focal_length_px(image_size)
    centre = (np.array(image_size) - 1) / 2
    u = centre[0] + focal * world[:, 0] / world[:, 1]
    v = centre[1] - focal * world[:, 2] / world[:, 1]
    expected = landmarks_image(face, param, roi)[0, :, :2]
    error = np.linalg.norm(np.stack([u, v], -1) - expected, axis=-1)
    size = np.ptp(expected[:, 0])
    assert error.mean() < 0.02 * size  # perspective vs orthographic: small, not the 7% of the origin


def test_head_pose_yaw_and_offset_directions():
    image_size = (640, 360)
    roi = np.array([[400.0, 100.0, 520.0, 220.0]])  # right of and above the image centre
    param = frontal_param(4e-4, (59.5, 59.5), yaw=0.3)[None]
    head = pose.head_pose_blender(param, roi, image_size)
    location = head.location[0]
    assert location[0] > 0 and location[2] > 0  # image right -> +X, image up -> +Z
    # On the optical axis a BFM rotation about +y (up) is a Blender rotation about +Z by the same angle.
    centred = np.array([[259.5, 119.5, 379.5, 239.5]])
    w, x, y, z = pose.head_pose_blender(centred_param(4e-4, 0.3)[None], centred, image_size).rotation[0]
    assert np.isclose(x, 0) and np.isclose(y, 0)
    assert np.isclose(2 * np.arctan2(z, w), 0.3)


@pytest.mark.parametrize("box", [(400.0, 100.0, 520.0, 220.0), (20.0, 200.0, 140.0, 320.0), (259.5, 119.5, 379.5, 239.5)])
def test_a_face_frontal_in_its_crop_faces_the_camera_anywhere_in_the_frame(box):
    """Perspective: the crop shows the face along the ray to it, so 'frontal' means facing the lens."""
    image_size = (640, 360)
    param = frontal_param(4e-4, (59.5, 59.5))[None]
    head = pose.head_pose_blender(param, np.array([box]), image_size)
    rotation = pose.quaternion_to_matrix(head.rotation[0])
    facing = rotation @ np.array([0.0, -1.0, 0.0])  # a head at rest faces -Y
    centroid = head.location[0] + rotation @ (pose.BLENDER_FROM_BFM @ np.array(pose.FACE_CENTROID_UM)) * 1e-6
    toward_camera = -centroid / np.linalg.norm(centroid)
    np.testing.assert_allclose(facing, toward_camera, atol=1e-9)


def test_ray_rotation_turns_the_optical_axis_onto_each_ray():
    points = np.array([[0.3, -0.2, -1.0], [0.0, 0.0, -2.0], [-5.0, 1.0, -3.0]])
    rotations = pose.ray_rotation(points)
    rays = points / np.linalg.norm(points, axis=1, keepdims=True)
    np.testing.assert_allclose(rotations @ np.array([0.0, 0.0, -1.0]), rays, atol=1e-12)
    np.testing.assert_allclose(rotations @ np.swapaxes(rotations, 1, 2), np.broadcast_to(np.eye(3), (3, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0)
    np.testing.assert_allclose(rotations[1], np.eye(3), atol=1e-12)  # on the axis: no turn