"""The real face model and the real engine through bpy (needs ../shared and prepared models).

The mesh checks use a synthetic take with the real 38,365-vertex face. The
capture test runs the panel's Capture operator headless (its ``execute``
path) on ../shared/data/video/single_face.mp4 and compares its scene with
``write_blend`` on a take captured by the engine from the same video.
"""

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="the bpy module (Blender as a Python module) is not installed")

import ddfa_blender  # noqa: E402
from ddfa_blender.blender import animation, headless  # noqa: E402
from ddfa_blender.core.engine import CaptureOptions, capture  # noqa: E402
from ddfa_blender.core.smoothing import PRESETS  # noqa: E402
from test_blender_addon import assert_same_scene, scene_snapshot  # noqa: E402
from test_blender_synthetic import synthetic_take  # noqa: E402


@pytest.fixture(autouse=True)
def empty_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield
    bpy.ops.wm.read_factory_settings(use_empty=True)


def test_real_face_mesh(models_dir, tmp_path):
    output = tmp_path / "real.blend"
    headless.write_blend(synthetic_take(n=10), output, models_dir=models_dir)
    bpy.ops.wm.open_mainfile(filepath=str(output))
    mesh = bpy.data.objects["take.face0"].data
    assert (len(mesh.vertices), len(mesh.polygons)) == (38365, 76073)
    assert len(mesh.shape_keys.key_blocks) == 11
    assert mesh.uv_layers.active is not None
    assert all(polygon.use_smooth for polygon in mesh.polygons[:100])
    coords = np.empty(3 * len(mesh.vertices), np.float32)
    mesh.vertices.foreach_get("co", coords)
    extent = np.ptp(coords.reshape(-1, 3), axis=0)
    assert 0.12 < extent[0] < 0.2 and 0.12 < extent[2] < 0.25  # a face in metres, Z up
    normals = np.empty(3 * len(mesh.polygons), np.float32)
    mesh.polygons.foreach_get("normal", normals)
    assert np.mean(normals.reshape(-1, 3)[:, 1] < 0) > 0.8  # facing -Y, out of the face


def test_capture_operator_matches_write_blend_on_real_footage(shared_dir, models_dir, tmp_path, monkeypatch):
    video = shared_dir / "data" / "video" / "single_face.mp4"
    monkeypatch.setenv("DDFA_MODELS", str(models_dir))
    ddfa_blender.register()
    try:
        settings = bpy.context.scene.ddfa_capture
        settings.source_kind = "FILE"
        settings.source_file = str(video)
        settings.take_folder = str(tmp_path / "takes")
        settings.smoothing.preset = "default"
        assert bpy.ops.ddfa.capture() == {"FINISHED"}
        face = bpy.context.active_object
        take_path = bpy.path.abspath(face.ddfa_capture.take_path)
        from_operator = scene_snapshot()
    finally:
        ddfa_blender.unregister()
    scene = bpy.context.scene
    assert (scene.render.fps, scene.frame_start, scene.frame_end) == (30, 1, 72)
    assert from_operator["clips"] == ["single_face.mp4"]
    frames = from_operator["objects"]["single_face.face0"]["curves"][("single_face.face0", "location", 0)][0]
    np.testing.assert_array_equal(frames, np.arange(1, 73))

    take = capture(str(video), CaptureOptions(models_dir=str(models_dir)))
    headless.write_blend(take, tmp_path / "cli.blend", models_dir=models_dir, smoothing=PRESETS["default"],
                         footage=str(video), take_path=take_path)
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "cli.blend"))
    assert_same_scene(scene_snapshot(), from_operator, atol=1e-5)
    assert animation.animation_channels(bpy.data.objects["single_face.face0"]) is not None


def test_capture_operator_warns_about_footage_cut_short(shared_dir, models_dir, tmp_path, monkeypatch, capfd):
    """The engine's warnings reach the Blender user in the operator's one report."""
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (make test installs Debian's ffmpeg)")
    indexed = tmp_path / "indexed.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(shared_dir / "data/video/single_face.mp4"), "-an",
                    "-c", "copy", "-movflags", "+faststart", str(indexed)], check=True, timeout=120)
    data = indexed.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    monkeypatch.setenv("DDFA_MODELS", str(models_dir))
    ddfa_blender.register()
    try:
        settings = bpy.context.scene.ddfa_capture
        settings.source_kind = "FILE"
        settings.source_file = str(cut)
        settings.take_folder = str(tmp_path / "takes")
        capfd.readouterr()
        assert bpy.ops.ddfa.capture() == {"FINISHED"}
        printed = capfd.readouterr()
    finally:
        ddfa_blender.unregister()
    report = [line for line in (printed.out + printed.err).splitlines() if line.startswith(("Info:", "Warning:"))]
    assert len(report) == 1 and report[0].startswith("Warning: Captured "), report
    assert "cut.mp4 stopped decoding after" in report[0]
