"""The live One-Euro filter: jitter at rest reduced, under one frame of lag, quaternion signs handled."""

import numpy as np
import pytest

from ddfa_blender.core import metrics, one_euro
from ddfa_blender.core.one_euro import LiveFilter, OneEuroFilter, QuaternionOneEuroFilter
from ddfa_blender.core.pose import (
    ImagePose,
    crop_param,
    image_pose,
    quaternion_conjugate,
    quaternion_exp,
    quaternion_log,
    quaternion_multiply,
)

FPS = 30.0


def run(filter_, times, samples):
    return np.array([filter_(t, x) for t, x in zip(times, samples)])


def angle_rad(a, b):
    return np.linalg.norm(quaternion_log(quaternion_multiply(quaternion_conjugate(a), b)), axis=-1)


@pytest.mark.parametrize(
    "settings, amplitude, frequency",
    [
        (one_euro.POSE_ROTATION, np.radians(15.0), 0.5),
        (one_euro.POSE_TRANSLATION, 0.2, 0.5),
        (one_euro.EXPRESSION, 1.0, 1.0),
    ],
)
def test_lag_is_under_one_frame_on_a_sine_at_the_defaults(settings, amplitude, frequency):
    t = np.arange(int(8 * FPS)) / FPS
    signal = amplitude * np.sin(2 * np.pi * frequency * t)
    filtered = run(OneEuroFilter(settings), t, signal[:, None])[:, 0]
    lag = metrics.lag_frames(signal, filtered)
    assert 0.0 < lag < 1.0


@pytest.mark.parametrize(
    "settings, speed", [(one_euro.POSE_ROTATION, np.radians(30.0)), (one_euro.EXPRESSION, 2.0)]
)
def test_lag_is_under_one_frame_on_a_ramp_at_the_defaults(settings, speed):
    t = np.arange(int(3 * FPS)) / FPS
    filtered = run(OneEuroFilter(settings), t, (speed * t)[:, None])[:, 0]
    lag_frames = (speed * t - filtered) / speed * FPS
    assert 0.0 < lag_frames[-1] < 1.0


@pytest.mark.parametrize(
    "settings, noise",
    [(one_euro.POSE_ROTATION, np.radians(0.5)), (one_euro.POSE_TRANSLATION, 0.005), (one_euro.EXPRESSION, 0.05)],
)
def test_jitter_at_rest_is_at_least_halved(settings, noise):
    rng = np.random.default_rng(0)
    t = np.arange(int(10 * FPS)) / FPS
    samples = 0.3 + rng.normal(0, noise, (len(t), 4))
    filtered = run(OneEuroFilter(settings), t, samples)
    assert filtered[int(FPS):].std() < 0.55 * noise
    assert abs(filtered[int(FPS):].mean() - 0.3) < noise


def test_first_sample_passes_and_time_going_back_restarts():
    f = OneEuroFilter(one_euro.EXPRESSION)
    np.testing.assert_array_equal(f(0.0, [1.0, 2.0]), [1.0, 2.0])
    assert f(1 / FPS, [3.0, 2.0])[0] < 3.0
    np.testing.assert_array_equal(f(0.0, [5.0, 5.0]), [5.0, 5.0])


def test_quaternion_filter_ignores_sign_flips():
    t = np.arange(90) / FPS
    rng = np.random.default_rng(1)
    rotation = quaternion_exp(np.stack([0.6 * np.sin(2 * t), t, np.zeros_like(t)], axis=-1))
    rotation = quaternion_multiply(rotation, quaternion_exp(rng.normal(0, 0.01, (len(t), 3))))
    flipped = rotation * rng.choice([-1.0, 1.0], len(t))[:, None]
    a = run(QuaternionOneEuroFilter(one_euro.POSE_ROTATION), t, rotation)
    b = run(QuaternionOneEuroFilter(one_euro.POSE_ROTATION), t, flipped)
    assert angle_rad(a, b).max() < 1e-9


def test_alternating_q_and_minus_q_does_not_spin():
    q = quaternion_exp(np.array([0.2, 2.5, -0.4]))
    samples = np.array([q if i % 2 else -q for i in range(40)])
    out = run(QuaternionOneEuroFilter(one_euro.POSE_ROTATION), np.arange(40) / FPS, samples)
    assert angle_rad(out, np.broadcast_to(q, out.shape)).max() < 1e-9


def test_quaternion_filter_lag_is_under_one_frame():
    t = np.arange(int(8 * FPS)) / FPS
    yaw = np.radians(15.0) * np.sin(2 * np.pi * 0.5 * t)
    rotation = quaternion_exp(np.stack([np.zeros_like(t), yaw, np.zeros_like(t)], axis=-1))
    out = run(QuaternionOneEuroFilter(one_euro.POSE_ROTATION), t, rotation)
    filtered_yaw = quaternion_log(out)[:, 1]
    assert 0.0 < metrics.lag_frames(yaw, filtered_yaw) < 1.0


def _row(yaw, x, expression):
    pose = ImagePose(
        np.array([1.2e-3]),
        quaternion_exp(np.array([[0.0, yaw, 0.0]])),
        np.array([[x, -200.0, -80.0]]),
        np.zeros((1, 3, 3)),
    )
    roi = np.array([[x - 130.0, 70.0, x + 130.0, 330.0]])
    return crop_param(pose, roi, np.zeros((1, 40)), expression[None])[0], roi[0]


def test_live_filter_keeps_a_still_face_and_the_identity():
    live = LiveFilter()
    param, roi = _row(0.3, 320.0, np.linspace(-1, 1, 10))
    param[12:52] = np.arange(40.0)
    for i in range(5):
        out = live(i / FPS, param, roi)
    np.testing.assert_allclose(out, param, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out[12:52], param[12:52])


def test_live_filter_reduces_jitter_and_restarts_after_a_lost_face():
    rng = np.random.default_rng(2)
    live = LiveFilter()
    outputs, raws = [], []
    for i in range(90):
        param, roi = _row(0.2 + rng.normal(0, 0.01), 320.0 + rng.normal(0, 1.5), 0.5 + rng.normal(0, 0.05, 10))
        raws.append(image_pose(param[None], roi[None]))
        outputs.append(image_pose(live(i / FPS, param, roi)[None], roi[None]))
    raw_x = np.array([p.translation[0, 0] for p in raws[30:]])
    out_x = np.array([p.translation[0, 0] for p in outputs[30:]])
    assert out_x.std() < 0.55 * raw_x.std()
    assert np.isnan(live(3.0, np.full(62, np.nan), roi)).all()
    far, far_roi = _row(-0.5, 100.0, np.zeros(10))
    np.testing.assert_allclose(live(3.1, far, far_roi), far, rtol=1e-5, atol=1e-5)
