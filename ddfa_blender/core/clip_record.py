"""The record of one clip's capture, and whether its outputs are complete and up to date.

A record (``<stem>.capture.json``, see :func:`.clip_batch.clip_outputs`) is
written atomically after the clip's outputs, whether the capture succeeded or
failed. It holds the result (status, frames, frames with a face, tracks,
seconds, error line: a :class:`.clip_result.ClipResult`), the clip's
fingerprint and the settings used. A clip is complete and up to date, and a
re-run skips it, when its record says ``done`` for the same clip content and
the same settings and every output it wrote still exists. Outputs are checked
for presence only: a ``.blend`` an animator opened and saved is never redone
for that.

Nothing here needs numpy or Blender, so a job's summary reads records with
the standard library alone.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os

from .atomic_file import atomic_write
from .clip_result import STATUS_DONE, ClipResult

RECORD_VERSION = 2  # 2: the record is a ClipResult (status "done"), plus what identifies the capture
_HASH_CHUNK = 1 << 20


def clip_fingerprint(clip: str) -> dict:
    """What identifies the clip's content: for a file its size, modification
    time (ns) and SHA-256; for a folder of images the sizes and times of its files."""
    if os.path.isfile(clip):
        stat = os.stat(clip)
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": _sha256(clip)}
    folder = clip if os.path.isdir(clip) else os.path.dirname(clip)
    listing = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        stat = os.stat(os.path.join(folder, name))
        listing.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return {"listing_sha256": listing.hexdigest()}


def write_record(path: str, result: ClipResult, fingerprint: dict, settings: dict) -> None:
    """Write the record of the clip ``result.input`` to ``path`` atomically.

    The record is ``result.to_dict()`` (its ``outputs`` as names in the
    record's folder: checked for presence on re-runs) plus ``fingerprint``
    (:func:`clip_fingerprint` of the clip) and ``settings`` (the capture
    settings that shape the outputs, compared on re-runs).
    """
    from .. import __version__

    record = {
        "record_version": RECORD_VERSION,
        **result.to_dict(),
        "outputs": [os.path.basename(p) for p in result.outputs],
        "fingerprint": fingerprint,
        "settings": settings,
        "version": __version__,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    with atomic_write(path, "clip record") as handle:
        json.dump(record, handle, indent=1)
        handle.write("\n")


def read_record(path: str) -> dict | None:
    """The record at ``path``, or None when it is missing, unreadable or of another layout
    (the clip is then captured again)."""
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("record_version") != RECORD_VERSION:
        return None
    return record


def redo_reason(record_path: str, clip: str, settings: dict) -> str | None:
    """Why ``clip`` must be captured (again), or None when it is complete and up to date.

    Reasons, first that applies: no record; the last attempt failed; the
    settings changed (naming the first one); the clip changed; an output is
    missing. The clip's content hash is computed only when its size is the
    same but its modification time differs (a copy or a touch).
    """
    record = read_record(record_path)
    if record is None:
        return "not captured yet"
    if record.get("status") != STATUS_DONE:
        return "the last attempt failed"
    old = record.get("settings", {})
    for key in sorted(set(old) | set(settings)):
        if old.get(key) != settings.get(key):
            return f"settings changed ({key}: {old.get(key)!r} -> {settings.get(key)!r})"
    if not _same_clip(record.get("fingerprint", {}), clip):
        return "the clip changed"
    folder = os.path.dirname(record_path)
    for name in record.get("outputs", []):
        if not os.path.exists(os.path.join(folder, name)):
            return f"output {name} is missing"
    return None


def _same_clip(old: dict, clip: str) -> bool:
    if "listing_sha256" in old or not os.path.isfile(clip):
        return old == clip_fingerprint(clip)
    stat = os.stat(clip)
    if stat.st_size != old.get("size"):
        return False
    return stat.st_mtime_ns == old.get("mtime_ns") or _sha256(clip) == old.get("sha256")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
