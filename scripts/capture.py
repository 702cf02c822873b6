"""Capture facial animation from footage, headless.

    python scripts/capture.py --input clip.mp4 --take out.npz [--preview out.mp4]
                              [--output out.blend] [--model mb05|mb1|PATH.onnx] [--threads N]
    python scripts/capture.py --take out.npz --output out.blend      (bake an existing take)
    python scripts/capture.py --input clips/ --output blends/         (a folder of clips)
    blender -b --factory-startup -P scripts/capture.py -- --input clip.mp4 --output out.blend

``--input`` takes a video, an image, a folder of images or a printf pattern
(``shot_%04d.png``); a folder of videos is captured clip by clip. ``--output``
needs ``bpy`` (Blender, or the bpy module); everything else runs without it.

Exit codes: 0 done; 1 failed (one line on stderr names the cause and the
fix; in a folder batch, at least one clip failed); 2 bad usage (nothing was
run); 130 interrupted (Ctrl-C); 143 terminated (SIGTERM). Every output of a
clip is written to a temporary file beside it and renamed into place only
when all of that clip's outputs are complete: a failed or interrupted clip
leaves the previous files as they were and no temporary files.
``--debug`` (or ``DDFA_DEBUG=1``) adds the traceback to an error.

The per-clip path is :func:`run_clip` (a :class:`ClipJob` and the checked
:class:`Settings` in, a :class:`ClipResult` out), shared with batch runners.
"""

from __future__ import annotations

import signal
import sys

_RECEIVED: list[int] = []  # signals this process was sent (the handlers below record them)

if __name__ == "__main__" and sys.platform != "win32":  # Ctrl-C and SIGTERM before main() takes over:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # nothing is written yet, just stop
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))

import argparse
import dataclasses
import math
import os
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ddfa_blender.core.clip_result import STATUS_DONE, STATUS_FAILED, ClipResult  # noqa: E402
from ddfa_blender.core.errors import (  # noqa: E402
    CaptureCancelled, CaptureError, Terminated, UsageError,
)

EXIT_DONE = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
TAKE_EXTENSIONS = (".npz",)
PREVIEW_EXTENSIONS = (".mp4", ".mov", ".m4v")
BLEND_EXTENSIONS = (".blend",)
MAX_FACES = 16
MAX_FPS = 240.0


class Messages:
    """Where this script's own lines go (progress, warnings, errors): stderr, flushed at once.

    Plain ``sys.stderr``, not a private copy of file descriptor 2: nothing in
    the project redirects fd 2 (:mod:`ddfa_blender.core.mediapipe_tasks`
    quiets MediaPipe's own log levels instead).
    """

    def __init__(self):
        self.stream = sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def line(self, text: str) -> None:
        self.write(text + "\n")


class ProgressBar:
    """A one-line progress bar on stderr (a line every 2 s when stderr is not a terminal)."""

    def __init__(self, label: str, messages: Messages, quiet: bool = False):
        self.label = label
        self.quiet = quiet
        self.messages = messages
        self.start = time.perf_counter()
        self.last = 0.0  # the first frame shows the bar at once
        self.tty = messages.tty

    def __call__(self, done: int, total: int | None) -> None:
        now = time.perf_counter()
        if self.quiet or (now - self.last < (0.1 if self.tty else 2.0)):
            return
        self.last = now
        self.messages.write(("\r" if self.tty else "") + self._line(done, total) + ("" if self.tty else "\n"))

    def finish(self, done: int) -> None:
        if not self.quiet and self.tty:
            self.messages.write("\r" + self._line(done, done) + "\n")

    def _line(self, done: int, total: int | None) -> str:
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        if total:
            filled = int(30 * min(done / total, 1.0))
            return f"{self.label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} frames, {rate:.0f} fps"
        return f"{self.label} {done} frames, {rate:.0f} fps"


# -- the command line -------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes are one line (a UsageError) instead of usage text and exit."""

    def error(self, message):
        raise UsageError(f"{message[0].upper()}{message[1:]}; see `capture.py --help`.")


def parse_args(argv):
    parser = _Parser(prog="capture.py", description=__doc__.split("\n\n")[0])
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
    parser.add_argument("--fps", type=float,
                        help="frame rate: of image sequences (default 24); for a video, the scene rate of "
                        "the bake (default: the video's own) and the timing of raw streams without one")
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
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (also DDFA_DEBUG=1)")
    args = parser.parse_args(argv)
    if not args.input and not args.take:
        parser.error("give --input (footage) or --take (an existing take to bake)")
    if not (args.take or args.preview or args.output):
        parser.error("nothing to write: give --take, --preview and/or --output")
    if args.preview_compare and not args.preview:
        parser.error("--preview-compare needs --preview")
    if args.retarget and not args.output:
        parser.error("--retarget needs --output")
    if (args.mapping or args.head_bone) and not args.retarget:
        parser.error("--mapping and --head-bone need --retarget")
    return args


@dataclasses.dataclass
class Settings:
    """Everything a clip needs besides its paths, checked before any capture starts."""

    args: argparse.Namespace
    smoothing: object
    tracks: list | None
    single_clip: bool = True  # print the clip's own summary (a batch prints one line per clip)
    messages: Messages = dataclasses.field(default_factory=Messages)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_options(args, messages: Messages | None = None) -> Settings:
    """Option ranges and the smoothing and track choice; UsageError naming the fix."""
    import dataclasses as dc

    from ddfa_blender.core.smoothing import PRESETS
    from ddfa_blender.core.take import parse_tracks

    cores = usable_cores()
    if args.threads is not None and not 1 <= args.threads <= cores:
        raise UsageError(f"--threads {args.threads} is out of range: this machine has {cores} core(s); "
                         f"give 1 to {cores}.")
    if not 1 <= args.max_faces <= MAX_FACES:
        raise UsageError(f"--max-faces {args.max_faces} is out of range: give 1 to {MAX_FACES}.")
    if args.fps is not None and not (math.isfinite(args.fps) and 0 < args.fps <= MAX_FPS):
        raise UsageError(f"--fps {args.fps:g} is out of range: give a frame rate above 0 and at most {MAX_FPS:g}.")
    if args.start_frame < 0:
        raise UsageError(f"--start-frame {args.start_frame} is negative: Blender scenes start at frame 0 or later.")
    for name in ("smooth_rotation", "smooth_translation", "smooth_expression", "bridge_gaps"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UsageError(f"--{name.replace('_', '-')} {value:g} must be a number of seconds >= 0.")
    if args.smooth not in PRESETS:
        raise UsageError(f"Unknown smoothing preset '{args.smooth}': use {', '.join(PRESETS)}.")
    overrides = {group: getattr(args, f"smooth_{group}") for group in ("rotation", "translation", "expression")}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.bridge_gaps is not None:
        overrides.update(bridge_gaps=True, max_gap=args.bridge_gaps)
    if args.min_confidence is not None:
        if not (math.isfinite(args.min_confidence) and 0.0 <= args.min_confidence <= 1.0):
            raise UsageError(f"--min-confidence {args.min_confidence:g} is out of range: give 0 to 1.")
        overrides.update(min_confidence=args.min_confidence)
    if args.keep_flagged:
        overrides.update(keep_flagged=True)
    try:
        smoothing = dc.replace(PRESETS[args.smooth], **overrides)
        tracks = parse_tracks(args.tracks)
    except CaptureError as err:
        raise UsageError(str(err)) from None
    model = args.model
    if model not in ("mb05", "mb1"):
        if not model.lower().endswith(".onnx"):
            raise UsageError(f"--model {model}: give mb05, mb1 or a path to an .onnx file.")
        if not os.path.isfile(model):
            raise CaptureError(f"Model file not found: {model}; check the path.")
    for option, value, extensions in (("--preview", args.preview, PREVIEW_EXTENSIONS),
                                      ("--output", args.output, BLEND_EXTENSIONS),
                                      ("--mapping", args.mapping, (".json",))):
        if value and not _is_folder_target(args, value) and not value.lower().endswith(extensions):
            raise UsageError(f"{option} {value}: the file name must end with {' or '.join(extensions)}.")
    if args.take and not _is_folder_target(args, args.take) and not args.take.lower().endswith(TAKE_EXTENSIONS):
        raise UsageError(f"--take {args.take}: a take file name must end with .npz.")
    return Settings(args, smoothing, tracks, messages=messages or Messages())


def _is_folder_target(args, value) -> bool:
    """In a folder batch the outputs are folders."""
    return bool(args.input and os.path.isdir(args.input) and _folder_videos(args.input))


# -- jobs -------------------------------------------------------------------------------


@dataclasses.dataclass
class ClipJob:
    """One clip's paths: ``input`` footage (None: read ``take``), and the outputs to write."""

    input: str | None
    take: str | None
    preview: str | None
    output: str | None

    def outputs(self) -> list[tuple[str, str]]:
        """(path, what) of every file this job writes."""
        found = [(self.take, "take")] if self.input and self.take else []
        found += [(p, what) for p, what in ((self.preview, "preview"), (self.output, ".blend")) if p]
        return found


def _folder_videos(folder) -> list[str]:
    from ddfa_blender.core.sources import is_video_file

    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if is_video_file(os.path.join(folder, n)))


def clip_jobs(args) -> list[ClipJob]:
    """One job per clip; a folder of videos expands to one job per video (outputs inside
    the folders given as --take, --preview and --output)."""
    if args.input and os.path.isdir(args.input):
        videos = _folder_videos(args.input)
        if videos:
            for option, folder in (("--take", args.take), ("--preview", args.preview), ("--output", args.output)):
                if folder and os.path.exists(folder) and not os.path.isdir(folder):
                    raise UsageError(f"{option} {folder} must be a folder when --input is a folder of videos.")
                if option == "--preview" and folder and _same_path(folder, args.input):
                    raise UsageError("--preview must not be the input folder: previews would be taken "
                                     "for clips on the next run; choose another folder.")

            def inside(folder, clip, extension):
                stem = os.path.splitext(os.path.basename(clip))[0]
                return os.path.join(folder, stem + extension) if folder else None

            return [ClipJob(v, inside(args.take, v, ".npz"), inside(args.preview, v, ".mp4"),
                            inside(args.output, v, ".blend")) for v in videos]
    take = args.take
    if args.input and args.output and not take:
        take = os.path.splitext(args.output)[0] + ".npz"
    return [ClipJob(args.input, take, args.preview, args.output)]


def _same_path(a, b) -> bool:
    a, b = os.path.abspath(os.fspath(a)), os.path.abspath(os.fspath(b))
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def check_job_paths(job: ClipJob, other_inputs: list[str]) -> None:
    """Refuse a job whose outputs collide with an input or with each other (UsageError)."""
    inputs = [(job.input, "--input")] if job.input else [(job.take, "--take (read)")]
    inputs += [(p, what) for p, what in other_inputs if p]
    outputs = job.outputs()
    for index, (path, what) in enumerate(outputs):
        for source, source_what in inputs:
            if source and _same_path(path, source):
                raise UsageError(f"The {what} {path} would overwrite the input ({source_what} {source}); "
                                 "choose another output name.")
        for other, other_what in outputs[index + 1:]:
            if _same_path(path, other):
                raise UsageError(f"The {what} and the {other_what} are the same file ({path}); "
                                 "give them different names.")


def check_job_outputs(job: ClipJob) -> None:
    """Every output's folder exists and can be written (CaptureError naming the fix)."""
    from ddfa_blender.core.atomic_file import check_writable_folder

    for path, what in job.outputs():
        check_writable_folder(path, what)


# -- one clip ---------------------------------------------------------------------------


def run_clip(job: ClipJob, settings: Settings, progress: bool = True) -> ClipResult:
    """Capture (or load) one clip and write its outputs all together, or none of them.

    Returns a :class:`ClipResult`: ``"done"``, or ``"failed"`` with the
    one-line error of a :class:`CaptureError` and what was known when it
    failed (the frames read; the faces found once the capture finished).
    Interrupts (KeyboardInterrupt, :class:`Terminated`), usage errors and bugs
    propagate, after the clip's temporary files are removed; previous files
    are never touched unless the clip succeeds.
    """
    started = time.perf_counter()
    result = ClipResult(job.input or job.take, STATUS_FAILED)  # filled in as the clip goes
    try:
        _write_clip(job, settings, result, progress and not settings.args.quiet)
    except UsageError:
        raise
    except CaptureError as err:
        result.error = one_line(err)
    result.seconds = time.perf_counter() - started
    return result


def _write_clip(job: ClipJob, settings: Settings, result: ClipResult, progress: bool) -> None:
    from ddfa_blender.core.atomic_file import OutputSet
    from ddfa_blender.core.take import Take

    args = settings.args
    check_job_outputs(job)
    with OutputSet() as outputs:
        take_file = outputs.path_for(job.take, "take") if job.input and job.take else None
        preview_file = outputs.path_for(job.preview, "preview") if job.preview else None
        blend_file = outputs.path_for(job.output, ".blend") if job.output else None
        if job.input:
            from ddfa_blender.core.engine import CaptureOptions, capture, capture_to_file

            options = CaptureOptions(model=args.model, models_dir=args.models, threads=args.threads or 1,
                                     max_faces=args.max_faces, fps=args.fps)
            if args.eyes or args.retarget:
                from ddfa_blender.core.face_landmarker import make_channels

                options.channels = make_channels(args.models)
            bar = ProgressBar(f"capture {os.path.basename(job.input)}", settings.messages, not progress)

            def counted(done, total):
                result.frames = done
                bar(done, total)

            if take_file:
                summary = capture_to_file(job.input, take_file, options, progress=counted)
                take = Take.load(take_file) if (preview_file or blend_file) else None
            else:
                take = capture(job.input, options, progress=counted)
                summary = take_summary(take)
            bar.finish(summary.frames)
            for warning in summary.warnings:
                settings.messages.line(f"warning: {warning}")
        else:
            take = Take.load(job.take)
            summary = take_summary(take)
            _check_footage_is_not_output(take, job)
        result.frames, result.frames_with_face = summary.frames, summary.frames_with_face
        result.tracks, result.warnings = len(summary.tracks), list(summary.warnings)
        if preview_file:
            _write_preview(take, preview_file, settings, progress)
        if blend_file:
            _write_blend(take, blend_file, job, settings)
        _stop_if_signalled()
        outputs.commit()
    result.status, result.outputs = STATUS_DONE, [p for p, _ in job.outputs()]
    if not args.quiet and settings.single_clip:
        written = ", ".join(p for p, _ in job.outputs())
        print(f"{result.input}: {result.frames} frames, {result.frames_with_face} with a face, "
              f"{result.tracks} track(s)" + (f" -> {written}" if written else ""))
        rows = take if take is not None else summary.confidence  # (a streamed take is not loaded)
        if rows is not None:
            from ddfa_blender.core.confidence import flagged_summary

            smoothing = settings.smoothing
            print(f"  {flagged_summary(rows, smoothing.min_confidence, smoothing.keep_flagged)}")


def take_summary(take):
    """A take's :class:`CaptureSummary` (frames, frames with a face, tracks with a face)."""
    import numpy as np

    from ddfa_blender.core.engine import CaptureSummary

    return CaptureSummary(
        frames=len(take.frames()), face_rows=int(take.valid.sum()),
        frames_with_face=len(np.unique(take.frame[take.valid])),
        tracks=sorted({int(t) for t in take.track[take.valid]}), fps=take.fps,
        image_size=take.image_size, warnings=list(take.meta.get("warnings", [])),
    )


def _check_footage_is_not_output(take, job) -> None:
    if take.source and os.path.exists(take.source):  # (a pattern names no single file to overwrite)
        for path, what in job.outputs():
            if _same_path(path, take.source):
                raise UsageError(f"The {what} {path} would overwrite the take's footage {take.source}; "
                                 "choose another output name.")


def _write_preview(take, path, settings, progress) -> None:
    from ddfa_blender.core.preview import write_preview

    args = settings.args
    second = None
    if args.preview_compare:
        from ddfa_blender.core.engine import CaptureOptions, load_face_model, models_folder
        from ddfa_blender.core.smoothing import smooth_take

        face = load_face_model(models_folder(CaptureOptions(models_dir=args.models)))
        second = smooth_take(take, settings.smoothing, face)
    bar = ProgressBar("preview", settings.messages, not progress)
    count = write_preview(take, path, second, args.preview_compare or "overlay", progress=bar)
    bar.finish(count)


def _write_blend(take, path, job, settings) -> None:
    from ddfa_blender.blender.headless import write_blend

    args = settings.args
    from ddfa_blender.core.sources import footage_exists

    footage = take.source if footage_exists(take.source) else None
    summary = write_blend(take, path, models_dir=args.models, smoothing=settings.smoothing, tracks=settings.tracks,
                          start_frame=args.start_frame, key_camera=args.key_camera, missing=args.missing,
                          lean_keys=args.lean_keys, footage=footage, scene_fps=args.fps,
                          take_path=os.path.abspath(job.take) if job.take else None)
    if not args.quiet:
        faces = ", ".join(f"{name} ({keys} keys" + (f", reduced from {samples})" if keys < samples else ")")
                          for name, samples, keys in summary)
        print(f"baked {job.output}: {faces}")
    if args.retarget:
        from ddfa_blender.blender.retarget import retarget_blend

        result = retarget_blend(path, take, args.retarget, args.mapping, models_dir=args.models,
                                head="bone" if args.head_bone else "object", head_bone=args.head_bone)
        if not args.quiet:
            print(f"retargeted onto {args.retarget}:")
            for line in result.report.lines():
                print(f"  {line}")


# -- checks that need Blender -------------------------------------------------------------


def check_blender(args) -> None:
    """``--output`` needs bpy; ``--retarget`` needs a usable avatar, mapping and bone."""
    if not args.output:
        return
    try:
        import bpy  # noqa: F401
    except ImportError:
        raise CaptureError("--output needs Blender's Python module: run this script with "
                           "`blender -b -P scripts/capture.py -- ...`, or install the bpy package.") from None
    if args.retarget:
        from ddfa_blender.blender.headless import check_retarget

        check_retarget(args.retarget, args.mapping, args.head_bone)


def retarget_inputs(args) -> list[tuple[str, str]]:
    """Files a run reads besides its footage or take (outputs must not overwrite them)."""
    found = []
    if args.retarget:
        path = args.retarget
        head, sep, tail = path.rpartition(":")
        if sep and head.lower().endswith(".blend"):
            path = head
        found.append((path, "--retarget avatar"))
    if args.mapping:
        found.append((args.mapping, "--mapping"))
    if args.model.lower().endswith(".onnx"):
        found.append((args.model, "--model"))
    return found


# -- errors and signals -------------------------------------------------------------------


def one_line(err: BaseException) -> str:
    """An exception's message as one line."""
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _raise_terminated(signum, frame):
    _RECEIVED.append(signum)
    raise Terminated()


def _raise_interrupted(signum, frame):
    _RECEIVED.append(signum)
    raise KeyboardInterrupt()


def _stop_if_signalled() -> None:
    """Re-raise a Ctrl-C or SIGTERM that something swallowed (a ``__del__``, a library)."""
    if _RECEIVED:
        raise Terminated() if _RECEIVED[-1] == getattr(signal, "SIGTERM", None) else KeyboardInterrupt()


def _quiet_unraisable(default):
    """``sys.unraisablehook`` that drops our own interrupt when it lands in a ``__del__``
    (it is recorded and acted on), and passes everything else to ``default``."""
    def hook(unraisable):
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            default(unraisable)
    return hook


def preload(args) -> None:
    """Import the native libraries with Ctrl-C and SIGTERM held back: an interrupt inside a
    native import (bpy above all) can leave the process crashing at exit."""
    from ddfa_blender.core.atomic_file import signals_deferred

    with signals_deferred():
        import cv2  # noqa: F401
        import numpy  # noqa: F401
        import onnxruntime  # noqa: F401

        if args.output:
            try:
                import bpy  # noqa: F401
            except ImportError:
                pass  # check_blender says what to do


def _interrupt_behind(err: BaseException):
    """The KeyboardInterrupt (or Terminated) that caused ``err``, if any."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def debugging(argv) -> bool:
    return "--debug" in argv or os.environ.get("DDFA_DEBUG", "") not in ("", "0")




def main(argv) -> int:
    debug = debugging(argv)
    messages = Messages()
    if sys.platform != "win32":
        try:
            signal.signal(signal.SIGTERM, _raise_terminated)
            signal.signal(signal.SIGINT, _raise_interrupted)
        except ValueError:  # not the main thread (embedded): leave the host's handlers
            pass
    sys.unraisablehook = _quiet_unraisable(sys.unraisablehook)
    job = None
    try:
        args = parse_args(argv)
        preload(args)
        settings = check_options(args, messages)
        jobs = clip_jobs(args)
        extra_inputs = retarget_inputs(args)
        for job in jobs:
            check_job_paths(job, extra_inputs)
        job = None
        check_blender(args)
        settings.single_clip = len(jobs) == 1
        if len(jobs) == 1:
            result = run_clip(jobs[0], settings)
            if not result.done:
                raise CaptureError(result.error)
            return EXIT_DONE
        return run_batch(jobs, settings)
    except UsageError as err:
        _report(err, debug, messages)
        return EXIT_USAGE
    except CaptureError as err:
        _report(err, debug, messages)
        return EXIT_FAILED
    except (Terminated, KeyboardInterrupt, CaptureCancelled) as err:
        kind = "terminated" if isinstance(err, Terminated) else "interrupted"
        messages.line(f"{kind}: stopped; outputs not complete were not written and previous files are unchanged")
        return EXIT_TERMINATED if isinstance(err, Terminated) else EXIT_INTERRUPTED
    except Exception as err:  # a bug, not a user mistake: still one line unless debugging
        stop = _interrupt_behind(err) or (KeyboardInterrupt() if _RECEIVED else None)
        if stop is not None:  # an interrupt that a library turned into another error (e.g. an import)
            kind = "terminated" if isinstance(stop, Terminated) else "interrupted"
            messages.line(f"{kind}: stopped; outputs not complete were not written and previous files "
                          "are unchanged")
            return EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED
        if debug:
            traceback.print_exc(file=messages.stream)
        messages.line(f"error: unexpected {type(err).__name__}: {one_line(err)} (a bug: run again with --debug "
                      "and report the traceback); nothing was written")
        return EXIT_FAILED


def run_batch(jobs: list[ClipJob], settings: Settings) -> int:
    """Every clip in turn; a failed clip does not stop the others. One line per clip and a total."""
    created = _make_output_folders(settings.args)
    started = time.perf_counter()
    results = []
    for job in jobs:
        result = run_clip(job, settings)
        results.append(result)
        if result.done:
            print(result.line(), flush=True)
        else:
            settings.messages.line(result.line())
    failed = sum(not r.done for r in results)
    for folder in created:
        if not os.listdir(folder):
            os.rmdir(folder)
    line = (f"{len(results)} clips: {len(results) - failed} done, {failed} failed "
            f"({time.perf_counter() - started:.1f} s)")
    if failed:
        settings.messages.line(line)
    else:
        print(line)
    return EXIT_FAILED if failed else EXIT_DONE


def _make_output_folders(args) -> list[str]:
    created = []
    for folder in (args.take, args.preview, args.output):
        if folder and not os.path.isdir(folder):
            try:
                os.makedirs(folder)
            except OSError as err:
                from ddfa_blender.core.atomic_file import describe_os_error

                raise CaptureError(f"Cannot create output folder {folder}: {describe_os_error(err)}.") from err
            created.append(folder)
    return created


def _report(err: BaseException, debug: bool, messages: Messages) -> None:
    if debug:
        traceback.print_exception(type(err), err, err.__traceback__, file=messages.stream)
    messages.line(f"error: {one_line(err)}")


def script_arguments() -> list[str]:
    """Arguments for this script: those after ``--`` when Blender runs it, else all."""
    if "--" in sys.argv:
        return sys.argv[sys.argv.index("--") + 1 :]
    return sys.argv[1:]


if __name__ == "__main__":
    try:
        code = main(script_arguments())
    except KeyboardInterrupt:  # arrived before main's own handling started: nothing was written
        print("interrupted: nothing was written", file=sys.stderr)
        code = EXIT_INTERRUPTED
    if sys.platform != "win32":  # the outcome is written and reported: a late signal must not turn it
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # into a death by signal while Python shuts down
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # (it restores their default actions first)
    sys.exit(code)
