"""Stability: jitter per channel group raw vs smoothed, lag, displacement, the paper's NME.

    python benchmarks/bench_stability.py [--no-cache]

For ``../shared/data/video/talking_head_640x360.mp4`` and ``obama.mp4``
(captured with the engine, mb05; the takes are cached under
``out/bench_stability/`` and reused while newer than the video) and for a
synthetic take with known ground truth (a smooth performance pushed through
the face model, plus per-frame noise sized so that its landmark and
expression jitter match the real takes),
prints for each smoothing preset:

* jitter (:func:`ddfa_blender.core.metrics.jitter`: RMS above 6 Hz) per group,
  raw, and smoothed / raw;
* lag in frames of the smoothed landmarks behind the raw ones;
* mean landmark displacement from raw, % of face size;
* on the synthetic take: the 3DDFA-V2 stability NME (frame-to-frame landmark
  offsets against the ground truth's, % of face size) and the RMS landmark
  error against the ground truth, raw and smoothed;
* keyframe reduction of the ``default`` bake (head rotation quaternion and
  expression coefficients): samples before, keys after.

The last line is ``jitter_ratio_landmarks=<f> jitter_ratio_rotation=<f>
jitter_ratio_expression=<f> lag_frames=<f> displacement_pct=<f>`` for the
``default`` preset on talking_head_640x360.mp4.
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from ddfa_blender.core import keyreduce, metrics  # noqa: E402
from ddfa_blender.core.engine import CaptureOptions, capture, load_face_model  # noqa: E402
from ddfa_blender.core.model_setup import default_models_dir  # noqa: E402
from ddfa_blender.core.pose import (  # noqa: E402
    ImagePose,
    crop_param,
    head_pose_blender,
    quaternion_exp,
    quaternion_multiply,
)
from ddfa_blender.core.reconstruct import landmarks_image  # noqa: E402
from ddfa_blender.core.smoothing import PRESETS, smooth_take  # noqa: E402
from ddfa_blender.core.take import Take  # noqa: E402

SHARED = os.environ.get("DDFA_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
VIDEOS = ["talking_head_640x360.mp4", "obama.mp4"]
CACHE = os.path.join(ROOT, "out", "bench_stability")
GROUPS = ("landmarks", "rotation_deg", "translation", "scale", "expression")
KEY_TOLERANCE = {"rotation (quaternion)": 5e-4, "expression": 0.01}


def cached_take(video: str, use_cache: bool) -> Take:
    """The engine's take of ``video``, captured once and then read from the cache."""
    path = os.path.join(CACHE, os.path.basename(video) + ".npz")
    if use_cache and os.path.isfile(path) and os.path.getmtime(path) > os.path.getmtime(video):
        return Take.load(path)
    take = capture(video, CaptureOptions(model="mb05"))
    os.makedirs(CACHE, exist_ok=True)
    take.save(path)
    return take


def band_limited(rng, n, fps, sigma_s, std, columns):
    """Smooth random trajectories (n, columns): Gaussian-filtered white noise of the given std."""
    width = max(1, int(round(sigma_s * fps)))
    kernel = np.exp(-0.5 * (np.arange(-4 * width, 4 * width + 1) / width) ** 2)
    noise = rng.normal(size=(n + len(kernel) - 1, columns))
    out = np.stack([np.convolve(noise[:, c], kernel, mode="valid") for c in range(columns)], -1)
    return out / out.std(axis=0) * std


def synthetic_takes(face, shape, fps=25.0, n=400, seed=0):
    """(ground truth, noisy) takes of one smooth performance; jitter sized like mb05 on video."""
    rng = np.random.default_rng(seed)
    angles = np.radians(band_limited(rng, n, fps, 0.25, np.array([6.0, 10.0, 4.0]), 3))
    translation = np.c_[  # the face inside the 640x480 image (outside, every row would be flagged)
        320 + band_limited(rng, n, fps, 0.4, np.array([15.0, 8.0]), 2) * [1, -1] - [0, 560],
        np.full(n, -90.0),
    ]
    scale = 1.4e-3 * np.exp(band_limited(rng, n, fps, 0.5, 0.04, 1)[:, 0])
    expr_std = np.array([1.0, 1.2, 0.15, 0.35, 0.03, 0.08, 0.05, 0.25, 0.03, 0.13])
    expression = band_limited(rng, n, fps, 0.08, expr_std, 10) + [-2.5, 1.5, -0.3, 0.4, 0, -0.2, -0.1, -0.45, 0, -0.25]
    shapes = np.repeat(shape[None], n, axis=0)

    def build(rotation, translation, scale, expression, roi_noise):
        side = scale * 1.4e5 * 1.4
        centre = np.c_[translation[:, 0], -translation[:, 1]] + roi_noise
        roi = np.c_[centre - side[:, None] / 2, centre + side[:, None] / 2]
        param = crop_param(ImagePose(scale, rotation, translation, np.zeros((n, 3, 3))), roi, shapes, expression)
        return Take(
            fps=fps, image_size=(640, 480), frame=np.arange(n), time=np.arange(n) / fps,
            track=np.zeros(n), valid=np.ones(n, dtype=bool), detected=np.r_[True, np.zeros(n - 1, bool)],
            param=param, roi=roi, lmk68=landmarks_image(face, param, roi), quality=np.zeros(n),
            source="synthetic",
        )

    rotation = quaternion_exp(angles)
    truth = build(rotation, translation, scale, expression, np.zeros((n, 2)))
    noisy = build(
        quaternion_multiply(rotation, quaternion_exp(np.radians(0.35) * rng.normal(size=(n, 3)))),
        translation + np.c_[rng.normal(0, 0.6, (n, 2)), np.zeros(n)],
        scale * np.exp(rng.normal(0, 0.003, n)),
        expression + rng.normal(0, 0.06, (n, 10)),
        rng.normal(0, 2.0, (n, 2)),
    )
    return truth, noisy


def rms_error_pct(take: Take, truth: Take) -> float:
    """RMS 2-D landmark error against the ground truth, % of face size."""
    error = np.linalg.norm(take.lmk68[..., :2] - truth.lmk68[..., :2], axis=-1)
    return float(100 * np.sqrt(np.mean((error / metrics.face_size(truth.lmk68)[:, None]) ** 2)))


def report(name: str, raw: Take, face, truth: Take | None = None) -> dict:
    """Print the table for one take; return the ``default`` row's figures."""
    print(f"\n{name}: {len(raw)} rows, {int(raw.valid.sum())} with a face, {raw.fps:.2f} fps")
    raw_jitter = metrics.jitter(raw)
    print("  raw jitter: " + "  ".join(f"{g}={raw_jitter[g]:.5f}" for g in GROUPS)
          + "   (degrees; face sizes; relative scale; coefficients; face sizes)")
    header = f"  {'preset':8s}" + "".join(f"{g.split('_')[0]:>12s}" for g in GROUPS)
    header += f"{'lag':>8s}{'disp%':>8s}"
    if truth is not None:
        header += f"{'NME%':>8s}{'err%':>8s}"
    print(header + "      (jitter columns: smoothed / raw)")
    if truth is not None:
        print(f"  {'raw':8s}" + "".join(f"{1.0:12.3f}" for _ in GROUPS) + f"{0.0:8.3f}{0.0:8.3f}"
              f"{100 * metrics.stability_nme(raw.lmk68, truth.lmk68):8.3f}{rms_error_pct(raw, truth):8.3f}")
    figures = {}
    for preset, settings in PRESETS.items():
        smoothed = smooth_take(raw, settings, face)
        jit = metrics.jitter(smoothed)
        ratios = {g: jit[g] / raw_jitter[g] for g in GROUPS}
        lag = metrics.take_lag(raw, smoothed)
        disp = metrics.displacement_pct(raw, smoothed)
        line = f"  {preset:8s}" + "".join(f"{ratios[g]:12.3f}" for g in GROUPS) + f"{lag:8.3f}{disp:8.3f}"
        if truth is not None:
            line += (f"{100 * metrics.stability_nme(smoothed.lmk68, truth.lmk68):8.3f}"
                     f"{rms_error_pct(smoothed, truth):8.3f}")
        print(line)
        if preset == "default":
            figures = dict(ratios, lag=lag, displacement=disp, take=smoothed)
    print("  keyframe reduction of the default bake: " + key_counts(figures["take"]))
    return figures


def key_counts(take: Take) -> str:
    """Samples -> keys per channel family at the tolerances of KEY_TOLERANCE, over valid runs."""
    head = head_pose_blender(take.param, take.roi, take.image_size)
    families = {
        "rotation (quaternion)": head.rotation,
        "expression": take.param[:, 52:62].astype(np.float64),
    }
    parts = []
    for family, values in families.items():
        samples = keys = 0
        valid = np.flatnonzero(take.valid)
        runs = np.split(valid, np.flatnonzero(np.diff(valid) > 1) + 1)
        for run in runs:
            for column in values[run].T:
                curve = keyreduce.reduce_keys(take.frame[run], column, KEY_TOLERANCE[family])
                samples += curve.n_samples
                keys += len(curve)
        parts.append(f"{family} (tolerance {KEY_TOLERANCE[family]}): {samples} -> {keys} keys")
    return "; ".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-cache", action="store_true", help="capture the videos again")
    args = parser.parse_args(argv)
    face = load_face_model(default_models_dir())
    results = {}
    for video in VIDEOS:
        path = os.path.join(SHARED, "data", "video", video)
        results[video] = report(video, cached_take(path, not args.no_cache), face)
    shape = np.median(Take.load(os.path.join(CACHE, VIDEOS[0] + ".npz")).param[:, 12:52], axis=0)
    truth, noisy = synthetic_takes(face, shape)
    report("synthetic take with ground truth (smooth performance + noise)", noisy, face, truth)
    main_figures = results[VIDEOS[0]]
    print(
        f"jitter_ratio_landmarks={main_figures['landmarks']:.4f} "
        f"jitter_ratio_rotation={main_figures['rotation_deg']:.4f} "
        f"jitter_ratio_expression={main_figures['expression']:.4f} "
        f"lag_frames={main_figures['lag']:.4f} displacement_pct={main_figures['displacement']:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
