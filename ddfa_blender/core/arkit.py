"""ARKit's 52 blendshape channels from a take: names, name matching, and the solver.

Names
    :data:`ARKIT_NAMES` lists the 52 channels in camelCase, in the order of
    Epic's Live Link Face recordings. :func:`canonical` reduces any spelling
    (``eyeBlinkLeft``, ``eyeBlink_L``, ``EyeBlinkLeft``, ``eyeBlink_Left``,
    ``eye_blink_left``, ``eyeBlink.L``, ``Face.eyeBlinkLeft``) to one key,
    ``("eyeblink", "L")``: a base in lower case and a side (``"L"``, ``"R"``
    or ``None``); "Left" means the performer's left, as in ARKit.

Solver (:func:`solve_arkit`): one row of weights in [0, 1] per take row, from
all the evidence the take holds, each piece measured in the head's own frame
so that turning the head moves no channel (:func:`gather_evidence`):

* ``ddfa.*``: 3DDFA-V2's geometry: signed distances (in inter-ocular
  distances, IOD) between its 68 landmarks and dense cheek patches, rebuilt
  from the take's identity (the median of its shape coefficients) and each
  row's 10 expression coefficients, without the head pose
  (:class:`FaceGeometry`); linear in the expression coefficients;
* ``mp.*``: MediaPipe's 52 blendshape scores (``ch.mp_blendshapes``);
* ``geo.*``: MediaPipe's 478 landmarks reduced to head-frame measurements
  (``ch.mp_geometry``, :mod:`.landmark_geometry`): lip and lid gaps, mouth
  corners, brows, cheeks, nose wings, the irises against the eye corners.

Every feature is read relative to the performer's neutral face (its value
there subtracted). Each channel is then ``clip(bias + sum(w_f * feature_f),
0, 1)`` with per-channel weights (:class:`SolverModel`, shipped as
``arkit_solver.json``) learned by ``scripts/fit_arkit_solver.py`` on
synthetic performers with known weights (the ICT FaceKit head rendered by
``benchmarks/synthetic_heads.py``, training seeds only), one model per
evidence level, so a row uses the richest evidence it has: ``full`` (all
three), ``scores`` (a take recorded before ``ch.mp_geometry`` existed), or
``3ddfa`` (no MediaPipe: ``eyes="3ddfa"``, or the landmarker lost the face).
A channel reads only the face regions that can show it (a brow never reads
the mouth); eyes and gaze read MediaPipe alone when it is there. At the
``3ddfa`` level every channel is a clipped linear formula of the expression
coefficients (:func:`linear_channels`), which drivers can evaluate.

What the solver cannot see: ``tongueOut`` (nothing observes the tongue,
always 0). Gaze needs MediaPipe (3DDFA-V2 has no eyes). Channels that move
the face by a few millimetres (``mouthPress``, ``mouthDimple``,
``cheekSquint``, ``eyeSquint``, ``eyeWide``, ``jawLeft``/``jawRight``) are
read much less reliably than the mouth's large motions: see the fidelity
table in the README (``benchmarks/bench_fidelity.py``).

Neutral calibration: the neutral value of every feature is its median over
the neutral frames: a frame range given by the caller, or by default the
``NEUTRAL_FRACTION`` of valid rows with the least activity (the smallest
landmark displacement from the model's neutral expression, plus, with
MediaPipe, the smallest sum of its non-eye scores). Evidence about the eyes
calibrates on all rows instead, even a take whose calmest frames have the
eyes shut: the eyelids on the open end of their range and MediaPipe's eye
scores on the low end of theirs (:data:`OPEN_EYE_PERCENTILE`), the other
gaze evidence on its median (eyes look ahead most of the time).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
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
UNSUPPORTED = ("tongueOut",)
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
        for side, s in _SIDES.items():
            sign = s["sign"]
            corner_up = y[:, s["corner"]] - lip_mid
            corner_out = sign * (x[:, s["corner"]] - x[:, 33])
            corner_back = -(z[:, s["corner"]] - z[:, 33])
            eye_y = y[:, list(s["eye"])].mean(axis=1)
            f[f"corner_up_{side}"] = corner_up
            f[f"corner_out_{side}"] = corner_out
            f[f"corner_back_{side}"] = corner_back
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
            f[f"cheek_out_{side}"] = (p[:, puff_rows] @ normal).mean(axis=1) - (p[:, 33] @ normal)
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


# -- evidence -------------------------------------------------------------------------

DDFA, SCORES, GEOMETRY = "ddfa.", "mp.", "geo."
LEVELS = ("full", "scores", "3ddfa")  # evidence a row can have, most first
EYE_FEATURE_WORDS = ("eye", "lid_", "gaze_")


# Evidence of the eyelids closing: the sign it moves with on closure (its open end is its rest).
CLOSURE_FEATURES = {
    "mp.eyeBlinkLeft": 1.0, "mp.eyeBlinkRight": 1.0,
    "geo.lid_gap_Left": -1.0, "geo.lid_gap_Right": -1.0,
    "geo.lid_upper_Left": -1.0, "geo.lid_upper_Right": -1.0,
    "ddfa.lid_gap_Left": -1.0, "ddfa.lid_gap_Right": -1.0,
}
OPEN_EYE_PERCENTILE = 5.0


def is_eye_feature(name: str) -> bool:
    """True for evidence about the eyes (calibrated on the typical open eye, see the module doc)."""
    _, _, feature = name.partition(".")
    return feature.startswith(EYE_FEATURE_WORDS) or feature.startswith("lower_lid")


@dataclasses.dataclass
class Evidence:
    """Per-row evidence of one track, calibrated to the performer's neutral face.

    ``features``: ``{name: (N,) float64}``: ``ddfa.<feature>`` (3DDFA-V2's
    geometry, :class:`FaceGeometry`), ``mp.<ARKit name>`` (MediaPipe's
    scores), ``geo.<column>`` (MediaPipe's landmarks, :mod:`.landmark_geometry`),
    each minus its value on the neutral face; NaN where a row lacks it.
    ``level``: (N,) index into :data:`LEVELS`, the richest evidence each
    valid row has. ``zeros``: ``{name: value at neutral}``. ``neutral_rows``:
    the rows calibrated as neutral. ``geometry``: the :class:`FaceGeometry`.
    """

    features: dict
    level: np.ndarray
    zeros: dict
    neutral_rows: np.ndarray
    geometry: FaceGeometry
    valid: np.ndarray


def gather_evidence(rows, face_model, neutral=None, eyes: str = "auto", smooth_seconds: float = 0.0) -> Evidence:
    """The calibrated :class:`Evidence` of one track's rows (``take.for_track``).

    ``eyes``: ``"auto"`` (MediaPipe's evidence when the take recorded it),
    ``"mediapipe"`` (required) or ``"3ddfa"`` (3DDFA-V2 alone). ``neutral``:
    see :func:`solve_arkit`. ``smooth_seconds``: sigma of the zero-lag
    smoother (:func:`.smoothing.smooth_series`) run over MediaPipe's evidence,
    as the bake's expression smoothing runs over 3DDFA-V2's (0: none); not
    over the eyes' (a blink lasts a few frames).
    """
    valid = rows.valid.copy()
    mp = _mediapipe(rows)
    if eyes == "mediapipe" and mp is None:
        raise CaptureError(
            "The take has no MediaPipe channel for the eyes: capture it again with the face "
            "landmarker (scripts/capture.py --retarget, or the panel's Eyes option)."
        )
    if eyes not in ("auto", "mediapipe", "3ddfa"):
        raise CaptureError(f"Unknown eye source '{eyes}': use auto, mediapipe or 3ddfa.")
    use_mediapipe = eyes != "3ddfa" and mp is not None
    geometry = FaceGeometry(face_model, robust_identity(rows.param[valid]))
    expr = np.where(valid[:, None], rows.param[:, 52:62], 0.0).astype(np.float64)
    raw = {DDFA + k: v for k, v in geometry.features(expr).items()}
    has_scores = np.zeros(len(rows), dtype=bool)
    has_geometry = np.zeros(len(rows), dtype=bool)
    if use_mediapipe:
        scores = {SCORES + k: v for k, v in mp.items()}
        has_scores = valid & np.isfinite(np.stack(list(scores.values()), axis=1)).all(axis=1)
        raw.update(scores)
        shape = _mediapipe_geometry(rows)
        if shape is not None:
            shape = {GEOMETRY + k: v for k, v in shape.items()}
            has_geometry = has_scores & np.isfinite(np.stack(list(shape.values()), axis=1)).all(axis=1)
            raw.update(shape)
        if smooth_seconds > 0:
            for name in raw:
                if not name.startswith(DDFA) and not is_eye_feature(name):  # blinks stay sharp
                    raw[name] = _smooth_runs(rows, raw[name], smooth_seconds)
    neutral_rows = _neutral_rows(rows, valid, expr, geometry, mp if use_mediapipe else None, neutral)
    zeros, features = {}, {}
    for name, values in raw.items():
        values = np.where(valid, values, np.nan)
        finite = np.isfinite(values)
        if neutral is None and finite.any() and (name in CLOSURE_FEATURES or name.startswith(SCORES + "eye")):
            # The open eye: the open end of the eyelid's range (a take may keep its eyes shut a
            # while); MediaPipe's eye scores rise from their rest: the low end of their range.
            sign = CLOSURE_FEATURES.get(name, 1.0)
            zeros[name] = float(np.percentile(sign * values[finite], OPEN_EYE_PERCENTILE) * sign)
        else:
            if is_eye_feature(name) and neutral is None:
                picked = finite  # eyes look ahead most of any take
            else:
                picked = neutral_rows & finite
                if not picked.any():
                    picked = finite
            zeros[name] = float(np.median(values[picked])) if picked.any() else 0.0
        features[name] = values - zeros[name]
        full = MEDIAPIPE_FULL.get(name[len(SCORES):]) if name.startswith(SCORES) else None
        if full is not None:  # a closed eye reads about 1 on any face (MEDIAPIPE_FULL)
            features[name] = features[name] / max(full - zeros[name], 0.05)
    level = np.where(has_geometry, 0, np.where(has_scores, 1, 2))
    return Evidence(features, level, zeros, neutral_rows, geometry, valid)


def _smooth_runs(rows, values, sigma: float) -> np.ndarray:
    """``values`` (N,) smoothed over each run of consecutive finite rows (NaN kept)."""
    from .smoothing import smooth_series

    out = np.array(values, dtype=np.float64)
    finite = np.isfinite(out)
    edges = np.flatnonzero(np.diff(np.r_[0, finite.astype(int), 0]))
    times = np.where(np.isfinite(rows.time), rows.time, rows.frame / max(rows.fps, 1e-9))
    for start, stop in zip(edges[::2], edges[1::2]):
        out[start:stop] = smooth_series(times[start:stop], out[start:stop], sigma)
    return out


def _mediapipe_geometry(rows):
    """MediaPipe's landmark geometry ``{column: (N,)}`` (NaN where it found no face), or None."""
    from .landmark_geometry import CHANNEL_NAME, COLUMNS, FRAME_COLUMNS

    values = rows.channels.get(CHANNEL_NAME)
    if values is None:
        return None
    columns = rows.meta.get("channels", {}).get(CHANNEL_NAME, list(COLUMNS))
    return {c: values[:, i].astype(np.float64) for i, c in enumerate(columns) if c not in FRAME_COLUMNS}


# -- the learned solver ---------------------------------------------------------------

SOLVER_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "arkit_solver.json")
SOLVER_FORMAT = "ddfa-blender arkit solver"


@dataclasses.dataclass
class SolverModel:
    """Per channel and evidence level, ``weight = clip(bias + sum(w_f * feature_f), 0, 1)``.

    ``channels``: ``{ARKit name: {level: (bias, {feature: weight})}}``;
    ``info``: how it was trained (``scripts/fit_arkit_solver.py`` writes
    it, see ``arkit_solver.json``).
    """

    channels: dict
    info: dict

    @classmethod
    def load(cls, path=SOLVER_FILE) -> "SolverModel":
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as err:
            raise CaptureError(f"Cannot read the ARKit solver {path} ({err}); reinstall the add-on.") from err
        if data.get("format") != SOLVER_FORMAT:
            raise CaptureError(f"{path} is not an ARKit solver file; reinstall the add-on.")
        channels = {
            name: {level: (float(m["bias"]), {k: float(v) for k, v in m["weights"].items()})
                   for level, m in levels.items()}
            for name, levels in data["channels"].items()
        }
        return cls(channels, data.get("info", {}))

    def evaluate(self, name: str, level: str, features: dict) -> np.ndarray | None:
        """The channel's weights (N,) from calibrated features at ``level``; None without a model."""
        model = self.channels.get(name, {}).get(level)
        if model is None:
            return None
        bias, weights = model
        n = len(next(iter(features.values())))
        total = np.full(n, bias)
        for feature, weight in weights.items():
            total = total + weight * features[feature]
        return np.clip(total, 0.0, 1.0)

    def source(self, name: str, level: str) -> str:
        """``"3ddfa"``, ``"mediapipe"``, ``"fused"`` or ``"none"``: what the channel reads at ``level``."""
        model = self.channels.get(name, {}).get(level)
        if model is None or not model[1]:
            return "none"
        ddfa = {f.startswith(DDFA) for f in model[1]}
        return "fused" if len(ddfa) == 2 else ("3ddfa" if ddfa == {True} else "mediapipe")


@functools.lru_cache(maxsize=4)
def default_solver(path=SOLVER_FILE) -> SolverModel:
    """The solver shipped with the add-on (read once)."""
    return SolverModel.load(path)


# -- solver ---------------------------------------------------------------------------


@dataclasses.dataclass
class ArkitWeights:
    """ARKit weights for one track of a take.

    ``weights`` (N, 52) float32 in [0, 1], columns :data:`ARKIT_NAMES`, NaN on
    rows without a face. ``frame``, ``time``, ``valid``: the track's take rows.
    ``sources``: channel -> ``"3ddfa"``, ``"mediapipe"``, ``"fused"`` (both)
    or ``"none"``: the evidence it read on most rows. ``neutral_frames``: the
    source frame numbers calibrated as neutral. ``identity``: the shape
    coefficients (40,) the geometry was built with. ``linear``: for each
    channel read from 3DDFA-V2 alone on every row, ``(a (10,), b)`` with
    ``weight = clip(a . e + b, 0, 1)`` for expression coefficients ``e``
    (see :func:`linear_channels`).
    """

    weights: np.ndarray
    frame: np.ndarray
    time: np.ndarray
    valid: np.ndarray
    sources: dict
    neutral_frames: np.ndarray
    identity: np.ndarray | None = None
    linear: dict = dataclasses.field(default_factory=dict)
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
    smooth_seconds: float = 0.0,
    solver: SolverModel | None = None,
) -> ArkitWeights:
    """ARKit weights for ``track`` of ``take`` (see the module doc).

    ``neutral``: None to find the calmest frames automatically, or a
    ``(first, last)`` source frame range (inclusive) holding the performer's
    rest face. ``eyes``: ``"mediapipe"`` (the take must hold
    ``ch.mp_blendshapes``), ``"3ddfa"`` (3DDFA-V2's geometry alone: no gaze)
    or ``"auto"`` (MediaPipe's evidence when recorded). ``smooth_seconds``:
    see :func:`gather_evidence`. ``solver``: None for the shipped one.
    Raises CaptureError for a track without valid rows or a neutral range
    without any.
    """
    rows = take.for_track(track)
    if not rows.valid.any():
        raise CaptureError(f"Track {track} has no frame with a face; nothing to solve.")
    solver = solver or default_solver()
    evidence = gather_evidence(rows, face_model, neutral, eyes, smooth_seconds)
    valid = evidence.valid
    n = len(rows)
    weights = np.zeros((n, len(ARKIT_NAMES)))
    sources, linear = {}, {}
    counts = np.bincount(evidence.level[valid], minlength=len(LEVELS))
    main_level = LEVELS[int(np.argmax(counts))]
    for i, name in enumerate(ARKIT_NAMES):
        for index, level in enumerate(LEVELS):
            picked = valid & (evidence.level == index)
            if not picked.any():
                continue
            features = {k: v[picked] for k, v in evidence.features.items()}
            values = solver.evaluate(name, level, features)
            if values is not None:
                weights[picked, i] = values
        sources[name] = solver.source(name, main_level)
        if counts[LEVELS.index("3ddfa")] == valid.sum() and sources[name] == "3ddfa":
            linear[name] = _linear_formula(solver, name, evidence)
    weights[~valid] = np.nan
    return ArkitWeights(
        weights=weights.astype(np.float32),
        frame=rows.frame.copy(),
        time=rows.time.copy(),
        valid=valid,
        sources=sources,
        neutral_frames=rows.frame[evidence.neutral_rows],
        identity=evidence.geometry.identity,
        linear=linear,
    )


def _linear_formula(solver: SolverModel, name: str, evidence: Evidence) -> tuple[np.ndarray, float]:
    """``(a, b)`` of a 3DDFA-only channel: its clipped model as a formula of the 10 expression coefficients."""
    bias, weights = solver.channels[name]["3ddfa"]
    base = evidence.geometry.features(np.zeros((1, 10)))
    unit = evidence.geometry.features(np.eye(10))
    a, b = np.zeros(10), bias
    for feature, weight in weights.items():
        key = feature[len(DDFA):]
        a += weight * (unit[key] - base[key][0])
        b += weight * (base[key][0] - evidence.zeros[feature])
    return a, float(b)


def linear_channels(weights: ArkitWeights) -> dict[str, tuple[np.ndarray, float]]:
    """``{channel: (a (10,), b)}`` with ``weight = clip(a . e + b, 0, 1)`` for expression ``e``.

    For the channels of ``weights`` read from 3DDFA-V2 alone (a solve with
    ``eyes="3ddfa"``, or a take without MediaPipe): the same numbers as the
    solver, as a formula a driver can evaluate from the 10 expression
    coefficients alone.
    """
    return dict(weights.linear)


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
