"""One Capture task: the clips of its chunk, each skipped when complete and up to date, else captured.

Each clip is captured by ``scripts/capture.py``'s own per-clip code (the
one-machine folder batch runs the same), then its record is written. A clip
that fails is recorded with its one-line error and the task goes on with
the rest of its chunk; the task then exits 1 with the error as its last
line, so the farm shows that task failed and leaves the others alone.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import traceback

from ddfa_blender.core.atomic_file import remove_stale_temporaries
from ddfa_blender.core.clip_batch import check_output_folder, clip_label, clip_outputs, list_clips
from ddfa_blender.core.clip_record import clip_fingerprint, redo_reason, write_record
from ddfa_blender.core.clip_result import STATUS_FAILED, ClipResult
from ddfa_blender.core.errors import CaptureError

from .job_settings import JobSettings
from .openjd_values import parse_range

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def job_clips(settings: JobSettings) -> list[str]:
    """The job's clips in task order, checked against the count the job was made for."""
    clips = list_clips(settings.clips, settings.clip_list, settings.map_path)
    if len(clips) != settings.clip_count:
        source = settings.clip_list or settings.clips
        raise CaptureError(
            f"{source} now holds {len(clips)} clips but the job was made for {settings.clip_count}: "
            "the clips changed after submission; submit the job again with the new count "
            "(python farm/job_params.py counts them)."
        )
    check_output_folder(settings.output, settings.clips, clips)
    return clips


def run_chunk(settings: JobSettings, chunk: str) -> int:
    """Capture the clips numbered by ``chunk`` (a range expression, 1-based); the task's exit code.

    Each failed clip's error goes to stderr as it happens; when the last
    line would not name every failure, a line listing them ends the task.
    """
    try:
        numbers = parse_range(chunk)
    except ValueError:
        raise CaptureError(f"Task parameter Clip={chunk!r} is not a range of clip numbers such as 3 or 1-5.") from None
    clips = job_clips(settings)
    outside = [n for n in numbers if not 1 <= n <= len(clips)]
    if outside:
        raise CaptureError(f"Clip number {outside[0]} is outside 1-{len(clips)}: the task does not belong to this job.")
    os.makedirs(settings.output, exist_ok=True)
    fingerprints: dict[str, dict] = {}

    def fingerprint(path: str) -> dict:  # the avatar or model, hashed once per task
        if path not in fingerprints:
            fingerprints[path] = clip_fingerprint(path)
        return fingerprints[path]

    failures, last_failed = [], False
    for number in numbers:
        clip = clips[number - 1]
        label = f"clip {number}/{len(clips)} {clip_label(clip, settings.clips)}"
        outputs = clip_outputs(clip, settings.output)
        wanted = settings.record_settings(fingerprint)
        reason = redo_reason(outputs.record, clip, wanted)
        last_failed = False
        if reason is None:
            print(f"{label}: complete and up to date, skipped", flush=True)
            continue
        print(f"{label}: capturing ({reason})", flush=True)
        for path in outputs.files():
            for leftover in remove_stale_temporaries(path):
                print(f"{label}: removed {os.path.basename(leftover)} left by an interrupted run")
        clip_id = clip_fingerprint(clip)
        result = capture_clip(clip, outputs, settings)
        write_record(outputs.record, result, clip_id, wanted)
        if result.done:
            print(f"{label}: done, {result.counts()}", flush=True)
        else:
            failures.append(f"{clip_label(clip, settings.clips)}: {result.error}")
            print(f"error: {failures[-1]}", file=sys.stderr, flush=True)
            last_failed = True
    if failures and not (len(failures) == 1 and last_failed):  # the task's last line names what failed
        print(f"error: {len(failures)} of {len(numbers)} clips failed: " + "; ".join(failures),
              file=sys.stderr, flush=True)
    return 1 if failures else 0


def capture_clip(clip: str, outputs, settings: JobSettings) -> ClipResult:
    """Capture ``clip`` into ``outputs`` with ``scripts/capture.py``'s per-clip code; never raises
    for a problem with the clip (it comes back as a failed result with its one-line error and
    what was known when it failed, e.g. the frames read). ``seconds`` includes the checks."""
    script = capture_script()
    started = time.perf_counter()
    try:
        args = script.parse_args(capture_argv(clip, outputs, settings))
        checked = script.check_options(args)
        checked.single_clip = False  # this task prints its own line per clip
        job = script.ClipJob(clip, outputs.take, outputs.preview, outputs.blend)
        script.check_job_paths(job, script.retarget_inputs(args))
        script.check_blender(args)
        result = script.run_clip(job, checked)
    except CaptureError as err:
        result = ClipResult(clip, STATUS_FAILED, error=script.one_line(err))
    except Exception as err:  # a bug, not the clip's fault: keep the traceback in the task log
        traceback.print_exc()
        result = ClipResult(clip, STATUS_FAILED,
                            error=f"internal error ({type(err).__name__}: {err}); report it with this task's log.")
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def capture_argv(clip: str, outputs, settings: JobSettings) -> list[str]:
    """The ``scripts/capture.py`` command line that captures ``clip`` into ``outputs``."""
    return ["--input", clip, "--take", outputs.take, "--output", outputs.blend,
            "--preview", outputs.preview, *settings.capture_arguments()]


def capture_script():
    """``scripts/capture.py`` as a module (it is a script, not part of the package)."""
    module = sys.modules.get("ddfa_capture_script")
    if module is None:
        path = os.path.join(PROJECT_ROOT, "scripts", "capture.py")
        spec = importlib.util.spec_from_file_location("ddfa_capture_script", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["ddfa_capture_script"] = module
        spec.loader.exec_module(module)
    return module
