"""Scene set-up for a bake: frame rate and range, the capture camera, the footage.

The camera reproduces the footage's view (see :mod:`..core.pose`): at rest it
looks along +Y with Z up, a ``DEFAULT_LENS_MM`` lens on a 36 mm wide sensor
fitted horizontally, and the render resolution is the footage's frame size.
The footage is the camera's background (a movie clip, or an image for a
still), shown in the camera view in sync with the scene frames and upright
as a player shows it: a phone video's rotation metadata and a photo's EXIF
orientation are applied by turning (and mirroring) the background where
Blender shows the stored pixels (:func:`footage_orientation`).

Where a capture lands: the camera and its faces are children of an empty,
the capture's origin (``<take>.origin``), and every keyed transform is in
that empty's frame (the camera's rest position is the empty's origin). A new
origin goes to the world origin when nothing visible is in the way, else
along +X just past whatever is (:func:`free_spot`): a capture into Blender's
default scene lands beside the default cube, not inside it, so both the
viewport and the camera's view show the face. Moving the empty moves the
whole capture.
"""

from __future__ import annotations

import math
import os
import re

import bpy
from mathutils import Vector

from ..core import pose as pose_mod
from ..core import stored_orientation
from ..core.errors import CaptureError
from .bake_channels import CAMERA_REST_QUATERNION

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".exr")
# From this version Blender's movie reader applies a video's rotation metadata itself:
# measured with a phone-style clip in bpy 4.2.23 and Debian's 4.3.2 (stored frames) and
# bpy 4.4.0, 4.5.15, 5.0.1, 5.2.3 and Debian's 5.2.2 (upright frames).
VIDEO_ROTATION_APPLIED = (4, 4, 0)


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

    Returns ``(camera object, created)``; the camera is put at its rest pose
    (its parent's origin, see the module's docstring).
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


ORIGIN_SUFFIX = ".origin"
# Object types whose geometry can hide a face (cameras, lights and empties cannot).
SOLID_TYPES = {"MESH", "CURVE", "CURVES", "SURFACE", "META", "FONT", "VOLUME", "POINTCLOUD"}
CLEARANCE_M = 0.3  # kept free around a capture's camera and faces


def world_bounds(obj) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(min xyz, max xyz)`` of ``obj``'s bounding box in world coordinates (metres)."""
    matrix = obj.matrix_world
    corners = [matrix @ Vector(corner) for corner in obj.bound_box]
    return (
        tuple(min(c[i] for c in corners) for i in range(3)),
        tuple(max(c[i] for c in corners) for i in range(3)),
    )


def free_spot(scene, low, high, ignore=()) -> tuple[float, float, float]:
    """Where to put a capture's origin so its extent stays clear of visible geometry.

    ``low``/``high``: the corners of the capture's extent around its origin
    (metres, origin frame = world axes). Returns the world origin when that
    box touches no visible solid object of ``scene`` (other than ``ignore``),
    else the nearest spot along +X that does, each blocker passed by
    ``CLEARANCE_M``.
    """
    boxes = [
        world_bounds(obj) for obj in scene.objects
        if obj.type in SOLID_TYPES and obj not in ignore and obj.visible_get()
    ]
    x = 0.0
    while True:
        lo = (x + low[0], low[1], low[2])
        hi = (x + high[0], high[1], high[2])
        blockers = [
            box for box in boxes
            if all(box[0][i] < hi[i] and lo[i] < box[1][i] for i in range(3))
        ]
        if not blockers:
            return (x, 0.0, 0.0)
        x = max(box[1][0] for box in blockers) - low[0] + CLEARANCE_M


def capture_extent(points) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The box around a capture's origin holding its camera (at the origin) and ``points``
    ((N, 3) metres: the keyed head or camera positions), padded by ``CLEARANCE_M``."""
    low, high = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
    for point in points:
        for i in range(3):
            if math.isfinite(point[i]):
                low[i], high[i] = min(low[i], point[i]), max(high[i], point[i])
    return tuple(v - CLEARANCE_M for v in low), tuple(v + CLEARANCE_M for v in high)


def add_origin(scene, name: str, location):
    """A new empty ``name`` at ``location`` (world, metres), linked to ``scene``."""
    obj = bpy.data.objects.new(name, None)
    obj.empty_display_type = "PLAIN_AXES"
    obj.empty_display_size = 0.1
    obj.location = location
    scene.collection.objects.link(obj)
    return obj


def footage_file(path: str) -> tuple[str, int | None, bool]:
    """What Blender loads for footage ``path``: ``(file, first number, still)``.

    A video is itself (number None). An image sequence (a folder, or a printf
    pattern such as ``shot_%04d.png``) is its first image in frame order, with
    the number in its name (Blender plays the numbered files from there). A
    single image is a still: ``still`` is True and it is shown as it is,
    whatever number its name holds (``IMG_0042.jpg``).
    """
    from ..core import sources

    if os.path.isdir(path) or (not os.path.exists(path) and sources._is_pattern(path)):
        files = sources._folder_files(path) if os.path.isdir(path) else sources._pattern_files(path)
        if not files:
            raise CaptureError(f"No images in footage {path}; choose a video or an image sequence.")
        number, first = files[0]
        return first, _file_number(first), len(files) == 1
    if not os.path.isfile(path):
        raise CaptureError(f"Footage not found: {path}; pass the clip the take was captured from.")
    if path.lower().endswith(IMAGE_EXTENSIONS):
        return path, _file_number(path), True
    return path, None, False


def _file_number(path: str) -> int:
    numbers = re.findall(r"\d+", os.path.splitext(os.path.basename(path))[0])
    return int(numbers[-1]) if numbers else 0


def footage_orientation(filepath: str, still_or_sequence: bool, video_rotation: int):
    """How the background must turn Blender's picture of ``filepath`` to show it upright
    (a :class:`..core.stored_orientation.Orientation`): an image's EXIF orientation
    (Blender's image reader ignores it), or a video's clockwise ``video_rotation`` in
    degrees (``take.meta["rotation"]``) where this Blender does not apply it itself."""
    if still_or_sequence:
        return stored_orientation.still_orientation(filepath)
    if video_rotation % 360 and bpy.app.version < VIDEO_ROTATION_APPLIED:
        return stored_orientation.Orientation(turn=video_rotation % 360)
    return stored_orientation.UPRIGHT


def orient_background(background, orientation, stored_size) -> None:
    """Turn and mirror camera background ``background`` by ``orientation``.

    Blender fits the stored picture (``stored_size``, pixels) into the camera
    frame first, then turns it clockwise by ``background.rotation``: after a
    quarter turn the fitted picture is short by the ratio of its sides, so
    ``background.scale`` makes up for it and the upright picture fills the
    frame (whose size is the upright footage's, see :func:`ensure_camera`).
    """
    width, height = stored_size
    quarter = orientation.turn in (90, 270) and width > 0 and height > 0
    background.rotation = math.radians(orientation.turn)
    background.use_flip_x = orientation.flip_x
    background.scale = max(width / height, height / width) if quarter else 1.0


def attach_footage(scene, camera, path: str, start_frame: int, origin_number: int, origin_time: float, fps: float,
                   rotation: int = 0):
    """Show footage ``path`` behind ``camera`` so that it plays in step with the bake.

    The take's first sample (source frame ``origin_number`` of a sequence, or
    time ``origin_time`` seconds of a video) is shown at scene frame
    ``start_frame``; a video is placed by time at ``fps`` (the scene rate,
    which Blender's clip plays at for footage at that nominal rate). A single
    image is shown as a still. ``rotation``: a video's clockwise turn in
    degrees from its metadata (``take.meta["rotation"]``); the picture is shown
    upright (:func:`footage_orientation`). Returns the movie clip or image
    (reused if already loaded from the same file).
    """
    filepath, first_number, still = footage_file(path)
    absolute = os.path.abspath(filepath)
    data = camera.data
    if still:
        image = next((i for i in bpy.data.images if bpy.path.abspath(i.filepath) == absolute), None)
        if image is None:
            image = bpy.data.images.load(absolute)
        image.source = "FILE"  # one picture, not the start of a numbered sequence
        background = next((b for b in data.background_images if b.image == image), None)
        if background is None:
            background = data.background_images.new()
        background.source = "IMAGE"
        background.image = image
        loaded = image
        stored_size = tuple(image.size)
    else:
        clip = next(
            (c for c in bpy.data.movieclips if bpy.path.abspath(c.filepath) == absolute), None
        )
        if clip is None:
            clip = bpy.data.movieclips.load(absolute)
        clip.frame_start = int(start_frame)
        if first_number is None:  # a video: by time, 0-based frames
            clip.frame_offset = int(round(origin_time * fps))
        else:  # a sequence's clip starts at its first file
            clip.frame_offset = int(origin_number) - first_number
        background = next((b for b in data.background_images if b.clip == clip), None)
        if background is None:
            background = data.background_images.new()
        background.source = "MOVIE_CLIP"
        background.clip = clip
        background.use_camera_clip = False
        scene.active_clip = clip
        loaded = clip
        stored_size = tuple(clip.size)
    orient_background(background, footage_orientation(filepath, first_number is not None or still, rotation),
                      stored_size)
    background.alpha = 1.0
    background.frame_method = "FIT"
    data.show_background_images = True
    return loaded
