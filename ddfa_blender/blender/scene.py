"""Scene set-up for a bake: frame rate and range, the capture camera, the footage.

The camera reproduces the footage's view (see :mod:`..core.pose`): it sits at
the origin looking along +Y with Z up, a ``DEFAULT_LENS_MM`` lens on a 36 mm
wide sensor fitted horizontally, and the render resolution is the footage's
frame size. The footage is the camera's background (a movie clip), shown in
the camera view in sync with the scene frames.
"""

from __future__ import annotations

import math
import os
import re

import bpy

from ..core import pose as pose_mod
from ..core.errors import CaptureError
from .bake_channels import CAMERA_REST_QUATERNION

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".exr")


def fps_settings(fps: float) -> tuple[int, float]:
    """Blender's ``(render.fps, render.fps_base)`` for a rate: 23.976 -> (24, 1.001)."""
    rounded = max(1, int(round(fps)))
    if math.isclose(fps, rounded, rel_tol=1e-6):
        return rounded, 1.0
    return rounded, rounded / fps


def set_timing(scene, fps: float, frame_start: int, frame_end: int) -> None:
    """Scene rate = the footage's, frame range = the keyed frames."""
    scene.render.fps, scene.render.fps_base = fps_settings(fps)
    scene.frame_start = int(frame_start)
    scene.frame_end = int(frame_end)
    if not scene.frame_start <= scene.frame_current <= scene.frame_end:
        scene.frame_current = scene.frame_start


def ensure_camera(scene, name: str, image_size, lens_mm: float = pose_mod.DEFAULT_LENS_MM):
    """The capture camera ``name`` (created and linked if absent), made the scene camera.

    Returns ``(camera object, created)``; the camera is put at its rest pose.
    """
    obj = bpy.data.objects.get(name)
    created = obj is None or obj.type != "CAMERA"
    if created:
        data = bpy.data.cameras.new(name)
        obj = bpy.data.objects.new(name, data)
        scene.collection.objects.link(obj)
    data = obj.data
    data.lens = lens_mm
    data.sensor_width = pose_mod.SENSOR_WIDTH_MM
    data.sensor_fit = "HORIZONTAL"
    data.clip_start = 0.01
    data.clip_end = 100.0
    obj.rotation_mode = "QUATERNION"
    obj.rotation_quaternion = CAMERA_REST_QUATERNION
    obj.location = (0.0, 0.0, 0.0)
    obj.scale = (1.0, 1.0, 1.0)
    scene.camera = obj
    scene.render.resolution_x, scene.render.resolution_y = (int(v) for v in image_size)
    scene.render.resolution_percentage = 100
    return obj, created


def footage_file(path: str) -> tuple[str, int | None]:
    """The file Blender loads for footage ``path`` and the first frame number of a sequence.

    A video file is itself (number None); for an image-sequence folder it is the
    first image in name order and the number in its file name.
    """
    if os.path.isdir(path):
        images = sorted(
            name for name in os.listdir(path) if name.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not images:
            raise CaptureError(f"No images in footage folder {path}; choose a video or image folder.")
        numbers = re.findall(r"\d+", os.path.splitext(images[0])[0])
        return os.path.join(path, images[0]), int(numbers[-1]) if numbers else 0
    if not os.path.isfile(path):
        raise CaptureError(f"Footage not found: {path}; pass the clip the take was captured from.")
    if path.lower().endswith(IMAGE_EXTENSIONS):
        numbers = re.findall(r"\d+", os.path.splitext(os.path.basename(path))[0])
        return path, int(numbers[-1]) if numbers else 0
    return path, None


def attach_footage(scene, camera, path: str, start_frame: int, frame_origin: int):
    """Show ``path`` as a movie clip behind ``camera``: source frame ``frame_origin`` at ``start_frame``.

    Returns the clip. A clip already loaded from the same file is reused.
    """
    filepath, first_number = footage_file(path)
    absolute = os.path.abspath(filepath)
    clip = next(
        (c for c in bpy.data.movieclips if bpy.path.abspath(c.filepath) == absolute), None
    )
    if clip is None:
        clip = bpy.data.movieclips.load(absolute)
    clip.frame_start = int(start_frame)
    # Video frames are 0-based indices; a sequence's clip starts at its first file.
    clip.frame_offset = int(frame_origin) - (0 if first_number is None else first_number)
    data = camera.data
    background = next((b for b in data.background_images if b.clip == clip), None)
    if background is None:
        background = data.background_images.new()
    background.source = "MOVIE_CLIP"
    background.clip = clip
    background.use_camera_clip = False
    background.alpha = 1.0
    background.frame_method = "FIT"
    data.show_background_images = True
    scene.active_clip = clip
    return clip
