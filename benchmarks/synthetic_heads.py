"""Synthetic performers with known truth: the ICT FaceKit head rendered by Blender.

Each sequence is the shared ICT head (``../shared/data/avatars/ict_facekit_arkit.blend``,
object ``ICT_Head``, 57 ARKit-style shape keys) animated with known ARKit
weights and a known head rotation, rendered with Workbench by the ``bpy``
module, and written as a video plus a truth file. Everything about a sequence
follows from its :class:`SequenceSpec` (seeds, length, size), so a sequence is
rendered once and cached under a hash of its parameters: asking again costs
nothing.

API::

    from benchmarks.synthetic_heads import SequenceSpec, render, split_seeds
    seq = render(SequenceSpec(seed=split_seeds("heldout", 1)[0]))
    seq.video                    # path of the .mp4 (H.264, or mp4v without ffmpeg)
    seq.truth["arkit"]           # (N, 52) true ARKit weights, columns ARKIT_NAMES
    seq.truth["landmarks"]       # (N, 68, 2) exact 2-D landmarks, iBUG 68 order, pixels

CLI (prints the folder of each sequence)::

    python benchmarks/synthetic_heads.py --seed 9000 [--frames 300] [--size 640x360]
    python benchmarks/synthetic_heads.py --split train --count 8
    python benchmarks/synthetic_heads.py --seed 1000 --identity 1000 --seed 1001 ...

Seeds: :func:`split_seeds` gives training seeds (1000-8999) and held-out
seeds (9000 and up). Anything tuned or learned from renders uses training
seeds only; benchmarks report on held-out seeds. The identity (head shape,
skin, eyes, resting face) follows ``identity`` (default: the seed), so two
sequences of the same performer share an identity and differ in ``seed``
(motion, expressions, camera distance, lighting).

What a sequence varies (all from its seeds):

* identity: overall scale (0.92-1.08), proportions (the face stretched
  0.93-1.07 per axis and warped by five smooth bumps of up to 4 mm, mirrored
  left/right, with the warp's rigid part removed so that it turns nothing:
  the truth rotation stays the face's own), skin, brow, lip
  and iris colours, and a resting face of 0-3 of the avatar's own keys held
  at 0.05-0.25 (not part of the truth: the truth is the expression on top
  of this performer's neutral face);
* expression: the first ``neutral_seconds`` neutral, then overlapping events
  with smooth (smoothstep) attack, hold and release: single channels, L/R
  pairs with some asymmetry or one side only, antagonist pairs as one signed
  curve (jawLeft/Right, mouthLeft/Right), combinations (a smile with cheek
  and eye squint, surprise), speech-like jaw motion; blinks 4-8 frames long
  every 1.5-5 s (one eye sometimes); gaze as a smooth 2-D direction;
* head: rotation within +-30 degrees yaw, +-15 pitch, +-10 roll (smooth
  moves between random poses, still during the neutral second), position
  drifting a few centimetres, off the optical axis;
* camera distance 0.7-1.2 m (50 mm lens on a 36 mm sensor), lighting (one of
  Workbench's studio lights, turned), background colour.

Truth file ``truth.npz`` (one row per video frame):

==================  ==========================================================
``arkit``           (N, 52) float32 ARKit weights, columns ``arkit_names``
                    (``ddfa_blender.core.arkit.ARKIT_NAMES``); ``browInnerUp``
                    and ``cheekPuff`` are the mean of the avatar's L/R keys
``driven``          (52,) bool: channels the avatar shows (all but tongueOut)
``ict_names``       (57,) the avatar's key names; ``ict_weights`` (N, 57) the
                    expression applied to them; ``ict_identity`` (57,) the
                    resting face added on top (constant)
``rotation``        (N, 4) quaternion (w, x, y, z): the head's rotation from
                    its rest (facing -Y, the camera) in Blender's world axes;
                    the camera looks along +Y with Z up, so this is also the
                    rotation relative to the camera
``yaw_pitch_roll``  (N, 3) degrees, ``R = Rz(yaw) Rx(pitch) Ry(roll)``: yaw > 0
                    turns the face toward +X (image right, the performer's
                    left), pitch > 0 lowers the chin, roll > 0 tips the top of
                    the head toward image right
``pivot``           (N, 3) metres, world: the point the head turns about
``landmarks``       (N, 68, 2) float32 pixels (0-based, centre of the top-left
                    pixel at (0, 0), y down) of the avatar's 68 landmark
                    vertices (``ict_landmarks68.json``, iBUG 68 order), exact
``landmarks_camera``(N, 68, 3) metres in the camera frame (x right, y down, z
                    forward)
camera              ``image_size`` (W, H), ``focal_px``, ``principal_point``
                    (cx, cy) pixels, ``lens_mm``, ``sensor_mm``,
                    ``camera_location`` (3,) world metres, ``camera_rotation``
                    (4,) world quaternion of the Blender camera object
``fps``, ``frame``, ``time``  frame rate; frame numbers 0..N-1; seconds
``params``          JSON text: the spec, the identity and the look
==================  ==========================================================

Cache: ``$DDFA_SYNTHETIC_CACHE`` or ``~/.cache/ddfa-blender/synthetic``, one
folder per hash of (renderer version, spec, avatar file contents); written
to a temporary folder and renamed when complete. The rendering runs in a
child process of the same Python (it needs the ``bpy`` module; 4.2-5.3),
niced. Cost on this project's 2-core machines: about 0.3-0.8 s per
640x360 frame.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Bump when the rendered images or the truth change for the same spec.
RENDERER_VERSION = 3
SHARED = pathlib.Path(os.environ.get("DDFA_SHARED", ROOT.parent / "shared"))
DEFAULT_AVATAR = SHARED / "data" / "avatars" / "ict_facekit_arkit.blend"
DEFAULT_LANDMARKS = SHARED / "data" / "avatars" / "ict_landmarks68.json"
AVATAR_OBJECT = "ICT_Head"
TRAIN_SEEDS = range(1000, 9000)
HELDOUT_SEEDS = range(9000, 1_000_000)
SENSOR_MM = 36.0
YAW_MAX, PITCH_MAX, ROLL_MAX = 30.0, 15.0, 10.0


@dataclasses.dataclass(frozen=True)
class SequenceSpec:
    """Everything that defines a synthetic sequence (see the module doc).

    ``seed``: motion, expressions, camera and light; ``identity``: the
    performer (None: the seed). ``frames`` at ``fps``; ``width`` x ``height``
    pixels; ``lens_mm`` on a 36 mm wide sensor; ``neutral_seconds`` of
    neutral face (and still head) at the start. ``hold``: ``((key, weight),
    ...)`` of the avatar's keys to hold after the neutral part (ramping in
    over 0.3 s) instead of random expressions, blinks and gaze (for example
    ``(("mouthSmile_L", 1.0),)``: a one-sided smile). ``still``: keep the
    head at rest (no rotation or drift).
    """

    seed: int
    identity: int | None = None
    frames: int = 450
    fps: float = 30.0
    width: int = 640
    height: int = 360
    lens_mm: float = 50.0
    neutral_seconds: float = 1.0
    hold: tuple = ()
    still: bool = False

    @property
    def identity_seed(self) -> int:
        return self.seed if self.identity is None else int(self.identity)

    def key(self, avatar_digest: str) -> str:
        """The cache key: a hash of the renderer version, this spec and the avatar's contents."""
        text = json.dumps({"version": RENDERER_VERSION, "spec": dataclasses.asdict(self),
                           "avatar": avatar_digest}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclasses.dataclass
class SyntheticSequence:
    """A rendered sequence: its folder, video, spec and truth arrays (see the module doc)."""

    folder: pathlib.Path
    spec: SequenceSpec

    @property
    def video(self) -> pathlib.Path:
        return self.folder / "video.mp4"

    @property
    def truth(self) -> dict:
        """The truth file's arrays, ``{name: array}`` (loaded on each access)."""
        with np.load(self.folder / "truth.npz", allow_pickle=False) as data:
            return {k: data[k] for k in data.files}


def split_seeds(split: str, count: int) -> list[int]:
    """The first ``count`` seeds of ``"train"`` or ``"heldout"``."""
    seeds = {"train": TRAIN_SEEDS, "heldout": HELDOUT_SEEDS}.get(split)
    if seeds is None:
        raise ValueError(f"Unknown split '{split}': use train or heldout.")
    return list(seeds[:count])


def cache_dir() -> pathlib.Path:
    """The render cache folder (``$DDFA_SYNTHETIC_CACHE``, else under ``~/.cache``)."""
    env = os.environ.get("DDFA_SYNTHETIC_CACHE")
    if env:
        return pathlib.Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "ddfa-blender" / "synthetic"


def file_digest(path) -> str:
    """SHA-256 (hex) of a file's contents."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def render(spec: SequenceSpec, *, cache=None, avatar=DEFAULT_AVATAR, landmarks=DEFAULT_LANDMARKS,
           quiet: bool = False, nice: int = 10) -> SyntheticSequence:
    """The sequence of ``spec``, rendered now (in a child process) or taken from the cache.

    ``cache``: the cache folder (None: :func:`cache_dir`). ``avatar``,
    ``landmarks``: the ICT avatar and its 68 landmark vertices. ``quiet``:
    no progress on stderr. ``nice``: niceness added to the rendering process.
    Raises RuntimeError naming the problem if the render fails.
    """
    avatar, landmarks = pathlib.Path(avatar), pathlib.Path(landmarks)
    for path in (avatar, landmarks):
        if not path.is_file():
            raise RuntimeError(f"{path} not found: the synthetic heads need ../shared/data/avatars.")
    folder = pathlib.Path(cache or cache_dir()) / spec.key(file_digest(avatar) + file_digest(landmarks))
    if (folder / "truth.npz").is_file() and (folder / "video.mp4").is_file():
        return SyntheticSequence(folder, spec)
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(folder.parent)
    work = pathlib.Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        command = [sys.executable, str(pathlib.Path(__file__).resolve()), "--child",
                   json.dumps(dataclasses.asdict(spec)), str(work), str(avatar), str(landmarks)]
        if quiet:
            command.append("--quiet")
        done = subprocess.run(command, preexec_fn=(lambda: os.nice(nice)) if nice else None,
                              stdout=subprocess.PIPE, stderr=None if not quiet else subprocess.PIPE,
                              text=True, check=False)
        if done.returncode != 0:
            detail = (done.stderr or "").strip().splitlines()[-1:] if quiet else []
            raise RuntimeError(f"Rendering synthetic sequence {spec.seed} failed (exit "
                               f"{done.returncode}){': ' + detail[0] if detail else ''}.")
        try:
            os.replace(work, folder)
        except OSError:
            if not (folder / "truth.npz").is_file():  # someone else finished it meanwhile: keep theirs
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return SyntheticSequence(folder, spec)


def _remove_abandoned(cache: pathlib.Path, hours: float = 6.0) -> None:
    """Delete temporary render folders (``.<key>-*``) left by runs killed long ago."""
    import time

    for path in cache.glob(".*-*"):
        try:
            if path.is_dir() and time.time() - path.stat().st_mtime > hours * 3600:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


# -- curves (pure numpy, deterministic from the seeds) ----------------------------------

# The avatar's L/R keys, by base name; and the unsided ones.
SIDED = ("browDown", "browInnerUp", "browOuterUp", "cheekPuff", "cheekRaiser", "cheekSquint",
         "eyeBlink", "eyeLookDown", "eyeLookIn", "eyeLookOut", "eyeLookUp", "eyeSquint",
         "eyeWide", "mouthDimple", "mouthFrown", "mouthLowerDown", "mouthPress", "mouthSmile",
         "mouthStretch", "mouthUpperUp", "noseSneer", "PupilDilate")
UNSIDED = ("jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthFunnel",
           "mouthLeft", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper",
           "mouthShrugLower", "mouthShrugUpper")
ICT_KEYS = tuple(sorted([f"{b}_{s}" for b in SIDED for s in "LR"] + list(UNSIDED), key=str.lower))
# Events of one sided pair (both sides with some asymmetry, or one side alone).
PAIR_EVENTS = ("browDown", "browInnerUp", "browOuterUp", "cheekPuff", "cheekSquint", "eyeSquint",
               "eyeWide", "mouthDimple", "mouthFrown", "mouthLowerDown", "mouthPress",
               "mouthSmile", "mouthStretch", "mouthUpperUp", "noseSneer")
SINGLE_EVENTS = ("jawOpen", "jawForward", "mouthFunnel", "mouthPucker", "mouthRollLower",
                 "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthClose")
SIGNED_EVENTS = (("jawLeft", "jawRight"), ("mouthLeft", "mouthRight"))
COMBO_EVENTS = {
    "smile": {"mouthSmile": 1.0, "cheekSquint": 0.6, "eyeSquint": 0.35},
    "surprise": {"browInnerUp": 1.0, "browOuterUp": 0.9, "eyeWide": 0.8, "jawOpen": 0.35},
    "disgust": {"noseSneer": 1.0, "mouthUpperUp": 0.6, "browDown": 0.5},
    "sad": {"mouthFrown": 0.9, "browInnerUp": 0.8, "mouthShrugLower": 0.4},
}
SPLIT_KEYS = ("browInnerUp", "cheekPuff")
IDENTITY_KEYS = ("browDown", "browInnerUp", "mouthSmile", "mouthFrown", "mouthShrugUpper",
                 "noseSneer", "cheekRaiser", "PupilDilate", "eyeSquint", "mouthPress")


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _envelope(t, start, attack, hold, release):
    """0 -> 1 -> 0 with smoothstep ramps, over times ``t`` (seconds)."""
    rise = _smoothstep((t - start) / attack)
    fall = 1.0 - _smoothstep((t - start - attack - hold) / release)
    return np.minimum(rise, fall)


def _sided(base, rng, amplitude, weights, shape):
    """Add an event to both sides of a pair with some asymmetry, or to one side alone."""
    mode = rng.random()
    left, right = 1.0, 1.0
    if mode < 0.2:
        right = 0.0
    elif mode < 0.4:
        left = 0.0
    else:
        tilt = rng.uniform(-0.25, 0.25)
        left, right = 1.0 + tilt, 1.0 - tilt
    weights[f"{base}_L"] += amplitude * left * shape
    weights[f"{base}_R"] += amplitude * right * shape


def expression_curves(spec: SequenceSpec) -> dict[str, np.ndarray]:
    """``{ICT key: (N,) weight}`` of the expression (not the resting face), in [0, 1]."""
    rng = np.random.default_rng([spec.seed, 1])
    n = spec.frames
    t = np.arange(n) / spec.fps
    w = {k: np.zeros(n) for k in ICT_KEYS}
    if spec.hold:
        ramp = _smoothstep((t - spec.neutral_seconds) / 0.3)
        for key, value in spec.hold:
            if key not in w:
                raise ValueError(f"Unknown avatar key '{key}' in hold: use one of {', '.join(ICT_KEYS)}.")
            w[key] = float(value) * ramp
        return w
    signed = {pair: np.zeros(n) for pair in SIGNED_EVENTS}
    start = spec.neutral_seconds + rng.uniform(0.0, 0.3)
    # Every kind of event once, in a random order, then again: each sequence covers them all.
    kinds = [("pair", b) for b in PAIR_EVENTS] + [("single", b) for b in SINGLE_EVENTS] \
        + [("signed", p) for p in SIGNED_EVENTS] + [("combo", c) for c in COMBO_EVENTS] + [("speech", None)] * 3
    queue = []
    while start < t[-1]:
        if not queue:
            queue = [kinds[i] for i in rng.permutation(len(kinds))]
        kind, what = queue.pop()
        attack, hold, release = rng.uniform(0.15, 0.5), rng.uniform(0.0, 0.8), rng.uniform(0.15, 0.6)
        shape = _envelope(t, start, attack, hold, release)
        amplitude = rng.uniform(0.3, 1.0)
        if kind == "pair":
            _sided(what, rng, amplitude, w, shape)
        elif kind == "single":
            name = what
            if name == "mouthClose":  # lips held together while the jaw opens
                w["jawOpen"] += amplitude * shape
                w["mouthClose"] += amplitude * rng.uniform(0.5, 1.0) * shape
            else:
                w[name] += amplitude * shape
        elif kind == "signed":
            signed[what] += amplitude * rng.choice([-1.0, 1.0]) * shape
        elif kind == "combo":
            for base, share in COMBO_EVENTS[what].items():
                if base in UNSIDED:
                    w[base] += amplitude * share * shape
                else:
                    tilt = rng.uniform(-0.15, 0.15)
                    w[f"{base}_L"] += amplitude * share * (1 + tilt) * shape
                    w[f"{base}_R"] += amplitude * share * (1 - tilt) * shape
        else:  # speech-like: the jaw opening and closing at syllable rate, lips following
            rate = rng.uniform(3.0, 5.0)
            syllables = np.abs(np.sin(np.pi * rate * (t - start)))
            w["jawOpen"] += 0.5 * amplitude * syllables * shape
            w["mouthLowerDown_L"] += 0.3 * amplitude * syllables * shape
            w["mouthLowerDown_R"] += 0.3 * amplitude * syllables * shape
            w["mouthFunnel"] += rng.uniform(0.0, 0.3) * amplitude * (1 - syllables) * shape
        start += rng.uniform(0.2, 0.6)
    for (left, right), value in signed.items():
        w[left] += np.clip(value, 0.0, None)
        w[right] += np.clip(-value, 0.0, None)
    for key in w:
        w[key] = np.clip(w[key], 0.0, 1.0)
    w["mouthClose"] = np.minimum(w["mouthClose"], w["jawOpen"])
    _add_blinks(spec, rng, w)
    _add_gaze(spec, rng, t, w)
    neutral = t < spec.neutral_seconds
    for key in w:
        w[key][neutral] = 0.0
    return w


def _add_blinks(spec, rng, w) -> None:
    """Blinks of 4-8 frames every 1.5-5 s (both eyes, sometimes one)."""
    n = spec.frames
    frame = int(spec.fps * (spec.neutral_seconds + rng.uniform(0.3, 1.5)))
    while True:
        length = int(rng.integers(4, 9))
        if frame + length > n:  # no blink cut short by the end
            break
        phase = (np.arange(length) + 0.5) / length
        shape = np.clip(1.6 * np.sin(np.pi * phase), 0.0, 1.0)
        end = min(frame + length, n)
        sides = ("L", "R") if rng.random() > 0.1 else (("L",) if rng.random() < 0.5 else ("R",))
        for side in sides:
            key = f"eyeBlink_{side}"
            w[key][frame:end] = np.maximum(w[key][frame:end], shape[: end - frame])
        frame += int(spec.fps * rng.uniform(1.5, 5.0))
    for side in "LR":  # a closed lid has nothing to squint or widen
        for other in ("eyeWide", "eyeSquint"):
            w[f"{other}_{side}"] *= 1.0 - w[f"eyeBlink_{side}"]


def _smooth_moves(rng, t, start, low, high, first=0.0, spacing=(0.8, 2.0)):
    """A smooth curve over ``t`` moving between random values in [low, high]; ``first`` until ``start``."""
    knots_t, knots_v = [0.0, start], [first, first]
    while knots_t[-1] < t[-1]:
        knots_t.append(knots_t[-1] + rng.uniform(*spacing))
        knots_v.append(rng.uniform(low, high))
    knots_t, knots_v = np.array(knots_t), np.array(knots_v)
    index = np.clip(np.searchsorted(knots_t, t, side="right") - 1, 0, len(knots_t) - 2)
    fraction = (t - knots_t[index]) / (knots_t[index + 1] - knots_t[index])
    return knots_v[index] + (knots_v[index + 1] - knots_v[index]) * _smoothstep(fraction)


def _add_gaze(spec, rng, t, w) -> None:
    """Gaze as a smooth direction: horizontal (> 0: toward the performer's left) and vertical."""
    start = spec.neutral_seconds
    horizontal = _smooth_moves(rng, t, start, -0.8, 0.8, spacing=(0.5, 1.8))
    vertical = _smooth_moves(rng, t, start, -0.6, 0.6, spacing=(0.5, 1.8))
    w["eyeLookOut_L"] += np.clip(horizontal, 0, 1)
    w["eyeLookIn_R"] += np.clip(horizontal, 0, 1)
    w["eyeLookIn_L"] += np.clip(-horizontal, 0, 1)
    w["eyeLookOut_R"] += np.clip(-horizontal, 0, 1)
    for side in "LR":
        w[f"eyeLookUp_{side}"] += np.clip(vertical, 0, 1)
        w[f"eyeLookDown_{side}"] += np.clip(-vertical, 0, 1)


def head_motion(spec: SequenceSpec) -> dict[str, np.ndarray]:
    """Head rotation (``yaw_pitch_roll`` (N, 3) degrees) and pivot offset (``offset`` (N, 3) m)."""
    rng = np.random.default_rng([spec.seed, 2])
    t = np.arange(spec.frames) / spec.fps
    if spec.still:
        return {"yaw_pitch_roll": np.zeros((spec.frames, 3)), "offset": np.zeros((spec.frames, 3))}
    start = spec.neutral_seconds
    angles = np.stack([
        _smooth_moves(rng, t, start, -limit, limit, first=rng.uniform(-0.2, 0.2) * limit)
        for limit in (YAW_MAX, PITCH_MAX, ROLL_MAX)
    ], axis=1)
    base = np.array([rng.uniform(-0.06, 0.06), rng.uniform(-0.05, 0.05), rng.uniform(-0.04, 0.04)])
    drift = np.stack([
        _smooth_moves(rng, t, start, -limit, limit, spacing=(1.5, 3.0))
        for limit in (0.03, 0.05, 0.02)
    ], axis=1)
    return {"yaw_pitch_roll": angles, "offset": base + drift}


def rotation_matrix(yaw_pitch_roll_deg) -> np.ndarray:
    """``Rz(yaw) @ Rx(pitch) @ Ry(roll)`` (..., 3, 3) from angles (..., 3) in degrees."""
    a = np.radians(np.asarray(yaw_pitch_roll_deg, dtype=np.float64))
    yaw, pitch, roll = a[..., 0], a[..., 1], a[..., 2]
    one, zero = np.ones_like(yaw), np.zeros_like(yaw)
    rz = np.stack([np.stack([np.cos(yaw), -np.sin(yaw), zero], -1),
                   np.stack([np.sin(yaw), np.cos(yaw), zero], -1),
                   np.stack([zero, zero, one], -1)], -2)
    rx = np.stack([np.stack([one, zero, zero], -1),
                   np.stack([zero, np.cos(pitch), -np.sin(pitch)], -1),
                   np.stack([zero, np.sin(pitch), np.cos(pitch)], -1)], -2)
    ry = np.stack([np.stack([np.cos(roll), zero, np.sin(roll)], -1),
                   np.stack([zero, one, zero], -1),
                   np.stack([-np.sin(roll), zero, np.cos(roll)], -1)], -2)
    return rz @ rx @ ry


def yaw_pitch_roll(matrix) -> np.ndarray:
    """Inverse of :func:`rotation_matrix`: angles (..., 3) in degrees from rotations (..., 3, 3)."""
    m = np.asarray(matrix, dtype=np.float64)
    pitch = np.arcsin(np.clip(m[..., 2, 1], -1.0, 1.0))
    yaw = np.arctan2(-m[..., 0, 1], m[..., 1, 1])
    roll = np.arctan2(-m[..., 2, 0], m[..., 2, 2])
    return np.degrees(np.stack([yaw, pitch, roll], axis=-1))


def identity_params(spec: SequenceSpec) -> dict:
    """The performer of ``spec.identity_seed``: shape, colours and resting face (JSON-ready)."""
    rng = np.random.default_rng([spec.identity_seed, 3])
    skins = ((0.89, 0.74, 0.64), (0.80, 0.62, 0.50), (0.70, 0.52, 0.40), (0.56, 0.40, 0.30),
             (0.42, 0.29, 0.21))
    irises = ((0.30, 0.18, 0.10), (0.20, 0.33, 0.50), (0.28, 0.38, 0.24), (0.15, 0.10, 0.07))
    skin = np.array(skins[rng.integers(len(skins))]) * rng.uniform(0.92, 1.06, 3)
    resting = {}
    for base in rng.choice(IDENTITY_KEYS, size=int(rng.integers(0, 4)), replace=False):
        resting[str(base)] = float(rng.uniform(0.05, 0.25))
    return {
        "scale": float(rng.uniform(0.92, 1.08)),
        "stretch": [float(v) for v in rng.uniform(0.93, 1.07, 3)],
        "bumps": [{"landmark": int(rng.integers(68)), "offset_m": [float(v) for v in rng.uniform(-0.01, 0.01, 3)],
                   "radius_m": float(rng.uniform(0.015, 0.035)),
                   "displacement_m": [float(v) for v in rng.uniform(-0.004, 0.004, 3)]} for _ in range(5)],
        "skin": [float(v) for v in np.clip(skin, 0, 1)],
        "brow_darkness": float(rng.uniform(0.35, 0.8)),
        "lip_tint": float(rng.uniform(0.15, 0.4)),
        "iris": [float(v) for v in irises[rng.integers(len(irises))]],
        "resting": resting,
    }


def look_params(spec: SequenceSpec, studio_lights) -> dict:
    """Camera distance, light and background of ``spec`` (JSON-ready)."""
    rng = np.random.default_rng([spec.seed, 4])
    return {
        "distance_m": float(rng.uniform(0.7, 1.2)),
        "light": str(studio_lights[rng.integers(len(studio_lights))]),
        "light_rotation_deg": float(rng.uniform(-70.0, 70.0)),
        "background": [float(v) for v in rng.uniform(0.15, 0.75) * rng.uniform(0.8, 1.2, 3)],
        "cavity": bool(rng.random() < 0.5),
    }


# -- rendering (inside the child process: needs bpy) -----------------------------------

HIDDEN_MATERIALS = ("M_LacrimalFluid", "M_EyeBlend", "M_EyeOcclusion")
EYES = (("M_ScleraLeft", "M_IrisLeft"), ("M_ScleraRight", "M_IrisRight"))
FIXED_COLOURS = {"M_GumsTongue": (0.55, 0.22, 0.22), "M_Teeth": (0.86, 0.83, 0.74),
                 "M_EyeLashes": (0.05, 0.04, 0.04)}
SCLERA = (0.88, 0.86, 0.82)
GAZE_DEG = (30.0, 25.0)  # eyeball turn (horizontal, vertical) at eyeLook* = 1
IRIS_RADIUS_M, PUPIL_RADIUS_M = 0.0058, 0.0019


def _srgb_to_linear(c):
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _vertex_materials(mesh) -> np.ndarray:
    """Material index per vertex (the last polygon using it wins)."""
    n = len(mesh.polygons)
    material = np.empty(n, np.int32)
    mesh.polygons.foreach_get("material_index", material)
    start, total = np.empty(n, np.int32), np.empty(n, np.int32)
    mesh.polygons.foreach_get("loop_start", start)
    mesh.polygons.foreach_get("loop_total", total)
    loops = np.empty(len(mesh.loops), np.int32)
    mesh.loops.foreach_get("vertex_index", loops)
    out = np.full(len(mesh.vertices), -1, np.int32)
    out[loops] = np.repeat(material, total)
    return out


def _eyes(co, by_vertex, names):
    """The eyes' geometry: per eye (left, right), the eyeball mesh's rows, centre and forward axis.

    In the ICT head the material ``M_Iris*`` is the whole eyeball (iris at its
    front, about 10.5 mm from its centre) and ``M_Sclera*`` a clear shell over
    it (a cornea a real shader sees through).
    """
    index = {name: i for i, name in enumerate(names)}
    eyes = []
    for shell, ball in EYES:
        if shell not in index or ball not in index:
            continue
        rows = np.flatnonzero(by_vertex == index[ball])
        centre = co[by_vertex == index[shell]].mean(axis=0)
        front = co[rows][np.argmax(co[rows] @ np.array([0.0, 0.0, 1.0]))]
        # The forward axis: through the centre and the centroid of the eyeball's front cap.
        cap = co[rows][(co[rows] - centre) @ ((front - centre) / np.linalg.norm(front - centre)) > 0.009]
        forward = cap.mean(axis=0) - centre
        eyes.append((rows, centre, forward / np.linalg.norm(forward)))
    return eyes


def _hidden_vertices(co, by_vertex, names) -> tuple[np.ndarray, np.ndarray]:
    """Vertices to collapse: the eye shells (see-through in a real shader) and the eyeballs
    (drawn by their own objects, which turn with the gaze), and where to.

    Returns a mask (V,) and targets (V, 3): the centre of the nearer eyeball.
    """
    index = {name: i for i, name in enumerate(names)}
    shells = [index[m] for m in HIDDEN_MATERIALS + tuple(s for pair in EYES for s in pair) if m in index]
    hidden = np.isin(by_vertex, shells)
    centres = np.array([centre for _, centre, _ in _eyes(co, by_vertex, names)])
    target = np.zeros_like(co)
    if len(centres):
        nearest = np.argmin(np.linalg.norm(co[:, None, :] - centres[None], axis=2), axis=1)
        target = centres[nearest]
    return hidden, target


def identity_warp(co, by_vertex, names, landmarks, identity) -> np.ndarray:
    """Displacements (V, 3) of the rest mesh (local frame, metres) that give the performer's proportions.

    A stretch about the face's centre and smooth Gaussian bumps (mirrored
    across the face's midline x = 0), minus the warp's best rigid motion over
    the face (Kabsch), so the warped face keeps the rest pose: the truth
    rotation is the face's own. Eyeballs move rigidly with their centres.
    """
    index = {name: i for i, name in enumerate(names)}
    lm = co[landmarks]
    centre = lm.mean(axis=0)
    warp = (co - centre) * (np.array(identity["stretch"]) - 1.0)
    for bump in identity["bumps"]:
        middle = lm[bump["landmark"]] + np.array(bump["offset_m"])
        displacement = np.array(bump["displacement_m"])
        pairs = [(middle, displacement)]
        if abs(middle[0]) > 0.01:
            pairs.append((middle * [-1, 1, 1], displacement * [-1, 1, 1]))
        else:
            pairs = [(middle * [0, 1, 1], displacement * [0, 1, 1])]
        for at, move in pairs:
            weight = np.exp(-np.sum((co - at) ** 2, axis=1) / (2 * bump["radius_m"] ** 2))
            warp += weight[:, None] * move
    face = by_vertex == index.get("M_Face", -1)
    rotation, shift = _rigid_fit(co[face], co[face] + warp[face])
    warp = (co + warp - shift) @ rotation - co  # undo the fitted motion exactly
    for rows, ball, _ in _eyes(co, by_vertex, names):
        near = np.linalg.norm(co - ball, axis=1) < 0.0135
        eye = near & ~face
        warp[eye] = warp[rows].mean(axis=0)
    return warp


def _rigid_fit(a, b):
    """Rotation and translation (Kabsch) with ``b ~ a @ R.T + t``."""
    ca, cb = a.mean(axis=0), b.mean(axis=0)
    u, _, vt = np.linalg.svd((a - ca).T @ (b - cb))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rotation = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return rotation, cb - ca @ rotation.T


def gaze_angles(ict_weights, side: str) -> tuple[float, float, float]:
    """Euler XYZ (radians) of one eyeball in the head's local frame (y up, z forward) for a frame's key weights.

    The avatar's ``eyeLook*`` keys move only the lids; the eyeball turns by
    ``GAZE_DEG`` (horizontal, vertical) at weight 1: toward +x (the
    performer's left) for ``eyeLookOut_L`` and ``eyeLookIn_R``, up for
    ``eyeLookUp``.
    """
    w = dict(zip(ICT_KEYS, ict_weights))
    toward_left = w[f"eyeLookOut_{side}"] - w[f"eyeLookIn_{side}"]
    if side == "R":
        toward_left = -toward_left
    up = w[f"eyeLookUp_{side}"] - w[f"eyeLookDown_{side}"]
    return (-math.radians(GAZE_DEG[1] * up), math.radians(GAZE_DEG[0] * toward_left), 0.0)


def _eye_objects(bpy, head, basis, warp, albedo, by_vertex, names) -> list:
    """The two eyeballs as meshes parented to the head, pivoting at their centres: [left, right]."""
    mesh = head.data
    n = len(mesh.polygons)
    start, total = np.empty(n, np.int32), np.empty(n, np.int32)
    mesh.polygons.foreach_get("loop_start", start)
    mesh.polygons.foreach_get("loop_total", total)
    loops = np.empty(len(mesh.loops), np.int32)
    mesh.loops.foreach_get("vertex_index", loops)
    objects = []
    for (rows, centre, _), side in zip(_eyes(basis, by_vertex, names), "LR"):
        keep = np.zeros(len(basis), bool)
        keep[rows] = True
        remap = np.full(len(basis), -1)
        remap[rows] = np.arange(len(rows))
        faces = []
        for first, count in zip(start, total):
            corners = loops[first:first + count]
            if keep[corners].all():
                faces.append([int(v) for v in remap[corners]])
        origin = centre + warp[rows].mean(axis=0)
        data = bpy.data.meshes.new(f"synthetic_eye_{side}")
        data.from_pydata([tuple(v) for v in basis[rows] + warp[rows] - origin], [], faces)
        data.shade_smooth()
        colours = data.color_attributes.new(name="synthetic_albedo", type="FLOAT_COLOR", domain="POINT")
        colours.data.foreach_set("color", albedo[rows].ravel())
        data.color_attributes.active_color = colours
        eye = bpy.data.objects.new(f"synthetic_eye_{side}", data)
        bpy.context.scene.collection.objects.link(eye)
        eye.parent = head
        eye.location = tuple(origin)
        eye.rotation_mode = "XYZ"
        objects.append(eye)
    return objects


def _inside_polygon(points, polygon) -> np.ndarray:
    """Even-odd test: which 2-D ``points`` (P, 2) lie inside ``polygon`` (K, 2)."""
    x, y = points[:, 0:1], points[:, 1:2]
    a, b = polygon, np.roll(polygon, -1, axis=0)
    crosses = (a[:, 1] > y) != (b[:, 1] > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        at = a[:, 0] + (y - a[:, 1]) * (b[:, 0] - a[:, 0]) / (b[:, 1] - a[:, 1])
    return (crosses & (x < at)).sum(axis=1) % 2 == 1


def _albedo(co, by_vertex, names, landmarks, identity) -> np.ndarray:
    """Per-vertex linear RGBA: skin with brows and lips painted, eyes, teeth (mesh-local frame)."""
    index = {name: i for i, name in enumerate(names)}
    skin = np.array(identity["skin"])
    colour = np.tile(skin, (len(co), 1))
    for name, rgb in FIXED_COLOURS.items():
        if name in index:
            colour[by_vertex == index[name]] = rgb
    for rows, centre, forward in _eyes(co, by_vertex, names):
        offset = co[rows] - centre
        depth, radial = offset @ forward, np.linalg.norm(np.cross(offset, forward), axis=1)
        front = depth > 0
        iris = np.clip((IRIS_RADIUS_M - radial) / 0.0006, 0, 1) * front
        pupil = np.clip((PUPIL_RADIUS_M - radial) / 0.0004, 0, 1) * front
        limbus = np.exp(-(((radial - IRIS_RADIUS_M) / 0.0006) ** 2)) * front
        rgb = np.tile(np.array(SCLERA), (len(rows), 1))
        rgb = rgb * (1 - iris[:, None]) + np.array(identity["iris"]) * iris[:, None]
        rgb = rgb * (1 - 0.6 * limbus[:, None])
        colour[rows] = rgb * (1 - pupil[:, None]) + 0.02 * pupil[:, None]
    face = np.isin(by_vertex, [index[m] for m in ("M_Face", "M_BackHead") if m in index])
    lm = co[landmarks]
    xy = co[:, :2]
    # Brows: a band along each brow's landmarks (iBUG 17-21, 22-26), a little below them.
    brow_weight = np.zeros(len(co))
    for ids in (range(17, 22), range(22, 27)):
        line = lm[list(ids), :2] - np.array([0.0, 0.003])
        distance = np.full(len(co), np.inf)
        for a, b in zip(line[:-1], line[1:]):
            ab = b - a
            s = np.clip(((xy - a) @ ab) / (ab @ ab), 0, 1)
            distance = np.minimum(distance, np.linalg.norm(xy - (a + s[:, None] * ab), axis=1))
        front = co[:, 2] > lm[list(ids), 2].min() - 0.02
        brow_weight = np.maximum(brow_weight, np.where(front, np.clip((0.0065 - distance) / 0.003, 0, 1), 0))
    hair = skin * (1.0 - identity["brow_darkness"])
    colour = np.where((face * brow_weight)[:, None] > 0, colour * (1 - brow_weight[:, None]) + hair * brow_weight[:, None], colour)
    # Lips: inside the outer lip contour (iBUG 48-59) grown by 1.5 mm, front-facing.
    contour = lm[48:60, :2]
    grown = contour + 0.0015 * (contour - contour.mean(axis=0)) / np.linalg.norm(contour - contour.mean(axis=0), axis=1, keepdims=True)
    inside = _inside_polygon(xy, grown) & face & (co[:, 2] > lm[48:60, 2].min() - 0.015)
    lip = skin * np.array([0.95, 0.62, 0.62]) * (1.0 - identity["lip_tint"]) + np.array([0.6, 0.2, 0.2]) * identity["lip_tint"]
    colour[inside] = lip
    rgba = np.concatenate([_srgb_to_linear(np.clip(colour, 0, 1)), np.ones((len(co), 1))], axis=1)
    return rgba.astype(np.float32)


def _render_child(spec: SequenceSpec, out: pathlib.Path, avatar: str, landmark_file: str, quiet: bool) -> None:
    import bpy
    import mathutils

    landmarks = np.array(json.load(open(landmark_file, encoding="utf-8"))["landmarks68_vertex_indices"])
    bpy.ops.wm.open_mainfile(filepath=str(avatar), load_ui=False)
    scene = bpy.context.scene
    head = bpy.data.objects[AVATAR_OBJECT]
    mesh = head.data
    blocks = mesh.shape_keys.key_blocks
    missing = [k for k in ICT_KEYS if k not in blocks]
    if missing:
        raise RuntimeError(f"The avatar lacks keys {missing}.")
    for obj in list(scene.objects):
        if obj is not head:
            obj.hide_render = True
    names = [m.name if m is not None else "" for m in mesh.materials]
    by_vertex = _vertex_materials(mesh)
    n_vert = len(mesh.vertices)
    basis = np.empty(n_vert * 3, np.float32)
    blocks[0].data.foreach_get("co", basis)
    basis = basis.reshape(-1, 3).astype(np.float64)

    identity = identity_params(spec)
    lights = sorted(l.name for l in bpy.context.preferences.studio_lights if l.type == "STUDIO")
    look = look_params(spec, lights)

    albedo = _albedo(basis, by_vertex, names, landmarks, identity)
    warp = identity_warp(basis, by_vertex, names, landmarks, identity)
    eyes = _eye_objects(bpy, head, basis, warp, albedo, by_vertex, names)
    # Eye shells and eyeballs collapse into the eyeball centres in every key (vertex order unchanged).
    hidden, target = _hidden_vertices(basis, by_vertex, names)
    for block in blocks:
        co = np.empty(n_vert * 3, np.float32)
        block.data.foreach_get("co", co)
        co = co.reshape(-1, 3)
        co[hidden] = target[hidden]
        block.data.foreach_set("co", co.ravel())
    mesh.shade_smooth()
    mesh.update()

    colours = mesh.color_attributes.new(name="synthetic_albedo", type="FLOAT_COLOR", domain="POINT")
    colours.data.foreach_set("color", albedo.ravel())
    mesh.color_attributes.active_color = colours
    if hasattr(mesh.color_attributes, "render_color_index"):
        mesh.color_attributes.render_color_index = mesh.color_attributes.active_color_index

    # Proportions: the same displacement added to every key (expressions unchanged).
    for block in blocks:
        co = np.empty(n_vert * 3, np.float32)
        block.data.foreach_get("co", co)
        block.data.foreach_set("co", (co.reshape(-1, 3) + warp).ravel())
    mesh.update()

    # Camera: at the face's height, looking along +Y (Blender's capture convention).
    rest_world = np.array(head.matrix_world)
    to_world = lambda p: rest_world[:3, :3] @ p + rest_world[:3, 3]  # noqa: E731
    lm_rest = np.array([to_world(p) for p in basis[landmarks]])
    face_centre = lm_rest.mean(axis=0)
    pivot_rest = face_centre + np.array([0.0, 0.09, -0.05])  # behind and below the face: the neck
    camera_data = bpy.data.cameras.new("synthetic_camera")
    camera_data.lens = spec.lens_mm
    camera_data.sensor_width = SENSOR_MM
    camera_data.sensor_fit = "HORIZONTAL"
    camera = bpy.data.objects.new("synthetic_camera", camera_data)
    scene.collection.objects.link(camera)
    camera_location = face_centre + np.array([0.0, -look["distance_m"], 0.0])
    camera.location = tuple(camera_location)
    camera.rotation_mode = "QUATERNION"
    camera_rotation = np.array([math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0])
    camera.rotation_quaternion = tuple(camera_rotation)
    scene.camera = camera

    render = scene.render
    render.engine = "BLENDER_WORKBENCH"
    render.resolution_x, render.resolution_y, render.resolution_percentage = spec.width, spec.height, 100
    render.film_transparent = False
    render.image_settings.file_format = "PNG"
    render.image_settings.color_mode = "RGB"
    render.image_settings.compression = 0
    scene.display.render_aa = "FXAA"
    scene.view_settings.view_transform = "Standard"  # colours as painted (sRGB), not AgX's
    scene.view_settings.look = "None"
    shading = scene.display.shading
    shading.light = "STUDIO"
    shading.studio_light = look["light"]
    shading.studiolight_rotate_z = math.radians(look["light_rotation_deg"])
    shading.color_type = "VERTEX"
    shading.show_cavity = look["cavity"]
    shading.show_specular_highlight = True
    world = bpy.data.worlds.new("synthetic_background")
    world.color = tuple(_srgb_to_linear(look["background"]))
    scene.world = world
    scene.render.fps = int(round(spec.fps))

    curves = expression_curves(spec)
    motion = head_motion(spec)
    resting = np.zeros(len(ICT_KEYS))
    for base, value in identity["resting"].items():
        for k, key in enumerate(ICT_KEYS):
            if key == base or key in (f"{base}_L", f"{base}_R"):
                resting[k] = value
    expression = np.stack([curves[k] for k in ICT_KEYS], axis=1)
    expression = np.minimum(expression, 1.0 - resting)  # the keys stop at 1
    rotations = rotation_matrix(motion["yaw_pitch_roll"])
    scale = identity["scale"]
    n = spec.frames
    focal = spec.width * spec.lens_mm / SENSOR_MM
    centre = np.array([(spec.width - 1) / 2.0, (spec.height - 1) / 2.0])
    lm_pixels = np.zeros((n, 68, 2))
    lm_camera = np.zeros((n, 68, 3))
    pivots = np.zeros((n, 3))
    frames_dir = out / "frames"
    frames_dir.mkdir()
    for f in range(n):
        for k, key in enumerate(ICT_KEYS):
            blocks[key].value = float(expression[f, k] + resting[k])
        pivot = pivot_rest + motion["offset"][f]
        linear = rotations[f] * scale
        matrix = np.eye(4)
        matrix[:3, :3] = linear @ rest_world[:3, :3]
        matrix[:3, 3] = pivot + linear @ (rest_world[:3, 3] - pivot_rest)
        head.matrix_world = mathutils.Matrix(matrix.tolist())
        for eye, side in zip(eyes, "LR"):
            eye.rotation_euler = gaze_angles(expression[f], side)
        evaluated = head.evaluated_get(bpy.context.evaluated_depsgraph_get())
        world = np.array(evaluated.matrix_world)
        points = np.array([tuple(evaluated.data.vertices[int(i)].co) for i in landmarks])
        points = points @ world[:3, :3].T + world[:3, 3]
        rel = points - camera_location
        cam = np.stack([rel[:, 0], -rel[:, 2], rel[:, 1]], axis=1)  # x right, y down, z forward
        lm_camera[f] = cam
        lm_pixels[f] = centre + focal * cam[:, :2] / cam[:, 2:3]
        pivots[f] = pivot
        render.filepath = str(frames_dir / f"{f:05d}.png")
        bpy.ops.render.render(write_still=True)
        if not quiet and (f % 25 == 0 or f == n - 1):
            print(f"synthetic {spec.seed}: frame {f + 1}/{n}", file=sys.stderr, flush=True)

    _encode(frames_dir, out / "video.mp4", spec)
    shutil.rmtree(frames_dir)
    quaternions = np.array([tuple(mathutils.Matrix(r.tolist()).to_quaternion()) for r in rotations])
    from ddfa_blender.core.arkit import ARKIT_NAMES, arkit_name  # noqa: PLC0415

    arkit = np.zeros((n, len(ARKIT_NAMES)), np.float32)
    for name_index, name in enumerate(ARKIT_NAMES):
        columns = [k for k, key in enumerate(ICT_KEYS) if arkit_name(key) == name]
        if name in SPLIT_KEYS:  # the avatar splits these in two: the truth is their mean
            columns = [ICT_KEYS.index(f"{name}_L"), ICT_KEYS.index(f"{name}_R")]
        if columns:
            arkit[:, name_index] = expression[:, columns].mean(axis=1)
    params = {"spec": dataclasses.asdict(spec), "identity": identity, "look": look,
              "renderer_version": RENDERER_VERSION, "blender": bpy.app.version_string}
    np.savez_compressed(
        out / "truth.npz",
        arkit=arkit, arkit_names=np.array(ARKIT_NAMES), driven=np.array([n != "tongueOut" for n in ARKIT_NAMES]),
        ict_names=np.array(ICT_KEYS), ict_weights=expression.astype(np.float32),
        ict_identity=resting.astype(np.float32),
        rotation=quaternions, yaw_pitch_roll=motion["yaw_pitch_roll"], pivot=pivots,
        landmarks=lm_pixels.astype(np.float32), landmarks_camera=lm_camera.astype(np.float32),
        image_size=np.array([spec.width, spec.height]), focal_px=np.float64(focal),
        principal_point=centre, lens_mm=np.float64(spec.lens_mm), sensor_mm=np.float64(SENSOR_MM),
        camera_location=camera_location, camera_rotation=camera_rotation,
        fps=np.float64(spec.fps), frame=np.arange(n), time=np.arange(n) / spec.fps,
        params=np.array(json.dumps(params)),
    )
    with open(out / "params.json", "w", encoding="utf-8") as handle:
        json.dump(params, handle, indent=1)


def _encode(frames_dir: pathlib.Path, video: pathlib.Path, spec: SequenceSpec) -> None:
    """PNG frames -> H.264 (ffmpeg, near-lossless), or OpenCV's mp4v when ffmpeg is missing."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        subprocess.run(
            [ffmpeg, "-loglevel", "error", "-y", "-framerate", f"{spec.fps:g}", "-i",
             str(frames_dir / "%05d.png"), "-c:v", "libx264", "-preset", "medium", "-crf", "12",
             "-pix_fmt", "yuv420p", str(video)],
            check=True,
        )
        return
    import cv2

    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), spec.fps, (spec.width, spec.height))
    for path in sorted(frames_dir.glob("*.png")):
        writer.write(cv2.imread(str(path)))
    writer.release()


# -- command line ----------------------------------------------------------------------


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        fields = json.loads(argv[1])
        fields["hold"] = tuple(tuple(pair) for pair in fields.get("hold", ()))
        spec = SequenceSpec(**fields)
        _render_child(spec, pathlib.Path(argv[2]), argv[3], argv[4], quiet="--quiet" in argv)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, action="append", default=[], help="sequence seed (repeatable)")
    parser.add_argument("--split", choices=["train", "heldout"], help="take seeds from this split")
    parser.add_argument("--count", type=int, default=1, help="how many seeds of --split")
    parser.add_argument("--identity", type=int, help="performer seed (default: each sequence's own)")
    parser.add_argument("--frames", type=int, default=SequenceSpec.frames)
    parser.add_argument("--fps", type=float, default=SequenceSpec.fps)
    parser.add_argument("--size", type=_size, default=(SequenceSpec.width, SequenceSpec.height),
                        help="WIDTHxHEIGHT (default 640x360)")
    parser.add_argument("--cache", help="cache folder (default: $DDFA_SYNTHETIC_CACHE or ~/.cache/ddfa-blender/synthetic)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    seeds = list(args.seed) + (split_seeds(args.split, args.count) if args.split else [])
    if not seeds:
        parser.error("give --seed N or --split train|heldout")
    for seed in seeds:
        spec = SequenceSpec(seed=seed, identity=args.identity, frames=args.frames, fps=args.fps,
                            width=args.size[0], height=args.size[1])
        try:
            sequence = render(spec, cache=args.cache, quiet=args.quiet)
        except RuntimeError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(sequence.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
