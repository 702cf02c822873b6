"""Stability measures of a take: jitter, the paper's offset NME, lag and displacement.

Face size: ``sqrt(w * h)`` of the bounding box of a row's 68 landmarks in
image pixels (x, y only), the normaliser of the 3DDFA-V2 paper.

* :func:`stability_nme`: the 3DDFA-V2 paper's stability measure, the NME of
  predicted frame-to-frame landmark offsets against ground-truth offsets,
  normalised by the ground-truth face size; needs a ground-truth track.
* :func:`jitter`: ground-truth-free high-frequency energy per channel group:
  the RMS of the residual after a zero-phase low-pass (a second-order
  Butterworth run forward and backward, cut-off ``JITTER_CUTOFF_HZ``). It is
  independent of the smoother shipped in :mod:`.smoothing`, so smoothing is
  not graded by itself.
* :func:`lag_frames` / :func:`take_lag`: the delay a filter introduces, from
  the cross-correlation of frame-to-frame differences, refined below one frame
  by parabolic interpolation of the peak. Positive: the filtered signal is late.
* :func:`displacement_pct`: mean landmark distance between two takes in percent
  of the face size (how far smoothing moved the performance).
"""

from __future__ import annotations

import math

import numpy as np

from .pose import (
    image_pose,
    quaternion_conjugate,
    quaternion_exp,
    quaternion_log,
    quaternion_multiply,
)
from .take import Take

# Speech and facial expression put little energy above ~6 Hz (syllable rates are
# 3-6 Hz), while regressor noise is spread up to the Nyquist frequency.
JITTER_CUTOFF_HZ = 6.0
MIN_SEGMENT_ROWS = 8
JITTER_GROUPS = ("rotation_deg", "translation", "scale", "expression", "landmarks")


def face_size(lmk68) -> np.ndarray:
    """``sqrt(w * h)`` of the 2-D landmark box, (...) from landmarks (..., 68, >=2)."""
    points = np.asarray(lmk68, dtype=np.float64)[..., :2]
    extent = points.max(axis=-2) - points.min(axis=-2)
    return np.sqrt(extent[..., 0] * extent[..., 1])


def lowpass_zero_phase(values, fps: float, cutoff_hz: float = JITTER_CUTOFF_HZ) -> np.ndarray:
    """Second-order Butterworth low-pass run forward then backward along axis 0.

    Zero phase, -6 dB at ``cutoff_hz`` (clamped to 0.45 * fps). The ends are
    extended by odd reflection and the filter starts in its steady state, so a
    constant or a straight line passes through unchanged.
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    cutoff = min(cutoff_hz, 0.45 * fps)
    warped = math.tan(math.pi * cutoff / fps)
    norm = 1.0 + math.sqrt(2.0) * warped + warped * warped
    b = np.array([warped * warped, 2.0 * warped * warped, warped * warped]) / norm
    a1 = 2.0 * (warped * warped - 1.0) / norm
    a2 = (1.0 - math.sqrt(2.0) * warped + warped * warped) / norm
    pad = min(n - 1, int(math.ceil(3.0 * fps / cutoff)))
    extended = np.concatenate(
        [2.0 * values[:1] - values[pad:0:-1], values, 2.0 * values[-1:] - values[-2 : -pad - 2 : -1]]
    )

    def run(signal):
        out = np.empty_like(signal)
        # Direct form II transposed, state set to the steady state of the first sample.
        z1 = (b[2] - a2) * signal[0]
        z0 = (b[1] + b[2] - a1 - a2) * signal[0]
        for i, x in enumerate(signal):
            y = b[0] * x + z0
            z0 = b[1] * x - a1 * y + z1
            z1 = b[2] * x - a2 * y
            out[i] = y
        return out

    forward = run(extended)
    backward = run(forward[::-1])[::-1]
    return backward[pad : pad + n]


def _valid_runs(take: Take, min_rows: int = 1):
    """Row ranges (start, stop) of runs of valid rows within each track."""
    usable = take.valid & np.isfinite(take.param).all(axis=1)
    same_track = np.r_[False, take.track[1:] == take.track[:-1]]
    starts = np.flatnonzero(usable & ~(np.r_[False, usable[:-1]] & same_track))
    runs = []
    for start in starts:
        stop = start + 1
        while stop < len(take) and usable[stop] and take.track[stop] == take.track[start]:
            stop += 1
        if stop - start >= min_rows:
            runs.append((start, stop))
    return runs


def _rotation_residual_deg(quaternion, fps, cutoff_hz):
    """Angles (n,), degrees, between each rotation and its low-passed track."""
    continuous = quaternion * np.sign(quaternion @ quaternion[0])[:, None]
    reference = continuous.mean(axis=0)
    reference /= np.linalg.norm(reference)
    vectors = quaternion_log(quaternion_multiply(quaternion_conjugate(reference), quaternion))
    smooth = quaternion_multiply(reference, quaternion_exp(lowpass_zero_phase(vectors, fps, cutoff_hz)))
    residual = quaternion_log(quaternion_multiply(quaternion_conjugate(smooth), quaternion))
    return np.degrees(np.linalg.norm(residual, axis=-1))


def jitter(take: Take, cutoff_hz: float = JITTER_CUTOFF_HZ) -> dict:
    """High-frequency RMS per channel group over all valid runs of at least 8 rows.

    Groups: ``rotation_deg`` (head rotation, degrees of geodesic residual),
    ``translation`` (image position of the head origin, in face sizes),
    ``scale`` (relative change of the head's image scale), ``expression``
    (RMS per expression coefficient), ``landmarks`` (RMS 2-D landmark residual
    in face sizes). NaN when no run is long enough.
    """
    sums = dict.fromkeys(JITTER_GROUPS, 0.0)
    counts = dict.fromkeys(JITTER_GROUPS, 0)

    def add(group, squares):
        sums[group] += float(np.sum(squares))
        counts[group] += squares.size

    for start, stop in _valid_runs(take, MIN_SEGMENT_ROWS):
        param = take.param[start:stop].astype(np.float64)
        lmk = take.lmk68[start:stop, :, :2].astype(np.float64)
        size = face_size(lmk).mean()
        pose = image_pose(param, take.roi[start:stop])

        def high(values):
            return values - lowpass_zero_phase(values, take.fps, cutoff_hz)

        add("rotation_deg", _rotation_residual_deg(pose.rotation, take.fps, cutoff_hz) ** 2)
        add("translation", np.sum((high(pose.translation[:, :2]) / size) ** 2, axis=-1))
        add("scale", high(np.log(pose.scale)) ** 2)
        add("expression", high(param[:, 52:62]) ** 2)
        add("landmarks", np.sum((high(lmk.reshape(len(lmk), -1)).reshape(lmk.shape) / size) ** 2, -1))
    return {g: math.sqrt(sums[g] / counts[g]) if counts[g] else math.nan for g in JITTER_GROUPS}


def stability_nme(predicted, truth, valid=None) -> float:
    """The paper's stability NME: mean over frame pairs of the landmark offset error / face size.

    ``predicted`` and ``truth``: (N, 68, >=2) landmarks of consecutive frames
    (x, y used); ``valid`` (N,) optional mask, pairs need both rows valid. The
    error of a pair is the mean over landmarks of
    ``|(p[t+1] - p[t]) - (g[t+1] - g[t])|``, divided by the ground-truth face
    size at t. Returns a fraction (x100 for percent).
    """
    p = np.asarray(predicted, dtype=np.float64)[..., :2]
    g = np.asarray(truth, dtype=np.float64)[..., :2]
    ok = np.ones(len(p), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    pairs = ok[1:] & ok[:-1]
    error = np.linalg.norm(np.diff(p, axis=0) - np.diff(g, axis=0), axis=-1).mean(axis=-1)
    return float(np.mean(error[pairs] / face_size(g[:-1])[pairs]))


def _xcorr(reference, filtered, max_lag):
    """Sums of d_ref[t] * d_filt[t + k] and pair counts for k in -max_lag..max_lag."""
    d_ref = np.diff(np.asarray(reference, dtype=np.float64).reshape(len(reference), -1), axis=0)
    d_filt = np.diff(np.asarray(filtered, dtype=np.float64).reshape(len(filtered), -1), axis=0)
    n = len(d_ref)
    sums, counts = np.zeros(2 * max_lag + 1), np.zeros(2 * max_lag + 1)
    for i, k in enumerate(range(-max_lag, max_lag + 1)):
        low, high = max(0, -k), min(n, n - k)
        if high > low:
            sums[i] = np.sum(d_ref[low:high] * d_filt[low + k : high + k])
            counts[i] = (high - low) * d_ref.shape[1]
    return sums, counts


def _peak(sums, counts, max_lag) -> float:
    corr = np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf)
    best = int(np.argmax(corr))
    shift = 0.0
    if 0 < best < len(corr) - 1 and np.isfinite(corr[best - 1 : best + 2]).all():
        left, centre, right = corr[best - 1 : best + 2]
        curvature = left - 2.0 * centre + right
        if curvature < 0:
            shift = 0.5 * (left - right) / curvature
    return best - max_lag + shift


def lag_frames(reference, filtered, max_lag: int = 10) -> float:
    """Delay in frames of ``filtered`` behind ``reference`` (both (N,) or (N, ...), finite).

    The peak of the cross-correlation of their frame-to-frame differences
    (differences remove offsets and slow drifts), refined by a parabola
    through the peak and its neighbours.
    """
    return _peak(*_xcorr(reference, filtered, max_lag), max_lag)


def take_lag(reference: Take, filtered: Take, max_lag: int = 10) -> float:
    """Delay in frames of ``filtered``'s landmarks behind ``reference``'s (same rows).

    Cross-correlations are pooled over the runs valid in both takes.
    """
    both = _valid_in_both(reference, filtered)
    sums, counts = np.zeros(2 * max_lag + 1), np.zeros(2 * max_lag + 1)
    for start, stop in _valid_runs(both, 3):
        s, c = _xcorr(
            reference.lmk68[start:stop, :, :2], filtered.lmk68[start:stop, :, :2], max_lag
        )
        sums += s
        counts += c
    return _peak(sums, counts, max_lag)


def _valid_in_both(first: Take, second: Take) -> Take:
    """``first`` with ``valid`` narrowed to the rows valid in both takes (same row layout)."""
    if len(first) != len(second) or not np.array_equal(first.frame, second.frame):
        raise ValueError("the two takes must have the same rows")
    both = first.rows(np.ones(len(first), dtype=bool))
    both.valid = first.valid & second.valid
    return both


def displacement_pct(reference: Take, other: Take) -> float:
    """Mean 2-D landmark distance between two takes of the same rows, % of the face size.

    Rows valid in both; the face size is the reference row's.
    """
    both = _valid_in_both(reference, other).valid
    a = reference.lmk68[both, :, :2].astype(np.float64)
    b = other.lmk68[both, :, :2].astype(np.float64)
    distance = np.linalg.norm(a - b, axis=-1).mean(axis=-1)
    return float(100.0 * np.mean(distance / face_size(a)))
