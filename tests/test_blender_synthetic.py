"""Synthetic takes and face models for the Blender tests, and the bake's pure maths (no bpy).

The helpers here (``synthetic_take``, ``write_face_model``) are imported by
the other ``test_blender_*`` modules: a take with known head motion and
coefficients, and a small face model (a grid) so most bakes take
milliseconds.
"""

import numpy as np
import pytest

from ddfa_blender.blender import bake_channels
from ddfa_blender.core import pose
from ddfa_blender.core.errors import CaptureError
from ddfa_blender.core.face_model import FaceModel
from ddfa_blender.core.reconstruct import landmarks_image
from ddfa_blender.core.take import Take, empty_rows

IMAGE_SIZE = (640, 360)
CROP_SCALE = 5.0e-4  # crop pixels per micrometre: a face ~150 mm wide spans ~75 crop px


def rotation_yaw_pitch(yaw, pitch):
    """Camera-frame rotations (N, 3, 3) turning the head by yaw (about y) then pitch (about x)."""
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    zeros, ones = np.zeros_like(yaw), np.ones_like(yaw)
    r_yaw = np.stack([np.stack([cy, zeros, sy], -1), np.stack([zeros, ones, zeros], -1),
                      np.stack([-sy, zeros, cy], -1)], -2)
    r_pitch = np.stack([np.stack([ones, zeros, zeros], -1), np.stack([zeros, cp, -sp], -1),
                        np.stack([zeros, sp, cp], -1)], -2)
    return r_pitch @ r_yaw


def synthetic_take(n=48, fps=30.0, tracks=1, seed=0, invalid=(), yaw_amplitude=0.6,
                   source="", face=None) -> Take:
    """A take of ``n`` frames per track: smooth head turns, known shape and expression.

    Rows listed in ``invalid`` (frame indices) have no face on every track;
    ``lmk68`` is reconstructed with ``face`` (default: the synthetic model).
    """
    rng = np.random.default_rng(seed)
    rows = empty_rows(n * tracks)
    t = np.arange(n)
    rows["frame"][:] = np.tile(t, tracks)
    rows["time"][:] = rows["frame"] / fps
    rows["track"][:] = np.repeat(np.arange(tracks), n)
    rows["valid"][:] = True
    rows["detected"][:] = False
    rows["quality"][:] = 0.4
    yaw = yaw_amplitude * np.sin(2 * np.pi * t / n)
    pitch = 0.2 * np.sin(4 * np.pi * t / n)
    size = 1.0 + 0.1 * np.sin(2 * np.pi * t / n)
    linear = CROP_SCALE * size[:, None, None] * rotation_yaw_pitch(yaw, pitch)
    for track in range(tracks):
        sl = slice(track * n, (track + 1) * n)
        param = np.zeros((n, 62))
        param[:, :12] = np.concatenate(
            [linear, np.stack([np.full(n, 60.0), np.full(n, 60.0), np.zeros(n)], -1)[..., None]], -1
        ).reshape(n, 12)
        param[:, 12:52] = rng.normal(0.0, 1e4, 40)[None] + rng.normal(0.0, 1e2, (n, 40))
        param[:, 52:62] = np.sin(np.outer(t, 0.1 + 0.05 * np.arange(10)) + track) * np.linspace(0.5, 3.0, 10)
        rows["param"][sl] = param
        x0 = 150.0 + 200.0 * track + 20.0 * np.sin(2 * np.pi * t / n)
        rows["roi"][sl] = np.stack([x0, np.full(n, 80.0), x0 + 200.0, np.full(n, 280.0)], -1)
    for index in invalid:
        rows["valid"][rows["frame"] == index] = False
    rows["lmk68"][:] = landmarks_image(face or synthetic_face_model(), rows["param"], rows["roi"])
    rows["param"][~rows["valid"]] = np.nan
    rows["roi"][~rows["valid"]] = np.nan
    rows["lmk68"][~rows["valid"]] = np.nan
    return Take(fps=fps, image_size=IMAGE_SIZE, source=source, **rows)


def synthetic_face_model(seed=0, side=12) -> FaceModel:
    """A small face model: a ``side`` x ``side`` grid in the BFM frame with random bases."""
    rng = np.random.default_rng(seed)
    u, v = np.meshgrid(np.linspace(-1.0, 1.0, side), np.linspace(-1.0, 1.0, side))
    mean = np.stack([7.5e4 * u.ravel(), 9e4 * v.ravel(), 3e4 * (1 - u.ravel() ** 2)], -1)
    quads = np.array([[i * side + j, i * side + j + 1, (i + 1) * side + j + 1, (i + 1) * side + j]
                      for i in range(side - 1) for j in range(side - 1)])
    triangles = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    count = side * side
    return FaceModel(
        mean=mean,
        shape_basis=rng.normal(0.0, 1.0, (count, 3, 40)),
        expr_basis=rng.normal(0.0, 1e3, (count, 3, 10)),
        triangles=triangles,
        uv=np.stack([(u.ravel() + 1) / 2, (v.ravel() + 1) / 2], -1),
        landmark_vertex=np.arange(68) % count,
    )


def write_face_model(folder, face=None):
    """Save a face model as ``bfm_face.npz`` in ``folder`` (a models folder); returns the folder."""
    face = face or synthetic_face_model()
    np.savez(
        folder / "bfm_face.npz", mean=face.mean, shape_basis=face.shape_basis,
        expr_basis=face.expr_basis, triangles=face.triangles, uv=face.uv,
        landmark_vertex=face.landmark_vertex.astype(np.int32),
    )
    return folder


# -- the bake's pure maths ---------------------------------------------------------


def test_expression_values_times_scale_give_the_coefficients_back():
    take = synthetic_take()
    channels = bake_channels.track_channels(take)
    assert np.abs(channels.expression_values).max() == pytest.approx(1.0)
    np.testing.assert_allclose(
        channels.expression_values * channels.expression_scale, take.param[:, 52:62], rtol=1e-5
    )


def test_identity_is_the_median_and_ignores_an_outlier_frame():
    take = synthetic_take()
    clean = np.median(take.param[:, 12:52], axis=0)
    take.param[7, 12:52] = 1e7  # one wild frame
    channels = bake_channels.track_channels(take)
    np.testing.assert_allclose(channels.identity, np.median(take.param[:, 12:52], axis=0))
    assert np.abs(channels.identity - clean).max() < 1e3  # the mean would move by ~2e5
    assert np.abs(take.param[:, 12:52].mean(axis=0) - clean).max() > 1e5


def test_head_scale_mode_is_the_true_placement_scaled_about_the_camera():
    take = synthetic_take()
    channels = bake_channels.track_channels(take)
    head = pose.head_pose_blender(take.param, take.roi, take.image_size)
    factor = channels.distance / head.location[:, 1]
    np.testing.assert_allclose(channels.scale, factor)
    np.testing.assert_allclose(channels.location, head.location * factor[:, None])
    np.testing.assert_allclose(channels.location[:, 1], channels.distance)
    # Same direction from the camera as the true location: the same image.
    true_dir = head.location / np.linalg.norm(head.location, axis=1, keepdims=True)
    keyed_dir = channels.location / np.linalg.norm(channels.location, axis=1, keepdims=True)
    np.testing.assert_allclose(keyed_dir, true_dir, atol=1e-12)


def test_camera_mode_is_the_inverse_of_the_head_motion():
    """Head seen from the keyed camera == head seen from the still camera in head mode."""
    take = synthetic_take()
    cams = bake_channels.track_channels(take, key_camera=True)
    assert cams.scale is None
    head = pose.head_pose_blender(take.param, take.roi, take.image_size)
    rest = pose.quaternion_to_matrix(bake_channels.CAMERA_REST_QUATERNION)
    head_r = pose.quaternion_to_matrix(head.rotation)
    cam_r = pose.quaternion_to_matrix(cams.rotation)
    np.testing.assert_allclose(np.swapaxes(cam_r, -1, -2), rest.T @ head_r, atol=1e-9)
    seen = -np.einsum("nji,nj->ni", cam_r, cams.location)
    np.testing.assert_allclose(seen, head.location @ rest, atol=1e-9)


@pytest.mark.parametrize("missing", ["hold", "gap"])
def test_missing_frames_hold_or_leave_a_gap_never_the_origin(missing):
    gap = (0, 1, 20, 21, 22)
    take = synthetic_take(invalid=gap)
    channels = bake_channels.track_channels(take, missing=missing, start_frame=5)
    if missing == "gap":
        assert list(channels.frames) == [5 + f for f in range(48) if f not in gap]
    else:
        assert list(channels.frames) == [5 + f for f in range(48)]
        index = {int(f) - 5: i for i, f in enumerate(channels.frames)}
        for frame in (20, 21, 22):
            np.testing.assert_allclose(channels.location[index[frame]], channels.location[index[19]])
            np.testing.assert_allclose(channels.rotation[index[frame]], channels.rotation[index[19]])
        np.testing.assert_allclose(channels.location[index[0]], channels.location[index[2]])
    assert np.isfinite(channels.location).all() and np.isfinite(channels.rotation).all()
    assert np.linalg.norm(channels.location, axis=1).min() > 0.1  # never at the origin


def test_quaternions_are_continuous_even_through_a_half_turn():
    take = synthetic_take(n=60, yaw_amplitude=3.0)
    for key_camera in (False, True):
        channels = bake_channels.track_channels(take, key_camera=key_camera)
        dots = np.sum(channels.rotation[1:] * channels.rotation[:-1], axis=1)
        assert dots.min() > 0.9


def test_unbakeable_takes_raise_a_capture_error():
    with pytest.raises(CaptureError, match="empty"):
        bake_channels.track_channels(synthetic_take().rows(np.zeros(48, dtype=bool)))
    with pytest.raises(CaptureError, match="no frame with a face"):
        bake_channels.track_channels(synthetic_take(invalid=range(48)))
    with pytest.raises(CaptureError, match="hold"):
        bake_channels.track_channels(synthetic_take(), missing="zero")


def test_mesh_arrays_map_the_bfm_to_blender_metres():
    face = synthetic_face_model()
    identity = np.linspace(-1.0, 1.0, 40)
    neutral = bake_channels.identity_vertices(face, identity)
    bfm = face.vertices(identity)
    np.testing.assert_allclose(neutral[:, 0], bfm[:, 0] * 1e-6, rtol=1e-5)
    np.testing.assert_allclose(neutral[:, 1], -bfm[:, 2] * 1e-6, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(neutral[:, 2], bfm[:, 1] * 1e-6, rtol=1e-5)
    scale = np.arange(1.0, 11.0)
    offsets = bake_channels.expression_offsets(face, scale)
    np.testing.assert_allclose(offsets[3, :, 2], face.expr_basis[:, 1, 3] * 4.0 * 1e-6, rtol=1e-5)
