"""Offline smoothing of takes: noise reduced, zero lag, manifold rotations, gaps and jumps kept apart."""

import dataclasses

import numpy as np
import pytest

from ddfa_blender.core import metrics, smoothing
from ddfa_blender.core.errors import CaptureError
from ddfa_blender.core.face_model import FaceModel
from ddfa_blender.core.reconstruct import landmarks_image
from ddfa_blender.core.pose import (
    ImagePose,
    crop_param,
    image_pose,
    quaternion_conjugate,
    quaternion_exp,
    quaternion_log,
    quaternion_multiply,
    quaternion_to_matrix,
)
from ddfa_blender.core.smoothing import (
    PRESETS,
    SmoothingSettings,
    smooth_quaternions,
    smooth_series,
    smooth_take,
)
from ddfa_blender.core.take import Take

FPS = 30.0


def synthetic_face(seed=0) -> FaceModel:
    """A 68-vertex stand-in for the BFM face: face-sized points, expression moves them ~1 %."""
    rng = np.random.default_rng(seed)
    mean = rng.uniform(-1.0, 1.0, (68, 3)) * np.array([7e4, 7e4, 4e4])
    return FaceModel(
        mean=mean,
        shape_basis=rng.normal(0.0, 1e-2, (68, 3, 40)),
        expr_basis=rng.normal(0.0, 600.0, (68, 3, 10)),
        triangles=np.zeros((1, 3), dtype=np.int32),
        uv=np.zeros((68, 2)),
        landmark_vertex=np.arange(68),
    )


def truth_channels(n, fps=FPS):
    """A smooth head performance: rotation (n, 4), translation (n, 3) y up, scale (n,), expression (n, 10)."""
    t = np.arange(n) / fps
    pitch, yaw, roll = (np.sin(2 * np.pi * f * t + p) for f, p in ((0.4, 1.0), (0.3, 0.0), (0.5, 0.0)))
    angles = np.radians(np.stack([8 * pitch, 15 * yaw, 5 * roll], axis=-1))
    rotation = quaternion_exp(angles)
    x = 320 + 30 * np.sin(2 * np.pi * 0.2 * t)
    y_up = -(200 + 15 * np.sin(2 * np.pi * 0.35 * t))
    translation = np.stack([x, y_up, np.full(n, -80.0)], axis=-1)
    scale = 1.3e-3 * (1 + 0.05 * np.sin(2 * np.pi * 0.25 * t))
    freqs = np.linspace(0.3, 1.5, 10)
    expression = np.sin(2 * np.pi * freqs * t[:, None] + np.arange(10)) * np.linspace(1.5, 0.2, 10)
    return rotation, translation, scale, expression


def make_take(face, rotation, translation, scale, expression, fps=FPS, roi_jitter=3.0, seed=1):
    """A one-track take whose crop ROIs follow the head with their own jitter."""
    n = len(rotation)
    rng = np.random.default_rng(seed)
    side = scale * 1.4e5 * 1.6
    centre = np.stack([translation[:, 0], -translation[:, 1]], axis=-1) + rng.normal(0, roi_jitter, (n, 2))
    roi = np.concatenate([centre - side[:, None] / 2, centre + side[:, None] / 2], axis=-1)
    pose = ImagePose(scale, rotation, translation, np.zeros((n, 3, 3)))
    param = crop_param(pose, roi, np.zeros((n, 40)), expression)
    return Take(
        fps=fps,
        image_size=(640, 480),
        frame=np.arange(n),
        time=np.arange(n) / fps,
        track=np.zeros(n),
        valid=np.ones(n, dtype=bool),
        detected=np.r_[True, np.zeros(n - 1, dtype=bool)],
        param=param,
        roi=roi,
        lmk68=landmarks_image(face, param, roi),
        quality=np.full(n, 0.4),
    )


def noisy(rotation, translation, scale, expression, seed=2, level=1.0):
    rng = np.random.default_rng(seed)
    n = len(rotation)
    return (
        quaternion_multiply(rotation, quaternion_exp(rng.normal(0, np.radians(1.0) * level, (n, 3)))),
        translation + rng.normal(0, 1.5 * level, (n, 3)),
        scale * np.exp(rng.normal(0, 0.005 * level, n)),
        expression + rng.normal(0, 0.08 * level, (n, 10)),
    )


def angle_deg(a, b):
    return np.degrees(np.linalg.norm(quaternion_log(quaternion_multiply(quaternion_conjugate(a), b)), axis=-1))


@pytest.fixture(scope="module")
def face():
    return synthetic_face()


def test_image_pose_round_trips_param_for_any_roi(face):
    rotation, translation, scale, expression = truth_channels(20)
    take = make_take(face, rotation, translation, scale, expression, roi_jitter=8.0)
    take.roi[:, 3] += 5.0  # a non-square box too
    param = take.param.astype(np.float64)
    back = crop_param(image_pose(param, take.roi), take.roi, param[:, 12:52], param[:, 52:62])
    np.testing.assert_allclose(back, param, rtol=1e-9, atol=1e-9)


def test_image_pose_is_the_pose_of_the_landmarks(face):
    rotation, translation, scale, expression = truth_channels(5)
    take = make_take(face, rotation, translation, scale, expression)
    pose = image_pose(take.param, take.roi)
    points = face.landmarks(np.zeros((5, 40)), expression)
    matrix = quaternion_to_matrix(pose.rotation) * pose.scale[:, None, None]
    expected = np.einsum("nij,nkj->nki", matrix, points) + pose.translation[:, None, :]
    expected[..., 1] *= -1.0
    np.testing.assert_allclose(take.lmk68, expected, atol=0.05)


def test_preset_none_returns_the_take_bit_for_bit(face):
    take = make_take(face, *noisy(*truth_channels(60)))
    take.valid[20:25] = False
    take.param[20:25] = np.nan
    take.lmk68[20:25] = np.nan
    out = smooth_take(take, PRESETS["none"], face)
    for name in ("param", "roi", "lmk68", "valid", "detected", "quality", "frame", "time"):
        assert getattr(out, name).tobytes() == getattr(take, name).tobytes(), name
    assert out.param is not take.param


def test_default_preset_reduces_noise_in_every_group(face):
    truth = truth_channels(240)
    clean = make_take(face, *truth)
    raw = make_take(face, *noisy(*truth))
    out = smooth_take(raw, PRESETS["default"], face)
    pose_raw, pose_out = image_pose(raw.param, raw.roi), image_pose(out.param, out.roi)
    rotation_raw = np.sqrt(np.mean(angle_deg(pose_raw.rotation, truth[0]) ** 2))
    rotation_out = np.sqrt(np.mean(angle_deg(pose_out.rotation, truth[0]) ** 2))
    assert rotation_out < 0.6 * rotation_raw
    translation_raw = np.sqrt(np.mean((pose_raw.translation - truth[1]) ** 2))
    translation_out = np.sqrt(np.mean((pose_out.translation - truth[1]) ** 2))
    assert translation_out < 0.6 * translation_raw
    expression_raw = np.sqrt(np.mean((raw.param[:, 52:] - truth[3]) ** 2))
    expression_out = np.sqrt(np.mean((out.param[:, 52:] - truth[3]) ** 2))
    assert expression_out < 0.6 * expression_raw
    assert metrics.displacement_pct(clean, out) < 0.7 * metrics.displacement_pct(clean, raw)
    jitter_raw, jitter_out = metrics.jitter(raw), metrics.jitter(out)
    for group in ("rotation_deg", "translation", "expression", "landmarks"):
        assert jitter_out[group] < 0.5 * jitter_raw[group], group


def test_landmarks_are_rebuilt_from_the_smoothed_param(face):
    raw = make_take(face, *noisy(*truth_channels(90)))
    out = smooth_take(raw, PRESETS["heavy"], face)
    np.testing.assert_allclose(out.lmk68, landmarks_image(face, out.param, out.roi), atol=1e-2)
    assert out.roi.tobytes() == raw.roi.tobytes()
    assert out.meta["smoothing"] == PRESETS["heavy"].to_dict()


def test_mild_smoothing_of_a_clean_performance_barely_moves_it(face):
    clean = make_take(face, *truth_channels(150))
    out = smooth_take(clean, PRESETS["light"], face)
    assert metrics.displacement_pct(clean, out) < 0.05


def test_offline_smoothing_has_zero_lag():
    t = np.arange(300) / FPS
    clean = np.sin(2 * np.pi * 0.8 * t) + 0.5 * np.sin(2 * np.pi * 2.2 * t + 1.0)
    rng = np.random.default_rng(3)
    raw = clean + rng.normal(0, 0.1, len(t))
    smooth = smooth_series(t, raw, 0.06)
    assert abs(metrics.lag_frames(raw, smooth)) < 0.1
    assert abs(metrics.lag_frames(clean, smooth)) < 0.1
    assert np.std(smooth - clean) < 0.6 * np.std(raw - clean)


def test_sigma_is_in_seconds_whatever_the_frame_rate():
    results = []
    for fps in (24.0, 60.0):
        t = np.arange(int(4 * fps)) / fps
        signal = np.sin(2 * np.pi * 3.0 * t) + np.sin(2 * np.pi * 0.5 * t)
        smooth = smooth_series(t, signal, 0.06)
        results.append(np.interp(np.arange(1.0, 3.0, 0.25), t, smooth))
    np.testing.assert_allclose(results[0], results[1], atol=0.03)


def test_quaternion_sign_flips_do_not_change_the_result():
    t = np.arange(120) / FPS
    rotation = quaternion_exp(np.stack([0.8 * np.sin(2 * t), 0.5 * t, 0.1 * np.ones_like(t)], axis=-1))
    rng = np.random.default_rng(4)
    rotation = quaternion_multiply(rotation, quaternion_exp(rng.normal(0, 0.02, (len(t), 3))))
    flipped = rotation * rng.choice([-1.0, 1.0], len(t))[:, None]
    np.testing.assert_allclose(
        smooth_quaternions(t, flipped, 0.08), smooth_quaternions(t, rotation, 0.08), atol=1e-12
    )


def test_alternating_q_and_minus_q_smooths_to_that_rotation_without_spin():
    q = quaternion_exp(np.array([0.3, -1.2, 0.5]))
    sequence = np.array([q if i % 2 == 0 else -q for i in range(50)])
    smooth = smooth_quaternions(np.arange(50) / FPS, sequence, 0.1)
    assert angle_deg(smooth, np.broadcast_to(q, smooth.shape)).max() < 1e-6


def test_rotation_is_averaged_on_the_manifold_across_large_angles():
    # A steady 170-degree swing: component averaging with sign flips would cut the corner.
    t = np.arange(60) / FPS
    yaw = np.radians(-85 + 170 * t / t[-1])
    rotation = quaternion_exp(np.stack([np.zeros_like(t), yaw, np.zeros_like(t)], -1))
    smooth = smooth_quaternions(t, rotation, 0.1)
    assert angle_deg(smooth, rotation).max() < 1e-6


def test_gap_is_not_smeared_and_segments_are_independent(face):
    truth = truth_channels(120)
    raw = make_take(face, *noisy(*truth))
    # After the gap the head is somewhere else entirely (a re-detect jump).
    moved = make_take(face, *noisy(truth[0], truth[1] + [150.0, 40.0, 0.0], truth[2], truth[3] + 1.0, seed=5))
    take = raw.rows(np.ones(len(raw), dtype=bool))
    take.param[60:], take.roi[60:], take.lmk68[60:] = moved.param[60:], moved.roi[60:], moved.lmk68[60:]
    take.valid[55:60] = False
    take.param[55:60] = np.nan
    take.lmk68[55:60] = np.nan
    take.detected[60] = True
    out = smooth_take(take, PRESETS["heavy"], face)
    first = smooth_take(take.rows(np.arange(120) < 55), PRESETS["heavy"], face)
    second = smooth_take(take.rows(np.arange(120) >= 60), PRESETS["heavy"], face)
    np.testing.assert_array_equal(out.param[:55], first.param)
    np.testing.assert_array_equal(out.param[60:], second.param)
    assert np.isnan(out.param[55:60]).all() and not out.valid[55:60].any()


def test_redetect_jump_starts_a_new_segment(face):
    truth = truth_channels(100)
    raw = make_take(face, *noisy(*truth))
    moved = make_take(face, *noisy(truth[0], truth[1] + [120.0, 0.0, 0.0], *truth[2:], seed=6))
    take = raw.rows(np.ones(len(raw), dtype=bool))
    take.param[50:], take.roi[50:], take.lmk68[50:] = moved.param[50:], moved.roi[50:], moved.lmk68[50:]
    take.detected[50] = True
    out = smooth_take(take, PRESETS["heavy"], face)
    first = smooth_take(take.rows(np.arange(100) < 50), PRESETS["heavy"], face)
    np.testing.assert_array_equal(out.param[:50], first.param)
    # Without the detection flag the same jump is one segment and gets smoothed over.
    take.detected[50] = False
    blurred = smooth_take(take, PRESETS["heavy"], face)
    assert np.abs(blurred.param[:50] - first.param).max() > 1e-3


def test_bridging_fills_short_gaps_between_the_smoothed_ends(face):
    take = make_take(face, *noisy(*truth_channels(120)))
    take.valid[40:45] = False
    take.valid[80:100] = False
    for name in ("param", "roi", "lmk68", "quality"):
        getattr(take, name)[40:45] = np.nan
        getattr(take, name)[80:100] = np.nan
    settings = dataclasses.replace(PRESETS["default"], bridge_gaps=True, max_gap=0.3)
    out = smooth_take(take, settings, face)
    bridged = out.channels[smoothing.BRIDGED_CHANNEL]
    assert bridged[40:45].all() and bridged.sum() == 5  # the 20-row gap is longer than 0.3 s
    assert out.valid[40:45].all() and not out.valid[80:100].any()
    assert np.isfinite(out.param[40:45]).all() and np.isfinite(out.lmk68[40:45]).all()
    # Each expression coefficient moves from one smoothed end to the other without overshooting.
    ends = out.param[[39, 45], 52:]
    low, high = ends.min(axis=0) - 1e-5, ends.max(axis=0) + 1e-5
    assert ((out.param[40:45, 52:] >= low) & (out.param[40:45, 52:] <= high)).all()
    # Bridging does not change how the segments themselves are smoothed.
    unbridged = smooth_take(take, PRESETS["default"], face)
    np.testing.assert_array_equal(out.param[:40], unbridged.param[:40])


def test_a_bridge_keeps_a_steady_turn_turning(face):
    """A head turning at a constant rate through a gap comes out turning at that rate."""
    n = 90
    yaw = np.radians(np.linspace(-40.0, 40.0, n))
    rotation = quaternion_exp(np.stack([np.zeros(n), yaw, np.zeros(n)], axis=-1))
    _, translation, scale, expression = truth_channels(n)
    expression = np.linspace(-1.0, 1.0, n)[:, None] * np.ones(10)
    take = make_take(face, rotation, translation, scale, expression, roi_jitter=0.0)
    take.confidence[:] = 1.0
    take.confidence[30:50] = 0.0
    out = smooth_take(take, PRESETS["none"], face)
    pose = image_pose(out.param.astype(np.float64), out.roi)
    assert angle_deg(pose.rotation[30:50], rotation[30:50]).max() < 0.1
    np.testing.assert_allclose(out.param[30:50, 52:], expression[30:50], atol=1e-4)
    # A turn that stops inside the gap is not overshot.
    stop = quaternion_exp(np.stack([np.zeros(n), np.minimum(yaw, yaw[40]), np.zeros(n)], axis=-1))
    take = make_take(face, stop, translation, scale, expression, roi_jitter=0.0)
    take.confidence[:] = 1.0
    take.confidence[30:50] = 0.0
    out = image_pose(smooth_take(take, PRESETS["none"], face).param.astype(np.float64), take.roi)
    turned = np.degrees(2 * np.arcsin(np.clip(out.rotation[30:50, 2], -1, 1)))
    assert turned.max() <= np.degrees(yaw[40]) + 0.1
    # ... and it follows the turn into the gap better than a straight line between the ends.
    truth = np.degrees(np.minimum(yaw, yaw[40]))[30:50]
    straight = np.interp(np.arange(30, 50), [29, 50], np.degrees([yaw[29], yaw[40]]))
    assert np.abs(turned - truth).max() < 0.6 * np.abs(straight - truth).max()


def test_tracks_are_smoothed_separately(face):
    a = make_take(face, *noisy(*truth_channels(60)))
    b = make_take(face, *noisy(*truth_channels(60), seed=7))
    fields = {
        name: np.concatenate([getattr(a, name), getattr(b, name)])
        for name in ("frame", "time", "valid", "detected", "param", "roi", "lmk68", "quality")
    }
    both = Take(fps=FPS, image_size=(640, 480), track=np.r_[np.zeros(60), np.ones(60)], **fields)
    out = smooth_take(both, PRESETS["default"], face)
    np.testing.assert_array_equal(out.param[:60], smooth_take(a, PRESETS["default"], face).param)
    np.testing.assert_array_equal(out.param[60:], smooth_take(b, PRESETS["default"], face).param)


def test_settings_round_trip_and_reject_bad_values():
    for settings in PRESETS.values():
        assert SmoothingSettings.from_dict(settings.to_dict()) == settings
    bridged = SmoothingSettings.from_dict({"rotation": 0.05, "bridge_gaps": 1})
    assert bridged.bridge_gaps is True and bridged.translation == 0.0
    with pytest.raises(CaptureError, match="Unknown smoothing setting"):
        SmoothingSettings.from_dict({"rotatoin": 0.05})
    with pytest.raises(CaptureError, match="must be a number >= 0"):
        SmoothingSettings(expression=-1.0)
    strengths = [PRESETS[name].rotation for name in ("none", "light", "default", "heavy")]
    assert strengths == sorted(strengths) and strengths[0] == 0.0


def _excursion_take(face, rows, degrees=40.0, n=120):
    """A take whose rows swing ``degrees`` of yaw away from the truth, marked low-confidence."""
    truth = truth_channels(n)
    rotation = truth[0].copy()
    rotation[rows] = quaternion_multiply(quaternion_exp(np.radians([0.0, degrees, 0.0])), rotation[rows])
    take = make_take(face, rotation, *truth[1:])
    take.confidence[:] = 1.0
    take.confidence[rows] = 0.1
    return take, truth


def test_flagged_rows_are_bridged_from_their_confident_neighbours(face):
    take, truth = _excursion_take(face, slice(50, 62))
    out = smooth_take(take, PRESETS["none"], face)
    bridged = out.channels[smoothing.BRIDGED_CHANNEL]
    np.testing.assert_array_equal(np.flatnonzero(bridged), np.arange(50, 62))
    rotation = image_pose(out.param.astype(np.float64), out.roi).rotation
    # Bridged from both sides: close to the true motion, nowhere near the 40-degree swing.
    assert angle_deg(rotation[50:62], truth[0][50:62]).max() < 3.0
    # Everything else is untouched (the none preset), and the flags stay for the bake.
    np.testing.assert_array_equal(out.param[:50], take.param[:50])
    np.testing.assert_array_equal(out.confidence, take.confidence)
    assert out.valid[50:62].all()
    # Kept: the flagged rows are baked as captured.
    kept = smooth_take(take, dataclasses.replace(PRESETS["none"], keep_flagged=True), face)
    np.testing.assert_array_equal(kept.param, take.param)
    # A lower threshold does not flag them.
    lenient = smooth_take(take, dataclasses.replace(PRESETS["none"], min_confidence=0.05), face)
    np.testing.assert_array_equal(lenient.param, take.param)


def test_flagged_rows_do_not_leak_into_the_smoothing(face):
    take, truth = _excursion_take(face, slice(50, 62))
    out = smooth_take(take, PRESETS["heavy"], face)
    rotation = image_pose(out.param.astype(np.float64), out.roi).rotation
    assert angle_deg(rotation[40:72], truth[0][40:72]).max() < 3.0
    kept = smooth_take(take, dataclasses.replace(PRESETS["heavy"], keep_flagged=True), face)
    kept_rotation = image_pose(kept.param.astype(np.float64), kept.roi).rotation
    assert angle_deg(kept_rotation[45:50], truth[0][45:50]).max() > 5.0  # smeared by the swing


def test_flagged_rows_at_the_ends_are_held_from_the_nearest_confident_row(face):
    take, _ = _excursion_take(face, np.r_[0:5, 115:120])
    out = smooth_take(take, PRESETS["none"], face)
    pose = image_pose(out.param.astype(np.float64), out.roi)
    assert angle_deg(pose.rotation[0:5], np.repeat(pose.rotation[5:6], 5, axis=0)).max() < 1e-3
    assert angle_deg(pose.rotation[115:120], np.repeat(pose.rotation[114:115], 5, axis=0)).max() < 1e-3
    np.testing.assert_allclose(out.param[0:5, 52:], np.repeat(take.param[5:6, 52:], 5, axis=0), atol=1e-5)


def test_min_confidence_must_be_between_zero_and_one():
    for bad in (-0.1, 1.5, "high"):
        with pytest.raises(CaptureError, match="min_confidence"):
            SmoothingSettings(min_confidence=bad)
    settings = SmoothingSettings.from_dict({"min_confidence": 0.3, "keep_flagged": 1})
    assert settings.min_confidence == 0.3 and settings.keep_flagged is True
