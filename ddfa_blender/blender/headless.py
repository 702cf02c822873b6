"""Headless bake: a take to a ``.blend`` file, in the current ``bpy`` session.

Used by ``scripts/capture.py --output`` both inside ``blender -b`` and with the
``bpy`` module. The session is reset to an empty factory scene, every face
track of the take is baked (:func:`.bake.bake_take`), and the file is saved
(:func:`save_blend`): a failed run never leaves a partial ``.blend`` (nor a
``.blend1`` backup) behind.
"""

from __future__ import annotations

import os

import bpy

from ..core.atomic_file import check_writable_folder
from ..core.errors import CaptureError
from . import bake, properties


def load_face_model(models_dir=None):
    """The prepared face model of ``models_dir`` (None: the default models folder)."""
    from ..core.engine import CaptureOptions, load_face_model as load, models_folder

    return load(models_folder(CaptureOptions(models_dir=models_dir)))


def check_writable(output_path: str) -> None:
    """Raise ``CaptureError`` unless a file can be created at ``output_path``."""
    check_writable_folder(output_path, ".blend")


def check_retarget(avatar_spec: str, mapping_path=None, head_bone=None) -> None:
    """Check a retarget before any capture: the avatar file, its object (a mesh with shape
    keys), the head bone in its armature, and the mapping preset. Resets the session."""
    from ..core import retarget as core
    from .retarget import append_avatar, parse_avatar_spec

    path, _ = parse_avatar_spec(avatar_spec)
    if not path.lower().endswith(".blend"):
        raise CaptureError(
            f"--retarget {avatar_spec}: give an avatar .blend file, optionally as FILE.blend:OBJECT."
        )
    if mapping_path:
        try:
            core.Mapping.load(mapping_path)
        except (TypeError, KeyError, AttributeError, ValueError) as err:
            raise CaptureError(
                f"The mapping preset {mapping_path} is not a valid preset ({err}); fix or re-save it."
            ) from err
    bpy.ops.wm.read_factory_settings(use_empty=True)
    try:
        try:
            avatar, armature = append_avatar(avatar_spec)
        except (OSError, RuntimeError) as err:
            raise CaptureError(f"Cannot read the avatar {path} ({' '.join(str(err).split())}); "
                               "check that Blender opens it.") from err
        if head_bone and (armature is None or head_bone not in armature.data.bones):
            bones = ", ".join(b.name for b in armature.data.bones) if armature is not None else ""
            raise CaptureError(
                f"Bone '{head_bone}' is not in the avatar's armature"
                + (f" (bones: {bones})" if bones else f": {avatar.name} has no armature") + "; give its head bone."
            )
    finally:
        bpy.ops.wm.read_factory_settings(use_empty=True)


def write_blend(
    take,
    output_path,
    *,
    models_dir=None,
    smoothing=None,
    start_frame=1,
    key_camera=False,
    missing="hold",
    footage=None,
    take_path=None,
    lean_keys=False,
    tracks=None,
    scene_fps=None,
) -> list[tuple[str, int, int]]:
    """Bake ``take`` into a fresh scene and save it as ``output_path``.

    ``smoothing``: a ``SmoothingSettings`` (None: the take as captured),
    stored on each face object for Re-smooth. ``footage``: the clip or image
    folder shown behind the camera (None: none). ``take_path``: the take file,
    stored on the objects so they can be baked again from it. ``lean_keys``:
    reduced Bezier keys instead of one per frame (see ``bake.bake_take``).
    ``scene_fps``: the scene's frame rate (None: the take's). Every track
    with at least one tracked frame gets a face object (``tracks``: only
    these ids). Returns, per face
    object, ``(name, samples, keys)``: keys written and keys before reduction. Raises
    ``CaptureError`` (nothing written) for an empty or unusable take, missing
    models or an output that cannot be written.
    """
    output_path = os.path.abspath(os.fspath(output_path))
    check_writable(output_path)
    if len(take) == 0:
        raise CaptureError("The take is empty (no frames); capture the footage again.")
    face_model = load_face_model(models_dir)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    registered_here = not properties.is_registered()
    if registered_here:
        properties.register()
    try:
        objects = bake.bake_tracks(
            bpy.context.scene,
            take,
            face_model=face_model,
            smoothing=smoothing,
            start_frame=start_frame,
            key_camera=key_camera,
            missing=missing,
            footage=footage,
            take_path=os.path.abspath(take_path) if take_path else None,
            lean_keys=lean_keys,
            tracks=tracks,
            scene_fps=scene_fps,
        )
        summary = [(obj.name, *obj[bake.KEY_COUNTS_PROPERTY]) for obj in objects]
        save_blend(output_path)
    finally:
        if registered_here:
            properties.unregister()
    return summary


def save_blend(output_path: str) -> None:
    """Save the session's data as ``output_path``.

    Blender writes ``<output>@`` and renames it over the output, so a failed
    save never leaves a partial file; backups (``.blend1``) are turned off for
    the call, so overwriting leaves no extra file either.
    """
    check_writable(output_path)
    filepaths = bpy.context.preferences.filepaths
    backups = filepaths.save_version
    filepaths.save_version = 0
    try:
        bpy.ops.wm.save_as_mainfile(filepath=output_path, copy=True, check_existing=False)
    except RuntimeError as err:
        raise CaptureError(f"Cannot write {output_path} ({' '.join(str(err).split())}); "
                           "free some disk space or choose another output.") from err
    finally:
        filepaths.save_version = backups
        if os.path.exists(output_path + "@"):
            os.unlink(output_path + "@")
    if not os.path.isfile(output_path):
        raise CaptureError(f"Blender did not write {output_path}; free some disk space or choose another output.")
