"""Retarget a take onto an avatar: shape keys, head rotation, as keys or drivers; exports.

:func:`retarget_object` puts one track of a take on any mesh with shape keys:
the take's channels (:func:`..core.retarget.take_sources`: the ARKit solver,
MediaPipe's ``mp.*``) go through a mapping (:mod:`..core.retarget`) onto the
mesh's keys, matched by name across conventions. The head's rotation goes
onto the avatar object or onto a pose bone of an armature.

Two ways to animate (``mode``):

* ``"keys"``: F-curves written in bulk (:mod:`.animation`), one action per
  retarget, named ``<take>.retarget`` (its slots: the shape keys, the head
  object or the armature). Running it again replaces the previous keys.
* ``"drivers"``: drivers that follow the captured face object (the BFM mesh
  baked by :mod:`.bake`). A source that is a linear formula of the 3DDFA
  expression (the ``3ddfa.*`` sources; the solver's own channels when it
  read 3DDFA-V2 alone) becomes a driven custom property ``ddfa_src_<name>``
  of the captured face object, a formula over its ``exp_00`` .. ``exp_09`` key
  values (so re-smoothing the captured face moves the avatar); any other
  source (the solver's fused channels, ``mp.*``) is keyed there as the same
  kind of property. Each avatar key's driver reads those properties through
  its mapping rows (a single row's curve becomes the driver F-curve's keys).
  The head rotation is a linear formula of the captured object's quaternion. Only Python-free "simple expressions" are used, so the drivers
  run without "Auto Run Python Scripts".

Head rotation (Blender frame of :mod:`..core.pose`: the captured head's
rotation, identity when facing the camera, i.e. looking along -Y, the usual
avatar rest facing). ``head_reference="median"`` makes it relative to the
take's median head rotation. ``axis_correction`` (a quaternion ``C``) turns
it for avatars built facing another way: ``R' = C R C^-1`` (for an avatar
facing +Y, 180 degrees about Z). On an object: ``rotation = R' * rest``.
On a pose bone: ``q = (O B)^-1 R' (O B)`` with ``O`` the armature object's
world rotation and ``B`` the bone's rest rotation in armature space: the
bone turns by ``R'`` in the world about its own head, whatever its rest axes
(parents at rest).

Frames: take row at time ``t`` lands on scene frame
``start_frame + (t - time_origin) * scene fps`` exactly as in the bake
(:func:`.bake_channels.scene_frames`); rows without a
face (or without a MediaPipe result) hold the last value.
"""

from __future__ import annotations

import dataclasses
import os

import bpy
import numpy as np

from ..core import pose as pose_mod
from ..core import retarget as core
from ..core.errors import CaptureError
from . import animation
from .bake_channels import scene_frames, take_times
from ..core.pose import quaternion_multiply

HEAD_GROUP = "Head"
SHAPE_GROUP = "Retarget"
SOURCE_PROPERTY_PREFIX = "ddfa_src_"
DRIVER_TAG = "ddfa_driven"  # on the avatar object: JSON list of driven data paths
MODES = ("keys", "drivers")


@dataclasses.dataclass
class RetargetResult:
    """What a retarget did: the match report, the keys animated, the head target."""

    report: core.MatchReport
    keys: list
    head: str
    mode: str
    action: str | None


def shape_key_names(obj) -> list[str]:
    """The shape-key names of a mesh object (``Basis`` included), [] if it has none."""
    keys = getattr(getattr(obj, "data", None), "shape_keys", None)
    return [block.name for block in keys.key_blocks] if keys is not None else []


def retarget_object(
    scene,
    take,
    avatar,
    *,
    face_model,
    mapping: core.Mapping | None = None,
    track: int = 0,
    neutral=None,
    eyes: str = "auto",
    head_target=None,
    head_bone: str | None = None,
    axis_correction=(1.0, 0.0, 0.0, 0.0),
    head_reference: str = "camera",
    mode: str = "keys",
    captured=None,
    start_frame: int | None = None,
    time_origin: float | None = None,
    scene_fps: float | None = None,
    name: str | None = None,
    smoothing=None,
) -> RetargetResult:
    """Animate ``avatar`` (a mesh object with shape keys) from ``track`` of ``take``.

    ``mapping``: None for :func:`..core.retarget.default_mapping`.
    ``head_target``: None (no head motion), the avatar or another object, or
    an armature object with ``head_bone``. ``mode``: ``"keys"`` or
    ``"drivers"`` (needs ``captured``, the face object baked from this take).
    ``start_frame``: scene frame of the take's first frame (None: the scene's
    start). ``scene_fps``: the rate keys are placed at (None: the take's). ``smoothing``: a ``SmoothingSettings`` applied to the take first
    (use the captured face's, so both move alike; None: the take as
    captured). Raises CaptureError (scene unchanged) for a target without shape
    keys, an unknown bone, or a missing captured face in drivers mode.
    """
    if mode not in MODES:
        raise CaptureError(f"Unknown retarget mode '{mode}': use keys or drivers.")
    keys = shape_key_names(avatar)
    if avatar is None or avatar.type != "MESH" or not keys:
        raise CaptureError(
            f"{getattr(avatar, 'name', 'The target')} has no shape keys: choose a mesh with "
            "ARKit-style shape keys to retarget onto."
        )
    if head_target is not None and head_bone and (
        head_target.type != "ARMATURE" or head_bone not in head_target.data.bones
    ):
        raise CaptureError(
            f"Bone '{head_bone}' is not in {head_target.name}: choose the head bone of the armature."
        )
    if mode == "drivers":
        _check_captured(captured, head_target)
    mapping = mapping or core.default_mapping()
    if smoothing is not None and smoothing.smooths:
        from ..core.smoothing import smooth_take

        take = smooth_take(take, smoothing, face_model)
    smooth_seconds = smoothing.expression if smoothing is not None else 0.0
    sources = core.take_sources(take, face_model, track=track, neutral=neutral, eyes=eyes,
                                smooth_seconds=smooth_seconds)
    resolved = core.match_mapping(mapping, keys, sources.channels)
    if time_origin is None:
        time_origin = float(take_times(take).min())
    if start_frame is None:
        start_frame = scene.frame_start
    times = np.where(np.isfinite(sources.time), sources.time, sources.frame / take.fps)
    frames = scene_frames(times, fps=scene_fps or take.fps, start_frame=start_frame, time_origin=time_origin)
    name = name or _take_stem(take)
    rotation, centre = _head_rotation(take, track, sources.valid, head_reference)

    _clear_drivers(avatar, head_target)
    if mode == "keys":
        action = _bake_keys(name, avatar, resolved, sources, frames, head_target, head_bone,
                            rotation, axis_correction)
    else:
        action = None
        _build_drivers(avatar, captured, resolved, sources, frames, head_target,
                       head_bone, centre, axis_correction)
    head = "none" if head_target is None else (
        f"{head_target.name}:{head_bone}" if head_bone else head_target.name)
    return RetargetResult(resolved.report, sorted(resolved.rows_by_key), head, mode, action)


# -- keys -----------------------------------------------------------------------------


def _bake_keys(name, avatar, resolved, sources, frames, head_target, head_bone, rotation,
               axis_correction) -> str:
    take_animation = animation.TakeAnimation(f"{name}.retarget")
    try:
        values = resolved.evaluate(sources.channels)
        container = take_animation.channels(avatar.data.shape_keys)
        for key, series in values.items():
            animation.key_channel(container, _key_path(key), 0, frames, fill_gaps(series), SHAPE_GROUP)
        if head_target is not None:
            quaternions = head_quaternions(head_target, head_bone, rotation, axis_correction)
            container = take_animation.channels(head_target)
            path = _head_path(head_target, head_bone)
            for index in range(4):
                animation.key_channel(container, path, index, frames, quaternions[:, index], HEAD_GROUP)
        take_animation.commit()
    except BaseException:
        take_animation.discard()
        raise
    return take_animation.name


def fill_gaps(values) -> np.ndarray:
    """NaN entries take the last finite value (the first one before it; 0 if none)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros_like(values)
    index = np.maximum.accumulate(np.where(finite, np.arange(len(values)), -1))
    index[index < 0] = np.flatnonzero(finite)[0]
    return values[index]


# -- head -----------------------------------------------------------------------------


def _head_rotation(take, track, valid, reference) -> tuple[np.ndarray, np.ndarray]:
    """Head quaternions (N, 4) (w, x, y, z) relative to the reference, and the reference (4,).

    Blender frame; gaps held. The reference is the identity for ``"camera"``.
    """
    rows = take.for_track(track)
    head = pose_mod.head_pose_blender(rows.param, rows.roi, rows.image_size)
    ok = valid & np.isfinite(head.rotation).all(axis=1)
    if not ok.any():
        raise CaptureError(f"Track {track} has no usable head pose to retarget.")
    index = np.maximum.accumulate(np.where(ok, np.arange(len(ok)), -1))
    index[index < 0] = np.flatnonzero(ok)[0]
    rotation = head.rotation[index]
    centre = np.array([1.0, 0.0, 0.0, 0.0])
    if reference == "median":
        matrices = pose_mod.quaternion_to_matrix(head.rotation[ok])
        u, _, vt = np.linalg.svd(np.median(matrices, axis=0))
        centre = pose_mod.matrix_to_quaternion(u @ vt)
        rotation = quaternion_multiply(rotation, _conjugate(centre))
    elif reference != "camera":
        raise CaptureError(f"Unknown head reference '{reference}': use camera or median.")
    return pose_mod.make_continuous(rotation), centre


def head_transform(head_target, head_bone, axis_correction) -> tuple[np.ndarray, np.ndarray]:
    """Quaternions ``(P, Q)`` with keyed rotation = ``P * R * Q`` for captured rotation ``R``."""
    correction = np.asarray(axis_correction, dtype=np.float64)
    correction = correction / np.linalg.norm(correction)
    if head_bone:
        rest = head_target.data.bones[head_bone].matrix_local.to_quaternion()
        world = head_target.matrix_world.to_quaternion()
        frame = quaternion_multiply(tuple(world), tuple(rest))
        return quaternion_multiply(_conjugate(frame), correction), quaternion_multiply(_conjugate(correction), frame)
    rest = _rest_rotation(head_target)
    return correction, quaternion_multiply(_conjugate(correction), rest)


def head_quaternions(head_target, head_bone, rotation, axis_correction) -> np.ndarray:
    """The keyed quaternions (N, 4) of the head object or bone (see the module doc)."""
    before, after = head_transform(head_target, head_bone, axis_correction)
    if not head_bone:
        head_target.rotation_mode = "QUATERNION"
    else:
        head_target.pose.bones[head_bone].rotation_mode = "QUATERNION"
    keyed = quaternion_multiply(quaternion_multiply(before, rotation), after)
    return pose_mod.make_continuous(keyed)


def _rest_rotation(obj) -> np.ndarray:
    """The object's rotation before any retarget (remembered on first use)."""
    if "ddfa_rest_rotation" not in obj:
        obj["ddfa_rest_rotation"] = list(obj.matrix_basis.to_quaternion())
    return np.asarray(obj["ddfa_rest_rotation"], dtype=np.float64)


def _conjugate(q) -> np.ndarray:
    return np.asarray(q, dtype=np.float64) * np.array([1.0, -1.0, -1.0, -1.0])


def _head_path(head_target, head_bone) -> str:
    if head_bone:
        return f'pose.bones["{bpy.utils.escape_identifier(head_bone)}"].rotation_quaternion'
    return "rotation_quaternion"


def _key_path(key: str) -> str:
    return f'key_blocks["{bpy.utils.escape_identifier(key)}"].value'


# -- drivers --------------------------------------------------------------------------

DRIVER_EXPRESSION_LIMIT = 255  # Blender keeps at most 255 characters of a driver expression


def _build_drivers(avatar, captured, resolved, sources, frames, head_target,
                   head_bone, centre, axis_correction) -> None:
    """Two levels: each source channel is a property of the captured face (driven from its
    ``exp_XX`` keys when linear, else keyed); each avatar key's driver reads those properties."""
    _detach_retarget_action(avatar.data.shape_keys)
    scale = np.asarray(captured["ddfa_expression_scale"], dtype=np.float64)
    linear = sources.linear
    props = {}

    def source_property(source: str) -> str:
        if source not in props:
            prop = SOURCE_PROPERTY_PREFIX + "".join(c if c.isalnum() else "_" for c in source)
            if source in linear:
                a, b = linear[source]
                _drive_property(captured, prop, a * scale, b)
            else:
                _bake_property(captured, prop, fill_gaps(sources.channels[source]), frames)
            props[source] = prop
        return props[source]

    driven = []
    for key, rows in resolved.rows_by_key.items():
        rows = [row for row in rows if row.source in sources.channels]
        if not rows:
            continue
        fcurve = avatar.data.shape_keys.key_blocks[key].driver_add("value")
        driver = _reset_driver(fcurve)
        names = [_property_variable(driver, captured, source_property(row.source), i) for i, row in enumerate(rows)]
        if len(rows) == 1 and rows[0].curve is not None:
            row = rows[0]  # the curve and clamp as the driver F-curve's keys
            driver.expression = f"{row.gain:.6g}*{names[0]}+{row.offset:.6g}"
            _curve_keys(fcurve, core.clamped_curve(row.curve, row.clamp_min, row.clamp_max))
        else:
            terms = [_row_text(row, name) for row, name in zip(rows, names)]
            driver.expression = terms[0] if len(terms) == 1 else f"({'+'.join(terms)})/{len(terms)}"
        if len(driver.expression) > DRIVER_EXPRESSION_LIMIT:
            raise CaptureError(
                f"The mapping of key {key} is too long for a driver (several rows with curves): "
                "animate with keyframes, or simplify its rows."
            )
        driven.append(_key_path(key))
    if head_target is not None:
        driven += _head_drivers(head_target, head_bone, captured, axis_correction, centre)
    avatar[DRIVER_TAG] = driven
    if head_target is not None and head_target is not avatar:
        head_target[DRIVER_TAG] = [p for p in driven if "rotation_quaternion" in p]
    # New properties and drivers: the dependency graph must rebuild its relations.
    for id_data in (captured, avatar, avatar.data.shape_keys, head_target):
        if id_data is not None:
            id_data.update_tag()
    bpy.context.view_layer.update()


def _reset_driver(fcurve):
    for modifier in list(fcurve.modifiers):
        fcurve.modifiers.remove(modifier)
    points = fcurve.keyframe_points
    while len(points):
        points.remove(points[0], fast=True)
    driver = fcurve.driver
    driver.type = "SCRIPTED"
    while driver.variables:
        driver.variables.remove(driver.variables[0])
    return driver


def _drive_property(captured, prop: str, a, b) -> None:
    """``captured[prop] = clamp(a . e + b, 0, 1)`` over its expression keys' values ``e``."""
    captured[prop] = 0.0
    anim = captured.animation_data
    curve = anim.drivers.find(f'["{prop}"]') if anim is not None else None
    driver = _reset_driver(curve if curve is not None else captured.driver_add(f'["{prop}"]'))
    keys = captured.data.shape_keys
    for index in range(len(a)):
        variable = driver.variables.new()
        variable.name = f"e{index}"
        variable.type = "SINGLE_PROP"
        target = variable.targets[0]
        target.id_type = "KEY"
        target.id = keys
        target.data_path = f'key_blocks["exp_{index:02d}"].value'
    terms = "+".join(f"{v:.6g}*e{i}" for i, v in enumerate(a) if v != 0.0).replace("+-", "-")
    driver.expression = f"clamp({terms}+{b:.6g},0,1)".replace("+-", "-")


def _bake_property(captured, prop: str, values, frames) -> None:
    """Key ``captured[prop]`` with ``values`` on ``frames`` (in the captured face's action)."""
    anim = captured.animation_data
    curve = anim.drivers.find(f'["{prop}"]') if anim is not None else None
    if curve is not None:
        anim.drivers.remove(curve)
    captured[prop] = 0.0
    container = animation.animation_channels(captured)
    animation.key_channel(container, f'["{prop}"]', 0, frames, values, SHAPE_GROUP)


def _property_variable(driver, captured, prop: str, index: int) -> str:
    variable = driver.variables.new()
    variable.name = f"p{index}"
    variable.type = "SINGLE_PROP"
    target = variable.targets[0]
    target.id_type = "OBJECT"
    target.id = captured
    target.data_path = f'["{prop}"]'
    return variable.name


def _curve_keys(fcurve, points) -> None:
    """Piecewise-linear driver F-curve keys through ``points``, flat beyond the ends."""
    keys = fcurve.keyframe_points
    keys.add(len(points))
    keys.foreach_set("co", np.asarray(points, dtype=np.float32).ravel())
    for key in keys:
        key.interpolation = "LINEAR"
    fcurve.extrapolation = "CONSTANT"
    fcurve.update()


def _row_text(row, value: str) -> str:
    """The driver text of one mapping row reading source variable ``value``."""
    text = f"{row.gain:.6g}*{value}+{row.offset:.6g}"
    if row.curve is not None:
        text = _curve_text(text, row.curve)
    return f"clamp({text},{row.clamp_min:.6g},{row.clamp_max:.6g})".replace("+-", "-")


def _curve_text(value: str, curve) -> str:
    """Piecewise-linear interpolation through ``curve`` as a simple driver expression."""
    points = np.asarray(curve, dtype=np.float64)
    text = f"{points[-1, 1]:.6g}"
    for (x0, y0), (x1, y1) in zip(points[-2::-1], points[:0:-1]):
        slope = (y1 - y0) / (x1 - x0)
        text = f"({y0:.6g}+({value}-{x0:.6g})*{slope:.6g} if {value}<{x1:.6g} else {text})"
    return f"({points[0, 1]:.6g} if {value}<{points[0, 0]:.6g} else {text})"


def _head_drivers(head_target, head_bone, captured, axis_correction, centre) -> list:
    """Drivers: each keyed quaternion component is linear in the captured quaternion.

    keyed = before * (captured * conj(centre)) * after, with the constants folded.
    """
    before, after = head_transform(head_target, head_bone, axis_correction)
    after = quaternion_multiply(_conjugate(centre), after)
    matrix = np.stack([
        quaternion_multiply(quaternion_multiply(before, np.eye(4)[j]), after) for j in range(4)
    ], axis=1)  # column j: the output for captured quaternion basis vector j
    owner = head_target.pose.bones[head_bone] if head_bone else head_target
    owner.rotation_mode = "QUATERNION"
    _detach_retarget_action(head_target)
    paths = []
    for index in range(4):
        fcurve = owner.driver_add("rotation_quaternion", index)
        driver = _reset_driver(fcurve)
        for j in range(4):
            variable = driver.variables.new()
            variable.name = f"q{j}"
            variable.type = "SINGLE_PROP"
            target = variable.targets[0]
            target.id_type = "OBJECT"
            target.id = captured
            target.data_path = f"rotation_quaternion[{j}]"
        driver.expression = " + ".join(f"{matrix[index, j]:.9g}*q{j}" for j in range(4))
        paths.append(_head_path(head_target, head_bone) + f"[{index}]")
    return paths


def _check_captured(captured, head_target) -> None:
    """CaptureError unless ``captured`` is a baked face drivers can follow."""
    if captured is None or "ddfa_expression_scale" not in captured:
        raise CaptureError(
            "Driver mode follows a captured face: choose the face object baked from this take."
        )
    fcurves = animation.animation_channels(captured)
    if fcurves is None:
        raise CaptureError(f"{captured.name} has no baked animation; capture it again first.")
    if head_target is not None and any(
        fcurves.fcurves.find("rotation_quaternion", index=i) is None for i in range(4)
    ):
        raise CaptureError(
            f"{captured.name} has no head rotation keys (baked in camera mode?): drive the "
            "head with keys instead."
        )


def _detach_retarget_action(id_data) -> None:
    """Unassign a retarget action from ``id_data`` (drivers replace its keys)."""
    anim = id_data.animation_data if id_data is not None else None
    if anim is not None and anim.action is not None and animation.TAKE_PROPERTY in anim.action:
        if anim.action.name.endswith(".retarget"):
            anim.action = None


def _clear_drivers(avatar, head_target) -> None:
    """Remove the drivers an earlier retarget added (listed in ``DRIVER_TAG``)."""
    for owner in {avatar, head_target} - {None}:
        paths = list(owner.get(DRIVER_TAG, []))
        for path in paths:
            if path.startswith("key_blocks"):
                keys = owner.data.shape_keys
                if keys is not None and keys.animation_data is not None:
                    curve = keys.animation_data.drivers.find(path)
                    if curve is not None:
                        keys.animation_data.drivers.remove(curve)
            else:
                base, _, index = path.rpartition("[")
                anim = owner.animation_data
                if anim is not None:
                    curve = anim.drivers.find(base, index=int(index.rstrip("]")))
                    if curve is not None:
                        anim.drivers.remove(curve)
        if DRIVER_TAG in owner:
            del owner[DRIVER_TAG]


def _take_stem(take) -> str:
    stem = os.path.splitext(os.path.basename(os.path.normpath(take.source or "take")))[0]
    return stem or "take"


# -- exports --------------------------------------------------------------------------

EXPORT_FORMATS = {"GLB": ".glb", "GLTF": ".gltf", "FBX": ".fbx"}


def export_animation(objects, path: str, file_format: str = "GLB") -> None:
    """Export ``objects`` with their shape-key (and object/bone) animation via Blender's exporters.

    ``file_format``: ``GLB`` / ``GLTF`` (glTF 2.0, morph-target animation) or
    ``FBX`` (blend-shape animation). Raises CaptureError for an unknown format
    or an exporter failure.
    """
    if file_format not in EXPORT_FORMATS:
        raise CaptureError(f"Unknown export format '{file_format}': use GLB, GLTF or FBX.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CaptureError(f"Cannot export to {path}: folder {folder} does not exist.")
    view_layer = bpy.context.view_layer
    previous = ([o for o in view_layer.objects if o.select_get()], view_layer.objects.active)
    try:
        for obj in view_layer.objects:
            obj.select_set(obj in objects)
        view_layer.objects.active = objects[0] if objects else None
        if file_format == "FBX":
            result = bpy.ops.export_scene.fbx(
                filepath=path, use_selection=True, object_types={"MESH", "ARMATURE", "EMPTY"},
                bake_anim=True, bake_anim_use_all_actions=False, bake_anim_use_nla_strips=False,
                bake_anim_simplify_factor=0.0, add_leaf_bones=False,
            )
        else:
            result = bpy.ops.export_scene.gltf(
                filepath=path, export_format="GLB" if file_format == "GLB" else "GLTF_SEPARATE",
                use_selection=True, export_animations=True, export_morph=True,
                export_morph_animation=True, export_force_sampling=True,
                export_optimize_animation_size=False, export_apply=False,
                # One animation from the actions the objects play now: Blender 4.2 gives a
                # take one action per data-block (object, shape keys) that the default
                # mode would export as separate animations (and it would add other takes).
                export_animation_mode="ACTIVE_ACTIONS",
            )
    except RuntimeError as err:
        raise CaptureError(f"Export to {path} failed ({err}).") from err
    finally:
        for obj in view_layer.objects:
            obj.select_set(obj in previous[0])
        view_layer.objects.active = previous[1]
    if "FINISHED" not in result:
        raise CaptureError(f"Export to {path} did not finish.")


def import_animation(path: str) -> list:
    """Import a glTF/GLB/FBX file with Blender's importers; the new objects.

    Shape-key slider ranges are widened to the keyed values (the glTF
    importer's default range would clip negative weights, e.g. ``exp_00``).
    """
    before = set(bpy.data.objects)
    if path.lower().endswith(".fbx"):
        bpy.ops.import_scene.fbx(filepath=path, anim_offset=0.0)  # the exporter keeps frame numbers
    else:
        bpy.ops.import_scene.gltf(filepath=path)
    new = [obj for obj in bpy.data.objects if obj not in before]
    for obj in new:
        keys = getattr(obj.data, "shape_keys", None)
        channels = animation.animation_channels(keys) if keys is not None else None
        for fcurve in channels.fcurves if channels is not None else ():
            block = keys.key_blocks.get(fcurve.data_path.split('"')[1]) if '"' in fcurve.data_path else None
            if block is not None and len(fcurve.keyframe_points):
                values = animation.fcurve_values(fcurve)[1]
                block.slider_min = min(block.slider_min, float(values.min()))
                block.slider_max = max(block.slider_max, float(values.max()))
    return new


def sample_shape_keys(scene, obj, frames) -> dict[str, np.ndarray]:
    """Evaluated shape-key values ``{name: (F,)}`` of ``obj`` at scene ``frames``."""
    keys = obj.data.shape_keys
    names = [block.name for block in keys.key_blocks][1:]
    out = {name: np.empty(len(frames)) for name in names}
    current = scene.frame_current
    for i, frame in enumerate(frames):
        scene.frame_set(int(frame))
        for name in names:
            out[name][i] = keys.key_blocks[name].value
    scene.frame_set(current)
    return out


# -- the command line -----------------------------------------------------------------


def parse_avatar_spec(spec: str) -> tuple[str, str | None]:
    """``path.blend`` or ``path.blend:Object`` -> (path, object name or None)."""
    spec = os.fspath(spec)
    path, sep, name = spec.rpartition(":")
    if sep and path.lower().endswith(".blend") and name:
        return path, name
    return spec, None


def append_avatar(avatar_spec: str):
    """Append the avatar object (and its armature) from a .blend; (mesh, armature or None).

    Without an object name, the first mesh with shape keys is taken.
    """
    path, name = parse_avatar_spec(avatar_spec)
    if not os.path.isfile(path):
        raise CaptureError(f"Avatar file not found: {path}.")
    with bpy.data.libraries.load(path, link=False) as (source, _):
        available = list(source.objects)
    if name is not None and name not in available:
        raise CaptureError(
            f"No object '{name}' in {path} (objects: {', '.join(available) or 'none'})."
        )
    with bpy.data.libraries.load(path, link=False) as (source, target):
        target.objects = [name] if name is not None else list(source.objects)
    loaded = [o for o in target.objects if o is not None]
    meshes = [o for o in loaded if o.type == "MESH" and shape_key_names(o)]
    if not meshes:
        for obj in loaded:
            bpy.data.objects.remove(obj)
        raise CaptureError(f"No mesh with shape keys in {avatar_spec}: name the avatar object.")
    avatar = meshes[0]
    # An armature the avatar depends on (modifier or parent) came along with it.
    parent = avatar.parent if avatar.parent is not None and avatar.parent.type == "ARMATURE" else None
    armature = avatar.find_armature() or parent
    scene = bpy.context.scene
    for obj in {avatar, armature} - {None}:
        if obj.name not in scene.collection.objects:
            scene.collection.objects.link(obj)
    for obj in loaded:
        if obj not in (avatar, armature) and obj.users == 0:
            bpy.data.objects.remove(obj)
    return avatar, armature


def stored_smoothing(captured):
    """The smoothing a captured face was baked with (``SmoothingSettings``), or None.

    Read through the add-on's registered ``Object.ddfa_capture`` properties
    (registered for the call when they are not): Blender 5 keeps properties
    defined by ``bpy.props`` apart from custom properties, so ``obj.get()``
    does not see them.
    """
    from . import properties

    if captured is None:
        return None
    registered_here = not properties.is_registered()
    if registered_here:
        properties.register()
    try:
        return properties.read_smoothing(captured.ddfa_capture.smoothing)
    except (CaptureError, AttributeError):
        return None
    finally:
        if registered_here:
            properties.unregister()


def find_captured_face(track: int = 0):
    """The captured face object of ``track`` in the open file (the baked BFM mesh), or None."""
    faces = [o for o in bpy.data.objects if "ddfa_expression_scale" in o]
    suffix = f".face{track}"
    for obj in faces:
        if obj.name.endswith(suffix):
            return obj
    return faces[0] if faces else None


def retarget_blend(
    blend_path,
    take,
    avatar_spec: str,
    mapping=None,
    *,
    output_path=None,
    models_dir=None,
    track: int = 0,
    neutral=None,
    eyes: str = "auto",
    head: str = "object",
    head_bone: str | None = None,
    axis_correction=(1.0, 0.0, 0.0, 0.0),
    mode: str = "keys",
) -> RetargetResult:
    """Open ``blend_path`` (written by :func:`.headless.write_blend`), append the avatar, retarget, save.

    ``take``: the :class:`..core.take.Take` baked into that file (or a path to
    its ``.npz``). ``avatar_spec``: ``avatar.blend`` or ``avatar.blend:Object``.
    ``mapping``: a :class:`..core.retarget.Mapping`, a path to a preset JSON,
    or None (the default ARKit mapping). ``head``: ``"object"`` (rotate the
    avatar object), ``"bone"`` (the pose bone ``head_bone`` of the avatar's
    armature) or ``"none"``. The result is saved to ``output_path`` (None:
    over ``blend_path``), atomically. Returns the :class:`RetargetResult`
    (``result.report.matched``, ``.unmatched_rows``, ``.unmatched_keys``).
    """
    from ..core.take import Take
    from .headless import check_writable, load_face_model, save_blend

    if isinstance(take, (str, os.PathLike)):
        take = Take.load(os.fspath(take))
    if isinstance(mapping, (str, os.PathLike)):
        mapping = core.Mapping.load(mapping)
    output_path = os.path.abspath(os.fspath(output_path or blend_path))
    check_writable(output_path)
    if not os.path.isfile(blend_path):
        raise CaptureError(f"Blend file not found: {blend_path}; write it with --output first.")
    face_model = load_face_model(models_dir)
    bpy.ops.wm.open_mainfile(filepath=os.path.abspath(os.fspath(blend_path)))
    scene = bpy.context.scene
    avatar, armature = append_avatar(avatar_spec)
    captured = find_captured_face(track)
    if head == "bone":
        if armature is None or not head_bone:
            raise CaptureError("Head on a bone needs an avatar with an armature and a bone name.")
        head_target = armature
    elif head == "object":
        head_target, head_bone = avatar, None
    elif head == "none":
        head_target, head_bone = None, None
    else:
        raise CaptureError(f"Unknown head target '{head}': use object, bone or none.")
    result = retarget_object(
        scene, take, avatar, face_model=face_model, mapping=mapping, track=track,
        neutral=neutral, eyes=eyes, head_target=head_target, head_bone=head_bone,
        axis_correction=axis_correction, mode=mode, captured=captured,
        start_frame=scene.frame_start, scene_fps=scene.render.fps / scene.render.fps_base,
        smoothing=stored_smoothing(captured),
        name=captured.name.rpartition(".face")[0] or None if captured is not None else None,
    )
    if captured is not None:
        avatar.location = captured.matrix_world.translation
        avatar.location.x += 1.5 * max(avatar.dimensions.x, 0.2)
    save_blend(output_path)
    return result
