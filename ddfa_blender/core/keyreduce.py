"""Keyframe reduction: the fewest Bezier keys that stay within a tolerance of a sampled curve.

Input: one channel sampled at increasing frames (a smoothed bake: a value on
every frame). Output: a subset of the samples as keys, each with Bezier
handles, such that the F-curve through them is within ``tolerance`` (the
channel's own units) of every sample.

Handle convention (what the Blender layer writes)
    Key k at ``(x_k, y_k)`` has one slope ``m_k`` (units per frame). Its left
    handle is ``(x_k - d_left / 3, y_k - m_k * d_left / 3)`` and its right
    handle ``(x_k + d_right / 3, y_k + m_k * d_right / 3)`` where ``d_left`` and
    ``d_right`` are the frame distances to the previous and next key (the first
    key's left and the last key's right handle mirror its only neighbour's
    distance; they matter only for extrapolation). Handles one third of the way
    along the interval make the Bezier's x(u) linear, so each segment is the
    cubic Hermite curve with end slopes ``m_k``, ``m_{k+1}`` and
    :func:`evaluate`, which solves x(u) = frame as Blender does, agrees with it.
    The two handles of a key are collinear, so Blender's handle types ``FREE``
    and ``ALIGNED`` both keep them as written; interpolation ``BEZIER``,
    extrapolation ``CONSTANT`` (Blender's defaults). A channel that never
    leaves the tolerance band of its first value reduces to a single key.

Algorithm
    Start from the two end samples; fit the slopes of the current keys to all
    samples by least squares (a tridiagonal system; a faint pull toward the
    samples' central-difference slope settles keys with no sample between
    them and their neighbours); wherever a segment misses a sample by more
    than the tolerance, add its worst sample as a key; repeat. Keys take the
    sampled values, so every frame is eventually within tolerance. Then drop
    every key whose two segments, merged with the neighbours' slopes as they
    are, still fit (an exact check: a segment depends only on its end keys).
"""

from __future__ import annotations

import dataclasses

import numpy as np

_SLOPE_PRIOR = 1e-3  # weight of the pull toward the sampled slope (frames^2)


@dataclasses.dataclass
class ReducedCurve:
    """Keys of a reduced F-curve: ``frames`` (K,), ``values`` (K,), handles (K, 2) as (frame, value).

    ``n_samples`` is the number of samples it replaces (keys before reduction).
    """

    frames: np.ndarray
    values: np.ndarray
    left_handles: np.ndarray
    right_handles: np.ndarray
    n_samples: int

    def __len__(self):
        return len(self.frames)


def _sampled_slopes(x, y):
    """Central-difference slopes (n,) of samples (one-sided at the ends)."""
    if len(x) < 2:
        return np.zeros(len(x))
    return np.gradient(y, x)


def _hermite_weights(x, i, a, b):
    """Weights of y_a, y_b, m_a, m_b in the cubic Hermite segment from sample a to b, at samples i."""
    h = x[b] - x[a]
    u = (x[i] - x[a]) / h
    u2, u3 = u * u, u * u * u
    return 2 * u3 - 3 * u2 + 1, -2 * u3 + 3 * u2, h * (u3 - 2 * u2 + u), h * (u3 - u2)


def _hermite(x, y, i, a, b, slope_a, slope_b):
    """Values at samples i of Hermite segments from key sample a to b with the given end slopes."""
    wa, wb, ma, mb = _hermite_weights(x, i, a, b)
    return wa * y[a] + wb * y[b] + ma * slope_a + mb * slope_b


def _segments_of(n, keys):
    """Index (n,) of the segment (between keys j and j + 1) holding each sample."""
    return np.minimum(np.searchsorted(keys, np.arange(n), side="right") - 1, len(keys) - 2)


def _curve_values(x, y, keys, slopes):
    """The curve through y[keys] with ``slopes`` at every sample (handles at thirds: exact)."""
    segment = _segments_of(len(x), keys)
    return _hermite(
        x, y, np.arange(len(x)), keys[segment], keys[segment + 1], slopes[segment], slopes[segment + 1]
    )


def _fit_slopes(x, y, keys, prior):
    """Least-squares slopes at key indices ``keys`` for the Hermite curve through y[keys]."""
    k = len(keys)
    segment = _segments_of(len(x), keys)
    a, b = keys[segment], keys[segment + 1]
    wa, wb, ca, cb = _hermite_weights(x, np.arange(len(x)), a, b)
    target = y - wa * y[a] - wb * y[b]
    diag = (
        _SLOPE_PRIOR
        + np.bincount(segment, ca * ca, minlength=k)
        + np.bincount(segment + 1, cb * cb, minlength=k)
    )
    off = np.bincount(segment, ca * cb, minlength=k - 1)[: k - 1]
    rhs = (
        _SLOPE_PRIOR * prior[keys]
        + np.bincount(segment, ca * target, minlength=k)
        + np.bincount(segment + 1, cb * target, minlength=k)
    )
    # Thomas algorithm for the symmetric tridiagonal system.
    c = np.zeros(k)
    d = np.zeros(k)
    for j in range(k):
        denom = diag[j] - (off[j - 1] * c[j - 1] if j else 0.0)
        c[j] = off[j] / denom if j < k - 1 else 0.0
        d[j] = (rhs[j] - (off[j - 1] * d[j - 1] if j else 0.0)) / denom
    slopes = np.zeros(k)
    for j in range(k - 1, -1, -1):
        slopes[j] = d[j] - (c[j] * slopes[j + 1] if j < k - 1 else 0.0)
    return slopes


def _curve(x, y, keys, slopes, n_samples):
    frames, values = x[keys], y[keys]
    gaps = np.diff(frames)
    d_left = np.r_[gaps[:1], gaps] if len(gaps) else np.ones(1)
    d_right = np.r_[gaps, gaps[-1:]] if len(gaps) else np.ones(1)
    left = np.stack([frames - d_left / 3, values - slopes * d_left / 3], axis=-1)
    right = np.stack([frames + d_right / 3, values + slopes * d_right / 3], axis=-1)
    return ReducedCurve(frames.copy(), values.copy(), left, right, n_samples)


def reduce_keys(frames, values, tolerance: float) -> ReducedCurve:
    """Keys and handles within ``tolerance`` of ``values`` (N,) at every one of ``frames`` (N,).

    ``frames`` must increase strictly and ``values`` be finite (split a
    channel at gaps before calling). See the module doc for the handle
    convention.
    """
    x = np.asarray(frames, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or len(x) == 0:
        raise ValueError("frames and values must be two (N,) arrays with N >= 1")
    if not (np.isfinite(y).all() and np.isfinite(x).all() and (np.diff(x) > 0).all()):
        raise ValueError("frames must increase strictly and all values be finite")
    if tolerance < 0:
        raise ValueError("tolerance must be >= 0")
    n = len(x)
    if np.abs(y - y[0]).max() <= tolerance:
        return _curve(x, y, np.array([0]), np.zeros(1), n)
    prior = _sampled_slopes(x, y)
    keys = np.array([0, n - 1])
    while True:
        slopes = _fit_slopes(x, y, keys, prior)
        error = np.abs(_curve_values(x, y, keys, slopes) - y)
        segment = _segments_of(n, keys)
        failing = error > tolerance
        if not failing.any():
            keys, slopes = _drop_redundant(x, y, keys, slopes, tolerance)
            return _curve(x, y, keys, slopes, n)
        candidates = np.flatnonzero(failing)
        # The worst failing sample of each failing segment becomes a key.
        order = candidates[np.lexsort((-error[candidates], segment[candidates]))]
        _, first = np.unique(segment[order], return_index=True)
        keys = np.union1d(keys, order[first])


def _drop_redundant(x, y, keys, slopes, tolerance):
    """Remove keys whose two segments, merged with the other slopes unchanged, still fit.

    Each round tests every interior key at once and removes non-adjacent ones
    that pass (segments depend only on their end keys, so the removals do not
    interact); rounds repeat until none passes.
    """
    n = len(x)
    while len(keys) > 2:
        segment = _segments_of(n, keys)
        worst = np.zeros(len(keys))
        # Removing key j merges segments j - 1 and j, so a sample of segment s is
        # covered by the merges removing key s and key s + 1.
        for removed in (segment, segment + 1):
            i = np.flatnonzero((removed > 0) & (removed < len(keys) - 1))
            left, right = removed[i] - 1, removed[i] + 1
            merged = _hermite(x, y, i, keys[left], keys[right], slopes[left], slopes[right])
            np.maximum.at(worst, removed[i], np.abs(merged - y[i]))
        removable = worst <= tolerance
        removable[[0, -1]] = False
        # Of each run of removable neighbours, take every other key.
        index = np.arange(len(keys))
        run_start = np.maximum.accumulate(np.where(removable & ~np.r_[False, removable[:-1]], index, 0))
        chosen = removable & ((index - run_start) % 2 == 0)
        if not chosen.any():
            break
        keys, slopes = keys[~chosen], slopes[~chosen]
    return keys, slopes


def _solve_bezier_parameter(x0, x1, x2, x3, frame, iterations=60):
    """u in [0, 1] with Bezier x(u) = frame, by bisection (x(u) is monotonic)."""
    low, high = np.zeros_like(frame), np.ones_like(frame)
    for _ in range(iterations):
        mid = 0.5 * (low + high)
        inv = 1.0 - mid
        x = inv**3 * x0 + 3 * inv**2 * mid * x1 + 3 * inv * mid**2 * x2 + mid**3 * x3
        below = x < frame
        low = np.where(below, mid, low)
        high = np.where(below, high, mid)
    return 0.5 * (low + high)


def evaluate(curve: ReducedCurve, frames) -> np.ndarray:
    """The F-curve's values at ``frames``, evaluated as Blender does with BEZIER interpolation.

    Each segment is the cubic Bezier key, right handle, next key's left
    handle, next key; a handle reaching past the other key is first
    shortened as Blender does; x(u) = frame is solved for u (bisection, so
    x(u) must increase, as it does for handles within the interval that do
    not cross). Outside the keys the value is constant (CONSTANT extrapolation).
    """
    q = np.asarray(frames, dtype=np.float64)
    out = np.empty_like(q)
    kf, kv = curve.frames, curve.values
    out[q <= kf[0]] = kv[0]
    out[q >= kf[-1]] = kv[-1]
    inside = (q > kf[0]) & (q < kf[-1])
    if not inside.any():
        return out
    j = np.searchsorted(kf, q[inside], side="right") - 1
    p0 = np.stack([kf[j], kv[j]], axis=-1)
    p3 = np.stack([kf[j + 1], kv[j + 1]], axis=-1)
    p1 = curve.right_handles[j] - p0
    p2 = curve.left_handles[j + 1] - p3
    # Like Blender's BKE_fcurve_correct_bezpart: a handle reaching past the other key
    # is shortened along its direction to the length of the interval.
    span = (p3[:, 0] - p0[:, 0])[:, None]
    p1 = p0 + p1 * np.minimum(1.0, span / np.maximum(np.abs(p1[:, :1]), 1e-300))
    p2 = p3 + p2 * np.minimum(1.0, span / np.maximum(np.abs(p2[:, :1]), 1e-300))
    u = _solve_bezier_parameter(p0[:, 0], p1[:, 0], p2[:, 0], p3[:, 0], q[inside])
    inv = 1.0 - u
    out[inside] = inv**3 * p0[:, 1] + 3 * inv**2 * u * p1[:, 1] + 3 * inv * u**2 * p2[:, 1] + u**3 * p3[:, 1]
    return out
