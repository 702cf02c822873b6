"""Flagged frames in Blender: markers to jump between, the confidence curve, the flagged count."""

import dataclasses

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="the bpy module (Blender as a Python module) is not installed")

from ddfa_blender.blender import animation, headless, review  # noqa: E402
from ddfa_blender.core.smoothing import PRESETS  # noqa: E402
from test_blender_synthetic import synthetic_take, write_face_model  # noqa: E402


@pytest.fixture(autouse=True)
def empty_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield
    bpy.ops.wm.read_factory_settings(use_empty=True)


@pytest.fixture
def synthetic_models(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    return write_face_model(folder)


def flagged_take(n=60):
    take = synthetic_take(n=n, fps=25.0)
    take.confidence[:] = 0.9
    take.confidence[[10, 11, 12, 40]] = 0.2
    return take


def bake(take, tmp_path, models, **options):
    output = tmp_path / "review.blend"
    headless.write_blend(take, output, models_dir=models, take_path=str(tmp_path / "shot.npz"), **options)
    bpy.ops.wm.open_mainfile(filepath=str(output))
    return bpy.context.scene, bpy.data.objects["shot.face0"]


def test_flagged_runs_become_markers_and_the_confidence_curve(tmp_path, synthetic_models):
    scene, face = bake(flagged_take(), tmp_path, synthetic_models, start_frame=101)
    markers = sorted((m.frame, m.name) for m in scene.timeline_markers)
    assert markers == [(111, "shot.face0: flagged 111-113"), (141, "shot.face0: flagged 141")]
    assert face[review.FLAGGED_PROPERTY] == 4
    fcurve = animation.animation_channels(face).fcurves.find(f'["{review.CONFIDENCE_PROPERTY}"]')
    frames, values = animation.fcurve_values(fcurve)
    np.testing.assert_array_equal(frames, np.arange(101, 161))
    np.testing.assert_allclose(values[[9, 10, 11, 12, 13, 40]], [0.9, 0.2, 0.2, 0.2, 0.9, 0.2])


def test_marker_jump_steps_from_one_flagged_run_to_the_next(tmp_path, synthetic_models):
    scene, _ = bake(flagged_take(), tmp_path, synthetic_models, start_frame=1)
    scene.frame_set(1)
    visited = []
    for _ in range(3):
        assert bpy.ops.screen.marker_jump(next=True) in ({"FINISHED"}, {"CANCELLED"})
        visited.append(scene.frame_current)
    assert visited[:2] == [11, 41]


def test_baking_again_replaces_only_the_face_s_own_markers(tmp_path, synthetic_models):
    take = flagged_take()
    scene, face = bake(take, tmp_path, synthetic_models)
    scene.timeline_markers.new("animator's note", frame=5)
    take.confidence[:] = 0.9
    take.confidence[30] = 0.1
    from ddfa_blender.blender import bake as bake_module
    from ddfa_blender.blender.headless import load_face_model

    bake_module.bake_take(scene, take, face_model=load_face_model(synthetic_models), target=face,
                          take_path=str(tmp_path / "shot.npz"))
    assert sorted(m.name for m in scene.timeline_markers) == ["animator's note", "shot.face0: flagged 31"]
    assert face[review.FLAGGED_PROPERTY] == 1


def test_the_threshold_decides_what_is_marked(tmp_path, synthetic_models):
    strict = dataclasses.replace(PRESETS["default"], min_confidence=0.95)
    scene, face = bake(flagged_take(), tmp_path, synthetic_models, smoothing=strict)
    assert face[review.FLAGGED_PROPERTY] == 60 and len(scene.timeline_markers) == 1
    lenient = dataclasses.replace(PRESETS["default"], min_confidence=0.1, keep_flagged=True)
    scene, face = bake(flagged_take(), tmp_path, synthetic_models, smoothing=lenient)
    assert face[review.FLAGGED_PROPERTY] == 0 and len(scene.timeline_markers) == 0
