"""File exports of a take's channels: Live Link Face CSV, and plain CSV / JSON tables.

Live Link Face CSV (the layout of Epic's iPhone app, read by Unreal's Live Link
Face importer and by many DCC importers): a header ``Timecode,
BlendShapeCount``, the 52 ARKit channels in PascalCase in the app's order
(:data:`LIVE_LINK_BLENDSHAPES`), then ``HeadYaw, HeadPitch, HeadRoll,
LeftEyeYaw, LeftEyePitch, LeftEyeRoll, RightEyeYaw, RightEyePitch,
RightEyeRoll``; one row per frame with ``BlendShapeCount`` = 61 (the columns
after it). ``Timecode`` is ``HH:MM:SS:FF.mmm``: frames ``FF`` at the take's
frame rate and the sub-frame as thousandths, from the row's presentation time.
Angles are in radians. Head angles are the head's rotation relative to the
camera (yaw about the vertical axis, positive toward the performer's left;
pitch about the horizontal axis, positive when looking up; roll about the
view axis, positive when the head tilts toward the performer's right
shoulder). Eye angles are derived from the gaze channels (``eyeLook*``): a
channel at 1 is ``EYE_LOOK_RADIANS``; eye roll is 0. Rows without a face
repeat the last tracked values (the first tracked ones before it).

Tables (:func:`take_table`): frame, time, valid, the head rotation
(quaternion, Blender frame) and location (metres), the 10 expression
coefficients, the solver's 52 ARKit channels and MediaPipe's (``mp.*``)
when recorded. :func:`write_table_csv` writes them with a header row (empty
cells for missing values); :func:`write_table_json` as
``{"columns": [...], "rows": [[...], ...], "fps": ...}`` with ``null`` for
missing values.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np

from .arkit import ARKIT_NAMES
from .atomic_file import atomic_write
from .errors import CaptureError

LIVE_LINK_BLENDSHAPES = tuple(name[0].upper() + name[1:] for name in ARKIT_NAMES)
LIVE_LINK_ROTATIONS = (
    "HeadYaw", "HeadPitch", "HeadRoll",
    "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)
LIVE_LINK_HEADER = ("Timecode", "BlendShapeCount", *LIVE_LINK_BLENDSHAPES, *LIVE_LINK_ROTATIONS)
LIVE_LINK_COUNT = len(LIVE_LINK_BLENDSHAPES) + len(LIVE_LINK_ROTATIONS)
EYE_LOOK_RADIANS = math.radians(30.0)


def hold_missing(values, valid) -> np.ndarray:
    """Rows where ``valid`` is false take the last valid row (before the first: the first)."""
    values = np.asarray(values)
    valid = np.asarray(valid, dtype=bool)
    if not valid.any():
        raise CaptureError("The take has no frame with a face; there is nothing to export.")
    index = np.maximum.accumulate(np.where(valid, np.arange(len(valid)), -1))
    index[index < 0] = np.flatnonzero(valid)[0]
    return values[index]


# -- Live Link Face -------------------------------------------------------------------


def head_angles(rotation) -> np.ndarray:
    """(yaw, pitch, roll) radians (N, 3) of camera-frame head rotations (N, 3, 3).

    ``rotation`` maps the head's BFM frame into the camera frame (x right, y up,
    z toward the viewer), as :func:`.pose.decompose_pose` returns it; it is
    factored as ``Ry(yaw) @ Rx(-pitch) @ Rz(roll)`` (see the module doc for signs).
    """
    r = np.asarray(rotation, dtype=np.float64)
    pitch = np.arcsin(np.clip(r[..., 1, 2], -1.0, 1.0))
    yaw = np.arctan2(r[..., 0, 2], r[..., 2, 2])
    roll = np.arctan2(r[..., 1, 0], r[..., 1, 1])
    return np.stack([yaw, pitch, roll], axis=-1)


def eye_angles(weights: dict) -> np.ndarray:
    """Left and right eye (yaw, pitch, roll) radians (N, 6) from the ARKit gaze channels.

    Yaw is positive toward the performer's left (the left eye looking out,
    the right eye looking in), pitch positive looking up.
    """
    def get(name):
        return np.nan_to_num(np.asarray(weights[name], dtype=np.float64))

    left_yaw = get("eyeLookOutLeft") - get("eyeLookInLeft")
    right_yaw = get("eyeLookInRight") - get("eyeLookOutRight")
    left_pitch = get("eyeLookUpLeft") - get("eyeLookDownLeft")
    right_pitch = get("eyeLookUpRight") - get("eyeLookDownRight")
    zero = np.zeros_like(left_yaw)
    return np.stack([left_yaw, left_pitch, zero, right_yaw, right_pitch, zero], axis=-1) * EYE_LOOK_RADIANS


def timecode(seconds: float, fps: float) -> str:
    """``HH:MM:SS:FF.mmm`` for a time in seconds at ``fps`` frames per second."""
    whole = int(math.floor(seconds + 1e-9))
    frames = (seconds - whole) * fps
    frame = int(math.floor(frames + 1e-6))
    sub = int(round((frames - frame) * 1000.0))
    if sub >= 1000:
        frame, sub = frame + 1, 0
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}:{frame:02d}.{sub:03d}"


def parse_timecode(text: str, fps: float) -> float:
    """Seconds of a ``HH:MM:SS:FF[.sub]`` timecode at ``fps`` (inverse of :func:`timecode`)."""
    try:
        hours, minutes, seconds, frames = text.strip().split(":")
        return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + float(frames) / fps
    except ValueError as err:
        raise CaptureError(f"'{text}' is not a Live Link Face timecode (HH:MM:SS:FF.mmm).") from err


def live_link_rows(arkit_weights, head_rotation, fps: float) -> tuple[list[str], np.ndarray]:
    """Timecodes (N,) and values (N, 61) of a Live Link Face recording.

    ``arkit_weights``: a :class:`.arkit.ArkitWeights`; ``head_rotation``:
    camera-frame rotations (N, 3, 3) of the same rows (NaN where no face).
    """
    valid = arkit_weights.valid & np.isfinite(head_rotation).all(axis=(1, 2))
    weights = hold_missing(np.nan_to_num(arkit_weights.weights), valid)
    angles = hold_missing(head_angles(np.where(valid[:, None, None], head_rotation, np.eye(3))), valid)
    eyes = eye_angles({n: weights[:, i] for i, n in enumerate(arkit_weights.names)})
    order = [arkit_weights.names.index(n) for n in ARKIT_NAMES]
    values = np.concatenate([weights[:, order], angles, eyes], axis=1)
    codes = [timecode(float(t), fps) for t in arkit_weights.time]
    return codes, values


def write_live_link_csv(path, arkit_weights, head_rotation, fps: float) -> None:
    """Write a Live Link Face CSV (layout in the module doc) to ``path`` atomically."""
    codes, values = live_link_rows(arkit_weights, head_rotation, fps)
    with atomic_write(path) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(LIVE_LINK_HEADER)
        for code, row in zip(codes, values):
            writer.writerow([code, LIVE_LINK_COUNT, *(_number(v) for v in row)])


def read_live_link_csv(path, fps: float | None = None) -> dict:
    """Read a Live Link Face CSV: ``{"timecode": [...], "names": [...], "values": (N, K)}``.

    ``names`` are the columns after ``BlendShapeCount`` as written in the
    file; with ``fps``, ``"time"`` (N,) holds the timecodes in seconds.
    """
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            table = list(csv.reader(handle))
    except OSError as err:
        raise CaptureError(f"Cannot read {path} ({err.strerror}).") from err
    if not table or table[0][:2] != ["Timecode", "BlendShapeCount"]:
        raise CaptureError(f"{path} is not a Live Link Face CSV (no Timecode,BlendShapeCount header).")
    names = table[0][2:]
    body = [row for row in table[1:] if row]
    values = np.array([[float(v) for v in row[2:]] for row in body], dtype=np.float64).reshape(len(body), len(names))
    out = {"timecode": [row[0] for row in body], "names": names, "values": values}
    if fps:
        out["time"] = np.array([parse_timecode(code, fps) for code in out["timecode"]])
    return out


# -- tables ---------------------------------------------------------------------------


def take_table(take, face_model, track: int = 0, neutral=None, eyes: str = "auto"):
    """Columns (list of names) and values (N, C) float64 of one track's channels (module doc)."""
    from .pose import head_pose_blender
    from .retarget import take_sources

    sources = take_sources(take, face_model, track=track, neutral=neutral, eyes=eyes)
    rows = take.for_track(track)
    head = head_pose_blender(rows.param, rows.roi, rows.image_size)
    columns = ["frame", "time", "valid",
               "rot_w", "rot_x", "rot_y", "rot_z", "loc_x", "loc_y", "loc_z",
               *(f"exp_{i:02d}" for i in range(10)), *sources.channels]
    values = np.column_stack([
        rows.frame.astype(np.float64), rows.time, rows.valid.astype(np.float64),
        head.rotation, head.location, np.where(rows.valid[:, None], rows.param[:, 52:62], np.nan),
        *(sources.channels[name] for name in sources.channels),
    ])
    return columns, values


def write_table_csv(path, columns, values) -> None:
    """Write a table as CSV (header row; empty cells for NaN) atomically."""
    _check_table(columns, values)
    with atomic_write(path) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for row in np.asarray(values, dtype=np.float64):
            writer.writerow([_number(v) for v in row])


def read_table_csv(path) -> tuple[list[str], np.ndarray]:
    """Columns and values (N, C) of a table written by :func:`write_table_csv` (NaN for empty)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            table = list(csv.reader(handle))
    except OSError as err:
        raise CaptureError(f"Cannot read {path} ({err.strerror}).") from err
    if not table:
        raise CaptureError(f"{path} is empty.")
    body = [row for row in table[1:] if row]
    values = np.array([[float(v) if v else np.nan for v in row] for row in body], dtype=np.float64)
    return table[0], values.reshape(len(body), len(table[0]))


def write_table_json(path, columns, values, **metadata) -> None:
    """Write a table as JSON ``{"columns", "rows", **metadata}`` (``null`` for NaN) atomically."""
    _check_table(columns, values)
    rows = [[None if not np.isfinite(v) else float(v) for v in row] for row in np.asarray(values, dtype=np.float64)]
    with atomic_write(path) as handle:
        json.dump({**metadata, "columns": list(columns), "rows": rows}, handle)
        handle.write("\n")


def read_table_json(path) -> tuple[list[str], np.ndarray, dict]:
    """Columns, values (N, C) and the other top-level entries of a :func:`write_table_json` file."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as err:
        raise CaptureError(f"Cannot read {path} ({err}).") from err
    columns = data.pop("columns")
    rows = data.pop("rows")
    values = np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=np.float64)
    return columns, values.reshape(len(rows), len(columns)), data


# -- helpers --------------------------------------------------------------------------


def _number(value: float) -> str:
    """A float as short text that reads back exactly to float32 precision; '' for NaN."""
    return "" if not np.isfinite(value) else format(float(value), ".9g")


def _check_table(columns, values) -> None:
    if np.asarray(values).ndim != 2 or np.asarray(values).shape[1] != len(columns):
        raise CaptureError(f"A table of {len(columns)} columns needs values of shape (N, {len(columns)}).")
