"""Accuracy: landmark NME on AFLW2000-3D images, head rotation against known truth, occlusion.

    python benchmarks/bench_accuracy.py [--aflw DIR] [--skip-occlusion] [--skip-rotation]

Figures:

* ``nme_dev_pct``: mean 68-point NME (%) of the capture pipeline on the
  AFLW2000-3D images in ``--aflw`` (default ``../shared/data/aflw_dev``: six
  images, a sanity check; the lead's held-out set has the same layout):
  each image is captured like a still (detect, then re-crop from the
  landmarks until the crop converges), and its 68 landmarks (x, y) compared
  with the dataset's ``pt3d_68`` (1-based: minus 1). NME = mean point error /
  sqrt(width x height) of the ground-truth landmark box. Per image and mean.
* ``rotation_err_deg``: median geodesic error of the head rotation on
  synthetic renders of the ICT head with known rotation (the fidelity
  renderer ``benchmarks/synthetic_heads.py``, held-out seeds), after removing
  the constant offset between the BFM's and the rendered head's rest pose
  (measured on each sequence's neutral first second); NaN without that
  renderer. The frames flagged on these renders (no occluder: false flags)
  are printed too.
* Occlusion (every shared clip with a face): occluders pasted over the face
  on runs of frames (``benchmarks/occlusion_footage.py``: hands, dark bars,
  blurs, microphones, cups), the clip captured clean and occluded (lossless
  frames), both baked as the product does (``default`` smoothing: flagged
  frames bridged; frames without a face held). ``occluded_pose_err_deg``:
  the largest head-rotation difference between the two bakes over the
  occluded frames (also the median and 95th percentile);
  ``flagged_occluded_pct``: occluded frames flagged (confidence under 0.5) or
  left without a face (the tracker let go: not baked as truth either);
  and frames of the unmodified clips flagged, all of them and without those
  where a real hand covers the face (``REAL_OCCLUSION``, checked by eye). Landmark
  error on the occluded frames (mean point error between the two bakes, %
  of face size) is printed too.

The last line is ``nme_dev_pct=<f> rotation_err_deg=<f> occluded_pose_err_deg=<f>
flagged_occluded_pct=<f>``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import numpy as np  # noqa: E402

from ddfa_blender.core.confidence import flagged_rows  # noqa: E402
from ddfa_blender.core.engine import CaptureOptions, capture, load_face_model  # noqa: E402
from ddfa_blender.core.model_setup import default_models_dir  # noqa: E402
from ddfa_blender.core.pose import (  # noqa: E402
    image_pose,
    quaternion_conjugate,
    quaternion_exp,
    quaternion_log,
    quaternion_multiply,
)
from ddfa_blender.core.smoothing import PRESETS, smooth_take  # noqa: E402

SHARED = os.environ.get("DDFA_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
# The known case: a real hand over the face; (clip, first, last, a frame before the hand).
KNOWN_CASE = ("talking_head_640x360.mp4", 100, 112, 92)
# Frames of the unmodified clips where a real occluder covers part of the face (checked by
# eye): flagging them is right, so the clean-frame figure is also given without them.
REAL_OCCLUSION = {"talking_head_640x360.mp4": [(58, 229)]}  # a hand on the face, first-last
EVENT_SPACING = 30  # frames from one pasted occluder's start to the next
CLIPS = ["talking_head_640x360.mp4", "obama.mp4", "single_face.mp4", "face_noface.mov", "noface_face.mov"]


# -- landmarks on AFLW2000-3D --------------------------------------------------------


def nme_pct(predicted, truth) -> float:
    """Mean 2-D point error over sqrt(w * h) of the truth's box, in percent; (68, 2) each."""
    truth = np.asarray(truth, dtype=np.float64)[:, :2]
    size = np.sqrt(np.prod(truth.max(axis=0) - truth.min(axis=0)))
    return float(100 * np.linalg.norm(np.asarray(predicted)[:, :2] - truth, axis=1).mean() / size)


def aflw_nme(folder: str, models_dir: str) -> dict[str, float]:
    """NME (%) per image of ``folder`` (images + ``pt3d_68.npz``), as captured by the pipeline."""
    labels = np.load(os.path.join(folder, "pt3d_68.npz"))
    scores = {}
    for name in sorted(labels.files):
        path = next(
            (os.path.join(folder, name + ext) for ext in (".jpg", ".png") if os.path.isfile(os.path.join(folder, name + ext))),
            None,
        )
        if path is None:
            continue
        take = capture(path, CaptureOptions(models_dir=models_dir))
        row = int(np.flatnonzero(take.valid)[0])
        truth = labels[name][:2].T - 1.0  # 1-based MATLAB pixels -> 0-based
        scores[name] = nme_pct(take.lmk68[row], truth)
    return scores


# -- synthetic head rotation -----------------------------------------------------------


ROTATION_SEEDS = (9100, 9101, 9102)  # held-out seeds of the synthetic renderer
ROTATION_FRAMES = 150


def rotation_errors_deg(take, truth) -> np.ndarray:
    """Geodesic error (degrees) per frame with a face of the take's head rotation against truth.

    Both in Blender's frame (head at rest facing -Y, the camera). The BFM head's
    rest and the rendered head's rest differ by a constant rotation C, measured
    on the sequence's neutral first second (head still): the error is the angle
    between ``R_true C`` and the estimate (``C`` on the head side: a model-frame
    offset, the same for every pose).
    """
    from ddfa_blender.core.pose import head_pose_blender

    rows = np.flatnonzero(take.valid)
    lens = float(truth["lens_mm"]) if "lens_mm" in truth else 50.0
    estimate = head_pose_blender(take.param[rows], take.roi[rows], take.image_size, lens).rotation
    true = np.asarray(truth["rotation"], dtype=np.float64)[take.frame[rows]]
    offset = quaternion_log(quaternion_multiply(quaternion_conjugate(true), estimate))
    neutral = np.asarray(truth["time"])[take.frame[rows]] < 1.0
    calibration = quaternion_exp(np.median(offset[neutral] if neutral.any() else offset, axis=0))
    return angle_deg(quaternion_multiply(true, calibration[None]), estimate)


def synthetic_rotation_errors(models_dir: str):
    """Rotation errors (degrees) over held-out synthetic renders, or None without the renderer."""
    try:
        from synthetic_heads import SequenceSpec, render  # benchmarks/synthetic_heads.py (fidelity)
    except ImportError:
        return None
    errors = []
    for seed in ROTATION_SEEDS:
        sequence = render(SequenceSpec(seed=seed, frames=ROTATION_FRAMES), quiet=True)
        take = capture(str(sequence.video), CaptureOptions(models_dir=models_dir))
        take = take.for_track(take.track_ids()[0])
        errors.append(rotation_errors_deg(take, sequence.truth))
        print(f"synthetic seed {seed}: {take.valid.sum()}/{len(take)} frames with a face, rotation error "
              f"median {np.median(errors[-1]):.2f} deg, p90 {np.percentile(errors[-1], 90):.2f}; "
              f"{int(flagged_rows(take).sum())} flagged (no occluder: should be none)")
    return np.concatenate(errors)


# -- occlusion ---------------------------------------------------------------------------


def read_frames(path: str) -> list:
    from ddfa_blender.core.sources import open_source

    source = open_source(path)
    try:
        return [frame.image for frame in source], source.fps
    finally:
        source.close()


def baked_rotation(take, face):
    """Quaternions (N, 4) the bake keys: flagged rows bridged, rows without a face held."""
    from ddfa_blender.blender.bake_channels import fill_missing

    smoothed = smooth_take(take, PRESETS["default"], face)
    valid = smoothed.valid & np.isfinite(smoothed.param).all(axis=1)
    rotation = image_pose(np.where(valid[:, None], smoothed.param, np.nan), smoothed.roi).rotation
    lmk = fill_missing(smoothed.lmk68[..., :2], valid)
    return fill_missing(rotation, valid), lmk


def angle_deg(a, b):
    return np.degrees(np.linalg.norm(quaternion_log(quaternion_multiply(quaternion_conjugate(a), b)), axis=-1))


def occlusion_figures(clips, models_dir, face, scratch):
    """Per clip: occluded/clean frame counts, flags, rotation and landmark differences."""
    import cv2

    from occlusion_footage import default_events, occlude_frames

    results = []
    for seed, clip in enumerate(clips):
        path = os.path.join(SHARED, "data", "video", clip)
        clean = capture(path, CaptureOptions(models_dir=models_dir))
        clean = clean.for_track(clean.track_ids()[0])
        images, fps = read_frames(path)
        # Pasted only where the clean frames are unoccluded (a reference covered by a real
        # hand is no reference), with a second's margin.
        usable = clean.valid.copy()
        for first, last in REAL_OCCLUSION.get(clip, []):
            usable[max(first - int(fps), 0) : last + int(fps) + 1] = False
        valid_index = [i for i in range(len(images)) if usable[i]]
        events = default_events(valid_index, clip_seed=seed, spacing=EVENT_SPACING)
        occluded_images, occluded = occlude_frames(images, clean.lmk68, events, seed=seed)
        folder = os.path.join(scratch, os.path.splitext(clip)[0])
        os.makedirs(folder, exist_ok=True)
        for index, image in enumerate(occluded_images):
            cv2.imwrite(os.path.join(folder, f"{index:06d}.png"), image)
        if clip == KNOWN_CASE[0]:
            _, first, last, before = KNOWN_CASE
            rotation = image_pose(clean.param.astype(np.float64), clean.roi).rotation
            swing = angle_deg(np.repeat(rotation[before : before + 1], last + 1 - first, axis=0),
                              rotation[first : last + 1])
            print(f"{clip}: real hand over the face, frames {first}-{last}: raw head rotation within "
                  f"{swing.max():.1f} deg of frame {before} (before the hand); "
                  f"{int(flagged_rows(clean)[first:last + 1].sum())}/{last + 1 - first} flagged")
        covered = capture(folder, CaptureOptions(models_dir=models_dir, fps=fps))
        covered = covered.for_track(covered.track_ids()[0])
        shutil.rmtree(folder)
        rot_clean, lmk_clean = baked_rotation(clean, face)
        rot_covered, lmk_covered = baked_rotation(covered, face)
        error = angle_deg(rot_clean, rot_covered)[occluded]
        extent = lmk_clean.max(axis=1) - lmk_clean.min(axis=1)
        size = np.sqrt(extent[:, 0] * extent[:, 1])
        lmk_error = (np.linalg.norm(lmk_clean - lmk_covered, axis=-1).mean(axis=1) / size)[occluded]
        caught = (flagged_rows(covered) | ~covered.valid)[occluded]
        real = np.zeros(len(clean), dtype=bool)
        for first, last in REAL_OCCLUSION.get(clip, []):
            real[first : last + 1] = True
        results.append(
            {
                "clip": clip,
                "events": events,
                "occluded": int(occluded.sum()),
                "caught": int(caught.sum()),
                "clean_rows": int(clean.valid.sum()),
                "clean_flagged": int(flagged_rows(clean).sum()),
                "unoccluded_rows": int((clean.valid & ~real).sum()),
                "unoccluded_flagged": int((flagged_rows(clean) & ~real).sum()),
                "rotation_error": error,
                "landmark_error_pct": 100 * lmk_error,
                "per_event": [
                    (e.kind, e.region, float(angle_deg(rot_clean, rot_covered)[list(e.frames())].max()),
                     int((flagged_rows(covered) | ~covered.valid)[list(e.frames())].sum()), e.count)
                    for e in events
                ],
            }
        )
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aflw", default=os.path.join(SHARED, "data", "aflw_dev"),
                        help="folder of AFLW2000-3D images with pt3d_68.npz (default: the dev set)")
    parser.add_argument("--models", default=None, help="prepared models folder")
    parser.add_argument("--skip-occlusion", action="store_true")
    parser.add_argument("--skip-rotation", action="store_true")
    args = parser.parse_args(argv)
    models_dir = args.models or str(default_models_dir())
    face = load_face_model(models_dir)

    nme = float("nan")
    if os.path.isdir(args.aflw):
        scores = aflw_nme(args.aflw, models_dir)
        for name, value in scores.items():
            print(f"NME {name}: {value:.2f} %")
        nme = float(np.mean(list(scores.values())))
        print(f"NME mean over {len(scores)} images ({args.aflw}): {nme:.2f} %")
    else:
        print(f"no AFLW2000-3D folder at {args.aflw}: NME skipped")

    rotation = float("nan")
    if not args.skip_rotation:
        errors = synthetic_rotation_errors(models_dir)
        if errors is None:
            print("synthetic head renderer (benchmarks/synthetic_heads.py) not available: rotation skipped")
        else:
            rotation = float(np.median(errors))
            print(f"synthetic head rotation error over {len(errors)} renders: median {rotation:.2f} deg, "
                  f"mean {errors.mean():.2f}, max {errors.max():.2f}")

    pose_err = flagged_pct = float("nan")
    if not args.skip_occlusion:
        scratch = tempfile.mkdtemp(prefix="bench_accuracy_")
        try:
            results = occlusion_figures(CLIPS, models_dir, face, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        for r in results:
            print(f"{r['clip']}: {r['caught']}/{r['occluded']} occluded frames flagged; "
                  f"rotation error max {r['rotation_error'].max():.1f} deg, median "
                  f"{np.median(r['rotation_error']):.1f}; landmarks {np.median(r['landmark_error_pct']):.2f} % "
                  f"median; clean: {r['clean_flagged']}/{r['clean_rows']} flagged "
                  f"({r['unoccluded_flagged']}/{r['unoccluded_rows']} without a real occluder)")
            for kind, region, worst, caught, count in r["per_event"]:
                print(f"    {kind:5s} over {region:6s}: {caught}/{count} flagged, worst rotation {worst:.1f} deg")
        error = np.concatenate([r["rotation_error"] for r in results])
        landmarks = np.concatenate([r["landmark_error_pct"] for r in results])
        occluded = sum(r["occluded"] for r in results)
        caught = sum(r["caught"] for r in results)
        clean_rows = sum(r["clean_rows"] for r in results)
        clean_flagged = sum(r["clean_flagged"] for r in results)
        pose_err = float(error.max())
        flagged_pct = 100.0 * caught / max(occluded, 1)
        print(f"occluded frames: {occluded}; flagged {flagged_pct:.1f} %; rotation vs unoccluded: max "
              f"{pose_err:.2f} deg, p95 {np.percentile(error, 95):.2f}, median {np.median(error):.2f}; "
              f"landmarks median {np.median(landmarks):.2f} % of face size")
        unoccluded_rows = sum(r["unoccluded_rows"] for r in results)
        unoccluded_flagged = sum(r["unoccluded_flagged"] for r in results)
        print(f"clean frames flagged: {clean_flagged}/{clean_rows} = {100.0 * clean_flagged / clean_rows:.2f} %; "
              f"without the frames where a real hand covers the face: {unoccluded_flagged}/{unoccluded_rows} = "
              f"{100.0 * unoccluded_flagged / unoccluded_rows:.2f} %")

    print(f"nme_dev_pct={nme:.3f} rotation_err_deg={rotation:.3f} "
          f"occluded_pose_err_deg={pose_err:.3f} flagged_occluded_pct={flagged_pct:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
