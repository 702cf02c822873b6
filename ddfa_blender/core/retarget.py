"""Retargeting maps: which source channel drives which target shape key, and how.

A *mapping* is a list of rows ``source -> target`` with a gain, an offset,
clamp limits and an optional curve. A row's value on each frame is::

    v = gain * source + offset
    v = interp(v, curve)          # when a curve is given: piecewise linear through
                                  # its (x, y) points, held flat beyond its ends
    v = clip(v, clamp_min, clamp_max)

Sources are named channels of a take (:func:`take_sources`): the ARKit
solver's 52 channels under their ARKit names (``jawOpen``, ...: all the
evidence fused), the solver on 3DDFA-V2's geometry alone as
``3ddfa.<name>``, and, when the take recorded MediaPipe, MediaPipe's own
calibrated scores as ``mp.<name>``. A preset chooses a channel's source by
naming it: ``{"source": "mp.browInnerUp", "target": "browInnerUp"}``.

Targets are matched against an avatar's shape-key names across naming
conventions (:func:`.arkit.canonical`): a row for ``eyeBlinkLeft`` drives
``eyeBlink_L``, ``EyeBlinkLeft`` or ``eyeBlink_Left``; a row for an unsided
channel drives both halves of a key split in two (``browInnerUp`` ->
``browInnerUp_L`` and ``browInnerUp_R``), and rows for both sides of a
channel drive an unsided key with their mean. Nothing is dropped silently:
:class:`MatchReport` lists the rows that found no key and the keys that no
row drives.

Presets are JSON files::

    {"format": "ddfa-blender mapping", "version": 1, "name": "...",
     "rows": [{"source": "jawOpen", "target": "jawOpen", "gain": 1.0,
               "offset": 0.0, "min": 0.0, "max": 1.0,
               "curve": [[0, 0], [0.5, 0.7], [1, 1]], "enabled": true}, ...]}

Only ``source`` and ``target`` are required in a row.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from .arkit import ARKIT_NAMES, canonical
from .atomic_file import atomic_write
from .errors import CaptureError

FORMAT = "ddfa-blender mapping"
VERSION = 1
MEDIAPIPE_PREFIX = "mp."
DDFA_PREFIX = "3ddfa."
IGNORED_KEYS = ("basis",)


@dataclasses.dataclass
class MappingRow:
    """One ``source -> target`` row (see the module doc for how it is evaluated)."""

    source: str
    target: str
    gain: float = 1.0
    offset: float = 0.0
    clamp_min: float = 0.0
    clamp_max: float = 1.0
    curve: list | None = None
    enabled: bool = True

    def __post_init__(self):
        if self.curve is not None:
            points = np.asarray(self.curve, dtype=np.float64)
            if points.ndim != 2 or points.shape[1] != 2 or len(points) < 2:
                raise CaptureError(
                    f"The curve of mapping row {self.source} -> {self.target} needs at least two "
                    "[x, y] points."
                )
            if np.any(np.diff(points[:, 0]) <= 0):
                raise CaptureError(
                    f"The curve of mapping row {self.source} -> {self.target} must have "
                    "increasing x values."
                )
            self.curve = [[float(x), float(y)] for x, y in points]
        if self.clamp_min > self.clamp_max:
            raise CaptureError(
                f"Mapping row {self.source} -> {self.target}: min {self.clamp_min} is above "
                f"max {self.clamp_max}."
            )

    def apply(self, values) -> np.ndarray:
        """The row's output (N,) for source values (N,); NaN stays NaN."""
        v = self.gain * np.asarray(values, dtype=np.float64) + self.offset
        if self.curve is not None:
            points = np.asarray(self.curve)
            finite = np.isfinite(v)
            v[finite] = np.interp(v[finite], points[:, 0], points[:, 1])
        return np.clip(v, self.clamp_min, self.clamp_max)

    def to_dict(self) -> dict:
        out = {"source": self.source, "target": self.target, "gain": self.gain,
               "offset": self.offset, "min": self.clamp_min, "max": self.clamp_max}
        if self.curve is not None:
            out["curve"] = self.curve
        if not self.enabled:
            out["enabled"] = False
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "MappingRow":
        try:
            return cls(
                source=str(data["source"]),
                target=str(data["target"]),
                gain=float(data.get("gain", 1.0)),
                offset=float(data.get("offset", 0.0)),
                clamp_min=float(data.get("min", 0.0)),
                clamp_max=float(data.get("max", 1.0)),
                curve=data.get("curve"),
                enabled=bool(data.get("enabled", True)),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CaptureError(
                f"A mapping row is malformed ({err!r}); each row needs 'source' and 'target' "
                "and numeric gain/offset/min/max."
            ) from err


@dataclasses.dataclass
class Mapping:
    """A named list of :class:`MappingRow` (a preset)."""

    rows: list
    name: str = ""

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "name": self.name,
                "rows": [row.to_dict() for row in self.rows]}

    @classmethod
    def from_dict(cls, data) -> "Mapping":
        if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
            raise CaptureError("Not a mapping preset: expected a JSON object with a 'rows' list.")
        version = int(data.get("version", VERSION))
        if version > VERSION:
            raise CaptureError(
                f"The mapping preset has version {version}; this add-on reads up to {VERSION}: "
                "update the add-on."
            )
        return cls(rows=[MappingRow.from_dict(r) for r in data["rows"]], name=str(data.get("name", "")))

    def save(self, path) -> None:
        """Write the preset as JSON to ``path`` atomically."""
        with atomic_write(path, "the mapping") as handle:
            json.dump(self.to_dict(), handle, indent=1)
            handle.write("\n")

    @classmethod
    def load(cls, path) -> "Mapping":
        """Read a preset written by :meth:`save` (or by hand)."""
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError as err:
            raise CaptureError(f"Mapping preset not found: {path}.") from err
        except (OSError, ValueError) as err:
            raise CaptureError(f"Cannot read the mapping preset {path} ({err}); fix or re-save it.") from err
        return cls.from_dict(data)


def default_mapping() -> Mapping:
    """One row per ARKit channel onto the same-named key (gain 1, clamp [0, 1]).

    The eye channels come from MediaPipe inside the solver, so the default
    rows all read the solver's channels.
    """
    return Mapping(rows=[MappingRow(name, name) for name in ARKIT_NAMES], name="ARKit 52")


def clamped_curve(curve, low: float, high: float) -> list:
    """Points of ``clip(interp(x, curve), low, high)``: the same piecewise-linear function.

    Where a segment crosses a limit a point is inserted there, so a curve
    that is itself clamped (a driver F-curve's keys) evaluates exactly.
    """
    points = np.asarray(curve, dtype=np.float64)
    out = []
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        out.append((x0, y0))
        out += sorted(
            (x0 + (bound - y0) / (y1 - y0) * (x1 - x0), bound)
            for bound in (low, high)
            if (y0 - bound) * (y1 - bound) < 0
        )
    out.append(tuple(points[-1]))
    return [[float(x), float(min(max(y, low), high))] for x, y in out]


# -- matching -------------------------------------------------------------------------


@dataclasses.dataclass
class MatchReport:
    """How a mapping met a target's keys.

    ``matched``: ``(source, row target, key)`` triples, one per driven key and row.
    ``unmatched_rows``: ``(source, row target)`` of enabled rows that found no key.
    ``unmatched_keys``: target keys no row drives (``Basis`` left out).
    ``missing_sources``: sources named by matched rows that the take does not have.
    """

    matched: list
    unmatched_rows: list
    unmatched_keys: list
    missing_sources: list = dataclasses.field(default_factory=list)

    def lines(self) -> list[str]:
        """The report as short lines of text for the user."""
        out = [f"{len(self.matched)} key(s) driven"]
        if self.unmatched_rows:
            out.append("no key for: " + ", ".join(t for _, t in self.unmatched_rows))
        if self.unmatched_keys:
            out.append("keys left undriven: " + ", ".join(self.unmatched_keys))
        if self.missing_sources:
            out.append("sources missing from the take: " + ", ".join(self.missing_sources))
        return out


def resolve_target(target: str, keys) -> list[str]:
    """The keys (in ``keys`` order) that a mapping row for ``target`` drives.

    Exact name first; then the same canonical name; then, for an unsided
    target, both halves of a split key; then, for a sided target, the
    unsided key of that base.
    """
    keys = list(keys)
    if target in keys:
        return [target]
    base, side = canonical(target)
    by_key = {key: canonical(key) for key in keys}
    same = [k for k, c in by_key.items() if c == (base, side)]
    if same:
        return same[:1]
    if side is None:
        return [k for k, c in by_key.items() if c[0] == base and c[1] is not None]
    return [k for k, c in by_key.items() if c == (base, None)][:1]


@dataclasses.dataclass
class ResolvedMapping:
    """A mapping matched to one target: per key, the rows that drive it."""

    rows_by_key: dict
    report: MatchReport

    def evaluate(self, sources: dict) -> dict[str, np.ndarray]:
        """``{key: values (N,)}`` for the source arrays ``{name: (N,)}``.

        A key driven by several rows gets their mean. Rows whose source is
        missing are skipped (and listed in the report by :func:`match_mapping`).
        """
        out = {}
        for key, rows in self.rows_by_key.items():
            values = [row.apply(sources[row.source]) for row in rows if row.source in sources]
            if values:
                out[key] = np.mean(values, axis=0)
        return out


def match_mapping(mapping: Mapping, keys, sources=None) -> ResolvedMapping:
    """Match ``mapping`` against a target's key names (``Basis`` is never driven).

    ``sources``: the names available in the take, to report rows whose source
    is missing (None: not checked).
    """
    keys = [k for k in keys if k.lower() not in IGNORED_KEYS]
    rows_by_key: dict[str, list] = {}
    matched, unmatched_rows, missing = [], [], []
    for row in mapping.rows:
        if not row.enabled:
            continue
        found = resolve_target(row.target, keys)
        if not found:
            unmatched_rows.append((row.source, row.target))
            continue
        if sources is not None and row.source not in sources and row.source not in missing:
            missing.append(row.source)
        for key in found:
            rows_by_key.setdefault(key, []).append(row)
            matched.append((row.source, row.target, key))
    unmatched_keys = [k for k in keys if k not in rows_by_key]
    report = MatchReport(matched, unmatched_rows, unmatched_keys, missing)
    return ResolvedMapping(rows_by_key, report)


# -- sources --------------------------------------------------------------------------


@dataclasses.dataclass
class TakeSources:
    """Named per-row source channels of one track (see :func:`take_sources`).

    ``linear``: ``{source: (a (10,), b)}`` for the sources that are a clipped
    linear formula of the 10 expression coefficients (drivers can evaluate
    them from the captured face, see :func:`.arkit.linear_channels`).
    """

    frame: np.ndarray
    time: np.ndarray
    valid: np.ndarray
    channels: dict
    arkit: object  # the solver's ArkitWeights
    linear: dict = dataclasses.field(default_factory=dict)


def take_sources(take, face_model, track: int = 0, neutral=None, eyes: str = "auto",
                 smooth_seconds: float = 0.0) -> TakeSources:
    """The channels a mapping can read for ``track``: the solver's, ``3ddfa.*`` and ``mp.*``.

    ``neutral``, ``eyes`` and ``smooth_seconds`` are passed to
    :func:`.arkit.solve_arkit` (pass the take smoothed as the bake was, and
    the bake's expression smoothing as ``smooth_seconds``).
    """
    from .arkit import linear_channels, mediapipe_weights, solve_arkit

    solved = solve_arkit(take, face_model, track=track, neutral=neutral, eyes=eyes,
                         smooth_seconds=smooth_seconds)
    geometry_only = solve_arkit(take, face_model, track=track, neutral=neutral, eyes="3ddfa")
    channels = solved.as_dict()
    channels.update({DDFA_PREFIX + name: values for name, values in geometry_only.as_dict().items()})
    linear = dict(linear_channels(solved))
    linear.update({DDFA_PREFIX + name: formula for name, formula in linear_channels(geometry_only).items()})
    mp = mediapipe_weights(take, track=track, neutral=neutral)
    if mp is not None:
        channels.update({MEDIAPIPE_PREFIX + name: values for name, values in mp.as_dict().items()})
    return TakeSources(solved.frame, solved.time, solved.valid, channels, solved, linear)
