"""Footage sources: a video file, an image sequence (folder or printf pattern), one image.

Each source streams frames (never the whole clip in memory) as :class:`Frame`
records with the source's own frame number and presentation time.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from typing import Iterator

import numpy as np

from .errors import CaptureError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".exr", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv")
DEFAULT_SEQUENCE_FPS = 24.0


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
    """A video file decoded by OpenCV's FFmpeg backend, in presentation order.

    Frame numbers count the frames the container presents (an MP4 edit list
    that hides coded frames hides them here too, as in players).
    """

    def __init__(self, path: str):
        import cv2

        self.path = path
        self._capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
        if not self._capture.isOpened():
            raise CaptureError(f"Cannot open video {path}: the file is corrupt or in an unsupported format.")
        ok, first = self._capture.read()
        if not ok or first is None:
            self._capture.release()
            raise CaptureError(f"Video {path} has no decodable frames.")
        self._first = first
        self._first_time = self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 else DEFAULT_SEQUENCE_FPS
        self.image_size = (first.shape[1], first.shape[0])
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None

    def __iter__(self) -> Iterator[Frame]:
        import cv2

        if self._first is None:
            raise RuntimeError("a VideoSource can be iterated once")
        image, time, self._first = self._first, self._first_time, None
        number = 0
        while image is not None:
            yield Frame(number, time, image)
            ok, image = self._capture.read()
            if not ok:
                break
            time = self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
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
    """
    path = os.fspath(path)
    rate = fps or DEFAULT_SEQUENCE_FPS
    if "%" in os.path.basename(path):
        return ImageSequence(_pattern_files(path), path, rate)
    if os.path.isdir(path):
        return ImageSequence(_folder_files(path), path, rate)
    if not os.path.exists(path):
        raise CaptureError(f"Input not found: {path}.")
    if path.lower().endswith(IMAGE_EXTENSIONS):
        return ImageSequence([(0, path)], path, rate)
    return VideoSource(path)


def is_video_file(path: str) -> bool:
    return os.path.isfile(path) and path.lower().endswith(VIDEO_EXTENSIONS)


def _read_image(file: str) -> np.ndarray:
    import cv2

    image = cv2.imread(file, cv2.IMREAD_COLOR)
    if image is None:
        raise CaptureError(f"Cannot read image {file}: the file is corrupt or not an image.")
    return image


def _frame_number(name: str, fallback: int) -> int:
    digits = re.findall(r"\d+", os.path.splitext(name)[0])
    return int(digits[-1]) if digits else fallback


def _folder_files(folder: str) -> list[tuple[int, str]]:
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS))
    numbered = [(_frame_number(n, i), os.path.join(folder, n)) for i, n in enumerate(names)]
    numbers = [n for n, _ in numbered]
    if len(set(numbers)) != len(numbers):  # names without a usable counter: keep sorted order
        numbered = [(i, f) for i, (_, f) in enumerate(numbered)]
    return sorted(numbered)


def _pattern_files(pattern: str) -> list[tuple[int, str]]:
    match = re.search(r"%(0?\d*)d", pattern)
    if not match:
        raise CaptureError(f"Pattern {pattern} needs a printf counter such as %04d.")
    prefix, suffix = pattern[: match.start()], pattern[match.end() :]
    width = match.group(1)
    glob_pattern = glob.escape(prefix) + "[0-9]" * (int(width) if width else 1) + ("" if width else "*") + glob.escape(suffix)
    files = []
    for file in glob.glob(glob_pattern):
        counter = file[len(prefix) : len(file) - len(suffix) if suffix else None]
        if counter.isdigit():
            files.append((int(counter), file))
    return sorted(files)
