"""Rotated footage behind the capture camera, with Blender's own readers (the ``bpy`` module).

Blender's image reader shows a photo's stored pixels (it ignores the EXIF
orientation); its movie reader applies a video's rotation metadata from 4.4
on. For each, the pixels Blender decodes, turned as ``scene.attach_footage``
turns the camera background, must be the upright picture OpenCV (and a
player) shows. How Blender draws a turned background is checked in a real
window by tests/gui (a screenshot of the camera's view).
"""

import math
import shutil
import subprocess

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
cv2 = pytest.importorskip("cv2")

from ddfa_blender.blender import scene as scene_mod  # noqa: E402
from ddfa_blender.core import sources, stored_orientation  # noqa: E402

EXIF_ORIENTATION = 0x0112


def blender_pixels(path: str, movie: bool) -> np.ndarray:
    """What Blender decodes from ``path`` (its first frame for a movie): grey, 0-255,
    top row first."""
    image = bpy.data.images.load(path, check_existing=False)
    try:
        if movie:
            image.source = "MOVIE"
        width, height = image.size
        pixels = np.empty(width * height * 4, np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    rgb = pixels.reshape(height, width, 4)[::-1, :, :3]
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32) * 255.0


def grey(image_bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)


@pytest.fixture(scope="module")
def photo(shared_dir):
    return cv2.imread(str(shared_dir / "data" / "images" / "JianzhuGuo.jpg"))


@pytest.mark.parametrize("tag", range(1, 9))
def test_exif_stills_are_shown_upright(photo, tmp_path, tag):
    from PIL import Image

    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = tag
    path = tmp_path / f"IMG_{tag:04d}.jpg"
    Image.fromarray(photo[:, :, ::-1]).save(path, exif=exif.tobytes(), quality=95)
    upright = grey(cv2.imread(str(path)))  # OpenCV applies the tag, as players do
    orientation = scene_mod.footage_orientation(str(path), True, 0)
    shown = stored_orientation.apply(blender_pixels(str(path), movie=False), orientation)
    assert shown.shape == upright.shape, (tag, orientation)
    assert np.abs(shown - upright).mean() < 2.0, (tag, orientation)


@pytest.mark.parametrize("turn", [90, 180, 270])
def test_rotated_videos_are_shown_upright(shared_dir, tmp_path, turn):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (make test installs Debian's ffmpeg)")
    head = shared_dir / "data" / "video" / "talking_head_640x360.mp4"
    stored_turn = {90: "transpose=1", 180: "hflip,vflip", 270: "transpose=2"}[turn]
    stored, phone = tmp_path / "stored.mp4", tmp_path / f"phone{turn}.mp4"
    for args in (["-i", head, "-frames:v", "3", "-an", "-vf", stored_turn, "-c:v", "libx264", "-crf", "10", stored],
                 ["-i", stored, "-c", "copy", "-metadata:s:v:0", f"rotate={turn}", phone]):
        subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True, timeout=120)
    capture = cv2.VideoCapture(str(head))
    ok, frame = capture.read()
    capture.release()
    assert ok
    source = sources.VideoSource(str(phone))
    rotation = source.rotation  # what the capture applied and the take stores (meta["rotation"])
    source.close()
    assert rotation == (360 - turn) % 360  # ffmpeg's rotate=N tag: N degrees counter-clockwise to show
    orientation = scene_mod.footage_orientation(str(phone), False, rotation)
    shown = stored_orientation.apply(blender_pixels(str(phone), movie=True), orientation)
    assert shown.shape == grey(frame).shape, (bpy.app.version_string, orientation)
    assert np.abs(shown - grey(frame)).mean() < 4.0, (bpy.app.version_string, orientation)


def test_attach_footage_turns_the_background_of_a_rotated_photo(photo, tmp_path):
    from PIL import Image

    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # stored a quarter turn counter-clockwise
    path = tmp_path / "IMG_0042.jpg"
    Image.fromarray(cv2.rotate(photo, cv2.ROTATE_90_COUNTERCLOCKWISE)[:, :, ::-1]).save(path, exif=exif.tobytes())
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    height, width = photo.shape[:2]  # the upright picture's size
    camera, _ = scene_mod.ensure_camera(scene, "IMG_0042.camera", (width, height))
    image = scene_mod.attach_footage(scene, camera, str(path), 1, 0, 0.0, 25.0)
    background = camera.data.background_images[0]
    assert tuple(image.size) == (height, width)  # Blender holds the stored pixels
    assert background.image == image and background.source == "IMAGE"
    assert math.degrees(background.rotation) == pytest.approx(90.0)
    assert not background.use_flip_x
    assert background.scale == pytest.approx(max(width, height) / min(width, height))
