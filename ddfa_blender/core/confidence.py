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

import dataclasses

import numpy as np

THRESHOLD = 0.5
OCCLUSION_CHANNEL = "occlusion"
MEDIAPIPE_CHANNEL = "mp_blendshapes"
NEIGHBOUR_SECONDS = 0.5
MIN_NEIGHBOURS = 3
MEDIAPIPE_MISSING_FACTOR = 0.6
OCCLUSION_MIN_SECONDS = 0.3
TEMPORAL_CHUNK_ROWS = 2048
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


@dataclasses.dataclass
class Evidence:
    """What the confidence of a take's N rows reads, about 120 bytes a row (a take holds
    about a kilobyte), so a take streamed to a file gets its confidence without being
    held whole (:meth:`.take.TakeBuilder.write`). Build it with :func:`take_evidence` or,
    block by block, :func:`row_evidence`.

    ``valid`` (N,) bool: a face with finite parameters and crop; ``track``, ``frame``;
    ``time`` (N,) seconds; ``quality`` (N,) pixels of the 120-px crop; ``outside`` (N,)
    fraction of the 68 landmarks outside the image; ``rotation`` (N, 4) the head's
    rotation (:func:`.pose.image_pose`, w x y z); ``centre`` (N, 2) and ``size`` (N,)
    of the landmarks, image pixels; ``expression`` (N, 10) coefficients;
    ``occlusion`` (N,) the occlusion score, None without that channel;
    ``mediapipe_missing`` (N,) bool, None without MediaPipe's channel.
    """

    valid: np.ndarray
    track: np.ndarray
    frame: np.ndarray
    time: np.ndarray
    quality: np.ndarray
    outside: np.ndarray
    rotation: np.ndarray
    centre: np.ndarray
    size: np.ndarray
    expression: np.ndarray
    occlusion: np.ndarray | None = None
    mediapipe_missing: np.ndarray | None = None


@dataclasses.dataclass
class ConfidenceRows:
    """A take's rows as far as flags go, without the take: ``valid``, ``track``, ``frame``
    and ``confidence`` (N,) as in :class:`.take.Take` (what :func:`flagged_rows` and
    :func:`flagged_summary` read)."""

    valid: np.ndarray
    track: np.ndarray
    frame: np.ndarray
    confidence: np.ndarray


def streamed_confidence(blocks, track, frame, time, quality, fps, image_size, occlusion=None,
                        mediapipe_blocks=None) -> ConfidenceRows:
    """The confidence of a take that is never whole in memory (a take being written).

    ``blocks`` yields ``(valid, param, roi, lmk68)`` row blocks in take order;
    ``track``, ``frame``, ``time``, ``quality`` and ``occlusion`` (None: no channel)
    are whole (N,) arrays (a few bytes a row); ``mediapipe_blocks`` yields MediaPipe's
    channel in the same blocks (None: no channel). Same values as :func:`take_confidence`
    of the whole take.
    """
    valid, parts = [], []
    for block_valid, param, roi, lmk68 in blocks:
        valid.append(np.asarray(block_valid, dtype=bool))
        parts.append(row_evidence(block_valid, param, roi, lmk68, image_size))
    geometry = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    missing = None
    if mediapipe_blocks is not None:
        missing = np.concatenate([mediapipe_missing(block) for block in mediapipe_blocks])
    evidence = Evidence(
        track=np.asarray(track), frame=np.asarray(frame), time=row_times(time, frame, fps),
        quality=np.asarray(quality, dtype=np.float64),
        occlusion=None if occlusion is None else np.asarray(occlusion, dtype=np.float64).reshape(-1),
        mediapipe_missing=missing, **geometry,
    )
    return ConfidenceRows(np.concatenate(valid), evidence.track, evidence.frame, take_confidence(evidence))


def row_evidence(valid, param, roi, lmk68, image_size) -> dict[str, np.ndarray]:
    """The per-row geometry of :class:`Evidence` (``valid``, ``outside``, ``rotation``,
    ``centre``, ``size``, ``expression``) for some rows: ``valid`` (n,), ``param`` (n, 62),
    ``roi`` (n, 4), ``lmk68`` (n, 68, 2+) image pixels; ``image_size`` (width, height)."""
    from .pose import image_pose

    param = np.asarray(param, dtype=np.float64)
    roi = np.asarray(roi, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool) & np.isfinite(param).all(axis=1) & np.isfinite(roi).all(axis=1)
    width, height = image_size
    points = np.asarray(lmk68, dtype=np.float64)[..., :2]
    outside = (
        (points[..., 0] < -0.5) | (points[..., 0] > width - 0.5)
        | (points[..., 1] < -0.5) | (points[..., 1] > height - 0.5)
    ).mean(axis=1)
    rotation = np.full((len(param), 4), np.nan)
    with np.errstate(all="ignore"):  # degenerate (hand-made) poses give NaN, no evidence
        if valid.any():
            rotation[valid] = image_pose(param[valid], roi[valid]).rotation
        extent = points.max(axis=1) - points.min(axis=1)
    return {
        "valid": valid,
        "outside": outside,
        "rotation": rotation,
        "centre": points.mean(axis=1),
        "size": np.sqrt(np.maximum(extent[:, 0] * extent[:, 1], 1.0)),
        "expression": param[:, 52:62].astype(np.float32),
    }


def take_evidence(take) -> Evidence:
    """The :class:`Evidence` of a take in memory."""
    n = len(take)
    occlusion = take.channels.get(OCCLUSION_CHANNEL)
    blendshapes = take.channels.get(MEDIAPIPE_CHANNEL)
    return Evidence(
        track=np.asarray(take.track),
        frame=np.asarray(take.frame),
        time=row_times(take.time, take.frame, take.fps),
        quality=np.asarray(take.quality, dtype=np.float64),
        occlusion=None if occlusion is None else np.asarray(occlusion, dtype=np.float64).reshape(n),
        mediapipe_missing=None if blendshapes is None else mediapipe_missing(blendshapes),
        **row_evidence(take.valid, take.param, take.roi, take.lmk68, take.image_size),
    )


def row_times(time, frame, fps) -> np.ndarray:
    """Times (N,) in seconds: the stored time, else frame / fps."""
    time = np.asarray(time, dtype=np.float64)
    return np.where(np.isfinite(time), time, np.asarray(frame) / fps)


def mediapipe_missing(blendshapes) -> np.ndarray:
    """Rows (n,) where MediaPipe's channel (n, 52) holds no value: its landmarker found no face."""
    values = np.asarray(blendshapes, dtype=np.float64)
    return ~np.isfinite(values.reshape(len(values), -1)).any(axis=1)


def confidence_factors(take) -> dict[str, np.ndarray]:
    """Each factor (N,) float64 of :func:`take_confidence` by name (see the module doc);
    ``take``: a take, or its :class:`Evidence`."""
    evidence = take if isinstance(take, Evidence) else take_evidence(take)
    n = len(evidence.valid)
    valid = evidence.valid
    factors = {name: np.ones(n) for name in FACTORS}
    factors["heads"] = ramp(evidence.quality, *HEADS_PX)
    if evidence.occlusion is not None:
        lasting = np.asarray(evidence.occlusion, dtype=np.float64).copy()
        for track_id in np.unique(evidence.track):
            rows = np.flatnonzero(evidence.track == track_id)
            lasting[rows] = lasting_score(lasting[rows], evidence.time[rows])
        factors["occlusion"] = ramp(lasting, *OCCLUSION_SCORE)
    factors["in_frame"] = ramp(evidence.outside, *OUTSIDE_FRACTION)
    if evidence.mediapipe_missing is not None:
        factors["mediapipe"] = np.where(evidence.mediapipe_missing, MEDIAPIPE_MISSING_FACTOR, 1.0)
    instant = np.prod([factors[name] for name in ("heads", "occlusion", "in_frame")], axis=0)
    for track_id in np.unique(evidence.track):
        rows = np.flatnonzero((evidence.track == track_id) & valid)
        if len(rows) < 2:
            continue
        motion, expression = _temporal_factors(evidence, rows, instant[rows] >= THRESHOLD)
        factors["motion"][rows] = motion
        factors["expression"][rows] = expression
    for name in FACTORS:
        factors[name] = np.where(valid, factors[name], np.nan)
    return factors


def take_confidence(take) -> np.ndarray:
    """Confidence (N,) float32 in [0, 1] of every row of ``take`` (a take or its
    :class:`Evidence`); NaN where there is no face."""
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


def runs(mask) -> list[tuple[int, int]]:
    """(start, stop) index ranges of the runs of true values in a 1-D bool array."""
    mask = np.asarray(mask, dtype=bool)
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def _neighbour_rows(times) -> int:
    """How many rows each side of a row can lie within NEIGHBOUR_SECONDS (times (n,), seconds)."""
    step = np.median(np.diff(times)) if len(times) > 1 else 1.0
    return max(int(round(NEIGHBOUR_SECONDS / max(step, 1e-6))), 1)


def _neighbours(times, usable, half: int):
    """Indices (n, half) of each row's usable neighbours before and after it within
    NEIGHBOUR_SECONDS (and ``half`` rows), nearest first (-1: none): ``(before, after)``."""
    n = len(times)
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


def _temporal_factors(evidence: Evidence, rows, usable):
    """``motion`` and ``expression`` factors (len(rows),) for one track's valid rows, in
    chunks of ``TEMPORAL_CHUNK_ROWS`` (each with its neighbours around it), so an
    hour-long take needs a few megabytes of scratch rather than gigabytes."""
    half = _neighbour_rows(evidence.time[rows])
    # Each coefficient's spread over the track (a smile held or not is two modes, so the
    # standard deviation, not a median deviation).
    spread = np.maximum(np.asarray(evidence.expression[rows], dtype=np.float64).std(axis=0), 1e-6)
    motion, expression = np.empty(len(rows)), np.empty(len(rows))
    for start in range(0, len(rows), TEMPORAL_CHUNK_ROWS):
        stop = min(start + TEMPORAL_CHUNK_ROWS, len(rows))
        low, high = max(start - half, 0), min(stop + half, len(rows))
        chunk_motion, chunk_expression = _temporal_chunk(evidence, rows[low:high], usable[low:high], half, spread)
        motion[start:stop] = chunk_motion[start - low : stop - low]
        expression[start:stop] = chunk_expression[start - low : stop - low]
    return motion, expression


def _temporal_chunk(evidence: Evidence, rows, usable, half: int, spread):
    """:func:`_temporal_factors` of consecutive rows of one track."""
    import warnings

    from .pose import quaternion_conjugate, quaternion_log, quaternion_multiply

    before, after = _neighbours(evidence.time[rows], usable, half)
    has = (before >= 0).any(axis=1) & (after >= 0).any(axis=1)
    quaternion = evidence.rotation[rows]
    centre = evidence.centre[rows]
    size = evidence.size[rows]
    expression = np.asarray(evidence.expression[rows], dtype=np.float64)
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
