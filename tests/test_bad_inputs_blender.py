"""Awkward footage through the CLI's .blend path, checked in the written file with the bpy
module: variable-frame-rate keys at their real times, the camera background for stills
(named like IMG_0042.jpg), printf patterns and rotated video, and a failed retarget that
leaves the previous .blend and take untouched."""

import hashlib
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

bpy = pytest.importorskip("bpy", reason="the bpy module (Blender as a Python module) is not installed")
cv2 = pytest.importorskip("cv2")

from ddfa_blender.blender import animation  # noqa: E402
from ddfa_blender.core.take import Take  # noqa: E402

CLI = [sys.executable, str(ROOT / "scripts/capture.py")]


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True, timeout=120)


@pytest.fixture(scope="module")
def footage(shared_dir, tmp_path_factory):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (make test installs Debian's ffmpeg)")
    folder = tmp_path_factory.mktemp("footage")
    head = shared_dir / "data/video/talking_head_640x360.mp4"
    ffmpeg("-i", head, "-t", "1.2", "-an", "-vf", r"select=not(between(n\,8\,15))", "-vsync", "vfr",
           "-c:v", "libx264", "-preset", "ultrafast", "-crf", "14", folder / "dropped.mp4")
    ffmpeg("-i", head, "-t", "0.5", "-an", "-vf", "transpose=1", "-c:v", "libx264", "-preset", "ultrafast",
           "-crf", "14", folder / "stored90.mp4")
    ffmpeg("-i", folder / "stored90.mp4", "-c", "copy", "-metadata:s:v:0", "rotate=90", folder / "phone90.mp4")
    (folder / "seq").mkdir()
    ffmpeg("-i", head, "-frames:v", "6", "-start_number", "40", folder / "seq" / "shot_%04d.png")
    shutil.copy(folder / "seq" / "shot_0042.png", folder / "IMG_0042.png")
    return folder


def run_cli(*args):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=300)


def open_blend(path):
    bpy.ops.wm.open_mainfile(filepath=str(path))
    return bpy.context.scene


def face_and_camera(scene):
    face = next(o for o in scene.objects if o.type == "MESH")
    camera = scene.camera
    return face, camera


def test_variable_frame_rate_keys_at_real_times(footage, models_dir, tmp_path):
    """Frames 8-15 dropped: the keys after the gap sit 8 frames later, as the footage plays."""
    result = run_cli("--input", footage / "dropped.mp4", "--output", tmp_path / "v.blend", "--models", models_dir,
                     "--smooth", "none", "--quiet")
    assert result.returncode == 0, result.stderr
    take = Take.load(str(tmp_path / "v.npz"))
    scene = open_blend(tmp_path / "v.blend")
    assert scene.render.fps / scene.render.fps_base == pytest.approx(24000 / 1001)
    face, camera = face_and_camera(scene)
    fcurve = animation.animation_channels(face).fcurves.find("location", index=0)
    frames, _ = animation.fcurve_values(fcurve)
    expected = 1 + np.round((take.time - take.time[0]) * 24000 / 1001)
    np.testing.assert_array_equal(frames, expected)
    assert frames[7] == 8 and frames[8] == 17  # the gap of eight dropped frames is kept
    clip = camera.data.background_images[0].clip
    assert clip is not None and clip.frame_start == 1 and clip.frame_offset == 0
    assert clip.fps == pytest.approx(scene.render.fps / scene.render.fps_base, rel=1e-4)


def test_background_for_stills_patterns_and_rotated_video(footage, models_dir, tmp_path):
    still = run_cli("--input", footage / "IMG_0042.png", "--output", tmp_path / "still.blend",
                    "--models", models_dir, "--quiet")
    assert still.returncode == 0, still.stderr
    scene = open_blend(tmp_path / "still.blend")
    background = scene.camera.data.background_images[0]
    assert background.source == "IMAGE" and background.image is not None
    assert os.path.basename(background.image.filepath) == "IMG_0042.png" and background.image.source == "FILE"

    pattern = run_cli("--input", footage / "seq" / "shot_%04d.png", "--output", tmp_path / "seq.blend",
                      "--models", models_dir, "--quiet")
    assert pattern.returncode == 0, pattern.stderr
    scene = open_blend(tmp_path / "seq.blend")
    clip = scene.camera.data.background_images[0].clip
    assert clip is not None and os.path.basename(clip.filepath) == "shot_0040.png"
    assert clip.frame_start == 1 and clip.frame_offset == 0 and clip.frame_duration == 6
    face, _ = face_and_camera(scene)
    frames, _ = animation.fcurve_values(animation.animation_channels(face).fcurves.find("location", index=0))
    assert list(frames) == [1, 2, 3, 4, 5, 6]

    rotated = run_cli("--input", footage / "phone90.mp4", "--output", tmp_path / "rot.blend",
                      "--models", models_dir, "--quiet")
    assert rotated.returncode == 0, rotated.stderr
    scene = open_blend(tmp_path / "rot.blend")
    clip = scene.camera.data.background_images[0].clip
    assert (scene.render.resolution_x, scene.render.resolution_y) == (640, 360)
    background = scene.camera.data.background_images[0]
    if bpy.app.version < (4, 4, 0):  # Blender shows the stored frames: the background is turned instead
        assert tuple(clip.size) == (360, 640)
        assert abs(math.cos(background.rotation)) < 1e-6 and background.scale > 1.7  # a quarter turn
    else:
        assert tuple(clip.size) == (640, 360)  # Blender shows the clip upright too
        assert background.rotation == 0.0


def test_failed_retarget_keeps_the_previous_blend_and_take(shared_dir, footage, models_dir, tmp_path):
    avatar = shared_dir / "data/avatars/ict_facekit_arkit.blend"
    (tmp_path / "shot.blend").write_bytes(b"a good retargeted file")
    (tmp_path / "shot.npz").write_bytes(b"its take")
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    for spec, extra, words in ((f"{avatar}:ICT_Hed", [], "ICT_Hed"),
                               (f"{avatar}:ICT_Head", ["--head-bone", "Head"], "Bone 'Head'")):
        result = run_cli("--input", footage / "dropped.mp4", "--output", tmp_path / "shot.blend", "--retarget",
                         spec, *extra, "--models", models_dir, "--quiet")
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert words in result.stderr.strip().splitlines()[-1]
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    assert after == before
