"""Face tracking: detect once, then re-crop each frame from the previous landmarks.

This is the tracking scheme of 3DDFA-V2's video demos: the crop for frame t
is framed from the 68 landmarks of frame t-1 the way the network was trained
(:func:`.reconstruct.roi_from_landmarks`), so the detector runs only to start
a track or when one is lost. A track is lost when

* the network's two heads disagree (``quality`` above ``max_quality_px``): the
  crop no longer holds a face the network recognises,
* they disagree mildly but steadily (median ``quality`` of the last
  ``LOW_QUALITY_FRAMES`` frames above ``LOW_QUALITY_PX``): the face has left
  and the crop is drifting over background, which the network half believes,
* its landmarks leave the image, or
* the face's size jumps between frames (``max_size_change``), which tracking a
  real face at video rates does not do.

Occlusion
    Each track scores how much of its face no longer looks like itself
    (:class:`.occlusion.AppearanceMonitor`; the score is recorded with the
    observation and feeds the take's confidence, :mod:`.confidence`). While a
    face scores above ``HOLD_OCCLUSION`` (a hand or an object over it), its
    landmarks are not trusted to frame the next crop: the crop stays where
    the face last looked like itself (for at most
    :data:`.occlusion.RELEARN_SECONDS`), so the track does not wander off
    with the occluder, and such frames feed neither the identity nor the
    re-identification motion. A held crop cannot run away from a face
    that moves: when the fit's own crop overlaps the held one less than
    ``HOLD_CHECK_IOU``, the detector is asked, and a face it finds nearer
    the fit than the held crop releases the hold.

A lost face is looked for again by the detector on the same frame. A new
track starts only where the heads agree closely (``START_QUALITY_PX``): on the
test media real faces start at 0.2-0.7 px, while detector false positives
(lettering, textures) that survive BlazeFace's score threshold sit at 1-2.4 px.

Several faces (``max_faces`` > 1)
    Track ids are stable: each track follows its own face from its own crop,
    so ids never need re-assigning frame to frame. Where two tracks end up on
    one face (one face passed in front of the other), the track whose running
    identity matches that face keeps it and the other is lost.
    Detections (every ``detect_every`` frames, every ``REID_DETECT_EVERY``
    while a lost face may come back) are matched to active tracks by overlap;
    only unmatched ones start tracks. A new face takes back the id of a face
    lost less than ``REID_SECONDS`` ago when it appears near where that face
    was lost (or where its motion would have taken it) and its identity is
    close; among several candidates the lowest combined cost wins.

Identity is the running median of the 40 shape coefficients over the last
``IDENTITY_FRAMES`` clean frames (good quality, not overlapping another face),
compared in units of the regressor's per-coefficient spread
(:func:`identity_distance`). On the test media one person's single frame lies
0.10 (median) to 0.35 (99th percentile) from their running median, while
different people lie 0.18 (closest pair) to 0.36 (median pair) apart:
identity alone cannot tell similar faces apart, so re-identification weighs
it with position and time, and rejects only clearly different faces.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

from .detector import Detection, box_iou
from .face_model import FaceModel
from .occlusion import RELEARN_SECONDS, AppearanceMonitor, VertexProbe
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
# (roi_from_landmarks) is centred a little lower and is larger: medians over 32
# detections on the test images and videos, each refined three times from its
# landmarks (interquartile ranges 0.030-0.070 and 1.28-1.34).
BOX_CENTRE_SHIFT = 0.037
BOX_TO_ROI = 1.31

MAX_QUALITY_PX = 3.0
START_QUALITY_PX = 1.0
MAX_SIZE_CHANGE = 1.35
# On the test videos a tracked face's quality exceeds 1 px on at most 3 frames in a
# row (peak 1.66); a crop left on background after the face has gone sits at 1.2-2.5.
LOW_QUALITY_PX = 1.2
LOW_QUALITY_FRAMES = 5

IDENTITY_FRAMES = 25
IDENTITY_QUALITY_PX = 1.0
SHAPE = slice(12, 52)

MATCH_IOU = 0.3  # a detection overlapping a tracked face this much is that face
DUPLICATE_IOU = 0.5  # two tracks whose faces overlap this much follow one face
OVERLAP_FRACTION = 0.2  # of the smaller face box: the faces overlap, identities are not updated

REID_SECONDS = 1.0
REID_DETECT_EVERY = 2
REID_MAX_IDENTITY = 0.5
REID_MAX_FACES_AWAY = 3.0
# The identity distance that weighs as much as one face size of displacement.
REID_IDENTITY_PER_FACE = 0.15
VELOCITY_SMOOTHING = 0.5

# An occlusion score above this holds the crop (see the module doc); the take's
# confidence (:mod:`.confidence`) flags such frames from 0.095 on.
HOLD_OCCLUSION = 0.095
# A held crop overlapping the fit's own crop less than this is checked by the detector.
HOLD_CHECK_IOU = 0.8


@dataclasses.dataclass
class FaceObservation:
    """One tracked face on one frame (units as in :mod:`.take`).

    ``occlusion``: the occlusion score 0..1 of :mod:`.occlusion` (NaN while
    the track's appearance is still being learned).
    """

    track_id: int
    param: np.ndarray
    roi: np.ndarray
    lmk68: np.ndarray
    quality: float
    detected: bool
    occlusion: float = float("nan")


@dataclasses.dataclass
class _Track:
    """A face being followed; positions in image pixels, times in seconds."""

    track_id: int
    roi: np.ndarray  # crop box for the next frame
    box: np.ndarray  # landmark bounding box on the last frame it was seen
    last_time: float
    monitor: AppearanceMonitor | None = None
    visible_time: float = 0.0  # last time the face was not occluded
    identities: collections.deque = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=IDENTITY_FRAMES)
    )
    qualities: collections.deque = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=LOW_QUALITY_FRAMES - 1)
    )
    clean_centre: np.ndarray | None = None  # box centre on the last clean frame
    clean_size: float = 0.0  # box size (:func:`box_size`) on the last clean frame
    clean_time: float = 0.0
    velocity: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(2))

    def identity(self) -> np.ndarray:
        """Running median (40,) of the shape coefficients of the recent clean frames."""
        return np.median(np.stack(self.identities), axis=0)

    def faces_away(self, centre, time: float) -> float:
        """Distance, in face sizes, from where this face was last seen or would be by now."""
        seen = np.linalg.norm(np.asarray(centre) - box_centre(self.box))
        if self.clean_centre is None:
            return seen / box_size(self.box)
        predicted = self.clean_centre + self.velocity * (time - self.clean_time)
        return min(seen, np.linalg.norm(np.asarray(centre) - predicted)) / self.clean_size


def roi_from_detection(box) -> np.ndarray:
    """A first square crop box (4,) for a BlazeFace detection box, refined later by landmarks."""
    x0, y0, x1, y1 = (float(v) for v in box)
    size = max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0 + BOX_CENTRE_SHIFT * size
    half = BOX_TO_ROI * size / 2.0
    return np.array([cx - half, cy - half, cx + half, cy + half])


def landmark_box(lmk68) -> np.ndarray:
    """Bounding box (x0, y0, x1, y1) of landmarks (68, 2+) in image pixels."""
    points = np.asarray(lmk68)[:, :2]
    return np.concatenate([points.min(axis=0), points.max(axis=0)]).astype(np.float64)


def box_centre(box) -> np.ndarray:
    return (np.asarray(box[:2], dtype=np.float64) + np.asarray(box[2:], dtype=np.float64)) / 2.0


def box_size(box) -> float:
    """The longer side of a box, at least one pixel."""
    return float(max(box[2] - box[0], box[3] - box[1], 1.0))


def overlap_fraction(a, b) -> float:
    """Intersection of two boxes over the smaller one's area."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / smaller if smaller > 0 else 0.0


def identity_distance(a, b, spread) -> float:
    """RMS difference of two shape-coefficient vectors (40,), each in units of ``spread`` (40,)."""
    difference = (np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) / spread
    return float(np.sqrt(np.mean(difference**2)))


class FaceTracker:
    """Tracks up to ``max_faces`` faces through a stream of frames.

    ``detector`` is a :class:`.detector.FaceDetector`, or a zero-argument
    callable returning one (so MediaPipe can load while the first frames
    decode). With several faces, the detector also runs every
    ``detect_every`` frames to pick up faces entering the shot. Ids, overlap
    and re-identification: see the module doc.
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
        self.detector_calls = 0  # every detector run (starting tracks and checking held crops)
        self.hold_checks = 0  # detector runs that checked a held crop
        self._identity_spread = np.asarray(regressor.param_std, dtype=np.float64)[SHAPE]
        self._probe = VertexProbe(face)
        self._image_size = (0, 0)  # (width, height) of the frame being tracked
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
        self._image_size = (frame.image.shape[1], frame.image.shape[0])
        if self._active:
            results = self._regress(frame.image, np.stack([t.roi for t in self._active]))
            kept = []
            for track, result in zip(self._active, results):
                if self._is_lost(track, result, frame.image.shape):
                    self._lost.append(track)
                    lost_now = True
                else:
                    kept.append((track, result))
            kept, merged = self._drop_duplicates(kept)
            lost_now = lost_now or merged
            boxes = [landmark_box(result["lmk68"]) for _, result in kept]
            for index, (track, result) in enumerate(kept):
                overlapped = any(
                    overlap_fraction(boxes[index], other) > OVERLAP_FRACTION
                    for other_index, other in enumerate(boxes)
                    if other_index != index
                )
                observations.append(
                    self._observe(track, result, frame, detected=False, clean=not overlapped)
                )
            self._active = [track for track, _ in kept]
        self._lost = [t for t in self._lost if frame.time - t.last_time <= REID_SECONDS]
        if len(self._active) < self.max_faces and self._detection_due(lost_now):
            observations += self._start_tracks(frame)
        self._frames_seen += 1
        return sorted(observations, key=lambda o: o.track_id)

    # -- internals ---------------------------------------------------------------

    def _detection_due(self, lost_now: bool) -> bool:
        if lost_now or not self._active:
            return True
        if self.detect_every and self._frames_seen % self.detect_every == 0:
            return True
        return bool(self._lost) and self.max_faces > 1 and self._frames_seen % REID_DETECT_EVERY == 0

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
            {
                "param": out.param[i],
                "roi": np.asarray(rois[i], dtype=np.float64),
                "lmk68": lmk_image[i],
                "quality": float(quality[i]),
                "crop": crops[i],
            }
            for i in range(len(rois))
        ]

    def _is_lost(self, track: _Track, result: dict, shape) -> bool:
        if not result["quality"] <= self.max_quality_px:
            return True
        recent = [*track.qualities, result["quality"]]
        if len(recent) == LOW_QUALITY_FRAMES and np.median(recent) > LOW_QUALITY_PX:
            return True
        centre = result["lmk68"][:, :2].mean(axis=0)
        if not (0 <= centre[0] < shape[1] and 0 <= centre[1] < shape[0]):
            return True
        next_roi = roi_from_landmarks(result["lmk68"])
        change = (next_roi[2] - next_roi[0]) / (track.roi[2] - track.roi[0])
        return not (1.0 / MAX_SIZE_CHANGE <= change <= MAX_SIZE_CHANGE)

    def _drop_duplicates(self, kept: list) -> tuple[list, bool]:
        """Where two tracks follow one face, keep the one whose identity matches it."""
        if len(kept) < 2:
            return kept, False
        boxes = [landmark_box(result["lmk68"]) for _, result in kept]
        pairs = sorted(
            ((box_iou(boxes[i], boxes[j]), i, j) for i in range(len(kept)) for j in range(i + 1, len(kept))),
            reverse=True,
        )
        dropped: set[int] = set()
        for iou, i, j in pairs:
            if iou <= DUPLICATE_IOU:
                break
            if i in dropped or j in dropped:
                continue
            mismatch = [self._identity_mismatch(*kept[k]) for k in (i, j)]
            dropped.add(j if mismatch[1] >= mismatch[0] else i)
        for index in sorted(dropped):
            self._lost.append(kept[index][0])
        return [pair for index, pair in enumerate(kept) if index not in dropped], bool(dropped)

    def _identity_mismatch(self, track: _Track, result: dict) -> float:
        return identity_distance(result["param"][SHAPE], track.identity(), self._identity_spread)

    def _observe(self, track: _Track, result: dict, frame: Frame, detected: bool, clean: bool) -> FaceObservation:
        """Update ``track`` with this frame's result.

        ``clean``: the face overlaps no other; only clean frames of good quality
        that are not occluded feed the identity, the position and the velocity
        used for re-identification.
        """
        time = frame.time
        if track.monitor is None:
            track.monitor = AppearanceMonitor(self._probe)
            track.visible_time = time
        occlusion = track.monitor.update(
            result["crop"], result["param"], result["roi"], self._image_size, time
        )
        occluded = occlusion > HOLD_OCCLUSION
        if not occluded:
            track.visible_time = time
        fitted_roi = roi_from_landmarks(result["lmk68"])
        hold = occluded and time - track.visible_time <= RELEARN_SECONDS
        if hold and box_iou(fitted_roi, track.roi) < HOLD_CHECK_IOU:
            hold = not self._seen_nearer(frame.image, fitted_roi, track.roi)
        if not hold:
            track.roi = fitted_roi
        track.box = landmark_box(result["lmk68"])
        track.last_time = time
        track.qualities.append(result["quality"])
        if clean and not occluded and result["quality"] <= IDENTITY_QUALITY_PX:
            track.identities.append(np.asarray(result["param"][SHAPE], dtype=np.float64))
            centre = box_centre(track.box)
            elapsed = time - track.clean_time
            if track.clean_centre is not None and 0.0 < elapsed <= REID_SECONDS:
                speed = (centre - track.clean_centre) / elapsed
                track.velocity += VELOCITY_SMOOTHING * (speed - track.velocity)
            track.clean_centre, track.clean_size, track.clean_time = centre, box_size(track.box), time
        return FaceObservation(
            track.track_id,
            result["param"],
            result["roi"],
            result["lmk68"],
            result["quality"],
            detected,
            occlusion,
        )

    def _seen_nearer(self, image, fitted_roi, held_roi) -> bool:
        """True when the detector finds a face whose crop overlaps ``fitted_roi`` (where
        this frame's fit puts the face) more than ``held_roi`` (the held crop)."""
        self.detector_calls += 1
        self.hold_checks += 1
        for detection in self.detector.detect(image, self.max_faces):
            detected_roi = roi_from_detection(detection.box)
            overlap = box_iou(detected_roi, fitted_roi)
            if overlap >= MATCH_IOU and overlap > box_iou(detected_roi, held_roi):
                return True
        return False

    def _start_tracks(self, frame: Frame) -> list[FaceObservation]:
        image, time = frame.image, frame.time
        self.detector_calls += 1
        detections: list[Detection] = self.detector.detect(image, self.max_faces)
        fresh = [d for d in detections if not self._is_tracked(d.box)]
        fresh = fresh[: self.max_faces - len(self._active)]
        if not fresh:
            return []
        first = self._regress(image, np.stack([roi_from_detection(d.box) for d in fresh]))
        refined_rois = np.stack([roi_from_landmarks(r["lmk68"]) for r in first])
        refined = self._regress(image, refined_rois)
        started = []
        for result in refined:
            if not result["quality"] <= min(START_QUALITY_PX, self.max_quality_px):
                continue
            box = landmark_box(result["lmk68"])
            taken = [t.box for t in self._active] + [landmark_box(r["lmk68"]) for r in started]
            if any(box_iou(box, other) > DUPLICATE_IOU for other in taken):
                continue
            started.append(result)
        observations = []
        for result, track_id in zip(started, self._claim_ids(started, time)):
            track = _Track(track_id, result["roi"], landmark_box(result["lmk68"]), time)
            observations.append(self._observe(track, result, frame, detected=True, clean=True))
            self._active.append(track)
        return observations

    def _is_tracked(self, box) -> bool:
        """True when a detection box is a face an active track already follows."""
        for track in self._active:
            if box_iou(box, track.box) >= MATCH_IOU:
                return True
            x0, y0, x1, y1 = track.box
            cx, cy = box_centre(box)
            if x0 <= cx <= x1 and y0 <= cy <= y1:
                return True
        return False

    def _claim_ids(self, results: list[dict], time: float) -> list[int]:
        """Track ids for new faces: a recently lost face's id where one fits, else new ids."""
        if self.max_faces == 1:
            return [0] * len(results)
        candidates = []
        for i, result in enumerate(results):
            centre = box_centre(landmark_box(result["lmk68"]))
            for j, lost in enumerate(self._lost):
                if time - lost.last_time > REID_SECONDS or not lost.identities:
                    continue
                away = lost.faces_away(centre, time)
                mismatch = self._identity_mismatch(lost, result)
                if away <= REID_MAX_FACES_AWAY and mismatch <= REID_MAX_IDENTITY:
                    candidates.append((mismatch / REID_IDENTITY_PER_FACE + away, i, j))
        ids: list[int | None] = [None] * len(results)
        claimed: set[int] = set()
        for _, i, j in sorted(candidates):
            if ids[i] is None and j not in claimed:
                ids[i] = self._lost[j].track_id
                claimed.add(j)
        self._lost = [t for j, t in enumerate(self._lost) if j not in claimed]
        for i, track_id in enumerate(ids):
            if track_id is None:
                ids[i] = self._next_id
                self._next_id += 1
        return ids
