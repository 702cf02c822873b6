"""The take file: one capture's per-frame results, the hand-off to every later step.

A take is a NumPy ``.npz`` archive (``allow_pickle=False``-safe) written by the
capture engine and read by the Blender bake, smoothing, retargeting and live
recording. Its layout (take version 1):

Scalars and metadata
    ``take_version``  int, this layout's version (readers refuse newer ones).
    ``version``       str, ddfa-blender version that wrote the file.
    ``model``         str, regressor name, e.g. ``"mb05_120x120"``.
    ``source``        str, the footage the take came from (path or device).
    ``fps``           float, frames per second of the source.
    ``image_size``    int (2,), source frame ``(width, height)`` in pixels.
    ``meta``          str, JSON object for anything else (capture settings,
                      channel column names under ``"channels"``).

Rows: one per (track, source frame); every track has a row for every captured
frame, sorted by track then frame, so ``for_track`` is a contiguous slice.
    ``frame``     int64 (N,), source frame number (video: 0-based index of the
                  presented frame; image sequence: the number in the file name).
    ``time``      float64 (N,), presentation time in seconds.
    ``track``     int32 (N,), face track id (0 for the first face).
    ``valid``     bool (N,), a face was tracked on this row. Float arrays hold
                  NaN on invalid rows: never read them without the mask.
    ``detected``  bool (N,), the row's crop came from a fresh detection rather
                  than the previous frame's landmarks (a re-detect can jump).
    ``param``     float32 (N, 62), de-normalised 3DDFA-V2 parameters in the
                  120-px crop frame: 3x4 scaled pose (row-major), 40 shape and
                  10 expression coefficients.
    ``roi``       float32 (N, 4), crop box ``(x0, y0, x1, y1)`` in image pixels
                  (may extend past the image border).
    ``lmk68``     float32 (N, 68, 3), the 68 landmarks reconstructed from
                  ``param``, image pixels: x right, y down, 0-based (OpenCV
                  convention); z toward the camera, same pixel scale.
    ``quality``   float32 (N,), mean distance in 120-px crop pixels between the
                  network's landmark head and the landmarks of ``param``; small
                  (< 1) on a well-tracked face.
    ``confidence`` float32 (N,), how far the row can be trusted, 0..1 (NaN on
                  invalid rows): the product of the evidence factors of
                  :mod:`.confidence` (heads agreement, occlusion, landmarks
                  outside the image, implausible motion or expression against
                  the neighbours, MediaPipe finding no face). Rows under 0.5
                  are *flagged*. Takes written before this field existed get
                  it computed from their own rows when loaded; takes streamed
                  while capturing (:meth:`TakeBuilder.write`, which never
                  holds the whole take) store it, computed from a compact
                  summary of each row (:class:`.confidence.Evidence`).

Extension channels: any array named ``ch.<name>`` with N rows (for example
``ch.mp_blendshapes`` (N, 52)); its column names, if any, are listed in
``meta["channels"][<name>]``. Readers ignore channels they do not know, so new
ones never need a new take version.
"""

from __future__ import annotations

import array
import dataclasses
import json
import os
import zipfile

import numpy as np

from .atomic_file import atomic_write
from .errors import CaptureError
from .take_store import ChunkedArray, RecordSpill, write_npz

TAKE_VERSION = 1
N_PARAM = 62
N_LANDMARKS = 68
CHANNEL_PREFIX = "ch."

# Every row field: name -> (dtype, per-row shape). ``frame``, ``time``, ``track`` and
# ``valid`` are laid out by the builder, those in _OPTIONAL_ROWS are computed from the
# finished take; every other field is read from the tracker's observations by attribute
# name, so a new per-row field is one line here (and its attribute on the observation).
# Invalid rows hold NaN (floats) or 0 / False.
_ROW_SPECS = {
    "frame": (np.int64, ()),
    "time": (np.float64, ()),
    "track": (np.int32, ()),
    "valid": (np.bool_, ()),
    "detected": (np.bool_, ()),
    "param": (np.float32, (N_PARAM,)),
    "roi": (np.float32, (4,)),
    "lmk68": (np.float32, (N_LANDMARKS, 3)),
    "quality": (np.float32, ()),
    "confidence": (np.float32, ()),
}
# Row fields a take may lack (older takes): computed when absent.
_OPTIONAL_ROWS = ("confidence",)


@dataclasses.dataclass
class Take:
    """One capture: per-row arrays (see the module docstring for units) plus metadata."""

    fps: float
    image_size: tuple[int, int]
    frame: np.ndarray
    time: np.ndarray
    track: np.ndarray
    valid: np.ndarray
    detected: np.ndarray
    param: np.ndarray
    roi: np.ndarray
    lmk68: np.ndarray
    quality: np.ndarray
    confidence: np.ndarray | None = None  # None: computed from the rows (see .confidence)
    model: str = ""
    source: str = ""
    meta: dict = dataclasses.field(default_factory=dict)
    channels: dict = dataclasses.field(default_factory=dict)
    version: str = ""

    def __post_init__(self):
        compute_confidence = self.confidence is None
        if compute_confidence:
            self.confidence = np.full(len(np.asarray(self.frame)), np.nan, dtype=np.float32)
        for name, (dtype, tail) in _ROW_SPECS.items():
            setattr(self, name, np.asarray(getattr(self, name), dtype=dtype))
        self.fps = float(self.fps)
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        self.channels = {k: np.asarray(v) for k, v in self.channels.items()}
        self.check()
        if not self.version:
            from .. import __version__

            self.version = __version__
        if compute_confidence:
            from .confidence import take_confidence

            self.confidence = take_confidence(self)

    def __len__(self):
        return len(self.frame)

    def check(self):
        """Raise ``CaptureError`` if the arrays do not have the documented shapes."""
        n = len(self.frame)
        for name, (_, tail) in _ROW_SPECS.items():
            shape = getattr(self, name).shape
            if shape != (n, *tail):
                raise CaptureError(
                    f"Take field '{name}' has shape {shape}, expected {(n, *tail)}."
                )
        for name, values in self.channels.items():
            if values.shape[:1] != (n,):
                raise CaptureError(
                    f"Take channel '{name}' has {values.shape[:1]} rows, expected {n}."
                )
        if not self.fps > 0:
            raise CaptureError(f"Take fps must be positive, got {self.fps}.")

    # -- views -----------------------------------------------------------------

    def track_ids(self) -> list[int]:
        """Sorted ids of the tracks in this take."""
        return sorted(int(t) for t in np.unique(self.track))

    def frames(self) -> np.ndarray:
        """Sorted unique source frame numbers covered by the take."""
        return np.unique(self.frame)

    def rows(self, mask: np.ndarray) -> "Take":
        """A new take holding only the rows where ``mask`` is true."""
        fields = {name: getattr(self, name)[mask] for name in _ROW_SPECS}
        channels = {k: v[mask] for k, v in self.channels.items()}
        return dataclasses.replace(self, channels=channels, **fields)

    def for_track(self, track_id: int) -> "Take":
        """The rows of one track, in frame order."""
        mask = self.track == track_id
        if not mask.any():
            raise CaptureError(
                f"Track {track_id} is not in this take (tracks: {self.track_ids()})."
            )
        return self.rows(mask)

    # -- file I/O --------------------------------------------------------------

    def save(self, path: str) -> None:
        """Write the take to ``path`` atomically (a partial file is never left)."""
        self.check()
        arrays = {name: getattr(self, name) for name in _ROW_SPECS}
        arrays.update({CHANNEL_PREFIX + k: v for k, v in self.channels.items()})
        arrays.update(header_arrays(self.fps, self.image_size, self.model, self.source, self.version, self.meta))
        with atomic_write(path, "take", binary=True) as handle:
            write_npz(handle, arrays)

    @classmethod
    def load(cls, path: str) -> "Take":
        """Read a take written by any ddfa-blender up to this take version."""
        if not os.path.isfile(path):
            raise CaptureError(f"Take file not found: {path}.")
        try:
            with np.load(path, allow_pickle=False) as data:
                contents = {key: data[key] for key in data.files}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
            raise CaptureError(
                f"{path} is not a readable ddfa-blender take ({err}); capture it again."
            ) from err
        if "take_version" not in contents:
            raise CaptureError(
                f"{path} is not a ddfa-blender take (no 'take_version'); "
                "capture it again with scripts/capture.py --take."
            )
        found = int(contents["take_version"])
        if found > TAKE_VERSION:
            raise CaptureError(
                f"{path} was written by a newer ddfa-blender (take version {found}, "
                f"this one reads up to {TAKE_VERSION}); update the add-on."
            )
        missing = [
            k for k in (*_ROW_SPECS, "fps", "image_size") if k not in contents and k not in _OPTIONAL_ROWS
        ]
        if missing:
            raise CaptureError(f"{path} is an incomplete take: missing {', '.join(missing)}.")
        channels = {
            key[len(CHANNEL_PREFIX):]: value
            for key, value in contents.items()
            if key.startswith(CHANNEL_PREFIX)
        }
        return cls(
            fps=float(contents["fps"]),
            image_size=tuple(int(v) for v in contents["image_size"]),
            model=str(contents.get("model", "")),
            source=str(contents.get("source", "")),
            version=str(contents.get("version", "")),
            meta=json.loads(str(contents["meta"])) if "meta" in contents else {},
            channels=channels,
            **{name: contents.get(name) for name in _ROW_SPECS},
        )


def parse_tracks(text: str) -> list[int] | None:
    """Track ids from text such as ``"0, 2"``; None for empty text (every track)."""
    text = text.strip()
    if not text:
        return None
    try:
        return sorted({int(part) for part in text.replace(",", " ").split()})
    except ValueError:
        raise CaptureError(f"Tracks '{text}' must be track numbers such as 0, 2.") from None


def header_arrays(fps, image_size, model, source, version, meta) -> dict:
    """The scalar and metadata entries of a take file (see the module doc)."""
    return dict(
        take_version=np.int32(TAKE_VERSION),
        version=np.str_(version),
        model=np.str_(model),
        source=np.str_(source),
        fps=np.float64(fps),
        image_size=np.asarray(image_size, dtype=np.int32),
        meta=np.str_(json.dumps(meta)),
    )


def _fill_value(dtype):
    return np.nan if np.issubdtype(dtype, np.floating) else 0


def empty_rows(n: int) -> dict:
    """Row arrays for ``n`` rows, float fields NaN and flags false: a blank to fill."""
    return {
        name: np.full((n, *tail), _fill_value(dtype), dtype=dtype)
        for name, (dtype, tail) in _ROW_SPECS.items()
    }


# Row fields the builder lays out itself; those computed from the finished take
# (_OPTIONAL_ROWS); every other one comes from the observations.
_LAYOUT_FIELDS = ("frame", "time", "track", "valid")
_OBSERVED_FIELDS = tuple(name for name in _ROW_SPECS if name not in _LAYOUT_FIELDS + _OPTIONAL_ROWS)
_FRAMES_PER_BLOCK = 4096  # frames of one track written at a time


class TakeBuilder:
    """Collects per-frame observations and lays them out as a dense take.

    Call :meth:`add` once per source frame, in order, with that frame's
    observations (objects with ``track_id`` and one attribute per observed row
    field: ``param``, ``roi``, ``lmk68``, ``quality``, ``detected``, ...; an
    empty list when no face was seen) and any extra per-observation channels.
    Every track gets a row for every frame; frames where it was not seen are
    invalid rows.

    Memory stays flat in the take's length: observations go to temporary
    files (:class:`.take_store.RecordSpill`) as they arrive; :meth:`write`
    streams the take to a file without assembling it, :meth:`build` returns
    it in memory. Only the frame numbers and times (16 bytes a frame) stay in
    memory. :meth:`close` (or the garbage collector) removes the files.
    """

    def __init__(self):
        self._numbers = array.array("q")
        self._times = array.array("d")
        self._tracks: set[int] = set()
        self._valid_rows = 0
        self._frames_with_face = 0
        self._observations = RecordSpill(np.dtype(
            [("index", np.int64), ("track", np.int32)]
            + [(name, dtype, tail) for name, (dtype, tail) in _ROW_SPECS.items() if name in _OBSERVED_FIELDS]
        ))
        self._channels: dict[str, RecordSpill] = {}

    def add(self, number: int, time: float, observations, channels=None) -> None:
        """Record frame ``number`` (time in seconds) with its observations.

        ``channels`` maps a channel name to a dict {track_id: values} for this
        frame; a channel that never has values is left out of the take.
        """
        index = len(self._numbers)
        self._numbers.append(int(number))
        self._times.append(float(time))
        self._frames_with_face += bool(observations)
        for obs in observations:
            record = self._observations.append()
            record["index"] = index
            record["track"] = obs.track_id
            for name in _OBSERVED_FIELDS:
                record[name] = getattr(obs, name)
            self._tracks.add(int(obs.track_id))
            self._valid_rows += 1
        for name, per_track in (channels or {}).items():
            for track_id, values in per_track.items():
                values = np.asarray(values, dtype=np.float32)
                spill = self._channels.get(name)
                if spill is None:
                    spill = self._channels[name] = RecordSpill(np.dtype(
                        [("index", np.int64), ("track", np.int32), ("values", np.float32, values.shape)]
                    ))
                record = spill.append()
                record["index"], record["track"], record["values"] = index, track_id, values

    def __len__(self):
        return len(self._numbers)

    @property
    def valid_rows(self) -> int:
        """Rows with a face so far (one per track and frame where it was seen)."""
        return self._valid_rows

    @property
    def frames_with_face(self) -> int:
        """Frames with at least one face so far."""
        return self._frames_with_face

    def track_ids(self) -> list[int]:
        """Sorted ids of the tracks seen so far ([0] if none: a take always has one track)."""
        return sorted(self._tracks) or [0]

    def times(self) -> np.ndarray:
        """Presentation times (s) of the frames added so far, in order."""
        return np.array(self._times, dtype=np.float64)

    def set_times(self, times) -> None:
        """Replace the frames' presentation times (e.g. where the footage had none)."""
        times = np.asarray(times, dtype=np.float64)
        if times.shape != (len(self),):
            raise ValueError(f"{times.shape} times for {len(self)} frames")
        self._times = array.array("d", times.tobytes())

    def arrays(self) -> dict:
        """Every row field and channel as a :class:`.take_store.ChunkedArray` (name -> array)."""
        track_ids = self.track_ids()
        n_frames = len(self)
        total = n_frames * len(track_ids)
        numbers = np.array(self._numbers, dtype=np.int64)
        times = np.array(self._times, dtype=np.float64)

        def repeated(values):
            return lambda: (values for _ in track_ids)

        def per_track(dtype):
            return lambda: (np.full(n_frames, track_id, dtype=dtype) for track_id in track_ids)

        def observed(spill, field, dtype, tail):
            def chunks():
                for track_id in track_ids:
                    yield from _dense_blocks(spill, field, track_id, n_frames, dtype, tail)
            return chunks

        out = {
            "frame": ChunkedArray((total,), np.int64, repeated(numbers)),
            "time": ChunkedArray((total,), np.float64, repeated(times)),
            "track": ChunkedArray((total,), np.int32, per_track(np.int32)),
            "valid": ChunkedArray((total,), np.bool_, observed(self._observations, None, np.bool_, ())),
        }
        for name in _OBSERVED_FIELDS:
            dtype, tail = _ROW_SPECS[name]
            out[name] = ChunkedArray((total, *tail), dtype, observed(self._observations, name, dtype, tail))
        for name, spill in self._channels.items():
            tail = spill.dtype["values"].shape
            out[CHANNEL_PREFIX + name] = ChunkedArray(
                (total, *tail), np.float32, observed(spill, "values", np.float32, tail)
            )
        return out

    def write(self, path: str, *, fps, image_size, model="", source="", version="", meta=None):
        """Write the take to ``path`` atomically, streaming it (never whole in memory), with
        its confidence; returns that as :class:`.confidence.ConfidenceRows` (for the flagged count)."""
        if not version:
            from .. import __version__

            version = __version__
        if not float(fps) > 0:
            raise CaptureError(f"Take fps must be positive, got {fps}.")
        arrays = self.arrays()
        rows = self._confidence(arrays, fps, image_size)
        arrays["confidence"] = rows.confidence
        arrays.update(header_arrays(fps, image_size, model, source, version, meta or {}))
        with atomic_write(path, "take", binary=True) as handle:
            write_npz(handle, arrays)
        return rows

    @staticmethod
    def _confidence(arrays: dict, fps, image_size):
        """The take's confidence from its arrays (:meth:`arrays`), read block by block."""
        from .confidence import MEDIAPIPE_CHANNEL, OCCLUSION_CHANNEL, streamed_confidence

        occlusion = arrays.get(CHANNEL_PREFIX + OCCLUSION_CHANNEL)
        mediapipe = arrays.get(CHANNEL_PREFIX + MEDIAPIPE_CHANNEL)
        blocks = zip(*(arrays[name].chunks() for name in ("valid", "param", "roi", "lmk68")))
        return streamed_confidence(
            blocks, *(arrays[name].materialise() for name in ("track", "frame", "time", "quality")),
            fps, image_size,
            occlusion=None if occlusion is None else occlusion.materialise(),
            mediapipe_blocks=None if mediapipe is None else mediapipe.chunks(),
        )

    def build(self, **metadata) -> "Take":
        """The take in memory (rows sorted by track then frame); ``metadata`` goes to :class:`Take`."""
        arrays = {name: value.materialise() for name, value in self.arrays().items()}
        channels = {
            name[len(CHANNEL_PREFIX):]: arrays.pop(name) for name in list(arrays) if name.startswith(CHANNEL_PREFIX)
        }
        return Take(channels=channels, **arrays, **metadata)

    def close(self) -> None:
        """Remove the temporary files (the builder cannot be used afterwards)."""
        self._observations.close()
        for spill in self._channels.values():
            spill.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _dense_blocks(spill: RecordSpill, field, track_id: int, n_frames: int, dtype, tail):
    """One track's column over every frame, in frame-order blocks: the spill's records of
    ``track_id`` scattered into blanks (``field`` None: the validity flag)."""
    records = spill.blocks()
    pending: list[np.ndarray] = []  # this track's records not yet placed, in index order
    seen_up_to = -1  # highest frame index read from the spill (any track)
    for start in range(0, n_frames, _FRAMES_PER_BLOCK):
        stop = min(start + _FRAMES_PER_BLOCK, n_frames)
        while seen_up_to < stop - 1:
            block = next(records, None)
            if block is None:
                seen_up_to = n_frames
                break
            seen_up_to = int(block["index"][-1])
            mine = block[block["track"] == track_id]
            if len(mine):
                pending.append(mine)
        mine = np.concatenate(pending) if pending else None
        out = np.full((stop - start, *tail), False if field is None else _fill_value(dtype), dtype=dtype)
        if mine is not None:
            here = mine["index"] < stop
            placed = mine[here]
            out[placed["index"] - start] = True if field is None else placed[field]
            pending = [mine[~here]] if (~here).any() else []
        yield out
