"""Per-frame confidence of a take: how far an animator can trust each tracked row, 0..1.

``Take.confidence`` (N,) float32 holds, for every row with a face, the
product of the factors below, each 1 while its evidence looks like normal
tracking and falling smoothly to 0 as it stops doing so
(:func:`ramp`: 1 up to ``good``, 0 from ``bad``, a smoothstep between).
Rows without a face hold NaN. A row whose confidence is under
:data:`THRESHOLD` (0.5) is *flagged*: the smoothing bridges it from its
confident neighbours instead of baking it (unless the user keeps flagged
frames), and the bake marks it on Blender's timeline.

Factors, with the evidence they read (all recorded in the take):

``heads``
    the agreement of the network's two heads (``quality``, pixels of the
    120-px crop), ``ramp(quality, 1.2, 3.0)``: tracked faces sit at 0.2-0.8 px,
    a crop over something that is not quite a face at 1.2-2.5.
``occlusion``
    the occlusion score of :mod:`.occlusion` (channel ``ch.occlusion``, the
    fraction of the face that no longer looks like itself) as it lasts:
    the level the score holds for at least ``OCCLUSION_MIN_SECONDS``
    around the frame (a grey-scale opening over time, after dips shorter
    than ``OCCLUSION_GAP_SECONDS`` are filled by a closing), then
    ``ramp(score, 0.07, 0.12)``. A blink or a quick expression changes the
    eye region or the mouth as much as a small occluder does, but for
    0.1-0.3 s; hands, cups and microphones stay longer. A clean face scores
    under 0.06 on 98% of frames of the shared clips.
``in_frame``
    the fraction f of the 68 landmarks outside the image, ``ramp(f, 0.05, 0.4)``.
``motion``
    whether the head jumped away and back. The confident neighbours within
    ``NEIGHBOUR_SECONDS`` before the frame and those after it each give a
    median (per axis of the rotation from this frame to each of them; of
    their landmark centres). A real head moving, however fast, passes from
    where the past neighbours were to where the future ones are; an occluded
    or misfitted frame lies outside that interval, and the distance outside
    it is the evidence (none at a track's ends, which have one side only):
    ``ramp(degrees, 12, 25)`` times ``ramp(shift / face size, 0.1, 0.25)``.
``expression``
    the same for the 10 expression coefficients, in units of each
    coefficient's standard deviation over the track: ``ramp(RMS distance, 2.5, 5)``.
``mediapipe``
    where the take records MediaPipe's face landmarker (``ch.mp_blendshapes``)
    and the landmarker found no face on a tracked row: 0.6 (not enough alone
    to flag a frame, enough with one more weak sign).

A take without a stored confidence (written before it existed, or built by
hand) gets it computed from its own rows by :func:`take_confidence`; such
takes have no occlusion channel, so that factor is 1.
"""

from __future__ import annotations

import numpy as np

THRESHOLD = 0.5
OCCLUSION_CHANNEL = "occlusion"
MEDIAPIPE_CHANNEL = "mp_blendshapes"
NEIGHBOUR_SECONDS = 0.5
MIN_NEIGHBOURS = 3
MEDIAPIPE_MISSING_FACTOR = 0.6
OCCLUSION_MIN_SECONDS = 0.3
OCCLUSION_GAP_SECONDS = 0.1

HEADS_PX = (1.2, 3.0)
OCCLUSION_SCORE = (0.07, 0.12)
OUTSIDE_FRACTION = (0.05, 0.4)
ROTATION_DEG = (12.0, 25.0)
SHIFT_FACES = (0.1, 0.25)
EXPRESSION_SPREADS = (2.5, 5.0)
FACTORS = ("heads", "occlusion", "in_frame", "motion", "expression", "mediapipe")


def ramp(value, good: float, bad: float) -> np.ndarray:
    """1 where ``value`` <= good, 0 where >= bad, a smoothstep between; NaN values give 1."""
    t = np.clip((np.asarray(value, dtype=np.float64) - good) / (bad - good), 0.0, 1.0)
    return np.where(np.isnan(t), 1.0, 1.0 - t * t * (3.0 - 2.0 * t))


def occlusion_channel(observations) -> dict:
    """The ``ch.occlusion`` values ``{track_id: score}`` of one frame's tracker observations."""
    return {obs.track_id: np.float32(obs.occlusion) for obs in observations}


def confidence_factors(take) -> dict[str, np.ndarray]:
    """Each factor (N,) float64 of :func:`take_confidence` by name (see the module doc)."""
    n = len(take)
    valid = take.valid & np.isfinite(take.param).all(axis=1) & np.isfinite(take.roi).all(axis=1)
    factors = {name: np.ones(n) for name in FACTORS}
    factors["heads"] = ramp(take.quality, *HEADS_PX)
    occlusion = take.channels.get(OCCLUSION_CHANNEL)
    if occlusion is not None:
        lasting = np.asarray(occlusion, dtype=np.float64).reshape(n).copy()
        for track_id in np.unique(take.track):
            rows = np.flatnonzero(take.track == track_id)
            lasting[rows] = lasting_score(lasting[rows], _track_times(take, rows))
        factors["occlusion"] = ramp(lasting, *OCCLUSION_SCORE)
    width, height = take.image_size
    points = take.lmk68[..., :2].astype(np.float64)
    outside = (
        (points[..., 0] < -0.5) | (points[..., 0] > width - 0.5)
        | (points[..., 1] < -0.5) | (points[..., 1] > height - 0.5)
    ).mean(axis=1)
    factors["in_frame"] = ramp(outside, *OUTSIDE_FRACTION)
    blendshapes = take.channels.get(MEDIAPIPE_CHANNEL)
    if blendshapes is not None:
        missing = ~np.isfinite(np.asarray(blendshapes, dtype=np.float64).reshape(n, -1)).any(axis=1)
        factors["mediapipe"] = np.where(missing, MEDIAPIPE_MISSING_FACTOR, 1.0)
    instant = np.prod([factors[name] for name in ("heads", "occlusion", "in_frame")], axis=0)
    for track_id in np.unique(take.track):
        rows = np.flatnonzero((take.track == track_id) & valid)
        if len(rows) < 2:
            continue
        motion, expression = _temporal_factors(take, rows, instant[rows] >= THRESHOLD)
        factors["motion"][rows] = motion
        factors["expression"][rows] = expression
    for name in FACTORS:
        factors[name] = np.where(valid, factors[name], np.nan)
    return factors


def take_confidence(take) -> np.ndarray:
    """Confidence (N,) float32 in [0, 1] of every row of ``take``; NaN where there is no face."""
    factors = confidence_factors(take)
    return np.prod([factors[name] for name in FACTORS], axis=0).astype(np.float32)


def flagged_rows(take, threshold: float = THRESHOLD) -> np.ndarray:
    """Rows (N,) bool with a face whose confidence is under ``threshold``."""
    return take.valid & (np.nan_to_num(take.confidence, nan=1.0) < threshold)


def flagged_summary(take, threshold: float = THRESHOLD, kept: bool = False) -> str:
    """One line for users: how many rows are flagged, and which source frames (runs).

    ``kept``: the flagged frames are baked as captured (the user keeps them)
    rather than bridged.
    """
    flagged = flagged_rows(take, threshold)
    faces = int(take.valid.sum())
    if not flagged.any():
        return f"no frame flagged (all {faces} tracked rows have confidence >= {threshold:g})"
    spans = []
    for track_id in np.unique(take.track[flagged]):
        rows = np.flatnonzero(take.track == track_id)
        for start, stop in runs(flagged[rows]):
            first, last = int(take.frame[rows[start]]), int(take.frame[rows[stop - 1]])
            label = f"{first}" if first == last else f"{first}-{last}"
            spans.append(label if len(np.unique(take.track)) == 1 else f"face {track_id}: {label}")
    shown = ", ".join(spans[:8]) + (f", ... ({len(spans)} runs)" if len(spans) > 8 else "")
    action = "kept as captured" if kept else "bridged from their neighbours"
    return (
        f"{int(flagged.sum())} of {faces} tracked rows flagged (confidence < {threshold:g}), "
        f"{action}: frames {shown}"
    )


def lasting_score(score, times) -> np.ndarray:
    """The occlusion score (n,) of one track's rows (times (n,) seconds, ascending) as
    it lasts: dips shorter than ``OCCLUSION_GAP_SECONDS`` filled (closing), then
    the level held for ``OCCLUSION_MIN_SECONDS`` (opening). NaN (no score) counts
    as 0 and stays NaN."""
    score = np.asarray(score, dtype=np.float64)
    known = np.isfinite(score)
    if len(score) < 2:
        return score
    step = float(np.median(np.diff(times))) if np.isfinite(times).all() else 0.0
    rate = 1.0 / step if step > 0 else 30.0
    value = np.where(known, score, 0.0)
    gap = max(int(OCCLUSION_GAP_SECONDS * rate + 0.5), 1)
    least = max(int(OCCLUSION_MIN_SECONDS * rate + 0.5), 1)
    value = _window_min(_window_max(value, gap), gap)
    value = _window_max(_window_min(value, least), least)
    return np.where(known, value, np.nan)


def _window_max(values, width: int) -> np.ndarray:
    """Max over each window of ``width`` samples ending at or after each sample (dilation)."""
    if width <= 1:
        return values
    padded = np.pad(values, (width - 1 - width // 2, width // 2), mode="edge")
    return np.lib.stride_tricks.sliding_window_view(padded, width).max(axis=1)


def _window_min(values, width: int) -> np.ndarray:
    """Min over each window of ``width`` samples (erosion; the mirror of :func:`_window_max`)."""
    if width <= 1:
        return values
    padded = np.pad(values, (width // 2, width - 1 - width // 2), mode="edge")
    return np.lib.stride_tricks.sliding_window_view(padded, width).min(axis=1)


def _track_times(take, rows) -> np.ndarray:
    """Times (seconds) of some rows: the stored time, else frame / fps."""
    return np.where(np.isfinite(take.time[rows]), take.time[rows], take.frame[rows] / take.fps).astype(np.float64)


def runs(mask) -> list[tuple[int, int]]:
    """(start, stop) index ranges of the runs of true values in a 1-D bool array."""
    mask = np.asarray(mask, dtype=bool)
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def _neighbours(times, usable):
    """Indices (n, h) of each row's usable neighbours before and after it within
    NEIGHBOUR_SECONDS, nearest first (-1: none): ``(before, after)``."""
    n = len(times)
    step = np.median(np.diff(times)) if n > 1 else 1.0
    half = max(int(round(NEIGHBOUR_SECONDS / max(step, 1e-6))), 1)
    sides = []
    for offsets in (-np.arange(1, half + 1), np.arange(1, half + 1)):
        index = np.arange(n)[:, None] + offsets[None]
        inside = (index >= 0) & (index < n)
        index = np.clip(index, 0, n - 1)
        near = inside & (np.abs(times[index] - times[:, None]) <= NEIGHBOUR_SECONDS + 1e-9)
        good = near & usable[index]
        # Too few confident neighbours (inside a long flagged run): fall back to all near ones.
        chosen = np.where((good.sum(axis=1) >= MIN_NEIGHBOURS)[:, None], good, near)
        sides.append(np.where(chosen, index, -1))
    return sides


def _side_median(values, index):
    """Median over axis 1 of ``values[index]`` ignoring entries where ``index`` is -1."""
    gathered = values[np.maximum(index, 0)].astype(np.float64)
    gathered[index < 0] = np.nan
    return np.nanmedian(gathered, axis=1)


def _outside(value, before, after):
    """Per-component distance of ``value`` from the interval spanned by ``before`` and ``after``.

    A frame on its way from where its past neighbours were to where its
    future ones are (any real motion, however fast) is inside: 0. A frame
    that jumped away and back is outside.
    """
    low, high = np.minimum(before, after), np.maximum(before, after)
    return np.maximum(value - high, 0.0) + np.maximum(low - value, 0.0)


def _temporal_factors(take, rows, usable):
    """``motion`` and ``expression`` factors (len(rows),) for one track's valid rows."""
    import warnings

    from .pose import image_pose, quaternion_conjugate, quaternion_log, quaternion_multiply

    before, after = _neighbours(_track_times(take, rows), usable)
    has = (before >= 0).any(axis=1) & (after >= 0).any(axis=1)
    with np.errstate(all="ignore"):  # degenerate (hand-made) poses give NaN, no evidence
        quaternion = image_pose(take.param[rows].astype(np.float64), take.roi[rows]).rotation
    points = take.lmk68[rows, :, :2].astype(np.float64)
    centre = points.mean(axis=1)
    extent = points.max(axis=1) - points.min(axis=1)
    size = np.sqrt(np.maximum(extent[:, 0] * extent[:, 1], 1.0))
    expression = take.param[rows, 52:62].astype(np.float64)
    # Each coefficient's spread over the track (a smile held or not is two modes, so the
    # standard deviation, not a median deviation).
    spread = np.maximum(expression.std(axis=0), 1e-6)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # rows with no neighbour on a side

        def relative_rotation(index):
            steps = quaternion_log(
                quaternion_multiply(quaternion_conjugate(quaternion)[:, None, :], quaternion[np.maximum(index, 0)])
            )
            steps[index < 0] = np.nan
            return np.nanmedian(steps, axis=1)

        rotation_deg = np.degrees(
            np.linalg.norm(_outside(0.0, relative_rotation(before), relative_rotation(after)), axis=-1)
        )
        shift = np.linalg.norm(
            _outside(centre, _side_median(centre, before), _side_median(centre, after)), axis=-1
        ) / size
        deviation = _outside(
            expression, _side_median(expression, before), _side_median(expression, after)
        ) / spread
        expression_rms = np.sqrt(np.mean(deviation**2, axis=1))
    motion = ramp(np.where(has, rotation_deg, np.nan), *ROTATION_DEG) * ramp(
        np.where(has, shift, np.nan), *SHIFT_FACES
    )
    return motion, ramp(np.where(has, expression_rms, np.nan), *EXPRESSION_SPREADS)
