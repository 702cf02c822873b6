"""Live frame sources: a camera or stream (:class:`CameraSource`), and a video played at
its real-time pace (:class:`RealtimeFileSource`), for tests and demos without a camera.

Both are :class:`.sources.FrameSource` objects that stream frames until the
device or file ends or :meth:`close` is called (from any thread: a blocked
wait returns, and the device is released once no read is in progress).

Device names (``CameraSource(device)``):

* an int or a string of digits: the camera with that index (0 = the first);
* a device path (``/dev/video2`` on Linux);
* a URL (``rtsp://``, ``http://``, ...) or a video file path: a stream that
  FFmpeg reads.

Frame times: a camera's frames are timed by the clock when they arrive
(seconds since the first frame, so a take records when each frame really
came); the real-time file source keeps the file's own presentation times and
frame numbers, so a recording from it lines up with an offline capture of the
same file.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
import time
from typing import Callable, Iterator

from .errors import CaptureError
from .sources import Frame, FrameSource, open_source

# A camera that returns this many failed reads in a row has stopped (unplugged, taken).
MAX_FAILED_READS = 20
STREAM_TIMEOUT_MS = 5000
# Above this many pixels V4L2 webcams usually stream uncompressed frames at a few fps
# only; asking for MJPG keeps their full rate.
MJPG_ABOVE_PIXELS = 640 * 480

PRIVACY_HINT = {
    "darwin": "allow camera access for Blender in System Settings > Privacy & Security > Camera",
    "win32": "allow camera access for desktop apps in Settings > Privacy & security > Camera",
}
LINUX_PERMISSION_HINT = "add your user to the 'video' group (sudo usermod -aG video $USER) and log in again"


def parse_device(device) -> tuple[str, object]:
    """Classify a device name: ``("index", int)``, ``("path", str)`` or ``("stream", str)``."""
    if isinstance(device, int):
        return "index", device
    text = str(device).strip()
    if text.isdigit():
        return "index", int(text)
    if "://" in text:
        return "stream", text
    if text.startswith("/dev/"):
        return "path", text
    if os.path.isfile(text):
        return "stream", text
    raise CaptureError(
        f"Unknown camera '{text}': give a camera index (0, 1, ...), a device path "
        "such as /dev/video0, or a stream URL such as rtsp://host/stream."
    )


def _device_path(kind: str, value) -> str | None:
    """The device file behind a camera index or path on Linux (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    return f"/dev/video{value}" if kind == "index" else (value if kind == "path" else None)


def camera_open_error(kind: str, value, platform: str = sys.platform) -> CaptureError:
    """The user-facing error for a camera or stream that did not open (see module doc)."""
    if kind == "stream":
        return CaptureError(
            f"Cannot open the stream {value}: check the address and that the stream is running."
        )
    name = f"camera {value}" if kind == "index" else str(value)
    path = _device_path(kind, value) if platform.startswith("linux") else None
    if path is not None:
        if not os.path.exists(path):
            return CaptureError(
                f"No camera found at {path}: connect a webcam or choose another camera index."
            )
        if not os.access(path, os.R_OK | os.W_OK):
            return CaptureError(f"Permission denied for {path}: {LINUX_PERMISSION_HINT}.")
        try:
            handle = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EPERM):
                return CaptureError(f"Permission denied for {path}: {LINUX_PERMISSION_HINT}.")
            if err.errno == errno.EBUSY:
                return _busy_error(path)
            return CaptureError(
                f"Cannot open {path} ({err.strerror}): check that it is a camera and try another index."
            )
        os.close(handle)
        return _busy_error(path)
    hint = PRIVACY_HINT.get(platform, "check that no other application holds the camera")
    return CaptureError(
        f"Cannot open {name}: connect a camera, or {hint}; other applications using it "
        "(video calls, browsers) must release it first."
    )


def _busy_error(name: str) -> CaptureError:
    return CaptureError(
        f"{name} is busy or gives no frames: close other applications using it "
        "(video calls, browsers) and try again."
    )


class CameraSource(FrameSource):
    """A webcam, capture device or network stream through OpenCV.

    ``width``, ``height`` and ``fps`` are requests; the device may give
    something else. After opening (the first frame has been read, so a dead
    device fails here with a clear :class:`CaptureError`), ``image_size`` and
    ``fps`` are what it actually gives and :attr:`notes` says in words where
    that differs from the request. ``frame_count`` is None (a live source has
    no end). Frame numbers count the frames read; times are seconds since the
    first frame, by ``clock``.
    """

    def __init__(
        self,
        device=0,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        import cv2

        self.kind, self.device = parse_device(device)
        self.path = f"camera:{self.device}" if self.kind == "index" else str(self.device)
        self.requested = (width, height, fps)
        self.frame_count = None
        self.notes: list[str] = []
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = threading.Event()
        if self.kind == "stream":
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
            ]
            self._capture = cv2.VideoCapture(self.device, cv2.CAP_FFMPEG, params)
        else:
            self._capture = cv2.VideoCapture(self.device)
        if not self._capture.isOpened():
            self._capture.release()
            raise camera_open_error(self.kind, self.device)
        if self.kind != "stream":
            self._request(width, height, fps)
        ok, first = self._capture.read()
        if not ok or first is None:
            self._capture.release()
            if self.kind == "stream":
                raise CaptureError(f"The stream {self.device} gives no frames: check that it is running.")
            raise _busy_error(self.path)
        self._first = first
        self._start = self._clock()
        self.image_size = (first.shape[1], first.shape[0])
        reported = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(reported) if reported and 0 < reported < 1000 else float(fps or 30.0)
        self._describe_mismatch(width, height, fps)

    def _request(self, width, height, fps) -> None:
        import cv2

        if width and height and width * height > MJPG_ABOVE_PIXELS:
            self._capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        if width:
            self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, float(width))
        if height:
            self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, float(height))
        if fps:
            self._capture.set(cv2.CAP_PROP_FPS, float(fps))
        # Keep at most one frame in the driver: the newest frame is the one wanted.
        self._capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)

    def _describe_mismatch(self, width, height, fps) -> None:
        got_w, got_h = self.image_size
        if (width and width != got_w) or (height and height != got_h):
            self.notes.append(
                f"Asked for {width or got_w}x{height or got_h}; {self.path} gives {got_w}x{got_h}."
            )
        if fps and abs(fps - self.fps) > 0.5:
            self.notes.append(f"Asked for {fps:g} fps; {self.path} gives {self.fps:g} fps.")

    def __iter__(self) -> Iterator[Frame]:
        number, failures = 0, 0
        image, arrived = self._first, self._start
        self._first = None
        while image is not None:
            yield Frame(number, arrived - self._start, image)
            number += 1
            image = None
            while image is None:
                with self._lock:
                    if self._closed.is_set():
                        return
                    ok, read = self._capture.read()
                arrived = self._clock()
                if ok and read is not None:
                    image, failures = read, 0
                    continue
                if self.kind == "stream" and os.path.isfile(self.device):
                    return  # a file read as a stream has ended
                failures += 1
                if failures >= MAX_FAILED_READS:
                    raise CaptureError(
                        f"{self.path} stopped giving frames (unplugged, or taken by another "
                        "application): reconnect it and start again."
                    )
                self._closed.wait(0.01)

    def close(self) -> None:
        """Stop the stream and release the device (waits for a read in progress)."""
        self._closed.set()
        with self._lock:
            self._capture.release()


class RealtimeFileSource(FrameSource):
    """Footage played at its real-time pace, as a camera would deliver it.

    Frames are handed out no earlier than their presentation time (divided by
    ``speed``) after the first one was taken. A consumer that falls behind
    gets the newest frame that is due, as from a camera: the frames it missed
    are skipped and counted in :attr:`dropped`. Frame numbers and times are the
    file's own (see the module doc). ``clock`` and ``sleep`` are injectable
    for tests; ``sleep(seconds)`` returns early after :meth:`close`.
    """

    def __init__(
        self,
        path,
        speed: float = 1.0,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] | None = None,
    ):
        if not speed > 0:
            raise CaptureError(f"Playback speed must be positive, got {speed}.")
        self._source = open_source(os.fspath(path))
        self.path = self._source.path
        self.fps = self._source.fps
        self.image_size = self._source.image_size
        self.frame_count = self._source.frame_count
        self.speed = float(speed)
        self.dropped = 0
        self.delivered = 0
        self._clock = clock
        self._closed = threading.Event()
        self._sleep = sleep or self._closed.wait
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[Frame]:
        frames = iter(self._source)
        pending = self._next(frames)
        if pending is None:
            return
        start = self._clock() - pending.time / self.speed

        def due(frame):
            return start + frame.time / self.speed

        while pending is not None:
            upcoming = self._next(frames)
            while upcoming is not None and due(upcoming) <= self._clock():
                self.dropped += 1  # a newer frame is already out: this one was never seen
                pending, upcoming = upcoming, self._next(frames)
            wait = due(pending) - self._clock()
            if wait > 0:
                self._sleep(wait)
            if self._closed.is_set():
                return
            self.delivered += 1
            yield pending
            pending = upcoming

    def _next(self, frames) -> Frame | None:
        with self._lock:
            if self._closed.is_set():
                return None
            return next(frames, None)

    def close(self) -> None:
        """Stop playback (a waiting iteration returns) and release the file."""
        self._closed.set()
        with self._lock:
            self._source.close()
