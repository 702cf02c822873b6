"""Learn the ARKit solver's per-channel weights from synthetic performers with known truth.

    python scripts/fit_arkit_solver.py [--count 13] [--output ddfa_blender/core/arkit_solver.json]
    python scripts/fit_arkit_solver.py --takes DIR     (takes already captured: DIR/<seed>.npz)

Regenerates ``ddfa_blender/core/arkit_solver.json``. For each training seed
(:func:`benchmarks.synthetic_heads.split_seeds` ``"train"``: never a
held-out one) the synthetic head is rendered (cached), captured with
MediaPipe's face landmarker recorded (``ch.mp_blendshapes`` and
``ch.mp_geometry``), smoothed with the ``default`` preset, and its evidence
gathered exactly as the solver gathers it at run time
(:func:`ddfa_blender.core.arkit.gather_evidence`). Then, per ARKit channel
and evidence level (``full``: 3DDFA-V2 + MediaPipe's scores and landmarks;
``scores``: without the landmarks; ``3ddfa``: 3DDFA-V2 alone), a ridge
regression from a few of the channel's candidate features (:data:`CANDIDATES`:
measurements that physically move with it) to the true weight, the features
chosen one by one while they raise the leave-one-sequence-out correlation,
blended with MediaPipe's own score for the channel (:func:`fit_channel`); the
intercept is kept at or below 0 so that the neutral face reads 0. Few,
physically meaningful features per channel keep the models plain enough to
carry over from rendered heads to real faces: a free choice among all
features fitted the renders better and failed on the sample footage (a
jawOpen read from the mouth's width, a smile from the corners' outward pull
that a crying grimace has too). Eye and gaze channels read no 3DDFA-V2
geometry except at the ``3ddfa`` level (it barely sees eyelids and not the
eyes at all). Takes about a minute once the takes are captured (rendering
13 sequences takes about an hour on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ddfa_blender.core import arkit  # noqa: E402

STRENGTH = 1e-3  # ridge strength relative to the data's size, on scaled features
MAX_FEATURES = 8
MIN_GAIN = 0.015  # a feature joins a channel's model when it raises the cross-validated r this much
GAIN_LIMITS = (1.0, 2.5)
# The share of a channel the geometry model gets, chosen within these ranges (geometry_share_range).
SHARE_RANGES = {"mouthSmile": (0.8, 1.0), "eyes": (0.0, 0.0), "gaze": (0.0, 1.0), "other": (0.5, 1.0)}
DEFAULT_OUTPUT = ROOT / "ddfa_blender" / "core" / "arkit_solver.json"
SMOOTHING = "default"


def channel_region(name: str) -> str:
    """The face region of an ARKit channel (or of a MediaPipe score of that name)."""
    if name.startswith("eyeLook"):
        return "gaze"
    for prefix, region in (("eye", "eyes"), ("brow", "brows"), ("cheek", "cheeks"), ("nose", "nose"),
                           ("jaw", "jaw")):
        if name.startswith(prefix):
            return region
    return "mouth"


# What each channel may read: measurements that move with it on any face ("_S": the
# channel's own side, "_O" the other; a sided channel's twin reads the mirrored features,
# see mirror()); "!": always read; "a-b": the difference of two features, one weight.
# ddfa.*: 3DDFA-V2's landmarks and cheek patches; geo.*: MediaPipe's landmarks. A smile
# reads its amount from 3DDFA-V2's mouth corners (a crying grimace lifts MediaPipe's too)
# and its side from MediaPipe's (3DDFA-V2's 10 expression coefficients hardly make a
# one-sided smile): the left corner's rise over the right's, zero on a symmetric face.
CANDIDATES = {
    "jawOpen": ("ddfa.lip_gap", "geo.lip_gap", "geo.chin_up", "geo.lower_lip_over_chin"),
    "jawForward": ("ddfa.jaw_forward", "geo.chin_forward", "geo.chin_forward_of_nose", "geo.lower_lip_forward"),
    "jawLeft": ("ddfa.jaw_side", "geo.chin_side", "geo.jaw_side", "geo.chin_side_of_nose"),
    "mouthClose": ("ddfa.lip_gap", "geo.lip_gap", "geo.chin_up", "geo.lower_lip_over_chin", "ddfa.lower_centre_up"),
    "mouthFunnel": ("ddfa.mouth_narrow", "geo.mouth_width", "geo.mouth_inner_width", "geo.lips_forward",
                    "geo.lip_gap", "ddfa.lip_gap"),
    "mouthPucker": ("ddfa.mouth_narrow", "geo.mouth_width", "geo.mouth_inner_width", "geo.lips_forward",
                    "geo.lip_gap", "ddfa.lip_gap"),
    "mouthLeft": ("ddfa.mouth_side", "geo.mouth_side", "geo.mouth_side_of_nose", "geo.mouth_inner_side"),
    "mouthSmile": ("!ddfa.corner_up_S", "!geo.corner_up_S-geo.corner_up_O"),
    "mouthFrown": ("ddfa.corner_up_S", "geo.corner_up_S", "geo.corner_height_S", "geo.lower_lip_outer_up_S",
                   "geo.corner_out_S"),
    "mouthDimple": ("ddfa.corner_out_S", "ddfa.corner_back_S", "geo.corner_out_S", "geo.corner_forward_S",
                    "geo.corner_height_S"),
    "mouthStretch": ("ddfa.corner_out_S", "ddfa.corner_up_S", "geo.corner_out_S", "geo.corner_height_S",
                     "geo.corner_up_S"),
    "mouthRollLower": ("ddfa.lower_thin", "geo.lower_lip_height", "geo.lower_lip_forward", "geo.lip_gap"),
    "mouthRollUpper": ("ddfa.upper_thin", "geo.upper_lip_height", "geo.upper_lip_forward", "geo.lip_gap"),
    "mouthShrugLower": ("ddfa.lower_centre_up", "geo.lower_lip_up", "geo.lower_lip_over_chin",
                        "geo.lower_lip_forward", "geo.chin_up"),
    "mouthShrugUpper": ("ddfa.upper_centre_up", "geo.upper_lip_up", "geo.upper_lip_forward", "geo.upper_lip_height"),
    "mouthPress": ("ddfa.press_S", "geo.upper_lip_height_S", "geo.lower_lip_height_S", "geo.lip_gap_S"),
    "mouthLowerDown": ("ddfa.lower_down_S", "geo.lower_lip_up_S", "geo.lower_lip_outer_up_S", "geo.lip_gap_S",
                       "geo.chin_up"),
    "mouthUpperUp": ("ddfa.upper_up_S", "geo.upper_lip_up_S", "geo.upper_lip_outer_up_S", "geo.upper_lip_height_S",
                     "geo.nasolabial_up_S"),
    "browDown": ("ddfa.brow_up_S", "ddfa.brow_outer_up_S", "geo.brow_inner_up_S", "geo.brow_middle_up_S",
                 "geo.brow_outer_up_S", "geo.brow_inner_out_S"),
    "browInnerUp": ("ddfa.brow_inner_up", "geo.brow_inner_up_Left", "geo.brow_inner_up_Right",
                    "geo.brow_inner_out_Left", "geo.brow_inner_out_Right"),
    "browOuterUp": ("ddfa.brow_outer_up_S", "geo.brow_outer_up_S", "geo.brow_middle_up_S"),
    "eyeBlink": ("geo.lid_gap_S", "geo.lid_upper_S", "ddfa.lid_gap_S", "ddfa.lower_lid_up_S"),
    "eyeSquint": ("geo.lid_lower_S", "geo.cheek_high_up_S", "geo.lid_gap_S", "ddfa.lower_lid_up_S", "ddfa.cheek_up_S"),
    "eyeWide": ("geo.lid_upper_S", "geo.lid_gap_S", "ddfa.lid_gap_S"),
    "eyeLookUp": ("geo.gaze_up_S",),
    "eyeLookDown": ("geo.gaze_up_S",),
    "eyeLookIn": ("geo.gaze_out_S",),
    "eyeLookOut": ("geo.gaze_out_S",),
    "cheekPuff": ("ddfa.cheek_out_Left", "ddfa.cheek_out_Right", "geo.cheek_low_out_Left",
                  "geo.cheek_low_out_Right", "geo.cheek_out_Left", "geo.cheek_out_Right"),
    "cheekSquint": ("ddfa.cheek_up_S", "geo.cheek_high_up_S", "geo.cheek_up_S", "geo.lid_lower_S"),
    "noseSneer": ("ddfa.nose_up_S", "geo.nose_wing_up_S", "geo.nasolabial_up_S", "geo.nose_wing_out_S"),
}


def channel_base(channel: str) -> tuple[str, str | None]:
    """``("mouthSmile", "Left")`` for ``mouthSmileLeft``; ``("jawLeft", None)`` (a direction, not a side)."""
    for side in ("Left", "Right"):
        base = channel[: -len(side)]
        if channel.endswith(side) and base in CANDIDATES:
            return base, side
    if channel == "jawRight":
        return "jawLeft", None
    if channel == "mouthRight":
        return "mouthLeft", None
    return channel, None


def _named(feature: str, side: str | None) -> str:
    """A :data:`CANDIDATES` entry as a feature name: ``_S`` the channel's side, ``_O`` the other."""
    feature = feature.lstrip("!")
    if side is None:
        return feature
    other = "Right" if side == "Left" else "Left"
    return feature.replace("_S", "_" + side).replace("_O", "_" + other)


def required(channel: str) -> list[str]:
    """The features a channel's geometry model always reads (marked ``!`` in :data:`CANDIDATES`)."""
    base, side = channel_base(channel)
    return [_named(f, side) for f in CANDIDATES.get(base, ()) if f.startswith("!")]


def candidates(channel: str, level: str, names) -> list[str]:
    """The features a channel's model may read at an evidence level (:data:`CANDIDATES`).

    Geometry that physically moves with the channel (3DDFA-V2's landmarks at
    every level, MediaPipe's at ``full``) and, from ``scores`` up, MediaPipe's
    own score for the channel: how MediaPipe's other scores leak into each
    other on a rendered head is not how they do on a real face, while
    geometry means the same on both. Eyes and gaze read no 3DDFA-V2 geometry
    when MediaPipe is there (it hardly sees eyelids and not the eyes).
    """
    base, side = channel_base(channel)
    wanted = [_named(f, side) for f in CANDIDATES.get(base, ())]
    allowed = {arkit.DDFA}
    if level in ("full", "scores"):
        allowed.add(arkit.SCORES)
    if level == "full":
        allowed.add(arkit.GEOMETRY)
    if channel_region(channel) in ("eyes", "gaze") and level != "3ddfa":
        allowed.discard(arkit.DDFA)
    present = set(names)
    picked = [f for f in wanted if set(f.split("-")) <= present and f[: f.index(".") + 1] in allowed]
    if arkit.SCORES in allowed and arkit.SCORES + channel in present:
        picked.append(arkit.SCORES + channel)
    return sorted(picked)


def feature_column(features: dict, name: str) -> np.ndarray:
    """The values of a candidate: a feature, or ``a-b`` the difference of two."""
    first, _, second = name.partition("-")
    return features[first] - features[second] if second else features[first]


def feature_floor(name: str) -> float:
    """The smallest spread a feature is scaled by: a score of 0.05, or 0.01 IOD of motion.

    Features that hardly move in the training data would otherwise be blown up
    by standardising and win spurious weight.
    """
    return 0.05 if name.startswith(arkit.SCORES) else 0.01


class Folds:
    """Leave-one-sequence-out sums for fast least squares on any subset of features.

    ``xs``: per sequence (n_s, F) features; ``ys``: per sequence (n_s,) truth.
    Features are scaled by ``scale`` (F,); an intercept column is appended.
    """

    def __init__(self, xs, ys, scale):
        self.xs = [np.column_stack([x / scale, np.ones(len(x))]) for x in xs]
        self.ys = ys
        self.scale = np.asarray(scale, dtype=np.float64)
        grams = [x.T @ x for x in self.xs]
        moments = [x.T @ y for x, y in zip(self.xs, ys)]
        self.gram, self.moment = sum(grams), sum(moments)
        self.held = list(zip(grams, moments))

    def solve(self, columns, strength, without=None):
        """Coefficients (ridge on the chosen columns + intercept) fitted on all sequences but ``without``."""
        index = list(columns) + [self.gram.shape[0] - 1]
        gram, moment = self.gram, self.moment
        if without is not None:
            gram, moment = gram - self.held[without][0], moment - self.held[without][1]
        a = gram[np.ix_(index, index)]
        penalty = strength * a[-1, -1] * np.eye(len(index))
        penalty[-1, -1] = 0.0  # the intercept is not shrunk
        return index, np.linalg.solve(a + penalty, moment[index])

    def predict(self, columns, strength, without: int) -> np.ndarray:
        """Unclipped predictions on sequence ``without`` by a fit on all the others."""
        index, coef = self.solve(columns, strength, without=without)
        return self.xs[without][:, index] @ coef

    def final(self, columns, strength) -> tuple[float, np.ndarray]:
        """Intercept (<= 0: the neutral face reads 0) and weights (in feature units) fitted on all sequences."""
        index, coef = self.solve(columns, strength)
        if coef[-1] > 0.0:
            x = np.concatenate([x[:, columns] for x in self.xs])
            y = np.concatenate(self.ys)
            coef = np.r_[np.linalg.solve(x.T @ x + strength * len(x) * np.eye(len(columns)), x.T @ y), 0.0]
        return float(coef[-1]), coef[:-1] / self.scale[columns]

    def cross_validated_r(self, columns, strength) -> float:
        predicted = []
        for held, x in enumerate(self.xs):
            index, coef = self.solve(columns, strength, without=held)
            predicted.append(np.clip(x[:, index] @ coef, 0.0, 1.0))
        return _pearson(np.concatenate(predicted), np.concatenate(self.ys))


LATERAL = ("ddfa.jaw_side", "ddfa.mouth_side", "geo.chin_side", "geo.jaw_side", "geo.mouth_side",
           "geo.mouth_inner_side", "geo.chin_side_of_nose", "geo.mouth_side_of_nose")
PAIRS = (("Left", "Right"),)
SWAPPED = (("jawLeft", "jawRight"), ("mouthLeft", "mouthRight"))


def mirror(name: str) -> tuple[str, float]:
    """The name of a channel or feature on the face seen in a mirror, and the sign it takes there.

    ``mouthSmileLeft`` <-> ``mouthSmileRight``, ``geo.corner_up_Left`` <->
    ``geo.corner_up_Right``, ``mp.jawLeft`` <-> ``mp.jawRight``; sideways
    offsets across the midline (:data:`LATERAL`) change sign; the rest stays.
    """
    prefix, dot, base = name.rpartition(".")
    head = prefix + dot
    for left, right in SWAPPED:
        if base in (left, right):
            return head + (right if base == left else left), 1.0
    if name in LATERAL:
        return name, -1.0
    for left, right in PAIRS:
        if base.endswith(left):
            return head + base[: -len(left)] + right, 1.0
        if base.endswith(right):
            return head + base[: -len(right)] + left, 1.0
    return name, 1.0


def mirrored(features: dict) -> dict:
    """The features of the mirrored face: names swapped, sideways offsets negated."""
    out = {}
    for name, values in features.items():
        other, sign = mirror(name)
        out[other] = sign * values
    return out


def fit_channel(sequences, channel: str, level: str, max_features: int = MAX_FEATURES):
    """``(bias, {feature: weight}, cross-validated r)`` for one channel and level, or None without features.

    Every face is also seen in a mirror (:func:`mirrored`): a sided channel
    (``...Left``, ``jawLeft``) learns from its own truth on the faces and its
    twin's on the mirrored faces (one model for both sides, twice the data,
    no side favoured; :func:`mirror_model` gives the twin's model); an
    unsided channel learns to read a face and its mirror image alike.

    Two models are fitted and blended. A *geometry* model: forward selection
    over the geometric candidates (3DDFA-V2's and MediaPipe's landmarks),
    adding the feature that raises the leave-one-sequence-out r the most
    while it gains at least ``MIN_GAIN``, up to ``max_features``. A *score*
    model: MediaPipe's own score for the channel. The blend ``a * geometry +
    (1 - a) * score`` takes the ``a`` in :func:`geometry_share_range` with
    the best cross-validated r. All fits are ridge (strength
    ``STRENGTH``) on all sequences at the end, intercepts kept <= 0, and the
    result scaled back to full amplitude (:func:`amplitude_gain`).
    """
    names = candidates(channel, level, sequences[0]["features"])
    if not names:
        return None
    column = arkit.ARKIT_NAMES.index(channel)
    xs = [np.column_stack([feature_column(s["features"], n) for n in names]) for s in sequences]
    ys = [s["truth"][:, column] for s in sequences]
    twin_column = arkit.ARKIT_NAMES.index(mirror(channel)[0])
    for i, sequence in enumerate(sequences):  # the mirrored face joins its own fold
        flipped = mirrored(sequence["features"])
        xs[i] = np.concatenate([xs[i], np.column_stack([feature_column(flipped, n) for n in names])])
        ys[i] = np.concatenate([ys[i], sequence["truth"][:, twin_column]])
    spread = np.concatenate(xs).std(axis=0)
    scale = np.maximum(spread, [feature_floor(n) for n in names])
    folds = Folds(xs, ys, scale)
    own = arkit.SCORES + channel
    geometric = [j for j, n in enumerate(names) if not n.startswith(arkit.SCORES)]
    chosen = [names.index(f) for f in required(channel) if f in names]
    best = folds.cross_validated_r(chosen, STRENGTH) if chosen else 0.0
    while len(chosen) < max_features:
        trials = [(folds.cross_validated_r(chosen + [j], STRENGTH), j) for j in geometric if j not in chosen]
        if not trials:
            break
        r, j = max(trials)
        if r < best + MIN_GAIN:
            break
        chosen.append(j)
        best = r
    parts = [chosen] if chosen else []
    if own in names:
        parts.append([names.index(own)])
    if not parts:
        return 0.0, {}, 0.0
    share, best = 1.0, -1.0
    if len(parts) == 2:
        held = [[folds.predict(part, STRENGTH, without=i) for part in parts] for i in range(len(xs))]
        y = np.concatenate(ys)
        for trial in np.linspace(*geometry_share_range(channel), 11):
            blend = np.concatenate([np.clip(trial * g + (1 - trial) * m, 0.0, 1.0) for g, m in held])
            r = _pearson(blend, y)
            if r > best + 1e-4:
                share, best = float(trial), r
    else:
        best = folds.cross_validated_r(parts[0], STRENGTH)
    factors = (share, 1.0 - share) if len(parts) == 2 else (1.0,)
    held = [sum(f * folds.predict(part, STRENGTH, without=i) for part, f in zip(parts, factors))
            for i in range(len(xs))]
    gain = amplitude_gain(np.concatenate(held), np.concatenate(ys))
    weights, bias = {}, 0.0
    for part, factor in zip(parts, factors):
        part_bias, part_weights = folds.final(part, STRENGTH)
        bias += gain * factor * part_bias
        for j, w in zip(part, part_weights):
            for feature, sign in zip(names[j].split("-"), (1.0, -1.0)):  # a difference: +w and -w
                weights[feature] = weights.get(feature, 0.0) + sign * gain * factor * float(w)
    return bias, {k: v for k, v in weights.items() if v != 0.0}, best


def geometry_share_range(channel: str) -> tuple[float, float]:
    """The range the geometry model's share of a channel is chosen in (:data:`SHARE_RANGES`).

    Where the geometry includes 3DDFA-V2's (mouth, jaw, brows, cheeks, nose)
    MediaPipe's score gets at most half: it reads a rendered head better than
    a real one. Smiles get at most a fifth: MediaPipe scores the talking
    head's crying grimace as a smile (0.75 median, 0.82 while laughing),
    while 3DDFA-V2's mouth corners tell the two apart. The eyelids (blink,
    squint, wide) read MediaPipe's score alone: its eyelid landmarks read
    real closed lids about half as closed as rendered ones in the sample
    footage. Gaze may read the irises against the eye corners freely.
    """
    if channel.startswith("mouthSmile"):
        return SHARE_RANGES["mouthSmile"]
    region = channel_region(channel)
    return SHARE_RANGES[region] if region in ("eyes", "gaze") else SHARE_RANGES["other"]


def amplitude_gain(predicted, truth) -> float:
    """The factor that gives a fitted channel back its full amplitude.

    A least-squares fit on noisy evidence shrinks toward the mean: a blink
    that truly reaches 1 reads about 0.7. The gain is the median of truth over
    prediction on the frames where the truth is strong (above half its
    maximum), from cross-validated predictions, within ``GAIN_LIMITS``.
    """
    strong = (truth > 0.5 * truth.max()) & (predicted > 0.05)
    if strong.sum() < 10:
        return 1.0
    return float(np.clip(np.median(truth[strong] / predicted[strong]), *GAIN_LIMITS))


def mirror_model(model: dict) -> dict:
    """The twin channel's model (JSON form) from a sided channel's: features mirrored."""
    weights = {}
    for name, weight in model["weights"].items():
        other, sign = mirror(name)
        weights[other] = sign * weight
    return {"bias": model["bias"], "weights": dict(sorted(weights.items()))}


def _pearson(a, b) -> float:
    if a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def sequence_evidence(take, truth, face_model) -> dict:
    """The calibrated evidence of a take's track 0 with all three levels' features, and its truth.

    """
    from ddfa_blender.core.smoothing import PRESETS, smooth_take

    settings = PRESETS[SMOOTHING]
    smoothed = smooth_take(take, settings, face_model)
    rows = smoothed.for_track(0)
    evidence = arkit.gather_evidence(rows, face_model, smooth_seconds=settings.expression)
    keep = evidence.valid & (evidence.level == 0)
    return {
        "features": {k: v[keep] for k, v in evidence.features.items()},
        "truth": truth["arkit"][rows.frame[keep]],
    }


def capture_sequence(video, models_dir, folder) -> str:
    """Capture ``video`` with the face landmarker's channels; the take's path in ``folder``."""
    from ddfa_blender.core.engine import CaptureOptions, capture
    from ddfa_blender.core.face_landmarker import make_channels

    path = os.path.join(folder, os.path.basename(os.path.dirname(video)) + ".npz")
    if not os.path.isfile(path):
        options = CaptureOptions(models_dir=models_dir, channels=make_channels(models_dir))
        capture(str(video), options).save(path)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=13, help="training sequences (default 13)")
    parser.add_argument("--frames", type=int, default=450)
    parser.add_argument("--takes", help="folder of takes already captured (<seed>.npz), skipping render and capture")
    parser.add_argument("--models", help="prepared models folder (default: models/)")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    args = parser.parse_args(argv)
    from benchmarks import synthetic_heads as sh
    from ddfa_blender.core.engine import load_face_model
    from ddfa_blender.core.model_setup import default_models_dir
    from ddfa_blender.core.take import Take

    models = args.models or str(default_models_dir())
    face_model = load_face_model(models)
    seeds = sh.split_seeds("train", args.count)
    work = args.takes or os.path.join(tempfile.gettempdir(), "ddfa_fit_arkit_solver")
    os.makedirs(work, exist_ok=True)
    takes = []
    for seed in seeds:
        sequence = sh.render(sh.SequenceSpec(seed=seed, frames=args.frames))
        take_path = os.path.join(work, f"{seed}.npz") if args.takes else capture_sequence(
            str(sequence.video), models, work)
        takes.append((Take.load(take_path), sequence.truth))
        print(f"seed {seed}: {len(takes[-1][0])} frames", file=sys.stderr, flush=True)
    sequences = [sequence_evidence(take, truth, face_model) for take, truth in takes]
    channels, report = {}, []
    for name in arkit.ARKIT_NAMES:
        twin = mirror(name)[0]
        if name in arkit.UNSUPPORTED or twin in channels:
            continue
        levels = {}
        for level in arkit.LEVELS:
            fitted = fit_channel(sequences, name, level)
            if fitted is None:
                continue
            bias, weights, r = fitted
            levels[level] = {"bias": round(bias, 6), "weights": {k: round(v, 6) for k, v in sorted(weights.items())}}
            report.append(f"{name:20s} {level:6s} r={r:.3f} " + " ".join(sorted(weights)))
        channels[name] = levels
        if twin != name:
            channels[twin] = {level: mirror_model(model) for level, model in levels.items()}
    channels = {name: channels[name] for name in arkit.ARKIT_NAMES if name in channels}
    data = {
        "format": arkit.SOLVER_FORMAT,
        "version": 1,
        "info": {"trained_on": f"synthetic heads {seeds[0]}-{seeds[-1]} (train split), {args.frames} frames each",
                 "renderer_version": sh.RENDERER_VERSION, "smoothing": SMOOTHING,
                 "script": "scripts/fit_arkit_solver.py"},
        "channels": channels,
    }
    from ddfa_blender.core.atomic_file import atomic_write

    with atomic_write(args.output, "the solver") as handle:
        json.dump(data, handle, indent=1)
        handle.write("\n")
    print("\n".join(report))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
