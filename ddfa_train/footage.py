"""The performer's footage as training material: stock tracking, face crops, MediaPipe landmarks.

For every frame of each clip where the stock regressor tracks a face, this
keeps what adaptation needs: the tracker's crop box (``roi``, image pixels,
see :mod:`ddfa_blender.core.reconstruct`), the stock parameters in that crop's
frame, the two-heads agreement (``quality``, crop px), a *context crop* (the
ROI enlarged ``CONTEXT`` times about its centre, resampled to
``CONTEXT_SIZE`` px, BGR uint8) so that in-plane moves of the crop find real
pixels, and MediaPipe's 478 face-mesh landmarks in image pixels (NaN where
MediaPipe finds no face). One performer per clip: with several faces the
largest tracked one is kept.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from ddfa_blender.core.engine import CaptureOptions, build_tracker, prefetch
from ddfa_blender.core.errors import CaptureCancelled, CaptureError
from ddfa_blender.core.reconstruct import CROP_SIZE
from ddfa_blender.core.sources import open_source

CONTEXT = 1.5
CONTEXT_SIZE = int(CROP_SIZE * CONTEXT)  # 180 px: the 120-px crop is its centre
N_MESH = 478


@dataclasses.dataclass
class Footage:
    """Per usable frame (N rows), units as in the module doc."""

    clip: np.ndarray  # int (N,), index into ``clips``
    time: np.ndarray  # float64 (N,), seconds
    roi: np.ndarray  # float64 (N, 4)
    param: np.ndarray  # float32 (N, 62), stock regressor, crop frame
    quality: np.ndarray  # float32 (N,)
    context: np.ndarray  # uint8 (N, CONTEXT_SIZE, CONTEXT_SIZE, 3)
    mesh: np.ndarray  # float32 (N, 478, 2), MediaPipe landmarks, image px (NaN: none)
    clips: list  # source paths
    fps: list  # frames per second of each clip

    def __len__(self) -> int:
        return len(self.time)

    def rows(self, mask) -> "Footage":
        """The rows selected by a boolean mask or index array."""
        picked = {
            field.name: getattr(self, field.name)[mask]
            for field in dataclasses.fields(self)
            if field.name not in ("clips", "fps")
        }
        return Footage(**picked, clips=self.clips, fps=self.fps)


def context_affine(roi) -> np.ndarray:
    """2x3 affine from image pixels to context-crop pixels for one ROI (4,)."""
    x0, y0, x1, y1 = (float(v) for v in roi)
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, CONTEXT * (x1 - x0) / 2
    scale = CONTEXT_SIZE / (2 * half)
    return np.array(
        [[scale, 0.0, -(cx - half) * scale - 0.5], [0.0, scale, -(cy - half) * scale - 0.5]]
    )


class MeshLandmarker:
    """MediaPipe's face landmarker (Tasks API, VIDEO mode, one face) on whole frames.

    ``model_path``: the prepared ``face_landmarker.task``. ``detect(image, time)``
    returns (478, 2) image pixels (x right, y down, 0-based) or None.
    """

    def __init__(self, model_path: str):
        from mediapipe.tasks.python import BaseOptions, vision

        with open(model_path, "rb") as file:
            model = file.read()
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_buffer=model),
            running_mode=vision.RunningMode.VIDEO,
            num_faces=1,
        )
        self._landmarker = vision.FaceLandmarker.create_from_options(options)
        self._last_ms = -1

    def detect(self, image_bgr: np.ndarray, time_s: float):
        import mediapipe as mp

        stamp = max(int(round(time_s * 1000.0)), self._last_ms + 1)
        self._last_ms = stamp
        rgb = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image_bgr[:, :, ::-1]))
        result = self._landmarker.detect_for_video(rgb, stamp)
        if not result.face_landmarks:
            return None
        height, width = image_bgr.shape[:2]
        points = np.array([(p.x, p.y) for p in result.face_landmarks[0]], dtype=np.float64)
        # MediaPipe's normalised coordinates put pixel edges at 0 and 1.
        return (points * (width, height) - 0.5).astype(np.float32)

    def close(self) -> None:
        self._landmarker.close()


def collect(
    clips,
    models_dir: str,
    model: str = "mb05",
    window=None,
    progress=None,
    should_stop=None,
    mesh: bool = True,
) -> Footage:
    """Track ``clips`` with the stock regressor and gather the training material.

    ``window``: optional ``(start_s, stop_s)`` applied to every clip. ``progress(done, total)``
    after each frame (``total`` may be None); ``should_stop()`` true cancels with
    :class:`CaptureCancelled`. ``mesh``: also run MediaPipe (needed for training).
    """
    import cv2

    from ddfa_blender.core.face_landmarker import landmarker_path

    columns: dict[str, list] = {k: [] for k in ("clip", "time", "roi", "param", "quality", "context", "mesh")}
    fps_list = []
    total = 0
    done = 0
    sources = [open_source(os.fspath(path)) for path in clips]
    try:
        total = sum(s.frame_count or 0 for s in sources) or None
        for index, source in enumerate(sources):
            fps_list.append(float(source.fps))
            tracker = build_tracker(CaptureOptions(model=model, models_dir=models_dir))
            landmarker = MeshLandmarker(landmarker_path(models_dir)) if mesh else None
            try:
                for frame in prefetch(source):
                    if should_stop is not None and should_stop():
                        raise CaptureCancelled()
                    done += 1
                    if progress is not None:
                        progress(done, total)
                    if window is not None and not (window[0] <= frame.time < window[1]):
                        continue
                    observations = tracker.step(frame)
                    if not observations:
                        continue
                    obs = max(observations, key=lambda o: o.roi[2] - o.roi[0])
                    points = landmarker.detect(frame.image, frame.time) if landmarker else None
                    columns["clip"].append(index)
                    columns["time"].append(frame.time)
                    columns["roi"].append(obs.roi)
                    columns["param"].append(obs.param)
                    columns["quality"].append(obs.quality)
                    columns["context"].append(
                        cv2.warpAffine(
                            frame.image, context_affine(obs.roi), (CONTEXT_SIZE, CONTEXT_SIZE),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE,
                        )
                    )
                    columns["mesh"].append(
                        np.full((N_MESH, 2), np.nan, np.float32) if points is None else points
                    )
            finally:
                if landmarker is not None:
                    landmarker.close()
    finally:
        for source in sources:
            source.close()
    n = len(columns["time"])
    if n == 0:
        return Footage(
            np.zeros(0, int), np.zeros(0), np.zeros((0, 4)), np.zeros((0, 62), np.float32),
            np.zeros(0, np.float32), np.zeros((0, CONTEXT_SIZE, CONTEXT_SIZE, 3), np.uint8),
            np.zeros((0, N_MESH, 2), np.float32), [os.fspath(c) for c in clips], fps_list,
        )
    return Footage(
        clip=np.asarray(columns["clip"]),
        time=np.asarray(columns["time"], dtype=np.float64),
        roi=np.asarray(columns["roi"], dtype=np.float64),
        param=np.asarray(columns["param"], dtype=np.float32),
        quality=np.asarray(columns["quality"], dtype=np.float32),
        context=np.stack(columns["context"]),
        mesh=np.stack(columns["mesh"]).astype(np.float32),
        clips=[os.fspath(c) for c in clips],
        fps=fps_list,
    )
