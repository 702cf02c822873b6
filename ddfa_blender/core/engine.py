"""The capture engine: footage in, a :class:`.take.Take` out.

Decoding runs on its own thread, a few frames ahead of tracking and
regression (decoding a 720p frame costs more than the network), and MediaPipe
loads in the background while the regressor and the first frames get ready.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
import queue
import threading
import time
from typing import Callable, Iterator

import numpy as np

from .. import __version__
from .confidence import OCCLUSION_CHANNEL, occlusion_channel
from .errors import CaptureCancelled, CaptureError
from .face_model import FaceModel
from .regressor import Regressor, resolve_model
from .sources import Frame, FrameSource, frame_timing, open_source
from .take import Take, TakeBuilder
from .tracker import FaceTracker

BFM_FILE = "bfm_face.npz"
PREFETCH_FRAMES = 4


@dataclasses.dataclass
class CaptureOptions:
    """How to capture.

    ``model``: ``mb05``, ``mb1`` or a path to an ``.onnx``.
    ``models_dir``: prepared models folder (None: the default, see model_setup).
    ``threads``: onnxruntime intra-op threads. One is fastest on two cores, where
    decoding runs beside inference; more pay off with several faces per frame.
    ``max_faces``: faces tracked at once.
    ``fps``: frame rate of image sequences (videos use their own).
    ``detect_every``: with several faces, frames between detector runs.
    ``channels``: extra per-frame extractors (see :class:`ChannelExtractor`),
    each recorded in the take as ``ch.<name>``.
    """

    model: str = "mb05"
    models_dir: str | None = None
    threads: int | None = 1
    max_faces: int = 1
    fps: float | None = None
    detect_every: int | None = None
    channels: list = dataclasses.field(default_factory=list)


class ChannelExtractor:
    """Interface of an extra per-frame channel recorded beside the 3DDFA-V2 results.

    ``name`` and ``columns`` (column names, stored in ``meta["channels"]``);
    ``extract(frame, observations)`` returns ``{track_id: values}`` for the
    tracks it measured on this frame (values: a 1-D array of len(columns)).
    ``close()`` releases what it holds.
    """

    name: str
    columns: list[str]

    def extract(self, frame: Frame, observations) -> dict:
        raise NotImplementedError

    def close(self) -> None:
        """Release models or devices."""


def load_face_model(models_dir) -> FaceModel:
    """The prepared BFM face model in ``models_dir``; ``CaptureError`` naming the fix if absent or corrupt."""
    path = os.path.join(str(models_dir), BFM_FILE)
    if not os.path.isfile(path):
        raise CaptureError(
            f"Face model is not prepared in {models_dir}: run `python scripts/fetch_models.py`."
        )
    try:
        return FaceModel.load(path)
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError) as err:
        raise CaptureError(
            f"Face model {path} is corrupt ({type(err).__name__}): delete it and run "
            "`python scripts/fetch_models.py` again."
        ) from err


def models_folder(options: CaptureOptions) -> str:
    if options.models_dir:
        return str(options.models_dir)
    from .model_setup import default_models_dir

    return str(default_models_dir())


def build_tracker(options, detector=None) -> FaceTracker:
    """The regressor, face model and tracker that ``options`` ask for.

    ``options``: a :class:`CaptureOptions` (or anything with its ``model``,
    ``models_dir``, ``threads``, ``max_faces`` and ``detect_every``, such as
    the live session's options). ``detector``: a FaceDetector or a callable
    returning one (None: one is made now).
    """
    models_dir = models_folder(options)
    return FaceTracker(
        Regressor(resolve_model(options.model, models_dir), options.threads),
        load_face_model(models_dir),
        detector if detector is not None else _make_detector(models_dir),
        max_faces=options.max_faces,
        detect_every=options.detect_every,
    )


@dataclasses.dataclass
class CaptureSummary:
    """What a capture found: ``frames`` captured, ``face_rows`` (rows with a face, one per
    track and frame), ``frames_with_face`` (frames with at least one face), ``tracks`` (ids with
    a face), ``fps`` (the take's frame rate), ``image_size`` (displayed width, height),
    ``warnings`` (sentences for the user), ``confidence`` (of a take written to a file by
    :func:`capture_to_file`: its rows' :class:`.confidence.ConfidenceRows`, for the flagged
    count without loading the take; else None)."""

    frames: int
    face_rows: int
    frames_with_face: int
    tracks: list
    fps: float
    image_size: tuple
    warnings: list
    confidence: object = None


def capture(
    input_path,
    options: CaptureOptions | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Take:
    """Track the faces in footage and return the take (in memory).

    ``progress(done, total)`` is called after each frame (``total`` is the
    source's frame-count estimate, or None). ``should_stop()`` returning true
    cancels with :class:`.errors.CaptureCancelled`. Raises :class:`CaptureError`
    for unreadable input, missing models, or footage without any face.
    """
    with TakeBuilder() as builder:
        metadata, _ = _capture_into(builder, input_path, options or CaptureOptions(), progress, should_stop)
        return builder.build(**metadata)


def capture_to_file(
    input_path,
    take_path,
    options: CaptureOptions | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> CaptureSummary:
    """Like :func:`capture`, but the take goes straight to ``take_path`` (atomically) and
    memory stays flat however long the footage is. Returns a :class:`CaptureSummary`."""
    with TakeBuilder() as builder:
        metadata, summary = _capture_into(builder, input_path, options or CaptureOptions(), progress, should_stop)
        summary.confidence = builder.write(os.fspath(take_path), **metadata)
        return summary


def _capture_into(builder: TakeBuilder, input_path, options, progress, should_stop):
    """Run the capture into ``builder``; (take metadata, :class:`CaptureSummary`)."""
    started = time.perf_counter()
    source = open_source(input_path, options.fps)  # unreadable footage fails before anything starts
    try:
        # MediaPipe's import is the slowest start-up step.
        detector = BackgroundLoader(lambda: _make_detector(models_folder(options)))
        tracker = build_tracker(options, detector.get)
        first_done = None
        for frame in prefetch(source):
            if should_stop is not None and should_stop():
                raise CaptureCancelled()
            observations = tracker.step(frame)
            extra = {c.name: c.extract(frame, observations) for c in options.channels}
            extra[OCCLUSION_CHANNEL] = occlusion_channel(observations)
            builder.add(frame.number, frame.time, observations, extra)
            first_done = first_done or time.perf_counter()
            if progress is not None:
                progress(len(builder), source.frame_count)
        finished = time.perf_counter()
    finally:
        source.close()
        for channel in options.channels:
            channel.close()
    if len(builder) == 0:
        raise CaptureError(f"No frame could be decoded from {input_path}: the file is damaged; export it again.")
    warnings = list(getattr(source, "notes", []))
    shortfall = ended_early(builder.times(), source.frame_count, source.fps, input_path)
    if shortfall:
        warnings.append(shortfall)
    reported = getattr(source, "reported_fps", source.fps)
    times, fps, note = frame_timing(builder.times(), reported, options.fps, input_path)
    builder.set_times(times)
    if note:
        warnings.append(note)
    if builder.valid_rows == 0:
        raise CaptureError(
            f"No face found in {input_path} ({len(builder)} frames): the performer's face "
            "must be visible and at least about 40 pixels wide."
        )
    metadata = dict(
        fps=fps,
        image_size=source.image_size,
        model=tracker.regressor.name,
        source=os.path.abspath(os.fspath(input_path)),
        version=__version__,
        meta={
            "channels": {c.name: list(c.columns) for c in options.channels},
            "max_faces": options.max_faces,
            "regressor_calls": tracker.regressor_calls,
            "detector_calls": tracker.detector_calls,
            "hold_checks": tracker.hold_checks,
            # Start-up (models, detector, first frame) and the steady per-frame loop after it.
            "first_frame_seconds": first_done - started,
            "loop_seconds": finished - first_done,
            "rotation": getattr(source, "rotation", 0),
            "warnings": warnings,
        },
    )
    summary = CaptureSummary(
        frames=len(builder), face_rows=builder.valid_rows, frames_with_face=builder.frames_with_face,
        tracks=builder.track_ids(),
        fps=fps, image_size=tuple(source.image_size), warnings=warnings,
    )
    return metadata, summary


def ended_early(times, frames_expected, fps: float, input_path) -> str | None:
    """A warning when footage stopped decoding well before the length its container
    declares (a file cut short or damaged part-way), else None.

    ``times`` are the decoded frames' presentation times in seconds (NaN for untimed
    streams), ``frames_expected`` the source's estimate of its length in frames (None when
    unknown) at ``fps`` frames per second. Timed footage is judged by the span its frames
    cover, so a variable-rate clip with dropped frames is not short; estimates from a
    duration can be a few frames off, so up to 10 % short passes silently."""
    if not frames_expected or len(times) == 0:
        return None
    covered = len(times)
    if np.all(np.isfinite(times)):
        covered = max(covered, (times[-1] - times[0]) * fps + 1)
    if covered >= 0.9 * frames_expected - 1:
        return None
    return (
        f"{os.path.basename(os.fspath(input_path))} stopped decoding after {len(times)} of about "
        f"{frames_expected} frames: the file looks cut short or damaged; the take holds the frames "
        "that decoded (check that it plays to the end, or export it again)."
    )


def _make_detector(models_dir):
    from .detector import FaceDetector

    return FaceDetector(models_dir)


class BackgroundLoader:
    """Builds an object on a background thread; ``get()`` waits for it (re-raising errors)."""

    def __init__(self, factory: Callable[[], object]):
        self._result = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(factory,), daemon=True)
        self._thread.start()

    def _run(self, factory):
        try:
            self._result = factory()
        except BaseException as err:  # handed to the caller of get()
            self._error = err

    def get(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result


def prefetch(source: FrameSource, depth: int = PREFETCH_FRAMES) -> Iterator[Frame]:
    """Iterate a source with decoding running ahead on a thread (at most ``depth`` frames)."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def hand_over(item) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def decode():
        try:
            for frame in source:
                if not hand_over(frame):
                    return
            hand_over(end)
        except BaseException as err:  # re-raised in the consumer
            hand_over(err)

    worker = threading.Thread(target=decode, daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()
