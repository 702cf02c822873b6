"""Fit the MediaPipe-478 -> 68-point table of ``ddfa_train.landmarks68`` and print it.

Tracks the calibration clips (not the talking head, which measures
adaptation) with the stock mb05 regressor and MediaPipe, keeps frames where
both found the face and the network's two heads agree within 1.5 px, fits
the table, and prints it as Python with the mean residual per point.
Usage: ``python benchmarks/calibrate_mesh68.py [--shared ../shared]``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ddfa_blender.core.engine import load_face_model  # noqa: E402
from ddfa_blender.core.metrics import face_size  # noqa: E402
from ddfa_blender.core.model_setup import default_models_dir  # noqa: E402
from ddfa_blender.core.reconstruct import landmarks_image  # noqa: E402
from ddfa_train import landmarks68  # noqa: E402
from ddfa_train.footage import collect  # noqa: E402

CLIPS = ("obama.mp4", "single_face.mp4", "face_noface.mov", "noface_face.mov")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"))
    args = parser.parse_args()
    models = str(default_models_dir())
    footage = collect([pathlib.Path(args.shared) / "data/video" / c for c in CLIPS], models)
    lmk = landmarks_image(load_face_model(models), footage.param, footage.roi)[..., :2]
    keep = np.isfinite(footage.mesh[:, 0, 0]) & (footage.quality < 1.5)
    table = landmarks68.fit_mapping(lmk[keep], footage.mesh[keep])
    print(f"# fitted on {keep.sum()} frames")
    print("MESH_TO_68 = (")
    for indices, weights in table:
        print(f"    ({indices}, {weights}),")
    print(")")
    landmarks68.MESH_TO_68 = tuple(table)
    mapped = landmarks68.mesh_to_68(footage.mesh[keep])
    error = np.linalg.norm(mapped - lmk[keep], axis=-1) / face_size(lmk[keep])[:, None]
    print(f"mean_residual_pct={100 * error.mean():.2f} jaw_pct={100 * error[:, :17].mean():.2f} "
          f"inner_pct={100 * error[:, 17:].mean():.2f}")


if __name__ == "__main__":
    main()
