"""Prepare a submission of the capture job: count the clips and write every parameter value.

    python farm/job_params.py --clips CLIPS/ --output OUT/ [--clip-list LIST.txt]
        [--model mb05] [--smooth default] [--eyes] [--retarget AVATAR.blend:Object]
        [--clips-per-task N] [--runner python|blender] [--python PY] [--blender BLENDER]
        [--project DIR] [--models DIR] > params.json

    openjd run farm/capture_job/template.yaml -p file://params.json     (this machine)
    deadline bundle submit farm/capture_job -p file://params.json       (AWS Deadline Cloud)

The clips are listed exactly as the workers list them (``ClipCount`` is their
number) and the options are checked here, so a mistake is found before any
worker starts. Paths are written as absolute paths of this machine; the
farm's path mapping (or job attachments) turns the PATH parameters into the
workers' paths. ``--project`` and ``--python`` default to this checkout and
its ``.venv``: give the workers' own paths when they differ.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if PROJECT_ROOT not in sys.path:
    sys.path.insert(0, PROJECT_ROOT)

from ddfa_blender.core.clip_batch import check_output_folder, list_clips  # noqa: E402
from ddfa_blender.core.errors import CaptureError  # noqa: E402
from farm.job_settings import split_avatar  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="job_params.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", required=True, help="the folder of clips")
    parser.add_argument("--clip-list", default="", help="a text file naming the clips, one per line")
    parser.add_argument("--output", required=True, help="the output folder")
    parser.add_argument("--model", default="mb05", help="mb05 (default), mb1, or an .onnx path")
    parser.add_argument("--smooth", default="default", help="smoothing preset: none, light, default, heavy")
    parser.add_argument("--eyes", action="store_true", help="record MediaPipe's blendshapes, blinks and gaze")
    parser.add_argument("--retarget", default="", metavar="AVATAR.blend:OBJECT", help="avatar to animate")
    parser.add_argument("--clips-per-task", type=int, default=1, help="clips per task (default 1, at most 150)")
    parser.add_argument("--runner", choices=["python", "blender"], default="python",
                        help="run the capture in the project's Python environment or inside Blender")
    parser.add_argument("--python", help="Python on the workers (default: this checkout's .venv)")
    parser.add_argument("--blender", default="blender", help="Blender on the workers (--runner blender)")
    parser.add_argument("--project", default=PROJECT_ROOT, help="ddfa-blender on the workers (default: here)")
    parser.add_argument("--models", default="", help="prepared models folder on the workers (default: the project's)")
    return parser.parse_args(argv)


def job_parameters(args: argparse.Namespace) -> dict:
    """The template's parameter values for ``args``; raises ``CaptureError`` for a bad option."""
    from ddfa_blender.core.smoothing import PRESETS

    clips_folder = os.path.abspath(args.clips)
    clip_list = os.path.abspath(args.clip_list) if args.clip_list else ""
    clips = list_clips(clips_folder, clip_list)
    check_output_folder(os.path.abspath(args.output), clips_folder, clips)
    if args.smooth not in PRESETS:
        raise CaptureError(f"Unknown smoothing preset '{args.smooth}': use {', '.join(PRESETS)}.")
    if args.model not in ("mb05", "mb1") and not (args.model.endswith(".onnx") and os.path.isfile(args.model)):
        raise CaptureError(f"Model '{args.model}' is not mb05, mb1 or an existing .onnx file.")
    avatar, avatar_object = split_avatar(args.retarget)
    if avatar and not os.path.isfile(avatar):
        raise CaptureError(f"Retarget avatar {avatar} does not exist.")
    if not 1 <= args.clips_per_task <= 150:
        raise CaptureError(f"--clips-per-task must be 1 to 150, got {args.clips_per_task}.")
    venv_python = ("Scripts", "python.exe") if os.name == "nt" else ("bin", "python")
    python = args.python or os.path.join(os.path.abspath(args.project), ".venv", *venv_python)
    return {
        "Clips": clips_folder,
        "ClipList": clip_list,
        "ClipCount": len(clips),
        "ClipsPerTask": args.clips_per_task,
        "OutputDir": os.path.abspath(args.output),
        "Model": os.path.abspath(args.model) if args.model.endswith(".onnx") else args.model,
        "Smoothing": args.smooth,
        "Eyes": "true" if args.eyes else "false",
        "Retarget": os.path.abspath(avatar) + (f":{avatar_object}" if avatar_object else "") if avatar else "",
        "Runner": args.runner,
        "Python": python,
        "Blender": args.blender,
        "ProjectDir": os.path.abspath(args.project),
        "ModelsDir": args.models,
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        parameters = job_parameters(args)
    except CaptureError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    json.dump(parameters, sys.stdout, indent=1)
    sys.stdout.write("\n")
    print(f"{parameters['ClipCount']} clips; the job has {-(-parameters['ClipCount'] // args.clips_per_task)} "
          "Capture task(s) and a Summary", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
