"""Bake speed: a synthetic 10,000-frame take into a scene, timed step by step.

Usage: python benchmarks/bench_bake.py [--frames 10000] [--models DIR]

The take is one face track with smooth head motion and expression, baked as
10 shape-key channels plus 10 transform channels (quaternion 4, location 3,
scale 3): 200,000 keys. With the prepared face model (38,365 vertices) when
the models folder has it, else a synthetic model of the same size. Prints the
timings; the last line is exactly ``bake_10k_s=<seconds>`` (the whole
``bake_take`` call: channels, mesh, shape keys and keys).
"""

import argparse
import os
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synthetic_take(frames: int, fps: float = 30.0):
    """One track of ``frames`` rows: a head turning and nodding, expressions oscillating."""
    from ddfa_blender.core.take import Take, empty_rows

    rows = empty_rows(frames)
    t = np.arange(frames)
    rows["frame"][:] = t
    rows["time"][:] = t / fps
    rows["track"][:] = 0
    rows["valid"][:] = True
    rows["quality"][:] = 0.4
    yaw, pitch = 0.5 * np.sin(t / 40.0), 0.2 * np.sin(t / 23.0)
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    rotation = np.zeros((frames, 3, 3))
    rotation[:, 0] = np.stack([cy, np.zeros(frames), sy], -1)
    rotation[:, 1] = np.stack([sy * sp, cp, -cy * sp], -1)
    rotation[:, 2] = np.stack([-sy * cp, sp, cy * cp], -1)
    pose = np.concatenate([5e-4 * rotation, np.tile([[60.0], [60.0], [0.0]], (frames, 1, 1))], -1)
    rng = np.random.default_rng(0)
    rows["param"][:, :12] = pose.reshape(frames, 12)
    rows["param"][:, 12:52] = rng.normal(0.0, 1e4, 40)
    rows["param"][:, 52:62] = np.sin(np.outer(t, np.linspace(0.05, 0.3, 10)))
    rows["roi"][:] = [220.0, 80.0, 420.0, 280.0]
    return Take(fps=fps, image_size=(640, 360), source="bench.mp4", **rows)


def face_model(models_dir):
    """The prepared face model, or a random one of the same size."""
    from ddfa_blender.core.face_model import FaceModel

    path = pathlib.Path(models_dir) / "bfm_face.npz"
    if path.is_file():
        return FaceModel.load(path), "prepared BFM face"
    rng = np.random.default_rng(0)
    count, triangles = 38365, 76073
    model = FaceModel(
        mean=rng.normal(0.0, 5e4, (count, 3)),
        shape_basis=rng.normal(0.0, 1.0, (count, 3, 40)),
        expr_basis=rng.normal(0.0, 1e3, (count, 3, 10)),
        triangles=rng.integers(0, count, (triangles, 3)),
        uv=rng.random((count, 2)),
        landmark_vertex=np.arange(68),
    )
    return model, "synthetic model of the same size (no prepared models)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--models", default=os.environ.get("DDFA_MODELS", str(ROOT / "models")))
    args = parser.parse_args(argv)

    started = time.perf_counter()
    import bpy

    from ddfa_blender.blender import bake, bake_channels

    print(f"import bpy + bake modules: {time.perf_counter() - started:.2f} s")
    take = synthetic_take(args.frames)
    model, origin = face_model(args.models)
    print(f"face model: {origin}, {model.n_vertices} vertices")

    bpy.ops.wm.read_factory_settings(use_empty=True)
    started = time.perf_counter()
    channels = bake_channels.track_channels(take)
    channels_s = time.perf_counter() - started

    bpy.ops.wm.read_factory_settings(use_empty=True)
    started = time.perf_counter()
    obj = bake.bake_take(bpy.context.scene, take, face_model=model)
    bake_s = time.perf_counter() - started

    started = time.perf_counter()
    bake.bake_take(bpy.context.scene, take, face_model=model, target=obj)
    rebake_s = time.perf_counter() - started

    from ddfa_blender.blender import animation

    keys = sum(
        len(fcurve.keyframe_points)
        for owner in (obj, obj.data.shape_keys)
        for fcurve in animation.animation_channels(owner).fcurves
    )
    print(f"frames: {args.frames}, keyed channels: {keys // len(channels.frames)}, keys: {keys}")
    print(f"channel maths (numpy): {channels_s:.3f} s")
    print(f"bake into a new object: {bake_s:.3f} s")
    print(f"bake again in place (re-smooth path, no smoothing): {rebake_s:.3f} s")
    print(f"bake_10k_s={bake_s:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
