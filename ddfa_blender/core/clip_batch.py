"""A batch of clips: which clips, in which order, and where each one's outputs go.

Shared by the farm job (``farm/``) and the one-machine folder batch. On a
farm a clip's place in :func:`list_clips` is its task number (1-based), so the
order is part of the contract: file names sorted by code point, the same on
every operating system.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from typing import Callable

from .errors import CaptureError
from .sources import VIDEO_EXTENSIONS

_PRINTF_COUNTER = re.compile(r"%0?\d*d")


@dataclasses.dataclass(frozen=True)
class ClipOutputs:
    """Where one clip's outputs go: take, Blender file, preview and the clip's record."""

    take: str
    blend: str
    preview: str
    record: str

    def files(self) -> tuple[str, str, str]:
        """The capture's outputs (the record is written after them)."""
        return (self.take, self.blend, self.preview)


def clip_stem(clip: str) -> str:
    """The name a clip's outputs are called after.

    A video or an image: its file name without extension; a folder of
    images: the folder's name; a printf pattern (``shot_%04d.png``): the
    pattern without its counter and extension (``shot``).
    """
    clip = os.path.normpath(clip)
    name = os.path.basename(clip)
    if _PRINTF_COUNTER.search(name):
        return _PRINTF_COUNTER.sub("", os.path.splitext(name)[0]).strip("_-. ") or "sequence"
    if os.path.isdir(clip):
        return name
    return os.path.splitext(name)[0]


def clip_outputs(clip: str, output_dir: str) -> ClipOutputs:
    """The outputs of ``clip`` in ``output_dir``: ``<stem>.npz``, ``<stem>.blend``,
    ``<stem>_preview.mp4`` and the record ``<stem>.capture.json``."""
    base = os.path.join(output_dir, clip_stem(clip))
    return ClipOutputs(base + ".npz", base + ".blend", base + "_preview.mp4", base + ".capture.json")


def list_clips(folder: str, list_file: str = "", map_path: Callable[[str], str] | None = None) -> list[str]:
    """The clips of a batch as absolute paths, in task order.

    Without ``list_file``: every video file directly in ``folder``, sorted by
    name. With it: the clips that text file names, one per line, in its
    order (blank lines and lines starting with ``#`` are skipped). A relative
    name is resolved against ``folder`` (so a list travels with the folder it
    sits beside); an absolute one is passed through ``map_path`` first (a
    farm worker's path mapping). A listed clip may be anything
    ``scripts/capture.py --input`` takes: a video, an image, a folder of
    images or a printf pattern.

    Raises ``CaptureError`` naming the fix when the folder or the list is
    missing, nothing is listed, a listed clip does not exist, a clip is listed
    twice, or two clips would write the same outputs.
    """
    if not os.path.isdir(folder):
        raise CaptureError(f"Clips folder {folder} does not exist: check the path (and the path mapping).")
    folder = os.path.abspath(folder)
    if list_file:
        clips = _read_list(folder, list_file, map_path or (lambda path: path))
    else:
        clips = sorted(
            os.path.join(folder, name)
            for name in os.listdir(folder)
            if name.lower().endswith(VIDEO_EXTENSIONS) and os.path.isfile(os.path.join(folder, name))
        )
        if not clips:
            raise CaptureError(
                f"No video files in {folder} (looked for {', '.join(VIDEO_EXTENSIONS)}): "
                "point at the folder holding the clips, or give a clip list."
            )
    _check_distinct(clips)
    return clips


def check_output_folder(output_dir: str, clips_folder: str, clips: list[str]) -> None:
    """Raise ``CaptureError`` unless ``output_dir`` can take the batch's outputs.

    It must not be the clips folder (its previews would be listed as clips by
    the next run), and no output may be one of the clips.
    """
    if os.path.abspath(output_dir) == os.path.abspath(clips_folder):
        raise CaptureError(
            f"The output folder is the clips folder ({clips_folder}): choose another output folder."
        )
    inputs = {os.path.abspath(c) for c in clips}
    for clip in clips:
        for path in clip_outputs(clip, output_dir).files():
            if os.path.abspath(path) in inputs:
                raise CaptureError(
                    f"Output {path} would overwrite a clip of the batch: choose another output folder."
                )


def clip_label(clip: str, folder: str) -> str:
    """How a clip is named in logs and summaries: relative to the clips folder when inside it."""
    clip, folder = os.path.abspath(clip), os.path.abspath(folder)
    if os.path.commonpath([clip, folder]) == folder:
        return os.path.relpath(clip, folder).replace(os.sep, "/")
    return clip


def _read_list(folder: str, list_file: str, map_path: Callable[[str], str]) -> list[str]:
    path = list_file if os.path.isabs(list_file) else os.path.join(folder, list_file)
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        raise CaptureError(f"Clip list {path} does not exist: check the path (and the path mapping).") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CaptureError(f"Cannot read clip list {path} ({err}): save it as UTF-8 text, one clip per line.") from None
    clips = []
    for number, line in enumerate(lines, start=1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        clip = os.path.normpath(map_path(name) if os.path.isabs(name) else os.path.join(folder, name))
        if not _exists(clip):
            raise CaptureError(f"Clip list {path}, line {number}: {clip} does not exist; fix or remove the line.")
        clips.append(clip)
    if not clips:
        raise CaptureError(f"Clip list {path} names no clips: write one clip per line.")
    return clips


def _exists(clip: str) -> bool:
    if _PRINTF_COUNTER.search(os.path.basename(clip)):
        return bool(glob.glob(_PRINTF_COUNTER.sub("*", glob.escape(clip))))
    return os.path.exists(clip)


def _check_distinct(clips: list[str]) -> None:
    paths: set[str] = set()
    stems: dict[str, str] = {}  # case-folded stem -> clip: shared storage may ignore case
    for clip in clips:
        key = os.path.normcase(os.path.abspath(clip))
        if key in paths:
            raise CaptureError(f"Clip {clip} is listed twice: remove one line.")
        paths.add(key)
        stem = clip_stem(clip).casefold()
        if stem in stems:
            raise CaptureError(
                f"Clips {stems[stem]} and {clip} would both write {clip_stem(clip)}.*: rename one of them."
            )
        stems[stem] = clip
