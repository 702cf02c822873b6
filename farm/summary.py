"""The job's summary: one row per clip from the clips' records, as CSV and JSON.

Columns: clip, frames, frames_with_face, tracks, seconds, status, error.
``status`` is the record's (``done`` or ``failed``), or ``missing`` for a clip
with no record yet (never run, or its task was stopped). Both files are
written atomically into the output folder, so a summary is always whole.
"""

from __future__ import annotations

import csv
import io
import json
import os

from ddfa_blender.core.atomic_file import atomic_write
from ddfa_blender.core.clip_batch import clip_label, clip_outputs
from ddfa_blender.core.clip_record import read_record
from ddfa_blender.core.clip_result import STATUS_DONE, STATUS_FAILED

COLUMNS = ("clip", "frames", "frames_with_face", "tracks", "seconds", "status", "error")
STATUS_MISSING = "missing"


def summary_rows(clips: list[str], clips_folder: str, output_dir: str) -> list[dict]:
    """One row per clip, in task order."""
    rows = []
    for clip in clips:
        record = read_record(clip_outputs(clip, output_dir).record) or {"status": STATUS_MISSING}
        row = {column: record.get(column, "") for column in COLUMNS}
        row["clip"] = clip_label(clip, clips_folder)
        rows.append(row)
    return rows


def write_summary(rows: list[dict], output_dir: str) -> tuple[str, str]:
    """Write ``summary.csv`` and ``summary.json`` into ``output_dir``; their paths."""
    csv_path = os.path.join(output_dir, "summary.csv")
    json_path = os.path.join(output_dir, "summary.json")
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(csv_path, "summary") as handle:
        handle.write(text.getvalue())
    with atomic_write(json_path, "summary") as handle:
        json.dump({"clips": len(rows), **_totals(rows), "rows": rows}, handle, indent=1)
        handle.write("\n")
    return csv_path, json_path


def totals_line(rows: list[dict]) -> str:
    """``3 clips: 2 done, 1 failed, 0 missing``."""
    return f"{len(rows)} clips: " + ", ".join(f"{n} {status}" for status, n in _totals(rows).items())


def _totals(rows: list[dict]) -> dict[str, int]:
    statuses = (STATUS_DONE, STATUS_FAILED, STATUS_MISSING)
    return {status: sum(row["status"] == status for row in rows) for status in statuses}
