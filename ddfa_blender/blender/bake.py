"""Bake one face track of a take into a scene: mesh, shape keys, keys, camera, footage.

:func:`bake_take` is shared by the panel's operators and the headless
:func:`.headless.write_blend`. It computes everything first (pure numpy,
:mod:`.bake_channels`), then writes Blender data; if writing fails, what it
created is removed and what it changed is put back, so the scene is as it was.

Names, for a take called ``NAME`` (the take file's stem, else the footage's):
face object and mesh ``NAME.face<track>``, camera ``NAME.camera``, both
children of the empty ``NAME.origin`` (placed clear of what the scene shows,
see :mod:`.scene`), action
``NAME`` for track 0 and ``NAME.face<track>`` for the others (one action per
baked track: re-smoothing one face leaves the others alone). With layered
actions (Blender 4.4+) the action has one slot per animated data-block (the
face object, its shape keys, the camera when it is keyed).

Keyed channels: in head mode the face object's ``rotation_quaternion`` (4),
``location`` (3) and ``scale`` (3, uniform), the camera still at its rest
pose; in camera mode the camera's ``rotation_quaternion`` and ``location``
with the head at rest at the origin. Shape keys: ``exp_00`` .. ``exp_09``
values. Units and scaling: see :mod:`.bake_channels`.
"""

from __future__ import annotations

import contextlib
import os

import bpy
import numpy as np

from ..core import pose as pose_mod
from ..core.errors import CaptureError
from . import animation, bake_channels, mesh, properties, review, scene as scene_mod

TRANSFORM_GROUP = "Object Transforms"
SHAPE_GROUP = "Expression"
EXPRESSION_SCALE_PROPERTY = "ddfa_expression_scale"
IDENTITY_PROPERTY = "ddfa_identity"
DISTANCE_PROPERTY = "ddfa_distance"


def take_name(take, take_path=None) -> str:
    """The name of a take: its file's stem, else its footage's, else ``take``."""
    for path in (take_path, take.source):
        if path:
            stem = os.path.splitext(os.path.basename(os.path.normpath(str(path))))[0]
            if stem:
                return stem
    return "take"


def face_object_name(name: str, track: int) -> str:
    return f"{name}.face{track}"


# Lean keys: how far a reduced curve may stray from the baked samples, per channel.
# A quaternion component error e turns the head by at most about 4e radians.
KEY_TOLERANCES = {
    "rotation_quaternion": np.radians(0.1) / 4,  # 0.1 degree
    "location": 0.0005,  # 0.5 mm
    "scale": 0.001,  # 0.1 %
    "shape_key": 0.005,  # of the slider's [-1, 1] range
}
KEY_COUNTS_PROPERTY = "ddfa_key_counts"  # [samples, keys] of the object's last bake


def action_name(name: str, track: int) -> str:
    return name if track == 0 else face_object_name(name, track)


def bake_take(
    scene,
    take,
    *,
    face_model,
    track: int = 0,
    target=None,
    name: str | None = None,
    smoothing=None,
    start_frame: int = 1,
    key_camera: bool = False,
    missing: str = "hold",
    footage: str | None = None,
    take_path: str | None = None,
    time_origin: float | None = None,
    scene_fps: float | None = None,
    lens_mm: float = pose_mod.DEFAULT_LENS_MM,
    lean_keys: bool = False,
):
    """Bake ``track`` of ``take`` into ``scene`` and return the face object.

    ``target``: an existing face object to bake again in place (its mesh,
    keys and animation are replaced; its name and everything else stay);
    None creates a new one. ``smoothing``: a ``SmoothingSettings`` applied to
    the take first (None: the take as captured). ``footage``: video file or
    image folder shown behind the camera (None: none). ``take_path`` is
    stored on the object so the bake can be redone from it (Re-smooth).
    ``scene_fps``: the scene's frame rate (None: the take's); each sample is
    keyed at its presentation time (see :mod:`.bake_channels`, "Frames").
    ``lean_keys``: write only the keys needed to stay within ``KEY_TOLERANCES``
    of the (smoothed) samples instead of a key on every frame; the key counts
    before and after are stored on the object as ``ddfa_key_counts``.
    Raises ``CaptureError`` (scene unchanged) for a take that cannot be baked.
    """
    name = name or take_name(take, take_path)
    if key_camera and len(take.track_ids()) > 1:
        raise CaptureError(
            "Animating the camera needs a single-face take; key the heads instead."
        )
    scene_fps = float(scene_fps or take.fps)
    if time_origin is None and len(take):
        time_origin = float(bake_channels.take_times(take).min())
    source = take.for_track(track) if len(take) else take
    if smoothing is not None and smoothing.smooths and len(take):
        from ..core.smoothing import smooth_take

        source = smooth_take(source, smoothing, face_model)
    channels = bake_channels.track_channels(
        source,
        track,
        start_frame=start_frame,
        time_origin=time_origin,
        scene_fps=scene_fps,
        missing=missing,
        key_camera=key_camera,
        lens_mm=lens_mm,
    )
    neutral = bake_channels.identity_vertices(face_model, channels.identity)
    offsets = bake_channels.expression_offsets(face_model, channels.expression_scale)

    undo = _Undo(scene)
    take_animation = animation.TakeAnimation(action_name(name, track))
    replaced_markers = None
    try:
        obj = target
        if obj is None:
            obj_name = face_object_name(name, track)
            data = mesh.build_face_mesh(obj_name, face_model, neutral)
            undo.created(data)
            obj = bpy.data.objects.new(obj_name, data)
            undo.created(obj)
            scene.collection.objects.link(obj)
        else:
            undo.keep_shapes(obj)
        mesh.set_face_shapes(obj, neutral, offsets)

        camera = _stored_camera(obj) or bpy.data.objects.get(f"{name}.camera")
        camera_name = camera.name if camera is not None else f"{name}.camera"
        camera, created = scene_mod.ensure_camera(scene, camera_name, take.image_size, lens_mm)
        if created:
            undo.created(camera.data)
            undo.created(camera)
            low, high = scene_mod.capture_extent(channels.location)
            spot = scene_mod.free_spot(scene, low, high, ignore=(obj, camera))
            camera.parent = scene_mod.add_origin(scene, name + scene_mod.ORIGIN_SUFFIX, spot)
            undo.created(camera.parent)
        if target is None:
            obj.parent = camera.parent  # keyed transforms are in the capture origin's frame

        tolerances = KEY_TOLERANCES if lean_keys else {}
        counts = [0, 0]
        _key_transforms(take_animation, obj, camera, channels, tolerances, counts)
        _key_expressions(take_animation, obj, channels, tolerances, counts)
        obj[KEY_COUNTS_PROPERTY] = counts

        last = int(np.ceil(channels.frames.max())) if len(channels.frames) else start_frame
        scene_mod.set_timing(scene, scene_fps, start_frame, max(last, start_frame))
        if footage:
            before = {i.as_pointer() for i in (*bpy.data.movieclips, *bpy.data.images)}
            first_row = int(np.argmin(bake_channels.take_times(take)))
            shown = scene_mod.attach_footage(
                scene, camera, footage, start_frame, int(take.frame[first_row]),
                float(bake_channels.take_times(take)[first_row]), scene_fps,
                rotation=int(take.meta.get("rotation", 0)),
            )
            if shown.as_pointer() not in before:
                undo.created(shown)

        _store_bake_settings(
            obj, camera, channels, smoothing,
            take_path=take_path, start_frame=start_frame, missing=missing,
            key_camera=key_camera, footage=footage, lean_keys=lean_keys,
        )
        # Flagged frames: timeline markers and the confidence curve (blender/review.py).
        threshold = smoothing.min_confidence if smoothing is not None else review.THRESHOLD
        row_frames = bake_channels.scene_frames(
            bake_channels.take_times(source), fps=scene_fps, start_frame=start_frame, time_origin=time_origin
        )
        replaced_markers = review.mark_flagged(scene, obj, source, row_frames, threshold)
        take_animation.commit()
    except BaseException:
        if replaced_markers is not None:
            review.restore_markers(scene, obj, replaced_markers)
        take_animation.discard()
        undo.rollback()
        raise
    return obj


def bake_tracks(scene, take, *, face_model, tracks=None, **options) -> list:
    """Bake every track of ``take`` with at least one tracked frame; the new face objects.

    ``tracks``: only these track ids (None: all). ``options`` are those of
    :func:`bake_take` (except ``track``/``target``).
    All or nothing: if one track fails, the objects of the others are removed.
    """
    if len(take) == 0:
        raise CaptureError("The take is empty (no frames); capture the footage again.")
    found = [t for t in take.track_ids() if take.valid[take.track == t].any()]
    if tracks is not None:
        unknown = sorted(set(tracks) - set(found))
        if unknown:
            raise CaptureError(
                f"Track(s) {', '.join(map(str, unknown))} not in the take; its tracks with a face: "
                f"{', '.join(map(str, found)) or 'none'}."
            )
        found = [t for t in found if t in tracks]
    tracks = found
    if not tracks:
        raise CaptureError(
            "The take has no frame with a face; capture footage where the face is visible."
        )
    with removed_on_error(scene):
        return [
            bake_take(scene, take, face_model=face_model, track=track, **options)
            for track in tracks
        ]


def _stored_camera(obj):
    if obj is None or not properties.is_registered():
        return None
    camera = obj.ddfa_capture.camera
    return camera if camera is not None and camera.name in bpy.data.objects else None


def _key(target, data_path, index, frames, values, group, tolerance, counts):
    """Key one channel; ``counts`` ([samples, keys]) accumulates the sizes before and after."""
    fcurve = animation.key_channel(target, data_path, index, frames, values, group, tolerance)
    counts[0] += len(frames)
    counts[1] += len(fcurve.keyframe_points)


def _key_transforms(take_animation, obj, camera, channels, tolerances, counts) -> None:
    frames = channels.frames
    obj.rotation_mode = "QUATERNION"
    camera_animated = camera.animation_data is not None and (
        camera.animation_data.action is not None
        and animation.TAKE_PROPERTY in camera.animation_data.action
    )
    if channels.key_camera:
        obj.location = (0.0, 0.0, 0.0)
        obj.rotation_quaternion = (1.0, 0.0, 0.0, 0.0)
        obj.scale = (1.0, 1.0, 1.0)
        head = take_animation.channels(obj)  # the head's old transform keys go
        keyed, keyed_scale = camera, None
        target = take_animation.channels(camera)
    else:
        keyed, keyed_scale = obj, channels.scale
        if camera_animated:
            take_animation.channels(camera)  # an empty slot: the camera's old keys go
        target = head = take_animation.channels(obj)
    _key_presence(head, channels)
    for index in range(4):
        _key(target, "rotation_quaternion", index, frames, channels.rotation[:, index], TRANSFORM_GROUP,
             tolerances.get("rotation_quaternion"), counts)
    for index in range(3):
        _key(target, "location", index, frames, channels.location[:, index], TRANSFORM_GROUP,
             tolerances.get("location"), counts)
    if keyed_scale is not None:
        for index in range(3):
            _key(target, "scale", index, frames, keyed_scale, TRANSFORM_GROUP, tolerances.get("scale"), counts)


def _key_presence(head, channels) -> None:
    """Hide the face (viewport and render) outside the frames where its track has a face.

    A performer who enters or leaves mid-shot is then not shown frozen in the
    first or last pose; a track that spans the take gets no visibility keys.
    """
    (start, end), (first, last) = channels.span, channels.present
    keys = [(start, 1.0)] if first > start else []
    keys.append((first, 0.0))
    if last < end:
        keys.append((last + 1.0, 1.0))
    if len(keys) == 1:
        return
    frames, values = np.array(keys).T
    for path in ("hide_viewport", "hide_render"):
        animation.key_channel(head, path, 0, frames, values, TRANSFORM_GROUP, constant=True)


def _key_expressions(take_animation, obj, channels, tolerances, counts) -> None:
    shape_keys = obj.data.shape_keys
    target = take_animation.channels(shape_keys)
    for index in range(channels.expression_values.shape[1]):
        path = f'key_blocks["{mesh.expression_key_name(index)}"].value'
        _key(target, path, 0, channels.frames, channels.expression_values[:, index], SHAPE_GROUP,
             tolerances.get("shape_key"), counts)


def _store_bake_settings(obj, camera, channels, smoothing, **options) -> None:
    obj[EXPRESSION_SCALE_PROPERTY] = [float(v) for v in channels.expression_scale]
    obj[IDENTITY_PROPERTY] = [float(v) for v in channels.identity]
    obj[DISTANCE_PROPERTY] = float(channels.distance)
    if not properties.is_registered():
        return
    stored = obj.ddfa_capture
    stored.is_capture = True
    stored.track = channels.track
    stored.take_path = options["take_path"] or ""
    stored.start_frame = options["start_frame"]
    stored.missing = options["missing"]
    stored.key_camera = options["key_camera"]
    stored.lean_keys = options["lean_keys"]
    stored.footage = options["footage"] or ""
    stored.camera = camera
    properties.write_smoothing(stored.smoothing, smoothing)


_SCENE_SETTINGS = (
    ("render", "fps"), ("render", "fps_base"), ("render", "resolution_x"),
    ("render", "resolution_y"), (None, "frame_start"), (None, "frame_end"),
    (None, "frame_current"), (None, "camera"), (None, "active_clip"),
)


def scene_settings(scene) -> list:
    """The scene settings a bake changes (timing, resolution, camera, clip), to restore later."""
    return [getattr(scene.render if owner else scene, name) for owner, name in _SCENE_SETTINGS]


def restore_scene_settings(scene, values) -> None:
    for (owner, name), value in zip(_SCENE_SETTINGS, values):
        setattr(scene.render if owner else scene, name, value)


@contextlib.contextmanager
def removed_on_error(scene):
    """If the block raises: remove the objects, meshes, cameras, actions and clips it
    created and put the scene's timing, resolution, camera, clip and timeline
    markers back."""
    collections = (
        bpy.data.objects, bpy.data.meshes, bpy.data.cameras, bpy.data.actions, bpy.data.movieclips,
        bpy.data.images,
    )
    before = {id_data.as_pointer() for collection in collections for id_data in collection}
    settings = scene_settings(scene)
    markers = [(m.name, m.frame) for m in scene.timeline_markers]
    try:
        yield
    except BaseException:
        for collection in collections:
            for id_data in [i for i in collection if i.as_pointer() not in before]:
                collection.remove(id_data)
        restore_scene_settings(scene, settings)
        scene.timeline_markers.clear()
        for name, frame in markers:
            scene.timeline_markers.new(name, frame=frame)
        raise


class _Undo:
    """What a bake created or changed, to put the scene back if it fails half-way."""

    def __init__(self, scene):
        self.scene = scene
        self.ids = []
        self.shapes = None
        self.settings = scene_settings(scene)

    def created(self, id_data) -> None:
        self.ids.append(id_data)

    def keep_shapes(self, obj) -> None:
        """Remember the face object's vertex and key positions before they are overwritten."""
        data = obj.data
        blocks = data.shape_keys.key_blocks if data.shape_keys else []
        saved = {}
        for block in blocks:
            coords = np.empty(3 * len(block.data), dtype=np.float32)
            block.data.foreach_get("co", coords)
            saved[block.name] = (coords, block.slider_min, block.slider_max)
        coords = np.empty(3 * len(data.vertices), dtype=np.float32)
        data.vertices.foreach_get("co", coords)
        self.shapes = (obj, coords, saved)

    def rollback(self) -> None:
        for id_data in reversed(self.ids):
            collection = {
                bpy.types.Object: bpy.data.objects,
                bpy.types.Mesh: bpy.data.meshes,
                bpy.types.Camera: bpy.data.cameras,
                bpy.types.MovieClip: bpy.data.movieclips,
                bpy.types.Image: bpy.data.images,
            }[type(id_data)]
            collection.remove(id_data)
        if self.shapes is not None:
            obj, coords, saved = self.shapes
            obj.data.vertices.foreach_set("co", coords)
            blocks = obj.data.shape_keys.key_blocks if obj.data.shape_keys else []
            for block in list(blocks):
                if block.name not in saved:
                    obj.shape_key_remove(block)
            for block in obj.data.shape_keys.key_blocks if obj.data.shape_keys else []:
                block_coords, block.slider_min, block.slider_max = saved[block.name]
                block.data.foreach_set("co", block_coords)
            obj.data.update()
        restore_scene_settings(self.scene, self.settings)
