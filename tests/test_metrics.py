"""Stability metrics: offset NME, jitter, lag and displacement on signals with known answers."""

import numpy as np
import pytest

from ddfa_blender.core import metrics
from ddfa_blender.core.reconstruct import landmarks_image
from ddfa_blender.core.pose import ImagePose, crop_param, quaternion_exp
from ddfa_blender.core.take import Take
from ddfa_blender.core.face_model import FaceModel

FPS = 25.0


def face_model():
    rng = np.random.default_rng(0)
    return FaceModel(
        mean=rng.uniform(-7e4, 7e4, (68, 3)),
        shape_basis=np.zeros((68, 3, 40)),
        expr_basis=rng.normal(0.0, 600.0, (68, 3, 10)),
        triangles=np.zeros((1, 3), dtype=np.int32),
        uv=np.zeros((68, 2)),
        landmark_vertex=np.arange(68),
    )


def take_of(n, noise=0.0, seed=1):
    """A smoothly moving face, plus white noise of ``noise`` (1 = 1 degree, 1 px, 0.05 expression)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FPS
    angles = np.radians(np.stack([5 * np.sin(t), 12 * np.sin(0.7 * t), 0 * t], -1))
    angles += np.radians(noise) * rng.normal(size=(n, 3))
    translation = np.stack([300 + 20 * np.sin(0.5 * t), -200 + 0 * t, -80 + 0 * t], -1)
    translation[:, :2] += noise * rng.normal(size=(n, 2))
    expression = np.sin(t[:, None] * np.linspace(1, 4, 10)) + 0.05 * noise * rng.normal(size=(n, 10))
    scale = np.full(n, 1.2e-3)
    centre = np.stack([translation[:, 0], -translation[:, 1]], -1)
    roi = np.concatenate([centre - 130, centre + 130], -1)
    pose = ImagePose(scale, quaternion_exp(angles), translation, np.zeros((n, 3, 3)))
    param = crop_param(pose, roi, np.zeros((n, 40)), expression)
    return Take(
        fps=FPS, image_size=(640, 480), frame=np.arange(n), time=t, track=np.zeros(n),
        valid=np.ones(n, dtype=bool), detected=np.zeros(n, dtype=bool), param=param, roi=roi,
        lmk68=landmarks_image(face_model(), param, roi), quality=np.zeros(n),
    )


def test_lowpass_keeps_lines_removes_high_frequencies_and_has_no_phase():
    t = np.arange(200) / FPS
    line = 3.0 * t - 1.0
    np.testing.assert_allclose(metrics.lowpass_zero_phase(line, FPS), line, atol=1e-5)
    fast = np.sin(2 * np.pi * 11.0 * t)
    assert np.abs(metrics.lowpass_zero_phase(fast, FPS)[20:-20]).max() < 0.05
    slow = np.sin(2 * np.pi * 1.0 * t)
    filtered = metrics.lowpass_zero_phase(slow, FPS)
    assert np.abs(filtered - slow)[20:-20].max() < 0.01
    assert abs(metrics.lag_frames(slow, filtered)) < 0.01


def test_stability_nme_of_offsets():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 100, (30, 68, 2)) + np.arange(30)[:, None, None]
    assert metrics.stability_nme(truth + 5.0, truth) == pytest.approx(0.0, abs=1e-12)  # bias: no jitter
    shaky = truth.copy()
    shaky[::2, :, 0] += 0.5  # every other frame half a pixel to the right
    sizes = metrics.face_size(truth[:-1])  # each pair is normalised at its first frame
    assert metrics.stability_nme(shaky, truth) == pytest.approx(np.mean(0.5 / sizes))
    assert metrics.stability_nme(2 * shaky, 2 * truth) == pytest.approx(np.mean(0.5 / sizes))
    valid = np.ones(30, dtype=bool)
    valid[10] = False  # drops the pairs (9, 10) and (10, 11)
    pairs = np.delete(np.arange(29), [9, 10])
    assert metrics.stability_nme(shaky, truth, valid) == pytest.approx(np.mean(0.5 / sizes[pairs]))


def test_lag_of_shifted_signals():
    t = np.arange(300) / FPS
    signal = np.sin(2 * np.pi * 0.7 * t) + 0.4 * np.sin(2 * np.pi * 2.3 * t)
    for shift in (1, 3):
        late = signal[: len(signal) - shift]  # late[t] == reference[t - shift]
        assert metrics.lag_frames(signal[shift:], late) == pytest.approx(shift, abs=0.05)
        assert metrics.lag_frames(late, signal[shift:]) == pytest.approx(-shift, abs=0.05)
    assert metrics.lag_frames(signal, signal) == pytest.approx(0.0, abs=1e-9)
    half = np.sin(2 * np.pi * 0.7 * (t - 0.5 / FPS)) + 0.4 * np.sin(2 * np.pi * 2.3 * (t - 0.5 / FPS))
    assert metrics.lag_frames(signal, half) == pytest.approx(0.5, abs=0.15)


def test_jitter_grows_with_noise_and_is_small_on_smooth_motion():
    clean, light, heavy = (metrics.jitter(take_of(200, noise)) for noise in (0.0, 1.0, 2.0))
    for group in metrics.JITTER_GROUPS:
        if group == "scale":
            continue  # no scale noise in this take
        assert clean[group] < 0.05 * heavy[group], group
        assert heavy[group] == pytest.approx(2 * light[group], rel=0.3), group
    # Rotation noise of 1 degree per axis leaves roughly half its energy above 6 Hz.
    assert 0.5 < light["rotation_deg"] < 1.7


def test_jitter_skips_gaps_and_short_runs():
    take = take_of(100, 1.0)
    take.valid[50:52] = False
    take.param[50:52] = np.nan
    take.valid[3] = False
    assert all(np.isfinite(v) for v in metrics.jitter(take).values())
    assert all(np.isnan(v) for v in metrics.jitter(take.rows(np.arange(100) < 5)).values())


def test_displacement_and_take_lag():
    take = take_of(120, 1.0)
    assert metrics.displacement_pct(take, take) == 0.0
    moved = take.rows(np.ones(len(take), dtype=bool))
    size = metrics.face_size(take.lmk68)
    moved.lmk68[:, :, 0] += 0.02 * size[:, None]
    assert metrics.displacement_pct(take, moved) == pytest.approx(2.0)
    late = take.rows(np.ones(len(take), dtype=bool))
    late.lmk68[2:] = take.lmk68[:-2]
    assert metrics.take_lag(take, late) == pytest.approx(2.0, abs=0.05)
