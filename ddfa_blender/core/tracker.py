"""Face tracking: detect once, then re-crop each frame from the previous landmarks.

This is the tracking scheme of 3DDFA-V2's video demos: the crop for frame t
is framed from the 68 landmarks of frame t-1 the way the network was trained
(:func:`.reconstruct.roi_from_landmarks`), so the detector runs only to start
a track or when one is lost. A track is lost when

* the network's two heads disagree (``quality`` above ``max_quality_px``): the
  crop no longer holds a face the network recognises,
* its landmarks leave the image, or
* the face's size jumps between frames (``max_size_change``), which tracking a
  real face at video rates does not do.

A lost face is looked for again by the detector on the same frame. A new
track starts only where the heads agree closely (``START_QUALITY_PX``): on the
test media real faces start at 0.2-0.7 px, while detector false positives
(lettering, textures) that survive BlazeFace's score threshold sit at 1-2.4 px.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .detector import Detection, box_iou
from .face_model import FaceModel
from .reconstruct import (
    CROP_SIZE,
    crop_affine,
    crop_to_image,
    landmarks_crop,
    network_landmarks_crop,
    roi_from_landmarks,
)
from .regressor import Regressor
from .sources import Frame

# BlazeFace boxes run from the brows to the chin. The ROI the network expects
# (roi_from_landmarks) is centred lower and is larger; these ratios were
# measured on the test images by refining detections with the landmarks.
BOX_CENTRE_SHIFT = 0.10
BOX_TO_ROI = 1.90

MAX_QUALITY_PX = 3.0
START_QUALITY_PX = 1.0
MAX_SIZE_CHANGE = 1.35
REID_SECONDS = 1.0


@dataclasses.dataclass
class FaceObservation:
    """One tracked face on one frame (units as in :mod:`.take`)."""

    track_id: int
    param: np.ndarray
    roi: np.ndarray
    lmk68: np.ndarray
    quality: float
    detected: bool


@dataclasses.dataclass
class _Track:
    track_id: int
    roi: np.ndarray
    identity: np.ndarray
    last_time: float


def roi_from_detection(box) -> np.ndarray:
    """A first square crop box (4,) for a BlazeFace detection box, refined later by landmarks."""
    x0, y0, x1, y1 = (float(v) for v in box)
    size = max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0 + BOX_CENTRE_SHIFT * size
    half = BOX_TO_ROI * size / 2.0
    return np.array([cx - half, cy - half, cx + half, cy + half])


class FaceTracker:
    """Tracks up to ``max_faces`` faces through a stream of frames.

    ``detector`` is a :class:`.detector.FaceDetector`, or a zero-argument
    callable returning one (so MediaPipe can load while the first frames
    decode). With several faces, the detector also runs every
    ``detect_every`` frames to pick up faces entering the shot. A face that
    returns within ``REID_SECONDS`` of being lost takes its old track id back
    when its identity coefficients match.
    """

    def __init__(
        self,
        regressor: Regressor,
        face: FaceModel,
        detector,
        max_faces: int = 1,
        detect_every: int | None = None,
        max_quality_px: float = MAX_QUALITY_PX,
    ):
        self.regressor = regressor
        self.face = face
        self._detector = detector
        self.max_faces = max_faces
        self.detect_every = detect_every if detect_every else (10 if max_faces > 1 else None)
        self.max_quality_px = max_quality_px
        self.regressor_calls = 0
        self.detector_calls = 0
        self._active: list[_Track] = []
        self._lost: list[_Track] = []
        self._next_id = 0
        self._frames_seen = 0

    @property
    def detector(self):
        if callable(self._detector) and not hasattr(self._detector, "detect"):
            self._detector = self._detector()
        return self._detector

    def step(self, frame: Frame) -> list[FaceObservation]:
        """Observations for one frame, sorted by track id."""
        observations: list[FaceObservation] = []
        lost_now = False
        if self._active:
            results = self._regress(frame.image, np.stack([t.roi for t in self._active]))
            kept = []
            for track, result in zip(self._active, results):
                if self._is_lost(track, result, frame.image.shape):
                    self._lost.append(track)
                    lost_now = True
                else:
                    observations.append(self._observe(track, result, frame.time, detected=False))
                    kept.append(track)
            self._active = kept
        periodic = bool(self.detect_every) and self._frames_seen % self.detect_every == 0
        if len(self._active) < self.max_faces and (lost_now or not self._active or periodic):
            observations += self._start_tracks(frame.image, frame.time)
        self._frames_seen += 1
        self._lost = [t for t in self._lost if frame.time - t.last_time <= REID_SECONDS]
        return sorted(observations, key=lambda o: o.track_id)

    # -- internals ---------------------------------------------------------------

    def _regress(self, image, rois) -> list[dict]:
        import cv2

        crops = np.stack(
            [
                cv2.warpAffine(image, crop_affine(roi), (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR)
                for roi in rois
            ]
        )
        self.regressor_calls += 1
        out = self.regressor.predict(crops)
        lmk_crop = landmarks_crop(self.face, out.param)
        quality = np.linalg.norm(lmk_crop[..., :2] - network_landmarks_crop(out.raw_lmk), axis=-1).mean(axis=-1)
        lmk_image = crop_to_image(lmk_crop, rois)
        return [
            {"param": out.param[i], "roi": np.asarray(rois[i], dtype=np.float64), "lmk68": lmk_image[i], "quality": float(quality[i])}
            for i in range(len(rois))
        ]

    def _is_lost(self, track: _Track, result: dict, shape) -> bool:
        if not result["quality"] <= self.max_quality_px:
            return True
        centre = result["lmk68"][:, :2].mean(axis=0)
        if not (0 <= centre[0] < shape[1] and 0 <= centre[1] < shape[0]):
            return True
        next_roi = roi_from_landmarks(result["lmk68"])
        change = (next_roi[2] - next_roi[0]) / (track.roi[2] - track.roi[0])
        return not (1.0 / MAX_SIZE_CHANGE <= change <= MAX_SIZE_CHANGE)

    def _observe(self, track: _Track, result: dict, time: float, detected: bool) -> FaceObservation:
        track.roi = roi_from_landmarks(result["lmk68"])
        track.identity = 0.9 * track.identity + 0.1 * result["param"][12:52]
        track.last_time = time
        return FaceObservation(
            track.track_id,
            result["param"],
            result["roi"],
            result["lmk68"],
            result["quality"],
            detected,
        )

    def _start_tracks(self, image, time: float) -> list[FaceObservation]:
        self.detector_calls += 1
        detections: list[Detection] = self.detector.detect(image, self.max_faces)
        taken = [face_box_of_roi(t.roi) for t in self._active]
        fresh = [d for d in detections if all(box_iou(d.box, box) < 0.3 for box in taken)]
        fresh = fresh[: self.max_faces - len(self._active)]
        if not fresh:
            return []
        first = self._regress(image, np.stack([roi_from_detection(d.box) for d in fresh]))
        refined_rois = np.stack([roi_from_landmarks(r["lmk68"]) for r in first])
        refined = self._regress(image, refined_rois)
        observations = []
        for result in refined:
            if not result["quality"] <= min(START_QUALITY_PX, self.max_quality_px):
                continue
            track = self._claim_track(result["param"][12:52], time)
            observations.append(self._observe(track, result, time, detected=True))
            self._active.append(track)
        return observations

    def _claim_track(self, identity, time: float) -> _Track:
        """The recently lost track this face is (by identity), or a new one."""
        if self.max_faces == 1:
            track_id = 0
        else:
            track_id = None
            if self._lost:
                distances = [np.linalg.norm(t.identity - identity) for t in self._lost]
                best = int(np.argmin(distances))
                if distances[best] < 0.5 * np.linalg.norm(identity) + 1e-6:
                    track_id = self._lost.pop(best).track_id
            if track_id is None:
                track_id = self._next_id
                self._next_id += 1
        self._lost = [t for t in self._lost if t.track_id != track_id]
        return _Track(track_id, np.zeros(4), np.asarray(identity, dtype=np.float64), time)


def face_box_of_roi(roi) -> np.ndarray:
    """The face box (x0, y0, x1, y1) that a landmark ROI frames (inverse of its sqrt(2) margin)."""
    roi = np.asarray(roi, dtype=np.float64)
    centre = (roi[:2] + roi[2:]) / 2.0
    half = (roi[2] - roi[0]) / (2.0 * np.sqrt(2.0))
    return np.concatenate([centre - half, centre + half])
