"""The job environment's check of a worker, run once when OpenJD opens a session there.

Everything a Capture task needs is checked before the first clip: the
interpreter (or Blender) and its packages, the prepared models for the
chosen options, the smoothing preset and avatar, the clips (their number
against the job's) and the output folder. The first problem ends the check
with one :class:`CaptureError` line naming it and the fix, so a worker that
cannot capture fails once instead of failing every task.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import tempfile

from ddfa_blender import __version__
from ddfa_blender.core.clip_batch import clip_outputs
from ddfa_blender.core.errors import CaptureError

from .capture_chunk import capture_argv, capture_script, job_clips
from .job_settings import JobSettings, split_avatar

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIN_PYTHON = (3, 11)
MIN_BLENDER = (4, 2, 0)
PACKAGES = ("numpy", "cv2", "onnxruntime", "mediapipe")


def check_worker(settings: JobSettings, inside_blender: bool) -> list[str]:
    """Check this worker for ``settings``; the lines to log. Raises ``CaptureError``."""
    lines = [_software(inside_blender)]
    if not inside_blender:
        lines += [f"warning: {problem}" for problem in _unpinned_packages()]
    lines.append(_models(settings))
    clips = job_clips(settings)
    _output_folder(settings.output)
    _capture_options(settings, clips[0])
    source = f"list {settings.clip_list}" if settings.clip_list else f"folder {settings.clips}"
    lines.append(f"{len(clips)} clips ({source}); output folder {settings.output} is writable")
    return lines


def _software(inside_blender: bool) -> str:
    python = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] < MIN_PYTHON:
        raise CaptureError(f"Python {python} is too old: ddfa-blender needs Python 3.11 or later.")
    found = [f"ddfa-blender {__version__}", f"Python {python}"]
    importer = sys.executable
    if inside_blender:
        import bpy

        if bpy.app.version < MIN_BLENDER:
            raise CaptureError(f"Blender {bpy.app.version_string} is too old: use Blender 4.2 or later.")
        found.append(f"Blender {bpy.app.version_string}")
        importer = f"Blender {bpy.app.version_string} (Python {python})"
    for name in PACKAGES + (() if inside_blender else ("bpy",)):
        try:
            module = importlib.import_module(name)
        except Exception as err:  # an ImportError, or a binary that fails while loading
            raise CaptureError(f"{importer} cannot import {name} ({err}): " + _package_fix(inside_blender))
        version = module.app.version_string if name == "bpy" else getattr(module, "__version__", "?")
        found.append(f"{name} {version}")
    return ", ".join(found)


def _unpinned_packages() -> list[str]:
    """Packages whose installed version differs from the project's runtime lock file
    (workers that differ may not give identical takes)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    lock = os.path.join(PROJECT_ROOT, "requirements.lock")
    if not os.path.isfile(lock):
        return [f"no {lock} to compare this environment's package versions with"]
    problems = []
    with open(lock, encoding="utf-8") as handle:
        pins = [Requirement(text) for text in (line.split("#")[0].strip() for line in handle) if text]
    for pin in pins:
        if pin.marker is not None and not pin.marker.evaluate():
            continue  # pinned for another Python
        pinned = f"requirements.lock pins {', '.join(str(s) for s in pin.specifier)}: rebuild this environment"
        try:
            found = metadata.version(pin.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{pin.name} is not installed here, {pinned}")
            continue
        if not pin.specifier.contains(found, prereleases=True):
            problems.append(f"{pin.name} {found} here, {pinned}")
    return problems


def _package_fix(inside_blender: bool) -> str:
    if inside_blender:
        return ("install the ddfa-blender extension zip for this Blender's Python and enable it "
                "for the user the worker runs as (it bundles the packages).")
    return ("set the job's Python to the prepared environment's interpreter "
            "(<project>/.venv/bin/python, made by `make test`), or use Runner blender.")


def _models(settings: JobSettings) -> str:
    from ddfa_blender.core.engine import CaptureOptions, models_folder
    from ddfa_blender.core.model_setup import verify_models
    from ddfa_blender.core.regressor import resolve_model

    folder = models_folder(CaptureOptions(models_dir=settings.models or None))
    prepared = verify_models(folder)
    resolve_model(settings.model, folder)
    wants_eyes = settings.eyes or settings.retarget
    if wants_eyes and "face_landmarker.task" not in prepared:
        raise CaptureError(
            f"Eyes need MediaPipe's face landmarker, not prepared in {folder}: run `python scripts/fetch_models.py`."
        )
    return f"models in {folder}: {settings.model} ready" + (", face landmarker ready" if wants_eyes else "")


def _capture_options(settings: JobSettings, clip: str) -> None:
    """The checks ``scripts/capture.py`` makes before capturing, once for the whole job:
    option ranges, the smoothing preset, the model file, and with a retarget avatar its
    file, object, mapping and bone (opened with Blender's Python)."""
    avatar, _ = split_avatar(settings.retarget)
    if avatar and not os.path.isfile(avatar):
        raise CaptureError(
            f"Retarget avatar {avatar} does not exist on this worker: check the path (and the path mapping)."
        )
    script = capture_script()
    args = script.parse_args(capture_argv(clip, clip_outputs(clip, settings.output), settings))
    script.check_options(args)
    script.check_blender(args)


def _output_folder(folder: str) -> None:
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".ddfa-write-check-"):
            pass
    except OSError as err:
        raise CaptureError(
            f"Cannot write to the output folder {folder} ({err.strerror}) from {platform.node()}: "
            "fix its permissions or choose another output folder."
        ) from None
