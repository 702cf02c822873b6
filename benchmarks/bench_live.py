"""Live capture speed: grab-to-result latency, rate and drops, and the cost of each face.

    python benchmarks/bench_live.py [--seconds 10] [--threads 1] [--models DIR]

1. A live session (:class:`LiveSession`) fed by :class:`RealtimeFileSource`
   playing ../shared/data/video/talking_head_640x360.mp4 at its real-time pace
   (23.976 fps) for ``--seconds`` after the models are loaded: median and 90th
   percentile latency from the frame's arrival to its filtered result, results
   per second, frames dropped (never processed).
2. Per-face cost: the tracker following 1, 2 and 5 faces of
   ../shared/data/images/multi_face.jpg frame after frame (tracking steps only,
   after the detections that started the tracks): ms per frame and ms per face
   per frame. The faces are cropped and regressed as one batch.

Timings depend on what else runs on the machine. The last line is exactly
``latency_ms=<median> fps=<f> dropped=<n>`` for part 1.
"""

import argparse
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"


def live_figures(video, models_dir, threads, seconds):
    from ddfa_blender.core.camera import RealtimeFileSource
    from ddfa_blender.core.live import LiveOptions, LiveSession

    source = RealtimeFileSource(video)
    with LiveSession(source, LiveOptions(models_dir=models_dir, threads=threads)) as session:
        session.wait_ready(120)
        started = time.perf_counter()
        while session.running and time.perf_counter() - started < seconds:
            time.sleep(0.1)
        session.check()
        stats = session.stats()
    return stats, source


def per_face_cost(image_path, models_dir, threads, counts, steps):
    import cv2

    from ddfa_blender.core.detector import FaceDetector
    from ddfa_blender.core.engine import load_face_model
    from ddfa_blender.core.regressor import Regressor, resolve_model
    from ddfa_blender.core.sources import Frame
    from ddfa_blender.core.tracker import FaceTracker

    image = cv2.imread(str(image_path))
    regressor = Regressor(resolve_model("mb05", models_dir), threads)
    face = load_face_model(models_dir)
    detector = FaceDetector()
    figures = {}
    for count in counts:
        tracker = FaceTracker(regressor, face, detector, max_faces=count)
        found = len(tracker.step(Frame(0, 0.0, image)))
        times = []
        for number in range(1, steps + 1):
            started = time.perf_counter()
            tracker.step(Frame(number, number / 25.0, image))
            times.append(time.perf_counter() - started)
        figures[count] = (found, 1000.0 * statistics.median(times), tracker.detector_calls)
    return figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="live run length after start-up")
    parser.add_argument("--threads", type=int, default=1,
                        help="onnxruntime threads (default 1, the session's own: the grab thread uses the other core)")
    parser.add_argument("--steps", type=int, default=60, help="tracking steps per face count")
    parser.add_argument("--models", default=str(ROOT / "models"), help="prepared models folder")
    args = parser.parse_args(argv)
    video = SHARED / "video" / "talking_head_640x360.mp4"
    if not video.is_file():
        print(f"test media not found at {SHARED}", file=sys.stderr)
        return 1

    print(f"per-face cost (multi_face.jpg, mb05, {args.threads} thread(s), median of {args.steps} steps):")
    for count, (found, ms, _) in per_face_cost(
        SHARED / "images" / "multi_face.jpg", args.models, args.threads, (1, 2, 5), args.steps
    ).items():
        print(f"  {found} face(s): {ms:.2f} ms per frame, {ms / found:.2f} ms per face per frame")

    stats, source = live_figures(str(video), args.models, args.threads, args.seconds)
    print(
        f"live ({video.name} at {source.fps:.3f} fps, {args.seconds:g} s, {args.threads} thread(s)): "
        f"{stats.processed} results, {source.delivered} frames delivered, "
        f"latency median {stats.latency_ms:.2f} ms, p90 {stats.latency_p90_ms:.2f} ms"
    )
    print(f"latency_ms={stats.latency_ms:.2f} fps={stats.fps:.2f} dropped={stats.dropped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
