"""MediaPipe's face landmarker as extra capture channels: its 52 blendshape scores and landmark geometry.

The landmarker (``face_landmarker.task``, Google, Apache-2.0, prepared into the
models folder by :mod:`.model_setup`) predicts 478 landmarks and scores for 52
ARKit-named blendshapes. It is the project's source for the eye channels
(blinks, gaze up/down/in/out per eye), which 3DDFA-V2 cannot see, and a
reference stream to measure the ARKit solver (:mod:`.arkit`) against.

Recorded in the take as ``ch.mp_blendshapes`` (N, 52), one row per tracked
face and frame, columns :data:`MEDIAPIPE_BLENDSHAPES` (MediaPipe's order and
names: ``_neutral`` then the ARKit names less ``tongueOut``), scores in [0, 1],
NaN where the landmarker found no face. "Left" is the performer's left, as
in ARKit. Its 478 landmarks are recorded alongside, reduced to head-frame
measurements (``ch.mp_geometry``, :mod:`.landmark_geometry`), by a companion
extractor (:class:`LandmarkGeometryChannel`) that reads what the landmarker
found on the same frame: the ARKit solver reads both.

Speed: the landmarker runs on a crop around each tracked face (the tracker's
ROI enlarged by ``crop_margin``, resized to ``crop_size`` px) rather than the
whole frame, one landmarker per track in VIDEO mode (it follows the face
from frame to frame and re-detects only when it loses it). Measured figures
are in ``benchmarks/bench_retarget.py``.
"""

from __future__ import annotations

import os

import numpy as np

from . import landmark_geometry, mediapipe_tasks
from .engine import ChannelExtractor
from .errors import CaptureError

LANDMARKER_FILE = "face_landmarker.task"
CHANNEL_NAME = "mp_blendshapes"
DEFAULT_CROP_SIZE = 256
DEFAULT_CROP_MARGIN = 1.25

# MediaPipe's blendshape categories, in its output order (index = column).
MEDIAPIPE_BLENDSHAPES = (
    "_neutral",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight",
    "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight",
    "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight",
    "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)


def landmarker_path(models_dir) -> str:
    """Path of the prepared ``face_landmarker.task``; CaptureError naming the fix if absent."""
    path = os.path.join(str(models_dir), LANDMARKER_FILE)
    if not os.path.isfile(path):
        raise CaptureError(
            f"The face landmarker is not prepared in {models_dir} (needed for eye channels and "
            "retargeting): run `python scripts/fetch_models.py`."
        )
    return path


def make_channels(models_dir=None) -> list:
    """The extra capture channels retargeting needs: MediaPipe's scores and its landmark geometry.

    ``models_dir``: the prepared models folder (None: the default one).
    """
    if models_dir is None:
        from .model_setup import default_models_dir

        models_dir = default_models_dir()
    scores = FaceLandmarkerChannel(landmarker_path(models_dir))
    return [scores, LandmarkGeometryChannel(scores)]


def crop_box(roi, margin: float = DEFAULT_CROP_MARGIN) -> np.ndarray:
    """The square box (x0, y0, x1, y1), image pixels, cut for the landmarker around a tracker ROI."""
    roi = np.asarray(roi, dtype=np.float64)
    centre = (roi[:2] + roi[2:]) / 2.0
    half = margin * (roi[2] - roi[0]) / 2.0
    return np.concatenate([centre - half, centre + half])


class FaceLandmarkerChannel(ChannelExtractor):
    """Records MediaPipe's blendshape scores per tracked face (see the module doc).

    ``model_path``: a ``face_landmarker.task``. ``crop_size``: side in pixels
    of the face crop given to the landmarker, or None to give it the whole
    frame (then one face per frame, the track nearest its detection).
    ``crop_margin``: crop side over the tracker ROI's side. The MediaPipe
    graph is built on the first frame, so creating the extractor is cheap.
    """

    name = CHANNEL_NAME
    columns = list(MEDIAPIPE_BLENDSHAPES)

    def __init__(
        self,
        model_path: str,
        crop_size: int | None = DEFAULT_CROP_SIZE,
        crop_margin: float = DEFAULT_CROP_MARGIN,
    ):
        try:
            with open(model_path, "rb") as file:
                self._model = file.read()
        except OSError as err:
            raise CaptureError(
                f"Cannot read the face landmarker {model_path} ({err.strerror}): "
                "run `python scripts/fetch_models.py`."
            ) from err
        self.crop_size = crop_size
        self.crop_margin = float(crop_margin)
        self._landmarkers: dict[int, list] = {}  # track id -> [landmarker, last timestamp ms, closer]
        self.landmarks: dict = {}  # track id -> landmarks (478, 3) found on the last frame extracted

    # -- ChannelExtractor ----------------------------------------------------------

    def extract(self, frame, observations) -> dict:
        """``{track_id: scores (52,)}`` for the tracked faces the landmarker found on ``frame``."""
        self.landmarks = {}
        if not observations:
            return {}
        if self.crop_size is None:
            return self._extract_full(frame, observations)
        import cv2

        found = {}
        for obs in observations:
            box = crop_box(obs.roi, self.crop_margin)
            scale = self.crop_size / (box[2] - box[0])
            affine = np.array(
                [[scale, 0.0, -box[0] * scale - 0.5], [0.0, scale, -box[1] * scale - 0.5]]
            )
            crop = cv2.warpAffine(
                frame.image, affine, (self.crop_size, self.crop_size),
                flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
            )
            scores = self._detect(obs.track_id, crop, frame.time)
            if scores is not None:
                found[obs.track_id] = scores
        return found

    def close(self) -> None:
        for _, _, closer in self._landmarkers.values():
            closer()
        self._landmarkers.clear()

    # -- internals -----------------------------------------------------------------

    def _extract_full(self, frame, observations) -> dict:
        track_id = min(o.track_id for o in observations)
        scores = self._detect(track_id, frame.image, frame.time)
        return {} if scores is None else {track_id: scores}

    def _detect(self, track_id: int, image_bgr: np.ndarray, time_s: float):
        """Scores (52,) float32 for the face in ``image_bgr`` (BGR uint8), or None."""
        slot = self._landmarkers.get(track_id)
        if slot is None:
            landmarker = self._create()
            slot = self._landmarkers[track_id] = [landmarker, -1, mediapipe_tasks.close_with(self, [landmarker])]
        # VIDEO mode needs strictly increasing timestamps per landmarker.
        stamp = max(int(round(time_s * 1000.0)), slot[1] + 1)
        slot[1] = stamp
        result = slot[0].detect_for_video(mediapipe_tasks.image_from_bgr(image_bgr), stamp)
        if not result.face_blendshapes:
            return None
        # Normalised to the image's width and height: y to widths, so that all axes share one scale.
        height, width = image_bgr.shape[:2]
        points = np.array([(p.x, p.y, p.z) for p in result.face_landmarks[0]], dtype=np.float64)
        self.landmarks[track_id] = points * np.array([1.0, height / width, 1.0])
        scores = np.full(len(MEDIAPIPE_BLENDSHAPES), np.nan, dtype=np.float32)
        for category in result.face_blendshapes[0]:
            if category.index is not None and 0 <= category.index < len(scores):
                scores[category.index] = category.score
        return scores

    def _create(self):
        vision = mediapipe_tasks.vision()
        options = vision.FaceLandmarkerOptions(
            base_options=mediapipe_tasks.base_options(self._model),
            running_mode=vision.RunningMode.VIDEO,
            num_faces=1,
            output_face_blendshapes=True,
        )
        return vision.FaceLandmarker.create_from_options(options)


class LandmarkGeometryChannel(ChannelExtractor):
    """Records ``ch.mp_geometry``: the head-frame measurements of the landmarks ``scores`` found.

    ``scores``: the :class:`FaceLandmarkerChannel` of the same capture; it
    must come before this extractor in the capture's channel list (the
    engine extracts channels in order). Nothing of its own to run or close.
    """

    name = landmark_geometry.CHANNEL_NAME
    columns = list(landmark_geometry.COLUMNS)

    def __init__(self, scores: FaceLandmarkerChannel):
        self.scores = scores

    def extract(self, frame, observations) -> dict:
        """``{track_id: measurements (len(columns),)}`` for the faces the landmarker found on this frame."""
        return {track: landmark_geometry.measure(points) for track, points in self.scores.landmarks.items()}
