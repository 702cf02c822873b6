"""Adapt the 3DDFA-V2 regressor to one performer from their unlabeled footage.

    python scripts/adapt.py --input clip1.mp4 [clip2.mp4 ...] --output actor.onnx \
        [--other-faces other1.mp4 ...] [--minutes N]
    python scripts/capture.py --input shot.mp4 --model actor.onnx --take shot.npz

Tracks the footage with the stock regressor, fits pseudo-labels against
MediaPipe's landmarks, fine-tunes the network's last stages on short
synthetic clips made from the frames (keeping the stock network's outputs
on clips of other people given with ``--other-faces``), and writes an ONNX
regressor in the stock layout (checked before it is written; written atomically). Needs the
training environment (``make train-venv``: PyTorch, CPU). ``--minutes``
caps the training loop (default: 4 seconds per second of usable footage).
Exit code 0 on success, 1 with a one-line message on a problem, 2 for bad
usage, 130 when interrupted (nothing is written).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ddfa_blender.core.errors import CaptureCancelled, CaptureError  # noqa: E402

STAGES = ("tracking", "labels", "synthesis", "training", "export")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="adapt.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", nargs="+", required=True, metavar="CLIP",
                        help="footage of the performer: videos, image folders or printf patterns")
    parser.add_argument("--output", required=True, help="adapted regressor to write (.onnx)")
    parser.add_argument("--other-faces", nargs="+", default=[], metavar="CLIP",
                        help="footage of OTHER people (not the performer): keeps the adapted model "
                             "working on them (recommended)")
    parser.add_argument("--other-weight", type=float, default=None,
                        help="how strongly to keep the stock outputs on --other-faces (default 20; "
                             "lower: more gain on the performer, more change on everyone else)")
    parser.add_argument("--minutes", type=float, help="training-loop budget in minutes (default: 4 s per s of footage)")
    parser.add_argument("--base", default="mb05", help="regressor to start from: mb05 (default), mb1 or an .onnx")
    parser.add_argument("--models", help="prepared models folder (default: ./models or $DDFA_MODELS)")
    parser.add_argument("--threads", type=int, help="PyTorch CPU threads (default: one per core)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    if not args.output.endswith(".onnx"):
        parser.error("--output must name an .onnx file")
    if args.minutes is not None and not args.minutes > 0:
        parser.error("--minutes must be positive")
    if args.other_weight is not None and not args.other_weight >= 0:
        parser.error("--other-weight must be zero or more")
    if args.threads is not None and not 1 <= args.threads <= (os.cpu_count() or 1):
        parser.error(f"--threads must be between 1 and {os.cpu_count() or 1}")
    return args


def check_paths(args) -> None:
    """Inputs exist, the output is none of them, and its folder exists (CaptureError otherwise)."""
    output = os.path.abspath(args.output)
    for clip in args.input + args.other_faces:
        if "%" not in clip and not os.path.exists(clip):
            raise CaptureError(f"Input not found: {clip}.")
        if os.path.abspath(clip) == output:
            raise CaptureError(f"--output {args.output} is one of the inputs: choose another file.")
    both = sorted({os.path.abspath(c) for c in args.input} & {os.path.abspath(c) for c in args.other_faces})
    if both:
        raise CaptureError(f"{both[0]} is given both as --input and as --other-faces: other faces must be other people.")
    folder = os.path.dirname(output)
    if not os.path.isdir(folder):
        raise CaptureError(f"Cannot write {args.output}: folder {folder} does not exist.")


class StageProgress:
    """One line per stage and a percentage within it, on stderr."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.stage = None
        self.last = 0.0
        self.start = time.perf_counter()

    def __call__(self, stage: str, fraction: float) -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        if stage == self.stage and now - self.last < 2.0:
            return
        self.stage, self.last = stage, now
        step = STAGES.index(stage) + 1 if stage in STAGES else 0
        sys.stderr.write(f"[{step}/{len(STAGES)}] {stage} {100 * fraction:3.0f}% ({now - self.start:.0f} s)\n")
        sys.stderr.flush()


def _weights(other_weight):
    """The training's loss weights with ``--other-weight`` applied (None: all defaults)."""
    if other_weight is None:
        return None
    from ddfa_train.training import Weights

    return Weights(distill=other_weight)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    cancelled = []

    def on_signal(signum, _frame):
        cancelled.append(signum)

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        check_paths(args)
        try:
            from ddfa_train.adaptation import adapt
        except ImportError as err:
            raise CaptureError(
                f"adaptation needs PyTorch ({err.name} is missing): run `make train-venv` and use "
                ".venv-train/bin/python scripts/adapt.py"
            ) from err
        from ddfa_blender.core.model_setup import default_models_dir, verify_models

        models_dir = args.models or str(default_models_dir())
        verify_models(models_dir)
        result = adapt(
            args.input, args.output, models_dir, base=args.base, minutes=args.minutes,
            progress=StageProgress(args.quiet), should_stop=lambda: bool(cancelled), threads=args.threads,
            other_faces=args.other_faces, weights=_weights(args.other_weight),
        )
    except CaptureCancelled:
        print("adapt.py: cancelled; nothing was written.", file=sys.stderr)
        return 130 if not cancelled or cancelled[0] == signal.SIGINT else 143
    except KeyboardInterrupt:
        print("adapt.py: interrupted; nothing was written.", file=sys.stderr)
        return 130
    except CaptureError as err:
        print(f"adapt.py: {err}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    seconds = result.seconds
    print(
        f"wrote {args.output}: adapted on {result.frames_usable} of {result.frames_tracked} frames "
        f"({result.footage_seconds:.1f} s of footage) in {seconds['total'] / 60:.1f} min; "
        f"use it with: scripts/capture.py --model {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
