"""Occlusion on real footage: pasted occluders are flagged, the pose holds, clean frames pass."""

import os

import numpy as np
import pytest

from benchmarks.bench_accuracy import angle_deg, baked_rotation, read_frames
from benchmarks.occlusion_footage import Occlusion, occlude_frames
from ddfa_blender.core.confidence import flagged_rows
from ddfa_blender.core.engine import CaptureOptions, capture, load_face_model
from ddfa_blender.core.occlusion import nan_median
from ddfa_blender.core.pose import image_pose


@pytest.fixture(scope="module")
def face(models_dir):
    return load_face_model(models_dir)


def test_nan_median_matches_numpy():
    values = np.random.default_rng(0).normal(size=(9, 40, 4))
    values[values > 1.0] = np.nan
    values[:, 0] = np.nan
    with pytest.warns(RuntimeWarning):
        expected = np.nanmedian(values, axis=0)
    np.testing.assert_allclose(nan_median(values), expected, equal_nan=True)


def test_pasted_occluders_are_flagged_and_the_pose_holds(shared_dir, models_dir, face, tmp_path):
    import cv2

    clip = str(shared_dir / "data" / "video" / "single_face.mp4")
    clean = capture(clip, CaptureOptions(models_dir=str(models_dir)))
    images, fps = read_frames(clip)
    events = [Occlusion("bar", "eyes", 25, 12), Occlusion("hand", "mouth", 48, 12)]
    covered_images, occluded = occlude_frames(images, clean.lmk68, events, seed=3)
    for index, image in enumerate(covered_images):
        cv2.imwrite(os.path.join(tmp_path, f"{index:06d}.png"), image)
    covered = capture(str(tmp_path), CaptureOptions(models_dir=str(models_dir), fps=fps))

    caught = flagged_rows(covered) | ~covered.valid
    assert caught[occluded].mean() >= 0.9
    assert not flagged_rows(clean).any()
    assert not caught[~occluded][:25].any()  # before the first occluder: as clean
    baked_clean, _ = baked_rotation(clean, face)
    baked_covered, _ = baked_rotation(covered, face)
    assert angle_deg(baked_clean, baked_covered)[occluded].max() < 10.0


def test_the_known_hand_over_the_face_keeps_the_head_pose(shared_dir, models_dir):
    """Talking head, frames 100-112: a hand over the face swung the yaw to about -65 degrees."""
    clip = str(shared_dir / "data" / "video" / "talking_head_640x360.mp4")
    take = capture(clip, CaptureOptions(models_dir=str(models_dir)))
    rotation = image_pose(take.param[:160].astype(np.float64), take.roi[:160]).rotation
    before = np.repeat(rotation[92:93], 30, axis=0)  # the last frame before the hand covers the nose
    assert angle_deg(before, rotation[95:125]).max() < 20.0
    assert flagged_rows(take)[100:113].mean() >= 0.9
