"""Keyframe reduction: within tolerance at every frame, fewer keys, Blender-compatible handles."""

import numpy as np
import pytest

from ddfa_blender.core.keyreduce import ReducedCurve, evaluate, reduce_keys


def random_walk(n, seed, step=0.01):
    return np.cumsum(np.random.default_rng(seed).normal(0, step, n))


def smoothed_walk(n, seed):
    kernel = np.exp(-0.5 * (np.arange(-6, 7) / 2.0) ** 2)
    return np.convolve(random_walk(n + 12, seed), kernel / kernel.sum(), mode="valid")


SIGNALS = {
    "random walk": lambda: random_walk(400, 0),
    "smoothed random walk": lambda: smoothed_walk(600, 1),
    "steps": lambda: np.repeat([0.0, 1.0, -0.5, -0.5, 2.0], 40),
    "sine": lambda: np.sin(np.arange(300) / 9.0),
}


@pytest.mark.parametrize("name", SIGNALS)
@pytest.mark.parametrize("tolerance", [0.002, 0.02])
def test_curve_stays_within_tolerance_at_every_frame_with_fewer_keys(name, tolerance):
    values = SIGNALS[name]()
    frames = np.arange(len(values)) + 10
    curve = reduce_keys(frames, values, tolerance)
    assert np.abs(evaluate(curve, frames) - values).max() <= tolerance
    assert len(curve) < len(values) and curve.n_samples == len(values)
    # Keys are samples: they sit on the sampled curve.
    np.testing.assert_array_equal(curve.values, values[np.searchsorted(frames, curve.frames)])


def test_smooth_signals_reduce_a_lot_and_steps_to_their_corners():
    assert len(reduce_keys(np.arange(300), np.sin(np.arange(300) / 9.0), 0.01)) < 300 / 6
    steps = reduce_keys(np.arange(160), np.repeat([0.0, 1.0, 1.0, -1.0], 40), 0.01)
    assert len(steps) <= 6


def test_non_uniform_frames():
    rng = np.random.default_rng(2)
    frames = np.cumsum(rng.uniform(0.5, 3.0, 200))
    values = np.sin(frames / 15.0) + 0.01 * rng.normal(size=200)
    curve = reduce_keys(frames, values, 0.03)
    assert np.abs(evaluate(curve, frames) - values).max() <= 0.03
    assert len(curve) < 200


def test_a_flat_channel_is_one_key():
    values = 0.25 + 0.001 * np.sin(np.arange(50))
    curve = reduce_keys(np.arange(50), values, 0.01)
    assert len(curve) == 1
    assert np.abs(evaluate(curve, np.arange(50)) - values).max() <= 0.01


def test_handles_follow_the_documented_convention():
    values = smoothed_walk(300, 3)
    curve = reduce_keys(np.arange(300), values, 0.005)
    gaps = np.diff(curve.frames)
    # Handles one third of the way to the neighbouring key, in time.
    np.testing.assert_allclose(curve.right_handles[:-1, 0] - curve.frames[:-1], gaps / 3)
    np.testing.assert_allclose(curve.frames[1:] - curve.left_handles[1:, 0], gaps / 3)
    # Left handle, key and right handle are collinear (Blender's ALIGNED keeps them).
    left = curve.left_handles - np.stack([curve.frames, curve.values], -1)
    right = curve.right_handles - np.stack([curve.frames, curve.values], -1)
    cross = left[:, 0] * right[:, 1] - left[:, 1] * right[:, 0]
    np.testing.assert_allclose(cross, 0.0, atol=1e-12)
    assert (left[:, 0] < 0).all() and (right[:, 0] > 0).all()


def test_evaluate_solves_the_bezier_like_blender():
    # One segment with handles not at one third: x(u) is not linear in u.
    curve = ReducedCurve(
        frames=np.array([0.0, 10.0]),
        values=np.array([0.0, 1.0]),
        left_handles=np.array([[-1.0, 0.0], [8.0, 1.0]]),
        right_handles=np.array([[6.0, 0.0], [11.0, 1.0]]),
        n_samples=11,
    )
    u = np.linspace(0, 1, 7)
    points = np.array([[0.0, 0.0], [6.0, 0.0], [8.0, 1.0], [10.0, 1.0]])
    bernstein = np.stack([(1 - u) ** 3, 3 * (1 - u) ** 2 * u, 3 * (1 - u) * u**2, u**3], -1)
    xy = bernstein @ points
    np.testing.assert_allclose(evaluate(curve, xy[:, 0]), xy[:, 1], atol=1e-9)
    np.testing.assert_array_equal(evaluate(curve, np.array([-5.0, 20.0])), [0.0, 1.0])


def test_evaluate_shortens_a_handle_longer_than_its_interval_like_blender():
    long_handle = ReducedCurve(
        frames=np.array([0.0, 10.0]),
        values=np.array([0.0, 0.0]),
        left_handles=np.array([[-1.0, 0.0], [10.0, 0.0]]),
        right_handles=np.array([[20.0, 4.0], [11.0, 0.0]]),
        n_samples=11,
    )
    clamped = ReducedCurve(
        frames=long_handle.frames,
        values=long_handle.values,
        left_handles=long_handle.left_handles,
        right_handles=np.array([[10.0, 2.0], [11.0, 0.0]]),
        n_samples=11,
    )
    frames = np.linspace(0.5, 9.5, 10)
    np.testing.assert_allclose(evaluate(long_handle, frames), evaluate(clamped, frames), atol=1e-12)


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        reduce_keys(np.arange(5), np.array([0.0, 1.0, np.nan, 1.0, 0.0]), 0.1)
    with pytest.raises(ValueError):
        reduce_keys(np.array([0, 1, 1, 2]), np.zeros(4), 0.1)
