"""ARKit's 52 blendshape channels from a take: names, name matching, and the solver.

Names
    :data:`ARKIT_NAMES` lists the 52 channels in camelCase, in the order of
    Epic's Live Link Face recordings. :func:`canonical` reduces any spelling
    (``eyeBlinkLeft``, ``eyeBlink_L``, ``EyeBlinkLeft``, ``eyeBlink_Left``,
    ``eye_blink_left``, ``eyeBlink.L``, ``Face.eyeBlinkLeft``) to one key,
    ``("eyeblink", "L")``: a base in lower case and a side (``"L"``, ``"R"``
    or ``None``); "Left" means the performer's left, as in ARKit.

Solver (:func:`solve_arkit`): one row of weights in [0, 1] per take row.
Everything is measured in the head's own frame: the 68 landmarks (and a few
dense vertices for the cheeks) are rebuilt from the take's identity (the
median of its shape coefficients) and each row's expression coefficients,
without the head pose, so turning or tilting the head moves no channel.
Each 3DDFA channel is a *signed geometric feature* (table below): a linear
function of those points, divided by the face size (the distance between the
outer eye corners, "IOD", about 9 cm) and read relative to the performer's
neutral face::

    weight = clip(sign * (feature - feature_at_neutral) / full_scale, 0, 1)

``full_scale`` is the displacement (in IOD) at which an ARKit channel is at
1. 3DDFA-V2 damps expressions (a regressor pulls toward the mean), so the
scales are the displacements it reports on strong expressions, not anatomical
ones: a wide-open laugh parts its inner lips by about 0.3 IOD, a broad smile
lifts a mouth corner by about 0.04 IOD (see :data:`READOUTS`). Two
channels of an antagonist pair share one feature (smile / frown, jawLeft /
jawRight, mouthLeft / mouthRight, browDown / browOuterUp), one reading its
positive part, the other its negative part. Because the features are linear
in the 10 expression coefficients, each channel is ``clip(c . (e - e0) / s)``
for a fixed 10-vector ``c`` (:func:`linear_channels`): drivers can evaluate
it in Blender from the captured mesh's expression keys.

3DDFA-V2's expression space has 10 dimensions, dominated by the mouth: brow
and eyelid motion is small in it and eye direction is absent, so the eye
channels come from MediaPipe's face landmarker when the take recorded it
(``ch.mp_blendshapes``, :mod:`.face_landmarker`), calibrated per take in the
same way (MediaPipe's own score minus its neutral, over its score at full).

========================  ==========  =================================================
channel                   source      what drives it (landmark numbers: iBUG 68, 0-based)
========================  ==========  =================================================
jawOpen                   3DDFA       inner-lip gap: upper 61-63 above lower 65-67
mouthClose                none        not observable: the 3DDFA basis opens lips and jaw
                                      together (their correlation is > 0.99 on footage)
jawLeft / jawRight        3DDFA       chin 8 sideways from the nose base 33
jawForward                3DDFA       chin 8 forward (toward the camera) of the nose base
mouthLeft / mouthRight    3DDFA       mouth centre (48, 51, 54, 57) sideways from 33
mouthSmile L/R            3DDFA       corner 54 / 48 up from the middle of the lip gap
mouthFrown L/R            3DDFA       the same corner down
mouthStretch L/R          3DDFA       corner outward from the midline beyond its rise
mouthDimple L/R           3DDFA       corner backward (into the face) beyond its rise
mouthPucker               3DDFA       mouth narrowing (48 to 54)
mouthFunnel               3DDFA       narrowing while the lips are parted (the smaller
                                      of pucker and a fifth of the jaw opening scale)
mouthUpperUp L/R          3DDFA       upper lip 52 / 50 up from the nose base 33
mouthLowerDown L/R        3DDFA       lower lip 56 / 58 down from its mouth corner 54 / 48
mouthShrugUpper           3DDFA       upper-lip centre 51 up from 33
mouthShrugLower           3DDFA       lower-lip centre 57 up away from the chin 8
mouthRollUpper / Lower    3DDFA       upper (51 to 62) / lower (66 to 57) lip thinning
mouthPress L/R            3DDFA       side lip thinning (52-63 and 65-56 / 50-61, 67-58)
browDown L/R              3DDFA       brow 23-25 / 18-20 down toward its eye's centre
browInnerUp               3DDFA       inner brows 21, 22 up from the inner eye corners
browOuterUp L/R           3DDFA       outer brow 26 / 17 up from the outer eye corner
cheekSquint L/R           3DDFA       dense cheek patch under each eye moving up
cheekPuff                 3DDFA       dense cheek patches beside the mouth moving outward
noseSneer L/R             3DDFA       nose wing 35 / 31 up toward the inner eye corner
eyeBlink L/R              MediaPipe   its eyeBlink score (3DDFA fallback: upper lid
                                      43-44 / 37-38 closing on the lower lid, weak)
eyeSquint / eyeWide L/R   MediaPipe   its scores (fallback: lower-lid rise / lid gap)
eyeLook{Up,Down,In,Out}   MediaPipe   its gaze scores (no 3DDFA fallback: 0)
tongueOut                 none        nothing observes the tongue
========================  ==========  =================================================

Neutral calibration: the neutral of every channel is its median over the
neutral frames: a frame range given by the caller, or by default the
``NEUTRAL_FRACTION`` of valid rows with the least activity (the smallest
landmark displacement from the model's neutral expression, plus, with
MediaPipe, the smallest sum of its non-eye scores). The eye channels
calibrate on their ``EYE_NEUTRAL_PERCENTILE`` instead: eyes are open and
looking ahead for most of any take, even one whose calmest frames have the
eyes shut.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from .errors import CaptureError

ARKIT_NAMES = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawRight", "jawLeft", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthRight", "mouthLeft",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)
EYE_CHANNELS = tuple(n for n in ARKIT_NAMES if n.startswith("eye"))
UNSUPPORTED = ("mouthClose", "tongueOut")
MEDIAPIPE_CHANNEL = "mp_blendshapes"

NEUTRAL_FRACTION = 0.1
MIN_NEUTRAL_ROWS = 3
EYE_NEUTRAL_PERCENTILE = 5.0
# MediaPipe's score at full activation (1 unless it saturates lower): its eyeBlink
# reads 0.55-0.65 on fully closed eyes in the sample footage.
MEDIAPIPE_FULL = {"eyeBlinkLeft": 0.6, "eyeBlinkRight": 0.6}

# -- names ----------------------------------------------------------------------------

_SIDE_WORDS = {"l": "L", "left": "L", "r": "R", "right": "R"}
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def canonical(name: str) -> tuple[str, str | None]:
    """``(base, side)`` of a channel or shape-key name in any common convention.

    The base is the name's words in lower case without separators; the side
    is ``"L"``, ``"R"`` or None, read from a final (or leading) word ``L``,
    ``Left``, ``R``, ``Right``. A namespace before the last ``.``, ``:`` or
    ``|`` is dropped unless what follows it is only a side (``eyeBlink.L``).
    """
    text = str(name).strip()
    parts = re.split(r"[.:|]", text)
    if len(parts) > 1:
        last = parts[-1].strip().lower()
        text = parts[-2] + "_" + parts[-1] if last in _SIDE_WORDS else parts[-1]
    words = []
    for chunk in re.split(r"[^A-Za-z0-9]+", text):
        words += [w.lower() for w in _CAMEL.findall(chunk)]
    side = None
    if len(words) > 1 and words[-1] in _SIDE_WORDS:
        side = _SIDE_WORDS[words.pop()]
    elif len(words) > 1 and words[0] in _SIDE_WORDS:
        side = _SIDE_WORDS[words.pop(0)]
    return "".join(words), side


def arkit_name(name: str) -> str | None:
    """The ARKit channel a name stands for (``eyeBlink_L`` -> ``eyeBlinkLeft``), or None."""
    return _ARKIT_BY_KEY.get(canonical(name))


_ARKIT_BY_KEY = {canonical(n): n for n in ARKIT_NAMES}


# -- geometry -------------------------------------------------------------------------

# Landmark indices per side (performer's left = ARKit "Left" = +x in the BFM frame).
_SIDES = {
    "Left": dict(sign=1.0, corner=54, upper=52, upper_in=63, lower=56, lower_in=65,
                 brow=(23, 24, 25), brow_outer=26, eye=(42, 43, 44, 45, 46, 47),
                 eye_outer=45, eye_inner=42, lid_up=(43, 44), lid_low=(47, 46), nose_wing=35),
    "Right": dict(sign=-1.0, corner=48, upper=50, upper_in=61, lower=58, lower_in=67,
                  brow=(20, 19, 18), brow_outer=17, eye=(36, 37, 38, 39, 40, 41),
                  eye_outer=36, eye_inner=39, lid_up=(37, 38), lid_low=(41, 40), nose_wing=31),
}
JAW_OPEN_FULL = 0.30  # inner-lip gap 3DDFA-V2 reports for a wide-open mouth, in IOD


@dataclasses.dataclass(frozen=True)
class _Readout:
    """A channel read from one signed feature: ``clip(sign * (f - f0) / full, 0, 1)``."""

    feature: str
    sign: float
    full: float


def _readouts() -> dict[str, _Readout]:
    table = {
        "jawOpen": _Readout("lip_gap", 1.0, JAW_OPEN_FULL),
        "jawLeft": _Readout("jaw_side", 1.0, 0.02),
        "jawRight": _Readout("jaw_side", -1.0, 0.02),
        "jawForward": _Readout("jaw_forward", 1.0, 0.03),
        "mouthLeft": _Readout("mouth_side", 1.0, 0.02),
        "mouthRight": _Readout("mouth_side", -1.0, 0.02),
        "mouthPucker": _Readout("mouth_narrow", 1.0, 0.06),
        "mouthShrugUpper": _Readout("upper_centre_up", 1.0, 0.06),
        "mouthShrugLower": _Readout("lower_centre_up", 1.0, 0.03),
        "mouthRollUpper": _Readout("upper_thin", 1.0, 0.03),
        "mouthRollLower": _Readout("lower_thin", 1.0, 0.03),
        "browInnerUp": _Readout("brow_inner_up", 1.0, 0.02),
        "cheekPuff": _Readout("cheek_out", 1.0, 0.04),
    }
    for side in ("Left", "Right"):
        table.update({
            f"mouthSmile{side}": _Readout(f"corner_up_{side}", 1.0, 0.04),
            f"mouthFrown{side}": _Readout(f"corner_up_{side}", -1.0, 0.03),
            f"mouthStretch{side}": _Readout(f"corner_stretch_{side}", 1.0, 0.04),
            f"mouthDimple{side}": _Readout(f"corner_back_{side}", 1.0, 0.04),
            f"mouthUpperUp{side}": _Readout(f"upper_up_{side}", 1.0, 0.04),
            f"mouthLowerDown{side}": _Readout(f"lower_down_{side}", 1.0, 0.18),
            f"mouthPress{side}": _Readout(f"press_{side}", 1.0, 0.04),
            f"browDown{side}": _Readout(f"brow_up_{side}", -1.0, 0.015),
            f"browOuterUp{side}": _Readout(f"brow_outer_up_{side}", 1.0, 0.015),
            f"cheekSquint{side}": _Readout(f"cheek_up_{side}", 1.0, 0.04),
            f"noseSneer{side}": _Readout(f"nose_up_{side}", 1.0, 0.06),
            f"eyeBlink{side}": _Readout(f"lid_gap_{side}", -1.0, 0.05),
            f"eyeWide{side}": _Readout(f"lid_gap_{side}", 1.0, 0.02),
            f"eyeSquint{side}": _Readout(f"lower_lid_up_{side}", 1.0, 0.01),
        })
    return table


READOUTS = _readouts()
FUNNEL_OPEN = JAW_OPEN_FULL / 5.0
# How far a smiling mouth corner moves (outward, backward) per unit of rise in the
# 3DDFA basis, per side (the basis is not symmetric), fitted on the sample footage:
# stretch and dimple read the outward / backward motion beyond what the smile explains.
SMILE_PULL = {"Left": (2.0, 3.2), "Right": (1.5, 2.3)}


class FaceGeometry:
    """Signed features (in IOD) of faces in the head's frame, for one identity.

    ``face_model``: a :class:`.face_model.FaceModel`; ``identity``: its 40
    shape coefficients. :meth:`features` takes expression coefficients
    (N, 10) and returns ``{feature name: (N,)}``; every feature is linear in
    them.
    """

    def __init__(self, face_model, identity):
        self.identity = np.asarray(identity, dtype=np.float64)
        lv = face_model.landmark_vertex
        shape = self.identity.astype(np.float32)
        neutral = (face_model.mean[lv] + face_model.shape_basis[lv] @ shape).astype(np.float64)
        self.iod = float(np.linalg.norm(neutral[45] - neutral[36]))
        self._patches = _cheek_patches(face_model, self.identity, neutral, self.iod)
        rows = np.concatenate([lv, *(p[0] for p in self._patches.values())])
        self._mean = (face_model.mean[rows] + face_model.shape_basis[rows] @ shape).astype(np.float64)
        self._expr = face_model.expr_basis[rows].astype(np.float64)

    def points(self, expr) -> np.ndarray:
        """Landmarks and cheek-patch vertices (N, P, 3), BFM frame and units, for expressions (N, 10)."""
        expr = np.asarray(expr, dtype=np.float64)
        return self._mean[None] + np.einsum("vck,nk->nvc", self._expr, expr)

    def features(self, expr) -> dict[str, np.ndarray]:
        """``{feature: (N,)}`` in IOD for expression coefficients (N, 10)."""
        p = self.points(expr) / self.iod
        x, y, z = p[..., 0], p[..., 1], p[..., 2]

        def my(*idx):
            return y[:, list(idx)].mean(axis=1)

        lip_mid = (y[:, 62] + y[:, 66]) / 2.0
        f = {
            "lip_gap": my(61, 62, 63) - my(65, 66, 67),
            "jaw_side": x[:, 8] - x[:, 33],
            "jaw_forward": z[:, 8] - z[:, 33],
            "mouth_side": x[:, [48, 51, 54, 57]].mean(axis=1) - x[:, 33],
            "mouth_narrow": -(x[:, 54] - x[:, 48]),
            "upper_centre_up": y[:, 51] - y[:, 33],
            "lower_centre_up": y[:, 57] - y[:, 8],
            "upper_thin": -(y[:, 51] - y[:, 62]),
            "lower_thin": -(y[:, 66] - y[:, 57]),
            "brow_inner_up": my(21, 22) - my(39, 42),
        }
        cheek_out = []
        for side, s in _SIDES.items():
            sign = s["sign"]
            corner_up = y[:, s["corner"]] - lip_mid
            corner_out = sign * (x[:, s["corner"]] - x[:, 33])
            corner_back = -(z[:, s["corner"]] - z[:, 33])
            eye_y = y[:, list(s["eye"])].mean(axis=1)
            f[f"corner_up_{side}"] = corner_up
            pull_out, pull_back = SMILE_PULL[side]
            f[f"corner_stretch_{side}"] = corner_out - pull_out * corner_up
            f[f"corner_back_{side}"] = corner_back - pull_back * corner_up
            f[f"upper_up_{side}"] = y[:, s["upper"]] - y[:, 33]
            f[f"lower_down_{side}"] = -(y[:, s["lower"]] - y[:, s["corner"]])
            f[f"press_{side}"] = -((y[:, s["upper"]] - y[:, s["upper_in"]]) + (y[:, s["lower_in"]] - y[:, s["lower"]]))
            f[f"brow_up_{side}"] = y[:, list(s["brow"])].mean(axis=1) - eye_y
            f[f"brow_outer_up_{side}"] = y[:, s["brow_outer"]] - y[:, s["eye_outer"]]
            f[f"nose_up_{side}"] = y[:, s["nose_wing"]] - y[:, s["eye_inner"]]
            f[f"lid_gap_{side}"] = my(*s["lid_up"]) - my(*s["lid_low"])
            f[f"lower_lid_up_{side}"] = my(*s["lid_low"]) - (y[:, s["eye_outer"]] + y[:, s["eye_inner"]]) / 2.0
            squint_rows, squint_eye = self._patch_slice(f"squint_{side}"), s["eye"]
            f[f"cheek_up_{side}"] = y[:, squint_rows].mean(axis=1) - y[:, list(squint_eye)].mean(axis=1)
            puff_rows, normal = self._patch_slice(f"puff_{side}"), self._patches[f"puff_{side}"][1]
            cheek_out.append((p[:, puff_rows] @ normal).mean(axis=1) - (p[:, 33] @ normal))
        f["cheek_out"] = (cheek_out[0] + cheek_out[1]) / 2.0
        return f

    def _patch_slice(self, name) -> slice:
        start = 68
        for key, (rows, _) in self._patches.items():
            if key == name:
                return slice(start, start + len(rows))
            start += len(rows)
        raise KeyError(name)


def _cheek_patches(face_model, identity, neutral_lmk, iod) -> dict:
    """Dense vertex patches (indices, outward unit normal) on the cheeks, per side.

    ``squint_<side>``: the cheek below the eye (the part a cheek raise lifts);
    ``puff_<side>``: the cheek between the mouth corner and the jaw line (the
    part that bulges when puffing). Chosen on the take's neutral face by
    distance in x, y to a point placed from the landmarks.
    """
    verts = (face_model.mean + face_model.shape_basis @ identity.astype(np.float32)).astype(np.float64)
    patches = {}
    for side, s in _SIDES.items():
        eye = neutral_lmk[list(s["eye"])].mean(axis=0)
        corner = neutral_lmk[s["corner"]]
        jaw = neutral_lmk[4 if s["sign"] < 0 else 12]
        centres = {
            "squint": np.array([eye[0], eye[1] - 0.3 * iod]),
            "puff": np.array([(corner[0] + jaw[0]) / 2.0, corner[1] + 0.05 * iod]),
        }
        for kind, centre in centres.items():
            near = np.linalg.norm(verts[:, :2] - centre, axis=1) < 0.08 * iod
            front = near & (verts[:, 2] > np.percentile(verts[near, 2], 50))
            rows = np.flatnonzero(front)
            normal = np.array([s["sign"] * 0.7, 0.0, 0.7])
            patches[f"{kind}_{side}"] = (rows, normal / np.linalg.norm(normal))
    return patches


# -- solver ---------------------------------------------------------------------------


@dataclasses.dataclass
class ArkitWeights:
    """ARKit weights for one track of a take.

    ``weights`` (N, 52) float32 in [0, 1], columns :data:`ARKIT_NAMES`, NaN on
    rows without a face (or, for the eye channels, without a MediaPipe
    result). ``frame``, ``time``, ``valid``: the track's take rows.
    ``sources``: channel -> ``"3ddfa"``, ``"mediapipe"`` or ``"none"``.
    ``neutral_frames``: the source frame numbers calibrated as neutral.
    ``identity``: the shape coefficients (40,) the geometry was built with.
    ``zeros``: for each channel read linearly from 3DDFA, its feature's value
    at neutral (see :func:`linear_channels`).
    """

    weights: np.ndarray
    frame: np.ndarray
    time: np.ndarray
    valid: np.ndarray
    sources: dict
    neutral_frames: np.ndarray
    identity: np.ndarray | None = None
    zeros: dict = dataclasses.field(default_factory=dict)
    names: tuple = ARKIT_NAMES

    def channel(self, name: str) -> np.ndarray:
        """The weights (N,) of one ARKit channel."""
        return self.weights[:, self.names.index(name)]

    def as_dict(self) -> dict[str, np.ndarray]:
        return {n: self.weights[:, i] for i, n in enumerate(self.names)}


def robust_identity(param) -> np.ndarray:
    """The identity (40,): per-coefficient median of the shape coefficients of valid rows."""
    return np.median(np.asarray(param, dtype=np.float64)[:, 12:52], axis=0)


def solve_arkit(
    take,
    face_model,
    track: int = 0,
    neutral=None,
    eyes: str = "auto",
) -> ArkitWeights:
    """ARKit weights for ``track`` of ``take`` (see the module doc for each channel).

    ``neutral``: None to find the calmest frames automatically, or a
    ``(first, last)`` source frame range (inclusive) holding the performer's
    rest face. ``eyes``: ``"mediapipe"`` (the take must hold
    ``ch.mp_blendshapes``), ``"3ddfa"`` (lid geometry only, no gaze) or
    ``"auto"`` (MediaPipe when recorded). Raises CaptureError for a track
    without valid rows or a neutral range without any.
    """
    rows = take.for_track(track)
    valid = rows.valid.copy()
    if not valid.any():
        raise CaptureError(f"Track {track} has no frame with a face; nothing to solve.")
    mp = _mediapipe(rows)
    if eyes == "auto":
        eyes = "mediapipe" if mp is not None else "3ddfa"
    if eyes == "mediapipe" and mp is None:
        raise CaptureError(
            "The take has no MediaPipe channel for the eyes: capture it again with the face "
            "landmarker (scripts/capture.py --retarget, or the panel's Eyes option)."
        )
    if eyes not in ("mediapipe", "3ddfa"):
        raise CaptureError(f"Unknown eye source '{eyes}': use auto, mediapipe or 3ddfa.")

    geometry = FaceGeometry(face_model, robust_identity(rows.param[valid]))
    expr = np.where(valid[:, None], rows.param[:, 52:62], 0.0).astype(np.float64)
    features = geometry.features(expr)
    neutral_rows = _neutral_rows(rows, valid, expr, geometry, mp, neutral)

    n = len(rows)
    weights = np.zeros((n, len(ARKIT_NAMES)), dtype=np.float64)
    sources, zeros = {}, {}
    for i, name in enumerate(ARKIT_NAMES):
        if name in UNSUPPORTED or (name.startswith("eyeLook") and eyes != "mediapipe"):
            sources[name] = "none"
            continue
        if name in EYE_CHANNELS and eyes == "mediapipe":
            weights[:, i] = _mediapipe_weight(mp, name, neutral_rows, neutral is None)
            sources[name] = "mediapipe"
            continue
        if name == "mouthFunnel":
            pucker = _weight(features, READOUTS["mouthPucker"], neutral_rows)
            opening = np.clip((features["lip_gap"] - np.median(features["lip_gap"][neutral_rows])) / FUNNEL_OPEN, 0, 1)
            weights[:, i] = np.minimum(pucker, opening)
        else:
            readout = READOUTS[name]
            zeros[name] = float(np.median(features[readout.feature][neutral_rows]))
            weights[:, i] = _weight(features, readout, neutral_rows)
        sources[name] = "3ddfa"
    weights[~valid] = np.nan
    return ArkitWeights(
        weights=weights.astype(np.float32),
        frame=rows.frame.copy(),
        time=rows.time.copy(),
        valid=valid,
        sources=sources,
        neutral_frames=rows.frame[neutral_rows],
        identity=geometry.identity,
        zeros=zeros,
    )


def linear_channels(face_model, weights: ArkitWeights) -> dict[str, tuple[np.ndarray, float]]:
    """``{channel: (a (10,), b)}`` with ``weight = clip(a . e + b, 0, 1)`` for expression ``e``.

    For the channels of ``weights`` read linearly from 3DDFA (those in its
    ``zeros``): the same numbers as the solver, as a formula a driver can
    evaluate from the 10 expression coefficients alone.
    """
    geometry = FaceGeometry(face_model, weights.identity)
    base = geometry.features(np.zeros((1, 10)))
    unit = geometry.features(np.eye(10))
    out = {}
    for name, zero in weights.zeros.items():
        readout = READOUTS[name]
        origin = base[readout.feature][0]
        slope = unit[readout.feature] - origin
        out[name] = (readout.sign * slope / readout.full, readout.sign * (origin - zero) / readout.full)
    return out


def _weight(features, readout: _Readout, neutral_rows) -> np.ndarray:
    value = features[readout.feature]
    zero = np.median(value[neutral_rows])
    return np.clip(readout.sign * (value - zero) / readout.full, 0.0, 1.0)


def _mediapipe(rows):
    """MediaPipe's scores as ``{ARKit name: (N,)}`` (NaN where it found no face), or None."""
    values = rows.channels.get(MEDIAPIPE_CHANNEL)
    if values is None:
        return None
    columns = rows.meta.get("channels", {}).get(MEDIAPIPE_CHANNEL)
    if columns is None:
        from .face_landmarker import MEDIAPIPE_BLENDSHAPES

        columns = list(MEDIAPIPE_BLENDSHAPES)
    return {
        arkit: values[:, i].astype(np.float64)
        for i, column in enumerate(columns)
        if (arkit := arkit_name(column)) is not None
    }


def mediapipe_weights(take, track: int = 0, neutral=None) -> ArkitWeights | None:
    """MediaPipe's own 52 channels for ``track``, neutral-calibrated like the solver's; None if unrecorded.

    ``tongueOut`` (which MediaPipe does not predict) is 0.
    """
    rows = take.for_track(track)
    mp = _mediapipe(rows)
    if mp is None:
        return None
    valid = rows.valid & np.isfinite(np.stack(list(mp.values()), axis=1)).all(axis=1)
    if not valid.any():
        return None
    expr = np.where(rows.valid[:, None], rows.param[:, 52:62], 0.0).astype(np.float64)
    neutral_rows = _neutral_rows(rows, valid, expr, None, mp, neutral)
    weights = np.zeros((len(rows), len(ARKIT_NAMES)))
    sources = {}
    for i, name in enumerate(ARKIT_NAMES):
        if name in mp:
            weights[:, i] = _mediapipe_weight(mp, name, neutral_rows, neutral is None)
            sources[name] = "mediapipe"
        else:
            sources[name] = "none"
    weights[~valid] = np.nan
    return ArkitWeights(
        weights=weights.astype(np.float32), frame=rows.frame.copy(), time=rows.time.copy(),
        valid=valid, sources=sources, neutral_frames=rows.frame[neutral_rows],
    )


def _mediapipe_weight(mp, name, neutral_rows, automatic: bool) -> np.ndarray:
    score = mp.get(name)
    if score is None:
        return np.zeros(len(neutral_rows))
    finite = np.isfinite(score)
    if not finite.any():
        return np.full(len(score), np.nan)
    if automatic and name in EYE_CHANNELS:
        zero = np.percentile(score[finite], EYE_NEUTRAL_PERCENTILE)
    else:
        picked = neutral_rows & finite
        zero = np.median(score[picked]) if picked.any() else np.percentile(score[finite], EYE_NEUTRAL_PERCENTILE)
    full = MEDIAPIPE_FULL.get(name, 1.0)
    span = max(full - zero, 0.05)
    return np.clip((score - zero) / span, 0.0, 1.0)


def _neutral_rows(rows, valid, expr, geometry, mp, neutral) -> np.ndarray:
    """Boolean mask (N,) of the rows calibrated as the neutral face."""
    if neutral is not None:
        first, last = (int(v) for v in neutral)
        chosen = valid & (rows.frame >= first) & (rows.frame <= last)
        if not chosen.any():
            raise CaptureError(
                f"No tracked frame in the neutral range {first}-{last}; choose frames where the "
                "face is visible and at rest."
            )
        return chosen
    index = np.flatnonzero(valid)
    activity = np.zeros(len(index))
    if geometry is not None:
        points = geometry.points(expr[index]) - geometry.points(np.zeros((1, 10)))
        activity += _ranks(np.linalg.norm(points[:, :68], axis=-1).mean(axis=1))
    if mp is not None:
        others = [v for k, v in mp.items() if k not in EYE_CHANNELS]
        total = np.nansum(np.stack(others, axis=1)[index], axis=1)
        activity += _ranks(total)
    count = max(MIN_NEUTRAL_ROWS, int(round(NEUTRAL_FRACTION * len(index))))
    chosen = np.zeros(len(rows), dtype=bool)
    chosen[index[np.argsort(activity, kind="stable")[:count]]] = True
    return chosen


def _ranks(values) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    return ranks / max(len(values) - 1, 1)
