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


def monitor_scores(probe, looks, fps=30.0):
    """Occlusion scores of a sequence of sampled looks (frames, K, 4) of a frontal face."""
    from ddfa_blender.core.occlusion import AppearanceMonitor

    monitor = AppearanceMonitor(probe)
    param = np.zeros(62, dtype=np.float32)
    param[:12] = [1, 0, 0, 60, 0, 1, 0, 60, 0, 0, 1, 0]  # frontal, centred in the crop
    visible = np.ones(len(probe.normals), dtype=bool)
    return np.array([monitor.update_sampled(look, visible, param, i / fps) for i, look in enumerate(looks)])


@pytest.fixture(scope="module")
def probe(face):
    from ddfa_blender.core.occlusion import VertexProbe

    return VertexProbe(face)


def a_patch(probe, size=150):
    """The ``size`` sampled vertices nearest one on the cheek: a connected area."""
    mean = np.asarray(probe.basis.reshape(len(probe.normals), 3, -1)[:, :, 0], dtype=np.float64)
    seed = int(np.argmax(mean[:, 0]))
    return np.argsort(np.linalg.norm(mean - mean[seed], axis=1))[:size]


def test_a_face_changing_gradually_is_learned_an_occluder_arriving_is_not(probe):
    """The bank learns what drifts a little each frame (a head turning to a new pose, an
    expression building up: here 0.6 of the face's spread a frame for 10 frames) but
    not a change that arrives within a frame (an occluder)."""
    rng = np.random.default_rng(0)
    base = (100 + 20 * rng.normal(size=(len(probe.normals), 4))).astype(np.float32)
    patch = a_patch(probe)
    gradual, sudden = np.repeat(base[None], 90, axis=0), np.repeat(base[None], 90, axis=0)
    for frame in range(30, 90):
        gradual[frame, patch, :3] += 12.0 * min(frame - 29, 10)  # 0.6 of the face's spread a frame
        sudden[frame, patch, :3] += 120.0
    drifting = monitor_scores(probe, gradual)
    occluded = monitor_scores(probe, sudden)
    # While it drifts the face may score (the bank lags a few frames); once it settles it
    # has been learned. Without learning a drift, it would score until relearnt 2 s later.
    assert drifting[45:90].max() < 0.03
    assert occluded[30:90].min() > 0.1  # for two seconds, until an occluder that stays is learned


def test_a_lighting_change_is_not_occlusion(probe):
    """A head turning under a fixed light: brightness changing smoothly with the normals."""
    rng = np.random.default_rng(1)
    base = (100 + 20 * rng.normal(size=(len(probe.normals), 4))).astype(np.float32)
    looks = np.repeat(base[None], 40, axis=0)
    light = 40.0 * probe.normals[:, 0] + 20.0 * probe.normals[:, 1]
    looks[20:, :, :3] += light[:, None].astype(np.float32)
    assert np.nanmax(monitor_scores(probe, looks)) < 0.03
    looks[20:, a_patch(probe), :3] -= 60.0
    assert monitor_scores(probe, looks)[20:].min() > 0.1


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


@pytest.fixture(scope="module")
def turning_head(shared_dir):
    """Five seconds of a held-out synthetic head (no occluder at all): it turns from -18 to
    +26 degrees of yaw, blinks at frames 43-46, and speaks."""
    pytest.importorskip("bpy")  # the renderer runs the bpy module
    from benchmarks.synthetic_heads import SequenceSpec, render

    return render(SequenceSpec(seed=9102, frames=150), quiet=True)


def blink_frames(truth) -> np.ndarray:
    names = list(truth["arkit_names"])
    closed = truth["arkit"][:, [names.index("eyeBlinkLeft"), names.index("eyeBlinkRight")]].max(axis=1)
    return np.flatnonzero(closed > 0.5)


def test_a_clean_head_turning_and_blinking_is_not_flagged(turning_head, models_dir):
    """Without an occluder nothing is flagged: not the head turning to poses the occlusion
    monitor has not seen yet, not the blinks (once flagged, with the crop held for a second)."""
    take = capture(str(turning_head.video), CaptureOptions(models_dir=str(models_dir)))
    blinks = blink_frames(turning_head.truth)
    assert len(blinks) >= 3
    assert flagged_rows(take).mean() < 0.02
    assert not flagged_rows(take)[blinks].any()


def test_a_held_crop_cannot_run_away_from_a_moving_face(shared_dir, models_dir, monkeypatch, tmp_path):
    """Even when the occlusion monitor calls every frame from 1 s on occluded (a false
    alarm) while the face moves (the camera pans), the crop follows the face the
    detector sees rather than staying where the face was."""
    import cv2

    from ddfa_blender.core import occlusion

    clip = str(shared_dir / "data" / "video" / "single_face.mp4")
    images, fps = read_frames(clip)
    for index, image in enumerate(images):
        shift = 3.0 * max(index - 30, 0)  # pixels: the face drifts right, 3 px a frame
        moved = cv2.warpAffine(image, np.float32([[1, 0, shift], [0, 1, 0]]), image.shape[1::-1],
                               borderMode=cv2.BORDER_REPLICATE)
        cv2.imwrite(os.path.join(tmp_path, f"{index:06d}.png"), moved)
    options = CaptureOptions(models_dir=str(models_dir), fps=fps)
    free = capture(str(tmp_path), options)
    real_update = occlusion.AppearanceMonitor.update

    def alarmed(self, crop_bgr, param, roi, image_size, time):
        score = real_update(self, crop_bgr, param, roi, image_size, time)
        return 0.5 if time >= 1.0 else score

    monkeypatch.setattr(occlusion.AppearanceMonitor, "update", alarmed)
    held = capture(str(tmp_path), options)
    assert held.valid.all() and free.valid.all()
    size = free.roi[:, 2] - free.roi[:, 0]
    centre_held, centre_free = (held.roi[:, :2] + held.roi[:, 2:]) / 2, (free.roi[:, :2] + free.roi[:, 2:]) / 2
    off = np.linalg.norm(centre_held - centre_free, axis=1) / size
    assert off[:30].max() < 0.01
    assert off.max() < 0.15
