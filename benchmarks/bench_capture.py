"""Capture speed: per-stage cost, end-to-end fps, cold start, and regressor overhead.

    python benchmarks/bench_capture.py [--repeats 5]

Figures (medians over repeats):
* per-stage ms per frame: decode (OpenCV/FFmpeg, steady state), detect (one
  BlazeFace call), track (crop + landmark ROI + head agreement, without the
  network), regress (one 120x120 crop), reconstruct (68 landmarks; dense mesh);
* end-to-end fps of the capture loop (decode included, overlapped with
  inference on a second thread; start-up excluded: models, detector and the
  first frame are the cold start) with 1 and 2 onnxruntime threads;
* eyes on: the same on the 640x360 talking head with MediaPipe's face
  landmarker recorded (what the panel and ``--retarget`` capture), 1 thread,
  and its ratio to the eyes-off figure (a machine's load moves both alike);
* cold start: wall time of ``scripts/capture.py --take`` on the 55-frame
  720p sample, as a user runs it (new process, imports, models, all frames);
* regress_ratio: our regression step (uint8 crops -> de-normalised
  parameters) over a bare ``session.run`` on the same, already normalised
  crops with the same session.

The last line is ``end_to_end_fps=<720p, 1 ORT thread + decode thread> regress_ratio=<ours/bare>
fps_eyes_360p=<eyes on> eyes_ratio=<eyes on / eyes off, 360p>``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from ddfa_blender.core import reconstruct  # noqa: E402
from ddfa_blender.core.detector import FaceDetector  # noqa: E402
from ddfa_blender.core.engine import CaptureOptions, capture, load_face_model  # noqa: E402
from ddfa_blender.core.face_landmarker import make_channels  # noqa: E402
from ddfa_blender.core.model_setup import default_models_dir  # noqa: E402
from ddfa_blender.core.regressor import Regressor, resolve_model  # noqa: E402
from ddfa_blender.core.sources import open_source  # noqa: E402

SHARED = os.environ.get("DDFA_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
VIDEOS = ["obama.mp4", "talking_head_640x360.mp4"]


def per_call_ms(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def stage_costs(video: str, take, regressor: Regressor, face, detector: FaceDetector) -> dict:
    import cv2

    source = open_source(video)
    start = None
    images = []
    for frame in source:
        if start is None:
            start = time.perf_counter()  # steady state: after the first (seek) frame
        else:
            images.append(frame.image)
    decode_ms = 1000 * (time.perf_counter() - start) / max(len(images), 1)
    source.close()
    frames = images[:50]
    rois = take.roi[1 : len(frames) + 1]
    params = take.param[1 : len(frames) + 1]
    crops = np.stack([
        cv2.warpAffine(image, reconstruct.crop_affine(roi), (120, 120), flags=cv2.INTER_LINEAR)
        for image, roi in zip(frames, rois)
    ])
    out = regressor.predict(crops[:1])

    def track():
        for image, roi in zip(frames, rois):
            cv2.warpAffine(image, reconstruct.crop_affine(roi), (120, 120), flags=cv2.INTER_LINEAR)
            lmk = reconstruct.landmarks_crop(face, out.param)
            np.linalg.norm(lmk[..., :2] - reconstruct.network_landmarks_crop(out.raw_lmk), axis=-1).mean()
            reconstruct.roi_from_landmarks(reconstruct.crop_to_image(lmk, roi[None])[0])

    def regress():
        for crop in crops:
            regressor.predict(crop[None])

    def landmarks():
        for param, roi in zip(params, rois):
            reconstruct.landmarks_image(face, param[None], roi[None])

    n = len(frames)
    return {
        "decode": decode_ms,
        "detect": per_call_ms(lambda: detector.detect(frames[0]), 10),
        "track": per_call_ms(track, 5) / n,
        "regress": per_call_ms(regress, 5) / n,
        "reconstruct": per_call_ms(landmarks, 5) / n,
        "dense": per_call_ms(lambda: reconstruct.dense_image(face, params[0], rois[0]), 5),
    }


def regress_ratio(regressor: Regressor, crops: np.ndarray, rounds: int = 7, calls: int = 300) -> tuple:
    """(ours ms, bare ms, ratio) per crop, alternating the two to share machine noise."""
    normalised = [(c[None].transpose(0, 3, 1, 2).astype(np.float32) - 127.5) / 128.0 for c in crops]
    session, name = regressor.session, regressor.input_name
    ours, bare = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(calls):
            regressor.predict(crops[i % len(crops)][None])
        ours.append((time.perf_counter() - start) / calls)
        start = time.perf_counter()
        for i in range(calls):
            session.run(None, {name: normalised[i % len(crops)]})
        bare.append((time.perf_counter() - start) / calls)
    ours_ms, bare_ms = 1000 * statistics.median(ours), 1000 * statistics.median(bare)
    return ours_ms, bare_ms, ours_ms / bare_ms


def cold_start(video: str, models_dir: str, repeats: int) -> float:
    times = []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, os.path.join(ROOT, "scripts/capture.py"), "--input", video,
                            "--take", os.path.join(folder, "take.npz"), "--models", models_dir, "--quiet"],
                           check=True, capture_output=True)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    models_dir = str(default_models_dir())
    face = load_face_model(models_dir)
    detector = FaceDetector()
    results = {}
    for name in VIDEOS:
        video = os.path.join(SHARED, "data/video", name)
        for threads in (1, 2):
            fps, first = [], []
            for _ in range(args.repeats):
                take = capture(video, CaptureOptions(models_dir=models_dir, threads=threads))
                fps.append((len(take) - 1) / take.meta["loop_seconds"])
                first.append(take.meta["first_frame_seconds"])
            results[(name, threads)] = statistics.median(fps)
            print(f"{name} {take.image_size[0]}x{take.image_size[1]}, {len(take)} frames, onnxruntime threads={threads}: "
                  f"end-to-end {statistics.median(fps):.0f} fps (loop, decode included), "
                  f"start-up to first frame {statistics.median(first):.2f} s")
        regressor = Regressor(resolve_model("mb05", models_dir), threads=1)
        stages = stage_costs(video, take, regressor, face, detector)
        print(f"{name} per-stage ms/frame (1 thread): " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
    video = os.path.join(SHARED, "data/video", VIDEOS[1])
    fps = []
    for _ in range(args.repeats):
        take = capture(video, CaptureOptions(models_dir=models_dir, threads=1, channels=make_channels(models_dir)))
        fps.append((len(take) - 1) / take.meta["loop_seconds"])
    eyes = statistics.median(fps)
    eyes_ratio = eyes / results[(VIDEOS[1], 1)]
    print(f"{VIDEOS[1]} eyes on (MediaPipe face landmarker), onnxruntime threads=1: end-to-end {eyes:.0f} fps, "
          f"{eyes_ratio:.2f} x eyes off")
    video = os.path.join(SHARED, "data/video", VIDEOS[0])
    regressor = Regressor(resolve_model("mb05", models_dir), threads=1)
    golden = np.load(os.path.join(SHARED, "data/golden/mb05_params.npz"))["crops_bgr_uint8"]
    ours_ms, bare_ms, ratio = regress_ratio(regressor, golden)
    print(f"regression per crop: ours {ours_ms:.3f} ms, bare onnxruntime {bare_ms:.3f} ms, ratio {ratio:.3f}")
    start_s = cold_start(video, models_dir, 3)
    print(f"cold start, scripts/capture.py --take on {VIDEOS[0]} (55 frames): {start_s:.2f} s")
    print(f"end_to_end_fps={results[(VIDEOS[0], 1)]:.1f} regress_ratio={ratio:.3f} "
          f"fps_eyes_360p={eyes:.1f} eyes_ratio={eyes_ratio:.3f}")


if __name__ == "__main__":
    main()
