"""Capture facial animation from footage, headless.

    python scripts/capture.py --input clip.mp4 --take out.npz [--preview out.mp4]
                              [--output out.blend] [--model mb05|mb1|PATH.onnx] [--threads N]
    python scripts/capture.py --take out.npz --output out.blend      (bake an existing take)
    python scripts/capture.py --input clips/ --output blends/         (a folder of clips)
    blender -b --factory-startup -P scripts/capture.py -- --input clip.mp4 --output out.blend

``--input`` takes a video, an image, a folder of images or a printf pattern
(``shot_%04d.png``); a folder of videos is captured clip by clip. ``--output``
needs ``bpy`` (Blender, or the bpy module); everything else runs without it.
Exit code 0 on success, 1 with a one-line message on a problem, 130 when
interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ddfa_blender.core.errors import CaptureCancelled, CaptureError  # noqa: E402


class ProgressBar:
    """A one-line progress bar on stderr (periodic lines when stderr is not a terminal)."""

    def __init__(self, label: str, quiet: bool = False):
        self.label = label
        self.quiet = quiet
        self.start = time.perf_counter()
        self.last = 0.0
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int | None) -> None:
        now = time.perf_counter()
        if self.quiet or (now - self.last < (0.1 if self.tty else 2.0)):
            return
        self.last = now
        sys.stderr.write(("\r" if self.tty else "") + self._line(done, total) + ("" if self.tty else "\n"))
        sys.stderr.flush()

    def finish(self, done: int) -> None:
        if not self.quiet:
            sys.stderr.write(("\r" if self.tty else "") + self._line(done, done) + "\n")

    def _line(self, done: int, total: int | None) -> str:
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        if total:
            filled = int(30 * min(done / total, 1.0))
            return f"{self.label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} frames, {rate:.0f} fps"
        return f"{self.label} {done} frames, {rate:.0f} fps"


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="capture.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", help="video, image, image folder, printf pattern, or folder of videos")
    parser.add_argument("--take", help="take file (.npz) to write, or to read when there is no --input "
                        "(default with --output: next to the .blend, so it can be re-smoothed later)")
    parser.add_argument("--preview", help="preview video (.mp4) with landmarks and head axes")
    parser.add_argument("--preview-compare", choices=["overlay", "side"],
                        help="also draw the smoothed take, over the raw one or beside it")
    parser.add_argument("--output", help="Blender file (.blend) to write (needs bpy)")
    parser.add_argument("--retarget", metavar="AVATAR.blend[:OBJECT]",
                        help="also animate this avatar's ARKit-style shape keys (needs --output)")
    parser.add_argument("--mapping", help="retarget mapping preset (.json; default: the ARKit mapping)")
    parser.add_argument("--head-bone", help="rotate this bone of the avatar's armature instead of the object")
    parser.add_argument("--eyes", action="store_true",
                        help="record MediaPipe's blendshapes, blinks and gaze in the take (on with --retarget)")
    parser.add_argument("--model", default="mb05", help="mb05 (default), mb1, or a path to an .onnx")
    parser.add_argument("--models", help="prepared models folder (default: ./models or $DDFA_MODELS)")
    parser.add_argument("--threads", type=int, help="onnxruntime threads (default 1; decoding runs on another core)")
    parser.add_argument("--max-faces", type=int, default=1, help="faces tracked at once (default 1)")
    parser.add_argument("--tracks", default="", help="track numbers to bake, e.g. 0,2 (default: every face)")
    parser.add_argument("--fps", type=float, help="frame rate of image sequences (default 24)")
    parser.add_argument("--smooth", default="default", help="smoothing preset: none, light, default, heavy")
    for group in ("rotation", "translation", "expression"):
        parser.add_argument(f"--smooth-{group}", type=float, metavar="SECONDS",
                            help=f"{group} smoothing window (Gaussian sigma, seconds; 0 = off), over the preset")
    parser.add_argument("--bridge-gaps", type=float, metavar="SECONDS",
                        help="interpolate across gaps without a face up to this long (default: leave them)")
    parser.add_argument("--min-confidence", type=float, metavar="C",
                        help="frames whose confidence (0..1) is under C are flagged: bridged from their "
                        "neighbours and marked on the timeline (default 0.5)")
    parser.add_argument("--keep-flagged", action="store_true",
                        help="bake flagged frames as captured instead of bridging them (still marked)")
    parser.add_argument("--start-frame", type=int, default=1, help="scene frame of the first footage frame")
    parser.add_argument("--key-camera", action="store_true", help="animate the camera instead of the head")
    parser.add_argument("--missing", choices=["hold", "gap"], default="hold",
                        help="frames without a face: hold the last pose or leave a gap")
    parser.add_argument("--lean-keys", action="store_true",
                        help="bake only the keys needed within 0.1 deg / 0.5 mm / 0.005 of every frame")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    if not args.input and not args.take:
        parser.error("give --input (footage) or --take (an existing take to bake)")
    if not (args.take or args.preview or args.output):
        parser.error("nothing to write: give --take, --preview and/or --output")
    if args.preview_compare and not args.preview:
        parser.error("--preview-compare needs --preview")
    if args.retarget and not args.output:
        parser.error("--retarget needs --output")
    return args


def smoothing_settings(args):
    """The preset named by ``--smooth`` with any per-group overrides applied."""
    import dataclasses

    from ddfa_blender.core.smoothing import PRESETS

    if args.smooth not in PRESETS:
        raise CaptureError(f"Unknown smoothing preset '{args.smooth}': use {', '.join(PRESETS)}.")
    overrides = {group: getattr(args, f"smooth_{group}") for group in ("rotation", "translation", "expression")}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.bridge_gaps is not None:
        overrides.update(bridge_gaps=True, max_gap=args.bridge_gaps)
    if args.min_confidence is not None:
        overrides.update(min_confidence=args.min_confidence)
    if args.keep_flagged:
        overrides.update(keep_flagged=True)
    return dataclasses.replace(PRESETS[args.smooth], **overrides)


def process_clip(args, bake_options, input_path, take_path, preview_path, output_path) -> None:
    """Capture (or load) one take and write the requested outputs."""
    from ddfa_blender.core.take import Take

    if input_path and output_path and not take_path:
        take_path = os.path.splitext(output_path)[0] + ".npz"
    written = [p for p in (take_path if input_path else None, preview_path, output_path) if p]
    for path in written:  # before minutes of capture, not after
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise CaptureError(f"Cannot write {path}: folder {folder} does not exist; create it first.")
    if input_path:
        from ddfa_blender.core.engine import CaptureOptions, capture

        options = CaptureOptions(model=args.model, models_dir=args.models, threads=args.threads or 1,
                                 max_faces=args.max_faces, fps=args.fps)
        if args.eyes or args.retarget:
            from ddfa_blender.core.face_landmarker import make_channels

            options.channels = make_channels(args.models)
        bar = ProgressBar(f"capture {os.path.basename(input_path)}", args.quiet)
        take = capture(input_path, options, progress=bar)
        bar.finish(len(take.frames()))
        if take_path:
            take.save(take_path)
        found = take.valid.sum()
        note = f"{found}/{len(take)} rows with a face, {len(take.track_ids())} track(s)"
        if not args.quiet:
            print(f"{input_path}: {len(take.frames())} frames, {note}" + (f" -> {take_path}" if take_path else ""))
    else:
        take = Take.load(take_path)
    if not args.quiet:
        from ddfa_blender.core.confidence import flagged_summary

        settings = bake_options["smoothing"]
        print(f"  {flagged_summary(take, settings.min_confidence, settings.keep_flagged)}")
    if preview_path:
        from ddfa_blender.core.preview import write_preview

        second = None
        if args.preview_compare:
            from ddfa_blender.core.engine import load_face_model, models_folder, CaptureOptions
            from ddfa_blender.core.smoothing import smooth_take

            face = load_face_model(models_folder(CaptureOptions(models_dir=args.models)))
            second = smooth_take(take, bake_options["smoothing"], face)
        bar = ProgressBar("preview", args.quiet)
        count = write_preview(take, preview_path, second, args.preview_compare or "overlay", progress=bar)
        bar.finish(count)
    if output_path:
        from ddfa_blender.blender.headless import write_blend

        summary = write_blend(take, output_path, models_dir=args.models, **bake_options,
                              start_frame=args.start_frame, key_camera=args.key_camera, missing=args.missing,
                              lean_keys=args.lean_keys,
                              footage=take.source if os.path.exists(take.source) else None,
                              take_path=os.path.abspath(take_path) if take_path else None)
        if not args.quiet:
            faces = ", ".join(f"{name} ({keys} keys" + (f", reduced from {samples})" if keys < samples else ")")
                              for name, samples, keys in summary)
            print(f"wrote {output_path}: {faces}")
        if args.retarget:
            from ddfa_blender.blender.retarget import retarget_blend

            result = retarget_blend(output_path, take, args.retarget, args.mapping, models_dir=args.models,
                                    head="bone" if args.head_bone else "object", head_bone=args.head_bone)
            if not args.quiet:
                print(f"retargeted onto {args.retarget}:")
                for line in result.report.lines():
                    print(f"  {line}")


def clip_jobs(args):
    """(input, take, preview, output) per clip; a folder of videos expands to one job per video."""
    from ddfa_blender.core.sources import is_video_file

    if args.input and os.path.isdir(args.input):
        videos = sorted(os.path.join(args.input, n) for n in os.listdir(args.input)
                        if is_video_file(os.path.join(args.input, n)))
        if videos:
            for target in (args.take, args.preview, args.output):
                if target:
                    os.makedirs(target, exist_ok=True)

            def inside(folder, clip, extension):
                stem = os.path.splitext(os.path.basename(clip))[0]
                return os.path.join(folder, stem + extension) if folder else None

            return [(v, inside(args.take, v, ".npz"), inside(args.preview, v, ".mp4"),
                     inside(args.output, v, ".blend")) for v in videos]
    return [(args.input, args.take, args.preview, args.output)]


def checked_bake_options(args) -> dict:
    """Smoothing and track choice, checked before any capture runs."""
    from ddfa_blender.core.take import parse_tracks

    return {"smoothing": smoothing_settings(args), "tracks": parse_tracks(args.tracks)}


def main(argv) -> int:
    args = parse_args(argv)
    failures = 0
    try:
        bake_options = checked_bake_options(args)
        jobs = clip_jobs(args)
        for job in jobs:
            try:
                process_clip(args, bake_options, *job)
            except CaptureError as err:
                if len(jobs) == 1:
                    raise
                failures += 1
                print(f"error: {job[0]}: {err}", file=sys.stderr)
    except CaptureError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (CaptureCancelled, KeyboardInterrupt):
        print("interrupted: nothing more was written", file=sys.stderr)
        return 130
    return 1 if failures else 0


def script_arguments() -> list[str]:
    """Arguments for this script: those after ``--`` when Blender runs it, else all."""
    if "--" in sys.argv:
        return sys.argv[sys.argv.index("--") + 1 :]
    return sys.argv[1:]


if __name__ == "__main__":
    sys.exit(main(script_arguments()))
