"""Footage sources: a video file, an image sequence (folder or printf pattern), one image.

Each source streams frames (never the whole clip in memory) as :class:`Frame`
records with the source's own frame number and presentation time, upright as
a player shows them: a video's rotation metadata (display matrix or ``rotate``
tag, as phones write) and a still's EXIF orientation are applied, and
``image_size`` is the displayed size.

Timing. A video frame's time is its presentation timestamp; AVI files and raw
streams (``.h264``, ``.hevc``) carry none usable, so theirs is ``NaN`` and
:func:`frame_timing` gives them ``number / fps``. :func:`frame_timing` also
decides the take's frame rate (the container's nominal rate, checked against
the timestamps) and whether the footage plays at a constant rate.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from typing import Iterator

import numpy as np

from .errors import CaptureError
from .mp4_boxes import video_track_duration

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
UNSUPPORTED_IMAGE_EXTENSIONS = (".exr", ".hdr", ".dpx", ".heic", ".heif")
VIDEO_EXTENSIONS = (
    ".mp4", ".mov", ".avi", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".mts", ".m2ts", ".ts",
    ".h264", ".264", ".h265", ".hevc", ".flv", ".3gp", ".mxf", ".ogv",
)
UNTIMED_VIDEO_EXTENSIONS = (".avi", ".h264", ".264", ".h265", ".hevc")  # no usable per-frame timestamps
DEFAULT_SEQUENCE_FPS = 24.0
DEFAULT_VIDEO_FPS = 30.0  # for streams that report no plausible rate (most phones record 30)
PLAUSIBLE_FPS = (1.0, 240.0)
STANDARD_RATES = (23.976, 24.0, 25.0, 29.97, 30.0, 47.952, 48.0, 50.0, 59.94, 60.0, 90.0, 100.0, 119.88, 120.0, 240.0)


@dataclasses.dataclass
class Frame:
    """One frame: ``number`` (source frame number), ``time`` (seconds), ``image`` (BGR uint8 (H, W, 3))."""

    number: int
    time: float
    image: np.ndarray


class FrameSource:
    """Common interface: ``path``, ``fps``, ``image_size`` (width, height), ``frame_count``
    (an estimate for progress, or None), and iteration over :class:`Frame`."""

    path: str
    fps: float
    image_size: tuple[int, int]
    frame_count: int | None

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the file or device."""


class VideoSource(FrameSource):
    """A video file decoded by OpenCV's FFmpeg backend, in presentation order, upright.

    Frame numbers count the frames the container presents (an MP4 edit list
    that hides coded frames hides them here too, as in players). ``rotation``
    is the clockwise turn in degrees (0, 90, 180, 270) applied to each decoded
    frame to show it as a player does; ``fps`` is the container's reported
    rate when plausible, else ``DEFAULT_VIDEO_FPS`` (see :func:`frame_timing`).
    """

    def __init__(self, path: str):
        cv2 = _cv2()

        self.path = path
        self.notes: list[str] = []
        self._capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
        if not self._capture.isOpened():
            raise CaptureError(
                f"Cannot open video {path}: the file is damaged or not a video FFmpeg can read; "
                "check that it plays, or convert it to H.264 MP4."
            )
        if hasattr(cv2, "CAP_PROP_ORIENTATION_AUTO"):  # rotate here, the same way in every OpenCV
            self._capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
        meta = self._capture.get(cv2.CAP_PROP_ORIENTATION_META) if hasattr(cv2, "CAP_PROP_ORIENTATION_META") else 0
        self.rotation = int(round(meta or 0)) % 360 if np.isfinite(meta or 0) else 0
        if self.rotation not in _ROTATE_CODES:
            self.rotation = 0
        self._timed = not path.lower().endswith(UNTIMED_VIDEO_EXTENSIONS)
        ok, first = self._capture.read()
        if not ok or first is None:
            self._capture.release()
            raise CaptureError(
                f"Video {path} has no decodable frames: the file is empty or damaged; export it again."
            )
        self._first_time = self._time()
        self._first = self._upright(first)
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.reported_fps = float(fps) if fps and np.isfinite(fps) else 0.0
        self.fps = self.reported_fps if plausible_fps(self.reported_fps) else DEFAULT_VIDEO_FPS
        self.image_size = (self._first.shape[1], self._first.shape[0])
        count = self._capture.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if count and 0 < count < 1e9 else None
        presented = video_track_duration(path)  # an edit list can hide coded frames
        if presented:
            estimate = round(presented * self.fps)
            self.frame_count = min(self.frame_count, estimate) if self.frame_count else estimate

    def _time(self) -> float:
        if not self._timed:
            return float("nan")
        return self._capture.get(_cv2().CAP_PROP_POS_MSEC) / 1000.0

    def _upright(self, image):
        if self.rotation:
            return _cv2().rotate(image, _ROTATE_CODES[self.rotation])
        return image

    def __iter__(self) -> Iterator[Frame]:
        if self._first is None:
            raise RuntimeError("a VideoSource can be iterated once")
        image, time, self._first = self._first, self._first_time, None
        number = 0
        while image is not None:
            yield Frame(number, time, image)
            ok, image = self._capture.read()
            if not ok:
                break
            time = self._time()
            image = self._upright(image)
            number += 1

    def close(self) -> None:
        self._capture.release()


class ImageSequence(FrameSource):
    """Numbered still images, given as a folder or a printf pattern (``shot_%04d.png``).

    Frame numbers are the numbers in the file names; time is number / fps.
    """

    def __init__(self, files: list[tuple[int, str]], path: str, fps: float):
        if not files:
            raise CaptureError(f"No images found for {path} (expected {', '.join(IMAGE_EXTENSIONS)}).")
        self.path = path
        self.fps = float(fps)
        self._files = files
        first = _read_image(files[0][1])
        self.image_size = (first.shape[1], first.shape[0])
        self.frame_count = len(files)

    def __iter__(self) -> Iterator[Frame]:
        for number, file in self._files:
            image = _read_image(file)
            if (image.shape[1], image.shape[0]) != self.image_size:
                raise CaptureError(
                    f"{file} is {image.shape[1]}x{image.shape[0]} but the sequence is "
                    f"{self.image_size[0]}x{self.image_size[1]}: all images must have one size."
                )
            yield Frame(number, number / self.fps, image)


def open_source(path: str, fps: float | None = None) -> FrameSource:
    """Open footage by path: a video, an image, a folder of images or a printf pattern.

    ``fps`` sets the rate of image sequences (default 24); videos use their own.
    A name containing ``%`` is a pattern only if no such file exists.
    """
    path = os.fspath(path)
    rate = fps or DEFAULT_SEQUENCE_FPS
    if os.path.isdir(path):
        return ImageSequence(_folder_files(path), path, rate)
    if not os.path.exists(path):
        if _is_pattern(path):
            return ImageSequence(_pattern_files(path), path, rate)
        raise CaptureError(f"Input not found: {path}; check the path.")
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise CaptureError(f"Input {path} is an empty file (0 bytes); copy or export the footage again.")
    _refuse_unsupported_images([path])
    if path.lower().endswith(IMAGE_EXTENSIONS):
        return ImageSequence([(0, path)], path, rate)
    return VideoSource(path)


def plausible_fps(fps) -> bool:
    return fps is not None and np.isfinite(fps) and PLAUSIBLE_FPS[0] <= fps <= PLAUSIBLE_FPS[1]


def nominal_rate(interval: float) -> float:
    """The frame rate of a frame interval (s), snapped to a standard rate within 0.3 %."""
    rate = 1.0 / interval
    nearest = min(STANDARD_RATES, key=lambda r: abs(r - rate))
    if abs(nearest - rate) <= 0.003 * nearest:
        return {23.976: 24000 / 1001, 29.97: 30000 / 1001, 47.952: 48000 / 1001,
                59.94: 60000 / 1001, 119.88: 120000 / 1001}.get(nearest, nearest)
    return rate


def frame_timing(times, reported_fps: float, user_fps: float | None, path) -> tuple[np.ndarray, float, str]:
    """The frames' times (s), the take's frame rate, and a warning ('' if none).

    ``times``: the sources's presentation times (NaN where unknown).
    ``reported_fps``: the source's rate. ``user_fps``: the rate the user chose
    (None: decide). Constant-rate footage gets exact times ``t0 + i / fps``;
    footage whose timestamps vary (dropped or variable frames) keeps them.
    Footage without usable timestamps is timed at the user's rate, else the
    reported one, else ``DEFAULT_VIDEO_FPS`` (with a warning saying so).
    """
    times = np.asarray(times, dtype=np.float64)
    n = len(times)
    index = np.arange(n, dtype=np.float64)
    steps = np.diff(times)
    usable = n > 1 and np.isfinite(times).all() and (steps > 0).all()
    if not usable:
        if user_fps:
            return index / user_fps, float(user_fps), ""
        if plausible_fps(reported_fps):
            return index / reported_fps, float(reported_fps), ""
        note = "" if n <= 1 else (
            f"{path} reports {reported_fps:g} fps and no frame times (a raw stream?); timed at "
            f"{DEFAULT_VIDEO_FPS:g} fps: pass --fps with the real rate."
        )
        return index / DEFAULT_VIDEO_FPS, DEFAULT_VIDEO_FPS, note
    fps = nominal_rate(float(np.median(steps)))
    if plausible_fps(reported_fps) and abs(reported_fps - fps) <= 0.01 * fps:
        fps = float(reported_fps)  # the container's exact value
    if user_fps:
        fps = float(user_fps)
    regular = times[0] + index / fps
    if np.abs(times - regular).max() < 0.25 / fps:
        return regular, fps, ""  # constant rate: exact times, keys on whole frames
    return times, fps, ""


def footage_exists(path) -> bool:
    """Whether footage ``path`` is there: an existing file or folder, or a printf pattern
    matching at least one file."""
    path = os.fspath(path or "")
    if not path:
        return False
    if os.path.exists(path):
        return True
    if not _is_pattern(path) or path.lower().endswith(UNSUPPORTED_IMAGE_EXTENSIONS):
        return False
    return bool(_pattern_files(path))


def is_video_file(path: str) -> bool:
    return os.path.isfile(path) and path.lower().endswith(VIDEO_EXTENSIONS)


_ROTATE_CODES = {90: 0, 180: 1, 270: 2}  # cv2.ROTATE_90_CLOCKWISE, ROTATE_180, ROTATE_90_COUNTERCLOCKWISE


def _cv2():
    """OpenCV, with its own log lines (warnings on unreadable files) off: errors here are
    raised as one CaptureError sentence instead."""
    import cv2

    cv2.setLogLevel(0)  # silent
    return cv2


def _read_image(file: str) -> np.ndarray:
    """A still as BGR uint8 (H, W, 3), turned upright by its EXIF orientation."""
    cv2 = _cv2()
    try:
        data = np.fromfile(file, dtype=np.uint8)
    except OSError as err:
        raise CaptureError(f"Cannot read image {file}: {err.strerror}.") from err
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if len(data) else None
    if image is None:
        raise CaptureError(f"Cannot read image {file}: the file is damaged or not an image; export it again.")
    return image


def _refuse_unsupported_images(files) -> None:
    for file in files:
        if file.lower().endswith(UNSUPPORTED_IMAGE_EXTENSIONS):
            extension = os.path.splitext(file)[1]
            raise CaptureError(
                f"{extension} images are not supported ({file}): convert the sequence to PNG or "
                "JPEG (8-bit sRGB) first, e.g. with Blender or ffmpeg."
            )


def _is_pattern(path: str) -> bool:
    return re.search(r"%0?\d*d", os.path.basename(path)) is not None


def _frame_number(name: str, fallback: int) -> int:
    digits = re.findall(r"\d+", os.path.splitext(name)[0])
    return int(digits[-1]) if digits else fallback


def _folder_files(folder: str) -> list[tuple[int, str]]:
    _refuse_unsupported_images(os.listdir(folder))
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS))
    numbered = [(_frame_number(n, i), os.path.join(folder, n)) for i, n in enumerate(names)]
    numbers = [n for n, _ in numbered]
    if len(set(numbers)) != len(numbers):  # names without a usable counter: keep sorted order
        numbered = [(i, f) for i, (_, f) in enumerate(numbered)]
    return sorted(numbered)


def _pattern_files(pattern: str) -> list[tuple[int, str]]:
    _refuse_unsupported_images([pattern])
    folder, name = os.path.split(pattern)
    match = re.search(r"%(0?\d*)d", name)
    prefix, suffix = os.path.join(folder, name[: match.start()]), name[match.end() :]
    width = match.group(1)
    digits = "[0-9]" * (int(width) if width else 1) + ("" if width else "*")
    glob_pattern = glob.escape(prefix) + digits + glob.escape(suffix)
    files = []
    for file in glob.glob(glob_pattern):
        counter = file[len(prefix) : len(file) - len(suffix) if suffix else None]
        if counter.isdigit():
            files.append((int(counter), file))
    return sorted(files)
