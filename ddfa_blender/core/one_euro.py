"""One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) for the live path.

A first-order low-pass whose cut-off rises with the signal's speed: at rest
it removes jitter (cut-off ``min_cutoff``), when the face moves it follows
with little lag (cut-off ``min_cutoff + beta * |speed|``, the speed itself
low-passed at ``d_cutoff``). It is causal and needs no look-ahead, so it
holds back no frames; the delay it puts on motion well below its current
cut-off ``fc`` is about ``1 / (2 pi fc)`` seconds (one frame at 30 fps for
``fc`` = 4.8 Hz), so slow motion lags more frames than fast motion, by less
than the jitter in value.

:class:`LiveFilter` filters one take row (``param`` and ``roi``) per frame in
the same image-space channels as the offline smoother
(:mod:`.smoothing`): rotation on the quaternion manifold, translation and
log scale, and expression (with the pose residual). Defaults
(``POSE_ROTATION``, ``POSE_TRANSLATION``, ``EXPRESSION``) keep the lag under
one frame at 25-30 fps for ordinary head and face motion (see the tests) and
about halve the jitter of a face at rest.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .pose import (
    ImagePose,
    crop_param,
    image_pose,
    quaternion_conjugate,
    quaternion_exp,
    quaternion_log,
    quaternion_multiply,
)

# sqrt(w * h) of the mean BFM face's 68-landmark box, micrometres: the live filter measures
# translation speed in face sizes per second, so its ``beta`` does not depend on resolution.
FACE_SIZE_UM = 1.4e5


@dataclasses.dataclass(frozen=True)
class OneEuroSettings:
    """``min_cutoff`` (Hz) at rest, ``beta`` (Hz per unit/s of speed), ``d_cutoff`` (Hz) for the speed."""

    min_cutoff: float
    beta: float
    d_cutoff: float = 1.0


# Defaults: at rest they halve the jitter; at 30 fps their lag is under one frame for
# a head turning +-15 degrees at 0.5 Hz, translating +-0.2 face sizes at 0.5 Hz and
# expression coefficients swinging +-1 at 1 Hz (tests/test_one_euro.py). Slower
# motion lags more frames, but by less than the jitter in value.
# Rotation: speed in radians per second.
POSE_ROTATION = OneEuroSettings(min_cutoff=1.5, beta=8.0, d_cutoff=1.0)
# Translation: speed in face sizes per second; scale: log scale per second.
POSE_TRANSLATION = OneEuroSettings(min_cutoff=1.5, beta=8.0, d_cutoff=1.0)
# Expression coefficients (and the pose residual): speed in coefficient units per second.
EXPRESSION = OneEuroSettings(min_cutoff=1.5, beta=2.0, d_cutoff=1.0)


def _smoothing_factor(cutoff, dt):
    """Weight of the new sample in a first-order low-pass of ``cutoff`` Hz over ``dt`` s."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One-Euro filter of a vector signal; each component adapts to its own speed.

    Call it with ``(time_s, values)`` once per frame, times increasing; it
    returns the filtered values (float64, same shape). A time that does not
    increase restarts the filter.
    """

    def __init__(self, settings: OneEuroSettings):
        self.settings = settings
        self.reset()

    def reset(self):
        """Forget the past: the next sample passes through unchanged."""
        self._time = None
        self._value = None
        self._speed = None

    def __call__(self, time, values):
        values = np.asarray(values, dtype=np.float64)
        if self._time is None or not time > self._time:
            self._time, self._value, self._speed = time, values.copy(), np.zeros_like(values)
            return values.copy()
        dt = time - self._time
        settings = self.settings
        speed = (values - self._value) / dt
        self._speed += _smoothing_factor(settings.d_cutoff, dt) * (speed - self._speed)
        cutoff = settings.min_cutoff + settings.beta * np.abs(self._speed)
        alpha = _smoothing_factor(cutoff, dt)
        self._value = self._value + alpha * (values - self._value)
        self._time = time
        return self._value.copy()


class QuaternionOneEuroFilter:
    """One-Euro filter of a rotation given as a unit quaternion (w, x, y, z).

    The step from the last estimate to the new sample is taken as a rotation
    vector (shorter arc), so a sample's sign (q or -q) does not matter; the
    estimate moves a fraction ``alpha`` of that step along the great circle
    (slerp). The speed is the angular speed in radians per second.
    """

    def __init__(self, settings: OneEuroSettings):
        self.settings = settings
        self.reset()

    def reset(self):
        """Forget the past: the next sample passes through unchanged."""
        self._time = None
        self._value = None
        self._speed = 0.0

    def __call__(self, time, quaternion):
        q = np.asarray(quaternion, dtype=np.float64)
        q = q / np.linalg.norm(q)
        if self._time is None or not time > self._time:
            self._time, self._value, self._speed = time, q, 0.0
            return q.copy()
        dt = time - self._time
        settings = self.settings
        step = quaternion_log(quaternion_multiply(quaternion_conjugate(self._value), q))
        speed = float(np.linalg.norm(step)) / dt
        self._speed += _smoothing_factor(settings.d_cutoff, dt) * (speed - self._speed)
        alpha = _smoothing_factor(settings.min_cutoff + settings.beta * self._speed, dt)
        value = quaternion_multiply(self._value, quaternion_exp(alpha * step))
        self._value = value / np.linalg.norm(value)
        self._time = time
        return self._value.copy()


class LiveFilter:
    """Filters one take row at a time: ``param`` (62,) in the crop of ``roi`` (4,) -> param.

    The row is split into image-space channels (:func:`.pose.image_pose`),
    each group runs through its One-Euro filter and the result is written
    back for the same ROI, so the returned param goes with the row's own
    ``roi``. Identity coefficients pass through. A row without a face
    (non-finite param) returns NaN and restarts the filters, so motion is
    never smeared across a loss of tracking.
    """

    def __init__(
        self,
        rotation: OneEuroSettings = POSE_ROTATION,
        translation: OneEuroSettings = POSE_TRANSLATION,
        expression: OneEuroSettings = EXPRESSION,
    ):
        self._rotation = QuaternionOneEuroFilter(rotation)
        self._translation = OneEuroFilter(translation)
        self._expression = OneEuroFilter(expression)
        self._length_px = None

    def reset(self):
        """Start over, e.g. after the face was lost."""
        self._rotation.reset()
        self._translation.reset()
        self._expression.reset()
        self._length_px = None

    def __call__(self, time, param, roi) -> np.ndarray:
        param = np.asarray(param, dtype=np.float64)
        if not (np.isfinite(param).all() and np.isfinite(roi).all()):
            self.reset()
            return np.full(param.shape, np.nan, dtype=np.float32)
        pose = image_pose(param[None], np.asarray(roi, dtype=np.float64)[None])
        if self._length_px is None:
            self._length_px = float(pose.scale[0]) * FACE_SIZE_UM
        rotation = self._rotation(time, pose.rotation[0])
        translation = self._translation(
            time, np.r_[pose.translation[0] / self._length_px, math.log(pose.scale[0])]
        )
        expression = self._expression(time, np.r_[param[52:62], pose.residual[0].ravel()])
        filtered = ImagePose(
            np.exp(translation[3:]),
            rotation[None],
            translation[None, :3] * self._length_px,
            expression[None, 10:].reshape(1, 3, 3),
        )
        out = crop_param(filtered, np.asarray(roi, dtype=np.float64)[None], param[None, 12:52],
                         expression[None, :10])
        return out[0].astype(np.float32)
