"""Actions and F-curves written in bulk, for layered (Blender 4.4+) and legacy actions.

Blender 4.4 made actions layered: F-curves live in a channelbag of
``action.layers[0].strips[0]`` for one slot, and one action can animate
several data-blocks (one slot each). Blender 5.0 removed ``Action.fcurves``.
With layered actions a take's bake is one action with a slot per animated
data-block (the face object, its shape keys, the camera). Before 4.4 an action
animates a single data-block, so a take gets one action per data-block, the
extra ones named ``<take>.<data-block type>``.

Keys are written with ``keyframe_points.add`` and ``foreach_set`` (never one
``keyframe_insert`` per key) and use linear interpolation: with a key on every
frame, linear curves are the captured samples, without overshoot. With a
tolerance, a channel is reduced first (:mod:`..core.keyreduce`): the fewest
Bezier keys, with free handles, whose curve stays within the tolerance of
every sample.
"""

from __future__ import annotations

import bpy
import numpy as np

TAKE_PROPERTY = "ddfa_take"  # marks actions written by the bake (value: the take name)
_KEYFRAME = bpy.types.Keyframe.bl_rna.properties
_LINEAR = _KEYFRAME["interpolation"].enum_items["LINEAR"].value
_BEZIER = _KEYFRAME["interpolation"].enum_items["BEZIER"].value
_CONSTANT = _KEYFRAME["interpolation"].enum_items["CONSTANT"].value
_FREE = _KEYFRAME["handle_left_type"].enum_items["FREE"].value
# A channelbag's fcurves.new() takes group_name from Blender 5.0 on (4.4 and 4.5: no).
_CHANNELBAG_FCURVES = getattr(bpy.types, "ActionChannelbagFCurves", None)
_NEW_FCURVE_TAKES_GROUP = (
    _CHANNELBAG_FCURVES is not None
    and "group_name" in _CHANNELBAG_FCURVES.bl_rna.functions["new"].parameters.keys()
)


def is_layered(action) -> bool:
    """True when ``action`` is a layered action (Blender 4.4+)."""
    return hasattr(action, "slots") and hasattr(action, "layers")


class TakeAnimation:
    """The action(s) of one bake: hands out an F-curve collection per animated data-block.

    ``name`` is the take's name. Actions are created under a temporary name
    and only take ``name`` in :meth:`commit`, after the previous bake's actions
    are gone, so a re-bake gets the plain name back and a failed bake can be
    undone with :meth:`discard` without touching what was there before.
    """

    def __init__(self, name: str):
        self.name = name
        self.actions = []  # (action, final name)
        self._assigned = []  # (anim data owner, previous action, previous slot)

    def _new_action(self, final_name: str):
        action = bpy.data.actions.new(final_name + ".baking")
        action[TAKE_PROPERTY] = self.name
        self.actions.append((action, final_name))
        return action

    def channels(self, id_data):
        """The F-curve container (channelbag or legacy action) animating ``id_data``.

        Assigns the take's action to ``id_data`` (remembering what was there).
        """
        anim = id_data.animation_data or id_data.animation_data_create()
        previous_slot = getattr(anim, "action_slot", None)
        self._assigned.append((id_data, anim.action, previous_slot))
        if self.actions and is_layered(self.actions[0][0]):
            action = self.actions[0][0]
        elif self.actions:
            action = self._new_action(f"{self.name}.{id_data.id_type.lower()}")
        else:
            action = self._new_action(self.name)
        if not is_layered(action):
            anim.action = action
            return action
        slot = action.slots.new(id_type=id_data.id_type, name=id_data.name)
        anim.action = action
        anim.action_slot = slot
        return _ensure_channelbag(action, slot)

    def commit(self) -> None:
        """Remove the actions this bake replaced (if nothing else uses them) and name the new ones."""
        replaced = {previous for _, previous, _ in self._assigned if previous is not None}
        for previous in replaced:
            if previous.users == 0 and TAKE_PROPERTY in previous:
                bpy.data.actions.remove(previous)
        for action, final_name in self.actions:
            action.name = final_name
        self._assigned.clear()

    def discard(self) -> None:
        """Undo the bake: give each data-block its previous action back, delete the new ones."""
        for id_data, previous, previous_slot in reversed(self._assigned):
            anim = id_data.animation_data
            anim.action = previous
            if previous is not None and previous_slot is not None:
                anim.action_slot = previous_slot
        for action, _ in self.actions:
            bpy.data.actions.remove(action)
        self.actions.clear()
        self._assigned.clear()


def _ensure_channelbag(action, slot):
    try:
        from bpy_extras.anim_utils import action_ensure_channelbag_for_slot
    except ImportError:  # 4.4 before the helper existed
        layer = action.layers[0] if action.layers else action.layers.new("Layer")
        strip = layer.strips[0] if layer.strips else layer.strips.new(type="KEYFRAME")
        return strip.channelbag(slot, ensure=True)
    return action_ensure_channelbag_for_slot(action, slot)


def key_channel(channels, data_path: str, index: int, frames, values, group: str = "",
                tolerance: float | None = None, constant: bool = False):
    """Write a new F-curve in bulk from samples at ``frames`` (K,) with ``values`` (K,).

    Without ``tolerance`` every sample becomes a linear key (``constant``:
    stepped keys, for switches such as visibility). With one (in the
    channel's units), only the keys needed to stay within it are written, as
    Bezier keys with free handles.
    """
    frames = np.asarray(frames, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if not is_layered_container(channels):
        fcurve = channels.fcurves.new(data_path, index=index, action_group=group)
    elif _NEW_FCURVE_TAKES_GROUP:
        fcurve = channels.fcurves.new(data_path, index=index, group_name=group)
    else:
        fcurve = channels.fcurves.new(data_path, index=index)
        if group:
            fcurve.group = channels.groups.get(group) or channels.groups.new(group)
    points = fcurve.keyframe_points
    if tolerance is None or len(frames) < 3:
        points.add(len(frames))
        points.foreach_set("co", np.stack([frames, values], -1).astype(np.float32).ravel())
        points.foreach_set("interpolation", np.full(len(frames), _CONSTANT if constant else _LINEAR, np.int32))
    else:
        from ..core.keyreduce import reduce_keys

        curve = reduce_keys(frames, values, tolerance)
        count = len(curve)
        points.add(count)
        points.foreach_set("co", np.stack([curve.frames, curve.values], -1).astype(np.float32).ravel())
        points.foreach_set("interpolation", np.full(count, _BEZIER, dtype=np.int32))
        points.foreach_set("handle_left_type", np.full(count, _FREE, dtype=np.int32))
        points.foreach_set("handle_right_type", np.full(count, _FREE, dtype=np.int32))
        points.foreach_set("handle_left", curve.left_handles.astype(np.float32).ravel())
        points.foreach_set("handle_right", curve.right_handles.astype(np.float32).ravel())
    fcurve.update()
    return fcurve


def is_layered_container(channels) -> bool:
    """True for a channelbag (layered action), False for a legacy action."""
    return not isinstance(channels, bpy.types.Action)


def fcurve_values(fcurve) -> tuple[np.ndarray, np.ndarray]:
    """Key frames (K,) and values (K,) of an F-curve, read in bulk."""
    coords = np.empty(2 * len(fcurve.keyframe_points), dtype=np.float32)
    fcurve.keyframe_points.foreach_get("co", coords)
    coords = coords.reshape(-1, 2)
    return coords[:, 0].copy(), coords[:, 1].copy()


def animation_channels(id_data):
    """The F-curve container animating ``id_data`` now (channelbag or legacy action), or None."""
    anim = id_data.animation_data
    if anim is None or anim.action is None:
        return None
    if not is_layered(anim.action):
        return anim.action
    if anim.action_slot is None:
        return None
    for layer in anim.action.layers:
        for strip in layer.strips:
            channelbag = strip.channelbag(anim.action_slot)
            if channelbag is not None:
                return channelbag
    return None
