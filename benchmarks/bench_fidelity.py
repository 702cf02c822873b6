"""Expression fidelity against known truth: our ARKit solve versus MediaPipe's blendshapes alone.

Usage::

    python benchmarks/bench_fidelity.py [--count 3] [--frames 450] [--models DIR] [--keep DIR]

For each held-out synthetic sequence (:mod:`synthetic_heads`, seeds 9000 and
up: never rendered for tuning or training):

1. render it (cached by its parameters: a second run renders nothing);
2. capture, bake and retarget it onto the same ICT head with the project's
   own command line, as a user would::

       scripts/capture.py --input video.mp4 --take take.npz --output avatar.blend \\
           --retarget ict_facekit_arkit.blend:ICT_Head --quiet

3. read the retargeted avatar's shape-key values and rotation on every frame
   of ``avatar.blend`` (the ``bpy`` module);
4. compare with the truth, pooling the frames of all sequences: per ARKit
   channel the Pearson r and the mean absolute error of (a) **ours**, the
   avatar's keys, and (b) **MediaPipe** alone, its raw blendshape scores from
   the same take (what a MediaPipe-only tool keys); channel mixing (r of an
   estimate against the truth of a channel it is often confused with:
   :data:`MIXING`); per group (jaw, mouth,
   brows, eyes: blink/squint/wide, gaze, cheeks, nose) the mean r over the
   group's channels that move in the truth; head rotation error (geodesic
   angle between the avatar's rotation and the true one, mean and max) and
   the yaw gain (least-squares slope of estimated on true yaw).

A channel that moves in the truth (standard deviation > 0.02) but not in an
estimate counts r = 0 for that estimate. ``fps_eyes``: frames over seconds of
the CLI captures' per-frame loop (the take's ``loop_seconds``: MediaPipe on,
start-up excluded), on this machine at its current load.

Last line: ``mean_r_ours=<f> mean_r_mediapipe=<f> groups_ours_better=<n>/<m>
head_err_deg=<f> fps_eyes=<f>`` where a group counts when ours is at least
as good as MediaPipe's (mean r).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import synthetic_heads as sh  # noqa: E402

GROUPS = {
    "jaw": ("jawOpen", "jawForward", "jawLeft", "jawRight"),
    "mouth": ("mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
              "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
              "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
              "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
              "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
              "mouthUpperUpLeft", "mouthUpperUpRight"),
    "brows": ("browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight"),
    "eyes": ("eyeBlinkLeft", "eyeBlinkRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft",
             "eyeWideRight"),
    "gaze": ("eyeLookUpLeft", "eyeLookUpRight", "eyeLookDownLeft", "eyeLookDownRight",
             "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight"),
    "cheeks": ("cheekPuff", "cheekSquintLeft", "cheekSquintRight"),
    "nose": ("noseSneerLeft", "noseSneerRight"),
}
MOVES = 0.02  # a channel moves in the truth when its standard deviation is above this
# Channel mixing: (estimated channel, truth of another channel it must not follow).
MIXING = (("mouthLowerDownLeft", "jawOpen"), ("mouthLowerDownRight", "jawOpen"), ("jawLeft", "jawOpen"),
          ("mouthRollLower", "mouthSmileLeft"), ("mouthRollUpper", "mouthSmileRight"),
          ("mouthFrownLeft", "cheekPuff"), ("mouthFrownRight", "cheekPuff"))
AVATAR_OBJECT = sh.AVATAR_OBJECT


def pearson(estimate, truth) -> float:
    """Pearson r; 0 when the estimate is constant (it shows nothing of a moving truth)."""
    estimate, truth = np.asarray(estimate, np.float64), np.asarray(truth, np.float64)
    if estimate.std() < 1e-9 or truth.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(estimate, truth)[0, 1])


def channel_scores(estimate: dict, truth: dict) -> dict:
    """``{channel: (r, mae)}`` for the channels that move in ``truth`` (``{name: (N,)}`` each)."""
    out = {}
    for name, values in truth.items():
        if values.std() <= MOVES:
            continue
        guess = np.asarray(estimate.get(name, np.zeros_like(values)), np.float64)
        out[name] = (pearson(guess, values), float(np.mean(np.abs(guess - values))))
    return out


def group_means(scores: dict) -> dict:
    """``{group: mean r}`` over each group's channels present in ``scores`` (groups without any left out)."""
    out = {}
    for group, names in GROUPS.items():
        rs = [scores[n][0] for n in names if n in scores]
        if rs:
            out[group] = float(np.mean(rs))
    return out


def geodesic_deg(a, b) -> np.ndarray:
    """Angles (N,) in degrees between rotation matrices a and b (N, 3, 3)."""
    cosine = (np.einsum("nij,nij->n", a, b) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def yaw_gain(estimate, truth) -> float:
    """Least-squares slope of estimated yaw on true yaw (rotation matrices (N, 3, 3)); NaN for a still head."""
    yaw_e, yaw_t = sh.yaw_pitch_roll(estimate)[:, 0], sh.yaw_pitch_roll(truth)[:, 0]
    if np.ptp(yaw_t) < 1.0:
        return float("nan")
    return float(np.polyfit(yaw_t, yaw_e, 1)[0])


def capture_and_retarget(video, folder, models, avatar) -> tuple[pathlib.Path, pathlib.Path]:
    """Run the project's CLI on ``video``; (take, retargeted .blend). Raises on failure."""
    take, blend = folder / "take.npz", folder / "avatar.blend"
    command = [sys.executable, str(ROOT / "scripts" / "capture.py"), "--input", str(video),
               "--take", str(take), "--output", str(blend), "--retarget", f"{avatar}:{AVATAR_OBJECT}",
               "--quiet"]
    if models:
        command += ["--models", str(models)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["(no message)"]
        raise RuntimeError(f"capture.py failed on {video}: {lines[-1]}")
    return take, blend


def read_avatar(blend, frames: int) -> tuple[dict, np.ndarray]:
    """The avatar's ARKit weights ``{name: (F,)}`` and rotations (F, 3, 3) from its rest, per video frame."""
    import bpy

    from ddfa_blender.core.arkit import arkit_name

    bpy.ops.wm.open_mainfile(filepath=str(blend))
    scene = bpy.context.scene
    avatar = next(o for o in bpy.data.objects if o.name.startswith(AVATAR_OBJECT) and o.type == "MESH")
    rest = np.array(avatar.get("ddfa_rest_rotation", (1.0, 0.0, 0.0, 0.0)), dtype=np.float64)
    from ddfa_blender.core.pose import quaternion_to_matrix

    rest_matrix = quaternion_to_matrix(rest)
    blocks = avatar.data.shape_keys.key_blocks
    columns = {}
    for block in list(blocks)[1:]:
        name = arkit_name(block.name)
        base = block.name.rsplit("_", 1)[0]
        if name is None and base in sh.SPLIT_KEYS:
            name = base
        if name is not None:
            columns.setdefault(name, []).append(block.name)
    values = {name: np.zeros(frames) for name in columns}
    rotations = np.zeros((frames, 3, 3))
    for f in range(frames):
        scene.frame_set(scene.frame_start + f)
        for name, keys in columns.items():
            values[name][f] = np.mean([blocks[k].value for k in keys])
        world = np.array(avatar.matrix_world.to_3x3().normalized())
        rotations[f] = world @ rest_matrix.T
    return values, rotations


def mediapipe_alone(take_path) -> dict:
    """MediaPipe's raw blendshape scores ``{ARKit name: (N,)}`` of track 0 (what a MediaPipe-only tool keys)."""
    from ddfa_blender.core.arkit import _mediapipe
    from ddfa_blender.core.take import Take

    rows = Take.load(str(take_path)).for_track(0)
    scores = _mediapipe(rows) or {}
    return {name: np.nan_to_num(v, nan=0.0) for name, v in scores.items()}


@dataclasses.dataclass
class SequenceResult:
    """One sequence measured: per driven ARKit channel ``{name: (F,)}`` of the truth, our
    retargeted avatar and MediaPipe's raw scores; rotations (F, 3, 3) estimated and true;
    the capture's frames and per-frame loop seconds."""

    truth: dict
    ours: dict
    mediapipe: dict
    rotation: np.ndarray
    true_rotation: np.ndarray
    frames: int
    loop_seconds: float


def measure_sequence(sequence, folder, models=None, avatar=sh.DEFAULT_AVATAR) -> SequenceResult:
    """Capture, retarget and read back one rendered :class:`synthetic_heads.SyntheticSequence`."""
    from ddfa_blender.core.arkit import ARKIT_NAMES
    from ddfa_blender.core.pose import quaternion_to_matrix
    from ddfa_blender.core.take import Take

    t = sequence.truth
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    take_path, blend = capture_and_retarget(sequence.video, folder, models, avatar)
    take = Take.load(str(take_path))
    n = len(t["frame"])
    values, rotations = read_avatar(blend, n)
    scores = mediapipe_alone(take_path)
    truth, ours, mediapipe = {}, {}, {}
    for i, name in enumerate(ARKIT_NAMES):
        if t["driven"][i]:
            truth[name] = t["arkit"][:, i]
            ours[name] = values.get(name, np.zeros(n))
            mediapipe[name] = scores.get(name, np.zeros(n))[:n]
    return SequenceResult(truth, ours, mediapipe, rotations, quaternion_to_matrix(t["rotation"]),
                          len(take.frames()), float(take.meta.get("loop_seconds", np.nan)))


def report(results, out=sys.stdout) -> str:
    """Print the per-channel and per-group tables and the head error; returns the last line."""
    def pooled(field):
        return {k: np.concatenate([getattr(r, field)[k] for r in results]) for k in results[0].truth}

    truth = pooled("truth")
    ours_scores = channel_scores(pooled("ours"), truth)
    mp_scores = channel_scores(pooled("mediapipe"), truth)
    print(f"\n{'channel':22s} {'r ours':>7s} {'r mp':>7s} {'mae ours':>9s} {'mae mp':>8s}", file=out)
    for names in GROUPS.values():
        for name in names:
            if name in ours_scores:
                (ro, mo), (rm, mm) = ours_scores[name], mp_scores[name]
                print(f"{name:22s} {ro:7.3f} {rm:7.3f} {mo:9.3f} {mm:8.3f}", file=out)
    ours, mediapipe = pooled("ours"), pooled("mediapipe")
    mixing = [(a, b) for a, b in MIXING if a in ours_scores and b in truth and truth[b].std() > MOVES]
    if mixing:
        print(f"\nchannel mixing: r of an estimate against another channel's truth (the truths' own r beside)\n"
              f"{'estimate':20s} {'truth of':16s} {'r ours':>7s} {'r mp':>7s} {'truths':>7s}", file=out)
    for a, b in mixing:
        print(f"{a:20s} {b:16s} {pearson(ours[a], truth[b]):7.3f} {pearson(mediapipe[a], truth[b]):7.3f} "
              f"{pearson(truth[a], truth[b]):7.3f}", file=out)
    groups_ours, groups_mp = group_means(ours_scores), group_means(mp_scores)
    print(f"\n{'group':8s} {'r ours':>7s} {'r mp':>7s} {'channels':>8s}", file=out)
    better = 0
    for group in groups_ours:
        count = sum(n in ours_scores for n in GROUPS[group])
        better += groups_ours[group] >= groups_mp[group]
        print(f"{group:8s} {groups_ours[group]:7.3f} {groups_mp[group]:7.3f} {count:8d}", file=out)
    estimate = np.concatenate([r.rotation for r in results])
    reference = np.concatenate([r.true_rotation for r in results])
    error = geodesic_deg(estimate, reference)
    gain = yaw_gain(estimate, reference)
    print(f"\nhead rotation: mean {error.mean():.2f} deg, median {np.median(error):.2f}, max {error.max():.2f}; "
          f"yaw gain {gain:.3f}", file=out)
    mean_ours = np.mean([r for r, _ in ours_scores.values()]) if ours_scores else float("nan")
    mean_mp = np.mean([r for r, _ in mp_scores.values()]) if mp_scores else float("nan")
    loop = sum(r.loop_seconds for r in results)
    fps = sum(r.frames for r in results) / loop if loop > 0 else float("nan")
    print(f"channels: {len(ours_scores)} moving in the truth, {len(truth['jawOpen'])} frames; "
          f"machine load {os.getloadavg()[0]:.1f}", file=out)
    last = (f"mean_r_ours={mean_ours:.3f} mean_r_mediapipe={mean_mp:.3f} "
            f"groups_ours_better={better}/{len(groups_ours)} head_err_deg={error.mean():.2f} fps_eyes={fps:.1f}")
    print(last, file=out, flush=True)
    return last


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3, help="held-out sequences (default 3)")
    parser.add_argument("--frames", type=int, default=sh.SequenceSpec.frames)
    parser.add_argument("--models", help="prepared models folder (default: models/)")
    parser.add_argument("--keep", help="keep takes and .blend files in this folder")
    args = parser.parse_args(argv)
    work = pathlib.Path(args.keep) if args.keep else pathlib.Path(tempfile.mkdtemp(prefix="bench_fidelity_"))
    results = []
    for seed in sh.split_seeds("heldout", args.count):
        sequence = sh.render(sh.SequenceSpec(seed=seed, frames=args.frames), quiet=True)
        results.append(measure_sequence(sequence, work / str(seed), args.models))
        print(f"sequence {seed}: {len(sequence.truth['frame'])} frames -> {work / str(seed)}", flush=True)
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
