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
                  it computed from their own rows when loaded.

Extension channels: any array named ``ch.<name>`` with N rows (for example
``ch.mp_blendshapes`` (N, 52)); its column names, if any, are listed in
``meta["channels"][<name>]``. Readers ignore channels they do not know, so new
ones never need a new take version.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile

import numpy as np

from .atomic_file import atomic_write
from .errors import CaptureError

TAKE_VERSION = 1
N_PARAM = 62
N_LANDMARKS = 68
CHANNEL_PREFIX = "ch."

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
        arrays.update(
            take_version=np.int32(TAKE_VERSION),
            version=np.str_(self.version),
            model=np.str_(self.model),
            source=np.str_(self.source),
            fps=np.float64(self.fps),
            image_size=np.asarray(self.image_size, dtype=np.int32),
            meta=np.str_(json.dumps(self.meta)),
        )
        with atomic_write(path, "take", binary=True) as handle:
            np.savez(handle, **arrays)

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


def empty_rows(n: int) -> dict:
    """Row arrays for ``n`` rows, float fields NaN and flags false: a blank to fill."""
    rows = {}
    for name, (dtype, tail) in _ROW_SPECS.items():
        fill = np.nan if np.issubdtype(dtype, np.floating) else 0
        rows[name] = np.full((n, *tail), fill, dtype=dtype)
    return rows


class TakeBuilder:
    """Collects per-frame observations and lays them out as a dense take.

    Call :meth:`add` once per source frame, in order, with that frame's
    observations (objects with ``track_id``, ``param``, ``roi``, ``lmk68``,
    ``quality``, ``detected``; an empty list when no face was seen) and any
    extra per-observation channels. Every track gets a row for every frame;
    frames where it was not seen are invalid rows.
    """

    def __init__(self):
        self._frames: list[tuple[int, float]] = []
        self._seen: dict[int, dict[int, object]] = {}
        self._channels: dict[str, dict[tuple[int, int], np.ndarray]] = {}

    def add(self, number: int, time: float, observations, channels=None) -> None:
        """Record frame ``number`` (time in seconds) with its observations.

        ``channels`` maps a channel name to a dict {track_id: values} for this
        frame; a channel that never has values is left out of the take.
        """
        index = len(self._frames)
        self._frames.append((int(number), float(time)))
        for obs in observations:
            self._seen.setdefault(obs.track_id, {})[index] = obs
        for name, per_track in (channels or {}).items():
            for track_id, values in per_track.items():
                self._channels.setdefault(name, {})[(track_id, index)] = np.asarray(values)

    def __len__(self):
        return len(self._frames)

    def build(self, **metadata) -> "Take":
        """The take (rows sorted by track then frame); ``metadata`` goes to :class:`Take`."""
        track_ids = sorted(self._seen) or [0]
        n_frames = len(self._frames)
        rows = empty_rows(n_frames * len(track_ids))
        rows.pop("confidence")  # computed by Take from the finished rows and channels
        numbers = np.array([f[0] for f in self._frames], dtype=np.int64)
        times = np.array([f[1] for f in self._frames], dtype=np.float64)
        channels = {}
        for name, store in self._channels.items():
            sample = next(iter(store.values()))
            channels[name] = np.full((len(rows["frame"]), *sample.shape), np.nan, dtype=np.float32)
        for block, track_id in enumerate(track_ids):
            start = block * n_frames
            rows["frame"][start : start + n_frames] = numbers
            rows["time"][start : start + n_frames] = times
            rows["track"][start : start + n_frames] = track_id
            for index, obs in self._seen.get(track_id, {}).items():
                row = start + index
                rows["valid"][row] = True
                rows["detected"][row] = obs.detected
                rows["param"][row] = obs.param
                rows["roi"][row] = obs.roi
                rows["lmk68"][row] = obs.lmk68
                rows["quality"][row] = obs.quality
            for name, store in self._channels.items():
                for (owner, index), values in store.items():
                    if owner == track_id:
                        channels[name][start + index] = values
        return Take(channels=channels, **rows, **metadata)
