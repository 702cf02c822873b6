"""MediaPipe's face landmarker as a capture channel: layout, crop versus full frame, errors."""

import numpy as np
import pytest

from ddfa_blender.core import face_landmarker, landmark_geometry
from ddfa_blender.core.engine import CaptureOptions, capture
from ddfa_blender.core.errors import CaptureError
from test_arkit import BLINKS, captured_take, inner_lip_gap


@pytest.fixture(scope="module")
def task_path(models_dir):
    return face_landmarker.landmarker_path(models_dir)


def test_channel_layout_in_the_take(shared_dir, models_dir):
    take = captured_take(shared_dir, models_dir, "single_face")
    scores = take.channels[face_landmarker.CHANNEL_NAME]
    assert scores.shape == (len(take), 52)
    assert take.meta["channels"][face_landmarker.CHANNEL_NAME] == list(face_landmarker.MEDIAPIPE_BLENDSHAPES)
    found = np.isfinite(scores).all(axis=1)
    assert found[take.valid].mean() > 0.95
    assert scores[found].min() >= 0.0 and scores[found].max() <= 1.0


def test_landmark_geometry_is_recorded_beside_the_scores(shared_dir, models_dir):
    """``ch.mp_geometry``: one row per face the landmarker found; its lip gap follows 3DDFA-V2's."""
    take = captured_take(shared_dir, models_dir, "talking_head_640x360")
    geometry = take.channels[landmark_geometry.CHANNEL_NAME]
    assert geometry.shape == (len(take), len(landmark_geometry.COLUMNS))
    assert take.meta["channels"][landmark_geometry.CHANNEL_NAME] == list(landmark_geometry.COLUMNS)
    found = np.isfinite(take.channels[face_landmarker.CHANNEL_NAME]).all(axis=1)
    np.testing.assert_array_equal(np.isfinite(geometry).all(axis=1), found)
    gap = geometry[found, landmark_geometry.COLUMNS.index("lip_gap")]
    assert np.corrcoef(gap, inner_lip_gap(take.lmk68[found]))[0, 1] > 0.7  # 0.82 measured
    distance = geometry[found, landmark_geometry.COLUMNS.index("head_eye_distance")]
    assert 0.15 < np.median(distance) < 0.5  # eye centres a quarter of the crop apart (0.25 measured)


def test_blink_scores_peak_on_the_closed_eye_frames(shared_dir, models_dir):
    take = captured_take(shared_dir, models_dir, "single_face")
    columns = list(face_landmarker.MEDIAPIPE_BLENDSHAPES)
    scores = take.channels[face_landmarker.CHANNEL_NAME]
    blink = scores[:, [columns.index("eyeBlinkLeft"), columns.index("eyeBlinkRight")]].mean(axis=1)
    closed = blink[BLINKS["single_face"]]
    assert closed.min() > np.percentile(blink, 75) + 0.2


def test_crop_agrees_with_the_full_frame(shared_dir, task_path, models_dir):
    video = str(shared_dir / "data/video/single_face.mp4")
    takes = {}
    for size in (256, None):
        channel = face_landmarker.FaceLandmarkerChannel(task_path, crop_size=size)
        takes[size] = capture(video, CaptureOptions(models_dir=str(models_dir), channels=[channel]))
    crop, full = (takes[s].channels[face_landmarker.CHANNEL_NAME] for s in (256, None))
    ok = np.isfinite(crop).all(axis=1) & np.isfinite(full).all(axis=1)
    assert ok.mean() > 0.95
    columns = list(face_landmarker.MEDIAPIPE_BLENDSHAPES)
    for name in ("eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight", "jawOpen"):
        i = columns.index(name)
        assert np.corrcoef(crop[ok, i], full[ok, i])[0, 1] > 0.9, name
    assert np.abs(crop[ok] - full[ok]).mean() < 0.03


def test_crop_box_is_the_enlarged_roi():
    box = face_landmarker.crop_box([100.0, 50.0, 200.0, 150.0], margin=1.5)
    np.testing.assert_allclose(box, [75.0, 25.0, 225.0, 175.0])


def test_missing_model_names_the_fix(tmp_path):
    with pytest.raises(CaptureError, match="fetch_models"):
        face_landmarker.make_channels(tmp_path)
    with pytest.raises(CaptureError, match="fetch_models"):
        face_landmarker.FaceLandmarkerChannel(str(tmp_path / "face_landmarker.task"))


def test_no_observation_gives_no_values(task_path):
    channel = face_landmarker.FaceLandmarkerChannel(task_path)
    try:
        assert channel.extract(None, []) == {}
    finally:
        channel.close()
