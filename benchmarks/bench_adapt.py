"""Actor adaptation: accuracy and jitter on held-out footage of the performer, other faces, time.

(b) The shared talking head: the first half adapts mb05 (``scripts/adapt.py``'s
pipeline), the second half measures. Both models capture the whole clip with
the project's own engine; on held-out frames where both track the face and
MediaPipe finds it:
  * NME: mean 68-point distance to MediaPipe's landmarks (mapped to the 68
    points by ``ddfa_train.landmarks68``), over sqrt(w * h) of the reference
    box, in percent;
  * jitter: ``ddfa_blender.core.metrics.jitter``'s landmark group (RMS of the
    residual above 6 Hz, in face sizes, x100 here);
  * two-heads agreement: median ``quality`` (crop px).
(c) Other faces: ``../shared/data/aflw_dev`` (six AFLW2000-3D images, NME over
    sqrt(w * h) of the ground-truth box, percent), stock against adapted.

Timing: ``train_minutes`` is the whole adaptation (tracking, labels,
synthesis, training, export) in wall-clock minutes; ``footage_minutes`` the
adaptation footage used. Last line:
``nme_stock=<f> nme_adapted=<f> jitter_stock=<f> jitter_adapted=<f> train_minutes=<f>``.
Needs the training environment (``make train-venv``): ``.venv-train/bin/python
benchmarks/bench_adapt.py``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ddfa_blender.core.engine import CaptureOptions, build_tracker, capture  # noqa: E402
from ddfa_blender.core.metrics import face_size, jitter  # noqa: E402
from ddfa_blender.core.model_setup import default_models_dir  # noqa: E402
from ddfa_blender.core.sources import Frame, open_source  # noqa: E402
from ddfa_train.adaptation import adapt  # noqa: E402
from ddfa_train.footage import MeshLandmarker  # noqa: E402
from ddfa_train.landmarks68 import mesh_to_68  # noqa: E402

TALKING_HEAD = "data/video/talking_head_640x360.mp4"
AFLW = "data/aflw_dev"


def nme_pct(predicted, reference) -> np.ndarray:
    """Per-frame NME (%) of (N, 68, >=2) landmarks against (N, 68, 2) references."""
    reference = np.asarray(reference, dtype=np.float64)
    distance = np.linalg.norm(np.asarray(predicted)[..., :2] - reference, axis=-1).mean(axis=-1)
    return 100.0 * distance / face_size(reference)


def mediapipe_reference(path: str, models_dir: str) -> dict[int, np.ndarray]:
    """``{frame number: (68, 2)}`` MediaPipe landmarks mapped to the 68 points, image px."""
    from ddfa_blender.core.face_landmarker import landmarker_path

    landmarker = MeshLandmarker(landmarker_path(models_dir))
    source = open_source(path)
    found = {}
    try:
        for frame in source:
            mesh = landmarker.detect(frame.image, frame.time)
            if mesh is not None:
                found[frame.number] = mesh_to_68(mesh)
    finally:
        source.close()
        landmarker.close()
    return found


def held_out_figures(path, model, models_dir, start_s, reference) -> dict:
    """NME, jitter and heads agreement of ``model`` on frames from ``start_s`` on."""
    take = capture(path, CaptureOptions(model=model, models_dir=models_dir))
    held = take.rows((take.time >= start_s) & (take.track == 0))
    rows = [i for i in range(len(held)) if held.valid[i] and int(held.frame[i]) in reference]
    ref = np.stack([reference[int(held.frame[i])] for i in rows])
    return {
        "nme": nme_pct(held.lmk68[rows], ref),
        "frames": held.frame[rows],
        "jitter": 100.0 * jitter(held)["landmarks"],
        "heads": float(np.median(held.quality[held.valid])),
        "valid": int(held.valid.sum()),
    }


def aflw_nme(model: str, models_dir: str, shared: pathlib.Path) -> np.ndarray:
    """NME (%) per aflw_dev image: detection, one landmark re-crop (the tracker's start)."""
    import cv2

    truth = np.load(shared / AFLW / "pt3d_68.npz")
    errors = []
    for name in sorted(truth.files):
        image = cv2.imread(str(shared / AFLW / f"{name}.jpg"))
        tracker = build_tracker(CaptureOptions(model=model, models_dir=models_dir))
        observations = tracker.step(Frame(0, 0.0, image))
        gt = truth[name][:2].T - 1.0  # 1-based MATLAB pixels
        if not observations:
            errors.append(np.nan)
            continue
        box = gt.max(axis=0) - gt.min(axis=0)
        distance = np.linalg.norm(observations[0].lmk68[:, :2] - gt, axis=-1).mean()
        errors.append(100.0 * distance / np.sqrt(box[0] * box[1]))
    return np.array(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"))
    parser.add_argument("--minutes", type=float, default=None, help="training budget (default: adapt.py's)")
    parser.add_argument("--threads", type=int, default=None, help="PyTorch threads (default: one per core)")
    parser.add_argument("--rounds", type=int, default=None, help="cap on meta-joint rounds (default: adapt.py's)")
    parser.add_argument("--heads-only", action="store_true", help="train only the two heads")
    parser.add_argument("--keep", default=None, help="also keep the adapted model here")
    args = parser.parse_args()
    shared = pathlib.Path(args.shared)
    models_dir = str(default_models_dir())
    clip = str(shared / TALKING_HEAD)
    source = open_source(clip)
    duration = (source.frame_count or 0) / source.fps
    source.close()
    half = duration / 2.0

    with tempfile.TemporaryDirectory(prefix="bench_adapt_") as work:
        actor = args.keep or str(pathlib.Path(work) / "actor.onnx")
        result = adapt([clip], actor, models_dir, minutes=args.minutes, window=(0.0, half),
                       progress=_progress, threads=args.threads,
                       train_blocks=not args.heads_only,
                       **({"max_rounds": args.rounds} if args.rounds else {}))
        print(f"adaptation: {result.frames_usable} of {result.frames_tracked} frames usable, "
              f"{result.footage_seconds:.1f} s of footage; seconds "
              + ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items()), flush=True)
        chosen = [h["chosen"] for h in result.history]
        print(f"meta-joint rounds {len(chosen)}: fWPDC kept {chosen.count('fwpdc')}, VDC kept "
              f"{chosen.count('vdc')}; best round {result.best_round}; validation "
              + " ".join(f"{r}:{'-' if v is None else f'{v:.4f}'}" for r, v in result.validation)
              + f"; checks {result.checks}", flush=True)
        reference = mediapipe_reference(clip, models_dir)
        stock = held_out_figures(clip, "mb05", models_dir, half, reference)
        adapted = held_out_figures(clip, actor, models_dir, half, reference)
        aflw_stock = aflw_nme("mb05", models_dir, shared)
        aflw_adapted = aflw_nme(actor, models_dir, shared)

    common = np.intersect1d(stock["frames"], adapted["frames"])
    nme_s = stock["nme"][np.isin(stock["frames"], common)].mean()
    nme_a = adapted["nme"][np.isin(adapted["frames"], common)].mean()
    print(f"held-out talking head ({len(common)} frames from {half:.1f} s): NME vs MediaPipe "
          f"{nme_s:.3f} -> {nme_a:.3f} % ({100 * (1 - nme_a / nme_s):.1f} % lower); jitter "
          f"{stock['jitter']:.3f} -> {adapted['jitter']:.3f} ({100 * (1 - adapted['jitter'] / stock['jitter']):.1f} % lower); "
          f"heads agreement {stock['heads']:.2f} -> {adapted['heads']:.2f} px; valid {stock['valid']} -> {adapted['valid']}")
    print(f"aflw_dev NME per image stock {np.round(aflw_stock, 2).tolist()} adapted {np.round(aflw_adapted, 2).tolist()}; "
          f"mean {np.nanmean(aflw_stock):.3f} -> {np.nanmean(aflw_adapted):.3f} "
          f"(lost {np.nanmean(aflw_adapted) - np.nanmean(aflw_stock):+.3f} points)")
    minutes = result.seconds["total"] / 60.0
    print(f"footage_minutes={result.footage_seconds / 60:.3f} train_minutes_per_footage_minute="
          f"{minutes / (result.footage_seconds / 60):.2f} aflw_nme_stock={np.nanmean(aflw_stock):.3f} "
          f"aflw_nme_adapted={np.nanmean(aflw_adapted):.3f}")
    print(f"nme_stock={nme_s:.4f} nme_adapted={nme_a:.4f} jitter_stock={stock['jitter']:.4f} "
          f"jitter_adapted={adapted['jitter']:.4f} train_minutes={minutes:.3f}")


def _progress(stage: str, fraction: float) -> None:
    _progress.last = getattr(_progress, "last", None)
    if stage != _progress.last:
        print(f"  {stage} ...", flush=True)
        _progress.last = stage


if __name__ == "__main__":
    main()
