"""Live capture: camera frames in, the newest tracked and filtered result out.

Two threads, and never a queue that can grow::

    grab thread:    source -> NewestFrameSlot (one frame; a newer one replaces it)
    worker thread:  slot -> FaceTracker + Regressor -> LiveFilter per track
                         -> latest result (one) [-> TakeBuilder while recording]

The worker loads the models first and only then starts the grab thread, so a
real-time source does not drop its first seconds while MediaPipe loads. When
tracking falls behind the source, the frame waiting in the slot is replaced by
the newer one (counted in ``dropped``): the result is always about the newest
frame, as a live view wants.

Latency is measured per result from the moment the grab thread received the
frame to the moment the filtered result was published (it includes the time
the frame waited in the slot).

Recording. :meth:`LiveSession.start_recording` / :meth:`stop_recording` give a
:class:`.take.Take` whose rows are the tracker's unfiltered results for every
processed frame, laid out by :class:`.take.TakeBuilder` exactly as
:func:`.engine.capture` lays out an offline capture: on the same frames the
two takes are equal. The live filter's output (what the viewport showed) is
kept beside them as the channel ``ch.live_param`` (N, 62), the filtered
``param`` for the row's own ``roi``. Keeping the rows raw means the take is
baked, re-smoothed (zero-lag, better than any causal filter) and compared like
any other take; the filtered channel records the live view itself.

Frames not processed (dropped) have no rows: a recording from a camera that
outpaces tracking has gaps in its frame numbers, which the bake keys as they
are (curves interpolate across them).

Threads: the worker and grab threads are daemon threads started by
:meth:`start` and always joined by :meth:`stop` (also on errors, and as a
context manager); the source must allow ``close()`` from another thread
during a grab, as both sources of :mod:`.camera` do. Errors in either thread are re-raised in the caller by
:meth:`latest`, :meth:`check` or :meth:`wait_finished`.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time

import numpy as np

from .errors import CaptureError
from .sources import Frame, FrameSource
from .confidence import OCCLUSION_CHANNEL, occlusion_channel
from .take import Take, TakeBuilder

FILTERED_CHANNEL = "live_param"
PARAM_COLUMNS = (
    [f"pose_{i:02d}" for i in range(12)]
    + [f"shape_{i:02d}" for i in range(40)]
    + [f"expr_{i:02d}" for i in range(10)]
)
STATS_WINDOW = 240  # results kept for latency and fps statistics
JOIN_TIMEOUT_S = 10.0


@dataclasses.dataclass
class LiveOptions:
    """How to track live; the fields mean what they mean in :class:`.engine.CaptureOptions`.

    ``filter``: apply the One-Euro live filter (:class:`.one_euro.LiveFilter`)
    to each track's results.
    """

    model: str = "mb05"
    models_dir: str | None = None
    threads: int | None = 1
    max_faces: int = 1
    detect_every: int | None = None
    filter: bool = True


@dataclasses.dataclass
class LiveFace:
    """One tracked face in a live result (units as in :mod:`.take`).

    ``param``: the filtered parameters (62,) for ``roi``; ``raw_param``: the
    tracker's own. ``lmk68``: landmarks of the unfiltered result.
    """

    track_id: int
    param: np.ndarray
    raw_param: np.ndarray
    roi: np.ndarray
    lmk68: np.ndarray
    quality: float
    detected: bool


@dataclasses.dataclass
class LiveResult:
    """The faces on one processed frame.

    ``sequence`` counts results from 1; ``frame_number`` and ``time`` are the
    source's; ``grabbed_at`` and ``done_at`` are ``time.perf_counter()``
    seconds when the frame arrived and when this result was ready.
    """

    sequence: int
    frame_number: int
    time: float
    image_size: tuple[int, int]
    faces: list[LiveFace]
    grabbed_at: float
    done_at: float
    recording: bool

    @property
    def latency_s(self) -> float:
        return self.done_at - self.grabbed_at

    def face(self, track_id: int | None = None) -> LiveFace | None:
        """The face of ``track_id``, or (None) the lowest track id present; None if absent."""
        for face in self.faces:
            if track_id is None or face.track_id == track_id:
                return face
        return None


@dataclasses.dataclass
class LiveStats:
    """Counters since :meth:`LiveSession.start`.

    ``grabbed``: frames the source delivered; ``processed``: results made;
    ``dropped``: frames never processed (replaced in the slot, skipped by a
    real-time source that the grab thread could not keep up with, or left
    unprocessed when the session stopped);
    ``pending``: frames waiting now (0 or 1); ``fps``: results per second over
    the recent window; ``latency_ms`` / ``latency_p90_ms``: median / 90th
    percentile of grab-to-result latency over the recent window.
    """

    grabbed: int
    processed: int
    dropped: int
    pending: int
    fps: float
    latency_ms: float
    latency_p90_ms: float


class NewestFrameSlot:
    """A one-item hand-over between threads: :meth:`put` replaces what was not taken yet."""

    def __init__(self):
        self._condition = threading.Condition()
        self._item = None
        self._closed = False
        self.replaced = 0

    def put(self, item) -> None:
        with self._condition:
            if self._item is not None:
                self.replaced += 1
            self._item = item
            self._condition.notify()

    def close(self) -> None:
        """No more items: :meth:`take` returns None once the slot is empty."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    def take(self, timeout: float | None = None):
        """The waiting item (waits for one), or None when closed and empty or on timeout."""
        with self._condition:
            self._condition.wait_for(lambda: self._item is not None or self._closed, timeout)
            item, self._item = self._item, None
            return item

    def __len__(self) -> int:
        return int(self._item is not None)


class LiveSession:
    """Track a live source on background threads; read the newest result at any time.

    ``source`` is an open :class:`.sources.FrameSource` (a camera or
    :class:`.camera.RealtimeFileSource`); the session closes it in
    :meth:`stop`. Typical use::

        with LiveSession(CameraSource(0), LiveOptions(models_dir=...)) as session:
            session.start_recording()
            ...  # poll session.latest() from a timer
            take = session.stop_recording()
    """

    def __init__(self, source: FrameSource, options: LiveOptions | None = None):
        self.source = source
        self.options = options or LiveOptions()
        self.face_model = None  # the loaded FaceModel, once ready (read-only for others)
        self.regressor = None
        self._slot = NewestFrameSlot()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._finished = threading.Event()
        self._lock = threading.Lock()
        self._latest: LiveResult | None = None
        self._error: BaseException | None = None
        self._builder: TakeBuilder | None = None
        self._recorded_dropped = 0
        self._grabbed = 0
        self._processed = 0
        self._abandoned = 0  # frames the source delivered that stop() left unprocessed
        self._recent = collections.deque(maxlen=STATS_WINDOW)  # (done_at, latency_s)
        self._worker: threading.Thread | None = None
        self._grabber: threading.Thread | None = None

    # -- control -------------------------------------------------------------------

    def start(self) -> "LiveSession":
        """Start the worker (it loads the models, then starts grabbing); returns at once."""
        if self._worker is not None:
            raise RuntimeError("a LiveSession starts once")
        self._worker = threading.Thread(target=self._work, name="ddfa-live", daemon=True)
        self._worker.start()
        return self

    def stop(self) -> None:
        """Stop both threads, release the source and wait for the threads. Safe to call twice.

        The source's ``close()`` interrupts a grab in progress (both sources of
        :mod:`.camera` allow that from another thread).
        """
        self._stop.set()
        self._slot.close()
        self.source.close()
        if self._worker is not None:
            self._worker.join(JOIN_TIMEOUT_S)
        if self._grabber is not None:
            self._grabber.join(JOIN_TIMEOUT_S)

    def __enter__(self) -> "LiveSession":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True from :meth:`start` until the source ends, an error, or :meth:`stop`."""
        return self._worker is not None and not self._finished.is_set()

    @property
    def ready(self) -> bool:
        """True once the models are loaded and frames are being grabbed."""
        return self._ready.is_set()

    def alive_threads(self) -> list[threading.Thread]:
        """The session's threads still running (none after :meth:`stop`)."""
        return [t for t in (self._worker, self._grabber) if t is not None and t.is_alive()]

    def check(self) -> None:
        """Re-raise an error of the worker or grab thread here."""
        if self._error is not None:
            raise self._error

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the models are loaded (or an error, re-raised); False on timeout."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        while not self._ready.wait(0.05):
            self.check()
            if self._finished.is_set() or (deadline is not None and time.perf_counter() > deadline):
                self.check()
                return self._ready.is_set()
        return True

    def wait_finished(self, timeout: float | None = None) -> bool:
        """Wait until the source has ended and every frame is processed; False on timeout."""
        done = self._finished.wait(timeout)
        self.check()
        return done

    # -- results -------------------------------------------------------------------

    def latest(self) -> LiveResult | None:
        """The newest result (None before the first); re-raises a thread's error."""
        self.check()
        return self._latest

    def stats(self) -> LiveStats:
        """Counters and recent latency / rate (see :class:`LiveStats`)."""
        with self._lock:
            recent = list(self._recent)
            processed, grabbed = self._processed, self._grabbed
        latencies = np.array([latency for _, latency in recent]) * 1000.0
        fps = 0.0
        if len(recent) > 1 and recent[-1][0] > recent[0][0]:
            fps = (len(recent) - 1) / (recent[-1][0] - recent[0][0])
        return LiveStats(
            grabbed=grabbed,
            processed=processed,
            dropped=self._dropped(),
            pending=len(self._slot),
            fps=float(fps),
            latency_ms=float(np.median(latencies)) if len(latencies) else float("nan"),
            latency_p90_ms=float(np.percentile(latencies, 90)) if len(latencies) else float("nan"),
        )

    # -- recording -----------------------------------------------------------------

    @property
    def recording(self) -> bool:
        return self._builder is not None

    def start_recording(self) -> None:
        """Record every frame processed from now on (before :meth:`start`: from the first)."""
        with self._lock:
            self._builder = TakeBuilder()
            self._recorded_dropped = self._dropped()

    def stop_recording(self) -> Take:
        """End the recording and return it as a take (see the module doc).

        Raises :class:`CaptureError` when nothing was recorded.
        """
        with self._lock:
            builder, self._builder = self._builder, None
            dropped = self._dropped() - self._recorded_dropped
        if builder is None or len(builder) == 0:
            raise CaptureError(
                "Nothing was recorded: press Record while the live view shows the face."
            )
        stats = self.stats()
        return builder.build(
            fps=self.source.fps,
            image_size=self.source.image_size,
            model=self.regressor.name if self.regressor is not None else "",
            source=str(self.source.path),
            meta={
                "channels": {FILTERED_CHANNEL: list(PARAM_COLUMNS)},
                "live": True,
                "max_faces": self.options.max_faces,
                "dropped_frames": int(dropped),
                "latency_ms_median": stats.latency_ms,
                "filter": "one_euro" if self.options.filter else "none",
            },
        )

    def _dropped(self) -> int:
        return self._slot.replaced + int(getattr(self.source, "dropped", 0)) + self._abandoned

    # -- threads -------------------------------------------------------------------

    def _work(self) -> None:
        try:
            tracker = self._load()
            if self._stop.is_set():
                return
            self._grabber = threading.Thread(target=self._grab, name="ddfa-live-grab", daemon=True)
            self._grabber.start()
            self._ready.set()
            filters: dict[int, object] = {}
            while not self._stop.is_set():
                item = self._slot.take(timeout=0.1)
                if item is None:
                    if self._grabber.is_alive() or len(self._slot):
                        continue
                    break  # the source has ended and its last frame is done
                frame, grabbed_at = item
                self._process(tracker, filters, frame, grabbed_at)
        except BaseException as err:  # handed to the caller by check()
            self._error = err
        finally:
            self._stop.set()
            self._slot.close()
            with self._lock:
                self._abandoned += len(self._slot)  # grabbed, never taken
            self._finished.set()

    def _load(self):
        from .engine import build_tracker

        tracker = build_tracker(self.options)
        self.regressor, self.face_model = tracker.regressor, tracker.face
        return tracker

    def _grab(self) -> None:
        try:
            for frame in self.source:
                if self._stop.is_set():
                    with self._lock:
                        self._abandoned += 1  # delivered as the session stopped
                    break
                self._slot.put((frame, time.perf_counter()))
                with self._lock:
                    self._grabbed += 1
        except BaseException as err:  # handed to the caller by check()
            self._error = self._error or err
            self._stop.set()
        finally:
            self._slot.close()

    def _process(self, tracker, filters: dict, frame: Frame, grabbed_at: float) -> None:
        from .one_euro import LiveFilter

        observations = tracker.step(frame)
        faces = []
        for obs in observations:
            param = np.asarray(obs.param, dtype=np.float32)
            if self.options.filter:
                live_filter = filters.get(obs.track_id)
                if live_filter is None:
                    live_filter = filters[obs.track_id] = LiveFilter()
                filtered = live_filter(frame.time, param, obs.roi)
            else:
                filtered = param.copy()
            faces.append(
                LiveFace(obs.track_id, filtered, param, np.asarray(obs.roi), np.asarray(obs.lmk68),
                         float(obs.quality), bool(obs.detected))
            )
        seen = {face.track_id for face in faces}
        for track_id in [t for t in filters if t not in seen]:
            del filters[track_id]  # a face that comes back starts its filter afresh
        with self._lock:
            builder = self._builder
            if builder is not None:
                builder.add(
                    frame.number, frame.time, observations,
                    {
                        FILTERED_CHANNEL: {face.track_id: face.param for face in faces},
                        OCCLUSION_CHANNEL: occlusion_channel(observations),
                    },
                )
            self._processed += 1
            done_at = time.perf_counter()
            self._recent.append((done_at, done_at - grabbed_at))
            self._latest = LiveResult(
                self._processed, frame.number, frame.time, tuple(self.source.image_size), faces,
                grabbed_at, done_at, builder is not None,
            )

