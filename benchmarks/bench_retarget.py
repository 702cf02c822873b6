"""ARKit solver versus MediaPipe's blendshapes on the sample videos, and the landmarker's cost.

Usage: python benchmarks/bench_retarget.py [--models DIR] [--shared DIR] [--videos a.mp4 b.mp4]

For each video: capture with MediaPipe's face landmarker recorded, solve the
ARKit channels (:func:`ddfa_blender.core.arkit.solve_arkit`) and print, per
channel, the Pearson correlation between the solver and MediaPipe's own
(neutral-calibrated) score over the tracked frames, for every channel but
the eyes' (they read MediaPipe alone, so they are listed separately), with
what the solver read on the channel: ``3ddfa`` (3DDFA-V2's geometry),
``fused`` (that and MediaPipe's evidence) or ``mediapipe`` (MediaPipe's
landmarks and score). A channel that does not move in one of the streams (standard
deviation below 0.01) has no correlation ("-"). Reported, not asserted.

Then the landmarker's cost per call, on the faces of the first video: run on
the tracker's crop (resized to 256 px) and on the full frame.
"""

import argparse
import os
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_VIDEOS = ("talking_head_640x360.mp4", "single_face.mp4")
MIN_STD = 0.01


def correlations(take, face):
    """``{channel: (r or None, solver std, mediapipe std, source)}`` for one take."""
    from ddfa_blender.core.arkit import ARKIT_NAMES, mediapipe_weights, solve_arkit

    solved = solve_arkit(take, face)
    reference = mediapipe_weights(take)
    ok = solved.valid & reference.valid
    out = {}
    for name in ARKIT_NAMES:
        a, b = solved.channel(name)[ok], reference.channel(name)[ok]
        r = float(np.corrcoef(a, b)[0, 1]) if a.std() > MIN_STD and b.std() > MIN_STD else None
        out[name] = (r, float(a.std()), float(b.std()), solved.sources[name])
    return out


def landmarker_cost(video, models_dir, frames=120):
    """Milliseconds per landmarker call on crops and on full frames (first ``frames`` frames)."""
    from ddfa_blender.core.engine import CaptureOptions, capture
    from ddfa_blender.core.face_landmarker import FaceLandmarkerChannel, landmarker_path
    from ddfa_blender.core.sources import open_source
    from ddfa_blender.core.tracker import FaceObservation

    take = capture(video, CaptureOptions(models_dir=models_dir, threads=1))
    rows = {int(f): i for i, f in enumerate(take.frame) if take.valid[i]}
    results = {}
    for label, size in (("crop 256 px", 256), ("full frame", None)):
        channel = FaceLandmarkerChannel(landmarker_path(models_dir), crop_size=size)
        source = open_source(video)
        spent, calls = 0.0, 0
        try:
            for frame in source:
                if frame.number >= frames:
                    break
                row = rows.get(frame.number)
                if row is None:
                    continue
                obs = [FaceObservation(0, take.param[row], take.roi[row], take.lmk68[row], 0.0, False)]
                started = time.perf_counter()
                channel.extract(frame, obs)
                if frame.number > 0:  # the first call builds the MediaPipe graph
                    spent += time.perf_counter() - started
                    calls += 1
        finally:
            source.close()
            channel.close()
        results[label] = 1000.0 * spent / max(calls, 1)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="prepared models folder (default: models/ or $DDFA_MODELS)")
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"), help="the shared test media folder")
    parser.add_argument("--videos", nargs="+", help="videos to measure (default: the two sample clips)")
    args = parser.parse_args(argv)

    from ddfa_blender.core.engine import CaptureOptions, capture, load_face_model
    from ddfa_blender.core.face_landmarker import make_channels
    from ddfa_blender.core.model_setup import default_models_dir

    models_dir = args.models or str(default_models_dir())
    videos = args.videos or [os.path.join(args.shared, "data", "video", v) for v in DEFAULT_VIDEOS]
    face = load_face_model(models_dir)
    tables = {}
    for video in videos:
        options = CaptureOptions(models_dir=models_dir, threads=1, channels=make_channels(models_dir))
        take = capture(video, options)
        tables[os.path.basename(video)] = correlations(take, face)

    names = list(next(iter(tables.values())))
    clips = list(tables)
    print("Pearson r, ARKit solver vs MediaPipe blendshapes")
    print(f"{'channel':22s}{'source':>10s}" + "".join(f"{c[:24]:>26s}" for c in clips))
    medians = {c: [] for c in clips}
    for name in names:
        source = tables[clips[0]][name][3]
        if name.startswith("eye") or source == "none":
            continue
        cells = []
        for clip in clips:
            r = tables[clip][name][0]
            cells.append(f"{'-' if r is None else f'{r:+.2f}':>26s}")
            if r is not None:
                medians[clip].append(r)
        print(f"{name:22s}{source:>10s}" + "".join(cells))
    print(f"{'median (moving)':32s}" + "".join(f"{np.median(medians[c]):>+26.2f}" for c in clips))
    eyes = [n for n in names if n.startswith("eye")]
    none = [n for n in names if tables[clips[0]][n][3] == "none"]
    print(f"from MediaPipe inside the solver: {', '.join(eyes)}")
    print(f"not observable (always 0): {', '.join(none)}")

    cost = landmarker_cost(videos[0], models_dir)
    for label, ms in cost.items():
        print(f"landmarker {label}: {ms:.1f} ms/frame")
    print(f"landmarker_crop_ms={cost['crop 256 px']:.2f} landmarker_full_ms={cost['full frame']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
