"""Zero-lag offline smoothing of a take: rotation, translation/scale and expression.

The smoother runs on the stored take, so it can be re-tuned after capture
without running the network again. It never changes which rows exist: it
returns a new :class:`~.take.Take` whose ``param`` and ``lmk68`` are smoothed
(and, with gap bridging, whose short gaps are filled).

Image pose
    Each row's crop-space ``param`` is tied to that row's ROI, which moves from
    frame to frame, so smoothing happens in the *image pose frame*: image
    pixels (the convention of :func:`.reconstruct.crop_to_image`) with x right,
    y **up** (``-y`` of the image) and z toward the camera. The map
    ``BFM point -> image`` of a row is ``X -> M @ X + T``, and ``M = s R (I + E)``
    where ``s`` (pixels per micrometre) and the rotation ``R`` are the nearest
    scaled rotation (:func:`.pose.decompose_pose`) and ``E`` is the small
    residual the regressor adds to it (symmetric, traceless). :func:`.pose.image_pose`
    and :func:`.pose.crop_param` convert exactly, for any ROI, so the smoothed pose is
    written back as crop-space ``param`` for each row's **own** ROI (``roi`` is
    kept) and every consumer of the take keeps working unchanged.

Channel groups and what smooths them
    * rotation ``R``: on the rotation manifold. Each frame's estimate is the
      weighted local regression of the rotation vectors ``log(r^-1 q_k)`` of
      its neighbours around a reference ``r`` (first the frame itself, then
      the first estimate: two Gauss-Newton steps of a weighted Karcher mean),
      so q and -q are the same rotation and no raw components are averaged;
    * translation: ``T`` (image pixels) and ``log s``;
    * expression: the 10 expression coefficients ``param[52:62]`` and the
      residual ``E``;
    * identity (``param[12:52]``) is left as it is on every row (the bake
      aggregates it); bridged rows interpolate it.

Filter
    Gaussian-weighted local quadratic regression (a Savitzky-Golay smoother
    with Gaussian instead of box weights), on each row's presentation time:
    zero phase, exact on constant, linear and quadratic motion, unbiased at
    the ends of a segment (the window becomes one-sided). The strength of a
    group is the standard deviation ``sigma`` of the Gaussian weights in
    **seconds**, so it means the same at any frame rate; 0 turns the group
    off. Its response at frequency f is about ``(1 + w^2 / 2) exp(-w^2 / 2)``
    with ``w = 2 pi f sigma`` (flat at low f, half amplitude at ``f = 0.29 / sigma``:
    5 Hz for sigma = 0.06 s). A sigma under ~0.7 frame fits a quadratic through
    three samples, which changes nothing.

Flagged frames
    Rows whose confidence (:mod:`.confidence`) is under ``min_confidence``
    are *flagged*: an occluded or misfitted frame is not baked as truth. They
    are treated like gaps: left out of the smoothing, then filled from the
    confident rows around them (bridged between the two sides, whatever the
    run's length; held from the one side at a track's start or end; next to a
    gap without a face that is not bridged, held from the nearer side).
    They stay valid and keep their own (low) confidence, so the bake can mark
    them, and ``ch.bridged`` marks them. ``keep_flagged`` turns this off: the
    flagged rows are smoothed and baked like any other.

Segments and gaps
    Every track is smoothed separately. A track is cut into segments at every
    gap (rows with ``valid`` false) and at every re-detection that jumps
    (``detected`` true and the mean landmark motion from the previous row above
    ``split_jump`` of the face size), and each segment is smoothed on its own,
    so a jump is never smeared into its neighbours. With ``bridge_gaps``, a gap
    of at most ``max_gap`` seconds between two segments is filled after
    smoothing by bridging the smoothed ends; those rows become valid, not
    detected, their ``quality`` is interpolated, and the extension channel
    ``ch.bridged`` (bool) marks them.

Bridges
    A bridge (a gap or a flagged run) is a monotone cubic
    (:func:`monotone_bridge`) per channel, from one smoothed end to the other,
    leaving and arriving with the motion the ends had (rotation in the
    tangent space at the left end, so it turns along the shorter arc; ROI and
    identity included). A head still on both sides gets a straight line; a
    head still turning when the occlusion starts keeps turning into it
    instead of slowing to the average rate; no component overshoots its ends.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .confidence import THRESHOLD as CONFIDENCE_THRESHOLD
from .errors import CaptureError
from .pose import (
    ImagePose,
    crop_param,
    image_pose,
    quaternion_conjugate,
    quaternion_exp,
    quaternion_log,
    quaternion_multiply,
    quaternion_to_matrix,
    slerp,
)
from .reconstruct import landmarks_image
from .take import Take

GAUSSIAN_SUPPORT = 3.0  # the Gaussian weights are cut at this many sigma
BRIDGED_CHANNEL = "bridged"


@dataclasses.dataclass(frozen=True)
class SmoothingSettings:
    """How strongly to smooth each channel group; the presets are in ``PRESETS``.

    ``rotation``, ``translation`` and ``expression``: sigma of the smoother's
    Gaussian window in seconds (0 = off). ``bridge_gaps``: fill gaps of at most
    ``max_gap`` seconds by interpolation. ``split_jump``: a detected row whose
    landmarks moved more than this fraction of the face size since the
    previous row starts a new segment. ``min_confidence``: rows under this
    confidence are flagged and bridged (see the module doc) unless
    ``keep_flagged``.
    """

    rotation: float = 0.0
    translation: float = 0.0
    expression: float = 0.0
    bridge_gaps: bool = False
    max_gap: float = 0.5
    split_jump: float = 0.05
    min_confidence: float = CONFIDENCE_THRESHOLD
    keep_flagged: bool = False

    def __post_init__(self):
        if not (isinstance(self.min_confidence, (int, float)) and 0 <= self.min_confidence <= 1):
            raise CaptureError(
                f"Smoothing setting 'min_confidence' must be a number from 0 to 1, "
                f"got {self.min_confidence!r}."
            )
        for name in ("rotation", "translation", "expression", "max_gap", "split_jump"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise CaptureError(
                    f"Smoothing setting '{name}' must be a number >= 0, got {value!r}."
                )

    @property
    def smooths(self) -> bool:
        """True when at least one channel group is smoothed."""
        return max(self.rotation, self.translation, self.expression) > 0

    def to_dict(self) -> dict:
        """Plain ``{name: float or bool}``, e.g. to store on a Blender object or in JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "SmoothingSettings":
        """Settings from :meth:`to_dict` output; missing keys take the defaults."""
        known = {field.name: field for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise CaptureError(
                f"Unknown smoothing setting(s) {', '.join(unknown)}; "
                f"use {', '.join(known)}."
            )
        converted = {
            name: bool(value) if known[name].type in (bool, "bool") else float(value)
            for name, value in values.items()
        }
        return cls(**converted)


# Tuned on real footage (benchmarks/bench_stability.py): ``default`` cuts the jitter of
# landmarks, rotation and expression to a third or less while moving the landmarks
# by under 0.5 % of the face size. A sigma under ~0.7 frame leaves its group as it is.
PRESETS = {
    "none": SmoothingSettings(),
    "light": SmoothingSettings(rotation=0.04, translation=0.04, expression=0.035),
    "default": SmoothingSettings(rotation=0.06, translation=0.06, expression=0.045),
    "heavy": SmoothingSettings(rotation=0.1, translation=0.1, expression=0.08),
}


# -- the smoother ---------------------------------------------------------------


@dataclasses.dataclass
class _Kernel:
    """Equivalent kernel of a linear smoother: ``out[i] = sum_k weights[i, k] * x[index[i, k]]``."""

    index: np.ndarray
    weights: np.ndarray

    def apply(self, values):
        values = np.asarray(values, dtype=np.float64)
        return np.einsum("nk,nk...->n...", self.weights, values[self.index])


def _local_regression_kernel(times, sigma):
    """Gaussian-weighted local quadratic regression on (n,) sorted times (s); None = identity."""
    n = len(times)
    if sigma <= 0 or n < 2:
        return None
    u_all = np.asarray(times, dtype=np.float64) / sigma
    rows = np.arange(n)
    low = np.searchsorted(u_all, u_all - GAUSSIAN_SUPPORT, side="left")
    high = np.searchsorted(u_all, u_all + GAUSSIAN_SUPPORT, side="right") - 1
    half = int(max((rows - low).max(), (high - rows).max()))
    if half == 0:
        return None
    index = rows[:, None] + np.arange(-half, half + 1)
    inside = (index >= 0) & (index < n)
    index = np.clip(index, 0, n - 1)
    u = u_all[index] - u_all[:, None]
    weight = np.where(inside & (np.abs(u) <= GAUSSIAN_SUPPORT), np.exp(-0.5 * u * u), 0.0)
    design = u[..., None] ** np.arange(3)
    moments = np.einsum("nk,nkp,nkq->npq", weight, design, design)
    # The fitted value at u = 0 is the first coefficient: row 0 of the pseudo-inverse
    # (a pseudo-inverse so that windows with one or two samples reduce the degree).
    first_row = np.linalg.pinv(moments)[:, 0, :]
    return _Kernel(index, weight * np.einsum("np,nkp->nk", first_row, design))


def smooth_quaternions(times, quaternions, sigma: float) -> np.ndarray:
    """Smooth unit quaternions (n, 4) (w, x, y, z) at times (n,) s on the rotation manifold.

    Each output is two Gauss-Newton steps of the local regression of the
    neighbours' rotation vectors around a reference (see the module doc); the
    signs of the inputs do not matter. Output has w >= 0. ``sigma`` in seconds,
    0 returns the input.
    """
    quaternions = np.asarray(quaternions, dtype=np.float64)
    kernel = _local_regression_kernel(times, sigma)
    if kernel is None:
        return quaternions.copy()
    reference = quaternions
    neighbours = quaternions[kernel.index]
    for _ in range(2):
        relative = quaternion_log(
            quaternion_multiply(quaternion_conjugate(reference)[:, None, :], neighbours)
        )
        step = np.einsum("nk,nkc->nc", kernel.weights, relative)
        reference = quaternion_multiply(reference, quaternion_exp(step))
    reference /= np.linalg.norm(reference, axis=-1, keepdims=True)
    return np.where(reference[:, :1] < 0, -reference, reference)


def smooth_series(times, values, sigma: float) -> np.ndarray:
    """Smooth values (n, ...) at times (n,) s with the zero-phase local regression.

    ``sigma`` in seconds, 0 returns the input.
    """
    values = np.asarray(values, dtype=np.float64)
    kernel = _local_regression_kernel(times, sigma)
    return values.copy() if kernel is None else kernel.apply(values)


def monotone_bridge(fraction, start, end, start_slope, end_slope) -> np.ndarray:
    """Values (K, ...) at ``fraction`` (K,) in [0, 1] of a bridge from ``start`` to ``end``.

    A cubic Hermite curve per component that leaves ``start`` with
    ``start_slope`` and reaches ``end`` with ``end_slope`` (change per unit of
    fraction: the motion just outside the bridge), limited as in
    Fritsch-Carlson so it never overshoots the ends (a component that does
    not change stays put; slopes against the direction of change count as 0).
    """
    fraction = np.asarray(fraction, dtype=np.float64)
    start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    change = end - start
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(change != 0, np.asarray(start_slope, dtype=np.float64) / change, 0.0)
        beta = np.where(change != 0, np.asarray(end_slope, dtype=np.float64) / change, 0.0)
    alpha, beta = np.maximum(alpha, 0.0), np.maximum(beta, 0.0)
    norm = np.sqrt(alpha**2 + beta**2)
    limit = np.where(norm > 3.0, 3.0 / np.maximum(norm, 1e-12), 1.0)
    alpha, beta = alpha * limit, beta * limit
    t = fraction.reshape(-1, *([1] * change.ndim))
    h01 = -2 * t**3 + 3 * t**2
    h10 = t**3 - 2 * t**2 + t
    h11 = t**3 - t**2
    return start + change * (h01 + alpha * h10 + beta * h11)


def _face_size(lmk68):
    """sqrt(width * height) of the 2-D landmark box of each row (N,), pixels."""
    extent = np.nanmax(lmk68[..., :2], axis=-2) - np.nanmin(lmk68[..., :2], axis=-2)
    return np.sqrt(extent[..., 0] * extent[..., 1])


def _segments(valid, detected, lmk68, split_jump):
    """(start, stop) row ranges of one track's runs of usable rows, cut at re-detect jumps."""
    starts = np.flatnonzero(valid & ~np.r_[False, valid[:-1]])
    stops = np.flatnonzero(valid & ~np.r_[valid[1:], False]) + 1
    cuts = []
    for start, stop in zip(starts, stops):
        previous = lmk68[start : stop - 1, :, :2]
        current = lmk68[start + 1 : stop, :, :2]
        motion = np.linalg.norm(current - previous, axis=-1).mean(axis=-1)
        jump = detected[start + 1 : stop] & (motion > split_jump * _face_size(previous))
        bounds = [start, *(start + 1 + np.flatnonzero(jump)), stop]
        cuts.extend(zip(bounds[:-1], bounds[1:]))
    return cuts


def _track_times(take: Take, rows: slice):
    """Presentation times (s) of a track's rows; frame / fps where the time is unknown."""
    times = take.time[rows].astype(np.float64)
    fallback = take.frame[rows] / take.fps
    return np.where(np.isfinite(times), times, fallback)


def smooth_take(take: Take, settings: SmoothingSettings, face_model) -> Take:
    """A new take with ``param`` and ``lmk68`` smoothed per ``settings`` (see the module doc).

    ``face_model`` (:class:`.face_model.FaceModel`) rebuilds the landmarks of
    the changed rows. With the ``none`` preset (nothing smoothed, no bridging)
    and no flagged row (or ``keep_flagged``) the result equals the input bit
    for bit. The settings used are recorded in ``meta["smoothing"]``.
    """
    result = take.rows(np.ones(len(take), dtype=bool))
    result.meta = {**take.meta, "smoothing": settings.to_dict()}

    usable = take.valid & np.isfinite(take.param).all(axis=1) & np.isfinite(take.roi).all(axis=1)
    flagged = np.zeros(len(take), dtype=bool)
    if not settings.keep_flagged:
        flagged = usable & (np.nan_to_num(take.confidence, nan=1.0) < settings.min_confidence)
    pose = image_pose(np.where(usable[:, None], take.param, np.nan), take.roi)
    usable &= ~flagged
    rotation = pose.rotation.copy()
    translation = np.concatenate([pose.translation, np.log(pose.scale)[:, None]], axis=1)
    expression = np.concatenate(
        [take.param[:, 52:62].astype(np.float64), pose.residual.reshape(-1, 9)], axis=1
    )
    shape = take.param[:, 12:52].astype(np.float64)
    roi = take.roi.astype(np.float64)
    quality = take.quality.astype(np.float64)
    changed = np.zeros(len(take), dtype=bool)
    bridged = np.zeros(len(take), dtype=bool)

    for track_id in take.track_ids():
        track_rows = np.flatnonzero(take.track == track_id)
        offset = track_rows[0]
        rows = slice(offset, track_rows[-1] + 1)
        times = _track_times(take, rows)
        segments = _segments(
            usable[rows], take.detected[rows], take.lmk68[rows], settings.split_jump
        )
        for start, stop in segments:
            span = slice(offset + start, offset + stop)
            seg_times = times[start:stop]
            rotation[span] = smooth_quaternions(seg_times, rotation[span], settings.rotation)
            translation[span] = smooth_series(seg_times, translation[span], settings.translation)
            expression[span] = smooth_series(seg_times, expression[span], settings.expression)
            if settings.smooths:
                changed[span] = True
        if not segments:
            continue
        groups = (translation, expression, shape, roi, quality)

        starts_of = {stop: start for start, stop in segments}
        stops_of = {start: stop for start, stop in segments}

        def fill(rows_to_fill, left, right):
            """Rows (absolute) from ``left`` to ``right`` (absolute rows; equal: hold one)."""
            if right == left:
                rotation[rows_to_fill] = rotation[left]
                for values in groups:
                    values[rows_to_fill] = values[left]
            else:
                span = times[right - offset] - times[left - offset]
                fraction = (times[rows_to_fill - offset] - times[left - offset]) / span
                # The ends' own motion (one step inside each confident segment), if any.
                before = left - 1 if left - 1 - offset >= starts_of.get(left + 1 - offset, left - offset) else None
                after = right + 1 if right + 1 - offset < stops_of.get(right - offset, right - offset + 1) else None

                def slopes(step_before, step_after):
                    """Change per unit of ``fraction`` at both ends (zero where a side has one row)."""
                    start = 0.0 if before is None else step_before * span / (times[left - offset] - times[before - offset])
                    end = 0.0 if after is None else step_after * span / (times[after - offset] - times[right - offset])
                    return start, end

                to_right = quaternion_log(quaternion_multiply(quaternion_conjugate(rotation[left]), rotation[right]))
                step_before = step_after = np.zeros(3)
                if before is not None:
                    step_before = -quaternion_log(
                        quaternion_multiply(quaternion_conjugate(rotation[left]), rotation[before])
                    )
                if after is not None:
                    step_after = quaternion_log(
                        quaternion_multiply(quaternion_conjugate(rotation[left]), rotation[after])
                    ) - to_right
                path = monotone_bridge(fraction, np.zeros(3), to_right, *slopes(step_before, step_after))
                rotation[rows_to_fill] = quaternion_multiply(rotation[left], quaternion_exp(path))
                for values in groups:
                    step_before = 0.0 if before is None else values[left] - values[before]
                    step_after = 0.0 if after is None else values[after] - values[right]
                    values[rows_to_fill] = monotone_bridge(
                        fraction, values[left], values[right], *slopes(step_before, step_after)
                    )
            changed[rows_to_fill] = True
            bridged[rows_to_fill] = True

        ends = [(None, segments[0][0])]
        ends += [(stop, start) for (_, stop), (start, _) in zip(segments[:-1], segments[1:])]
        ends.append((segments[-1][1], None))
        for before_stop, after_start in ends:
            low = 0 if before_stop is None else before_stop
            high = len(times) if after_start is None else after_start
            gap = np.arange(low, high) + offset
            if len(gap) == 0:
                continue
            flagged_here = flagged[gap]
            whole = before_stop is not None and after_start is not None and (
                flagged_here.all()
                or (settings.bridge_gaps and len(gap) / take.fps <= settings.max_gap + 1e-9)
            )
            if whole:
                fill(gap, offset + before_stop - 1, offset + after_start)
                continue
            for row in gap[flagged_here]:  # hold from the nearer confident side
                near_left = before_stop is not None and (
                    after_start is None or row - (offset + before_stop - 1) <= offset + after_start - row
                )
                end = offset + before_stop - 1 if near_left else offset + after_start
                fill(np.array([row]), end, end)

    if changed.any():
        smoothed_pose = ImagePose(
            np.exp(translation[changed, 3]),
            rotation[changed],
            translation[changed, :3],
            expression[changed, 10:].reshape(-1, 3, 3),
        )
        result.param[changed] = crop_param(
            smoothed_pose, roi[changed], shape[changed], expression[changed, :10]
        )
        result.roi[changed] = roi[changed]
        # From the stored (float32) values, as the engine builds them.
        result.lmk68[changed] = landmarks_image(
            face_model, result.param[changed], result.roi[changed]
        )
    filled_gap = bridged & ~take.valid  # flagged rows keep their own flags and quality
    if filled_gap.any():
        result.valid[filled_gap] = True
        result.detected[filled_gap] = False
        result.quality[filled_gap] = quality[filled_gap]
    if settings.bridge_gaps or flagged.any():
        result.channels = {**result.channels, BRIDGED_CHANNEL: bridged}
    return result
