"""Flagged frames on Blender's timeline, so an animator can find and review them.

For each baked face, :func:`mark_flagged` writes

* one **timeline marker** at the first frame of each run of flagged frames
  (confidence under the threshold, :mod:`..core.confidence`), named
  ``"<face object>: flagged <first>-<last>"`` in scene frames. Markers show in
  the Timeline, Dope Sheet, Graph Editor and NLA; Marker > Jump to Next /
  Previous Marker steps from one run to the next;
* the **confidence curve**: the custom property ``ddfa_confidence`` of the
  face object, keyed on every frame with a face (group ``Confidence``; the
  Graph Editor shows where and how far trust drops);
* ``ddfa_flagged_frames`` on the object: how many frames were flagged (the
  panel and the operators report it).

Baking again replaces the face's own markers (their names are remembered on
the object in ``ddfa_flag_markers``) and leaves other markers alone.
"""

from __future__ import annotations

import numpy as np

from ..core.confidence import THRESHOLD, runs
from . import animation

CONFIDENCE_PROPERTY = "ddfa_confidence"
FLAGGED_PROPERTY = "ddfa_flagged_frames"
MARKERS_PROPERTY = "ddfa_flag_markers"
CONFIDENCE_GROUP = "Confidence"


def flagged_scene_runs(track_take, scene_frames, threshold: float = THRESHOLD):
    """(first, last) scene frames of each run of flagged rows of one track's take
    (``scene_frames``: each row's scene frame, as the bake keys it; rounded here)."""
    scene_frames = np.round(np.asarray(scene_frames, dtype=np.float64))
    flagged = track_take.valid & (np.nan_to_num(track_take.confidence, nan=1.0) < threshold)
    return [(int(scene_frames[a]), int(scene_frames[b - 1])) for a, b in runs(flagged)]


def remove_markers(scene, obj) -> list[tuple[str, int]]:
    """Remove the markers a previous bake of ``obj`` made; returns them (name, frame)."""
    names = set(str(obj.get(MARKERS_PROPERTY, "")).split("\n")) - {""}
    removed = [(m.name, m.frame) for m in scene.timeline_markers if m.name in names]
    for marker in [m for m in scene.timeline_markers if m.name in names]:
        scene.timeline_markers.remove(marker)
    return removed


def mark_flagged(scene, obj, track_take, scene_frames, threshold: float = THRESHOLD):
    """Markers, confidence curve and count for one baked face (see the module doc).

    ``track_take``: the rows of the face's track as baked; ``scene_frames``:
    each row's scene frame, as the bake keys it (see ``bake_channels.scene_frames``).
    Returns the markers it replaced (name, frame), for :func:`restore_markers`.
    """
    removed = remove_markers(scene, obj)
    spans = flagged_scene_runs(track_take, scene_frames, threshold)
    names = []
    for first, last in spans:
        label = f"{first}" if first == last else f"{first}-{last}"
        marker = scene.timeline_markers.new(f"{obj.name}: flagged {label}", frame=first)
        names.append(marker.name)
    obj[MARKERS_PROPERTY] = "\n".join(names)
    obj[FLAGGED_PROPERTY] = int(sum(last - first + 1 for first, last in spans))
    obj[CONFIDENCE_PROPERTY] = 1.0
    keyed = track_take.valid & np.isfinite(track_take.confidence)
    channels = animation.animation_channels(obj)
    if channels is not None and keyed.any():
        frames = np.asarray(scene_frames, dtype=np.float64)[keyed]
        animation.key_channel(
            channels, f'["{CONFIDENCE_PROPERTY}"]', 0, frames, track_take.confidence[keyed], CONFIDENCE_GROUP
        )
    return removed


def restore_markers(scene, obj, removed) -> None:
    """Undo :func:`mark_flagged`'s markers: drop the new ones, put ``removed`` back."""
    remove_markers(scene, obj)
    for name, frame in removed:
        scene.timeline_markers.new(name, frame=frame)
    obj[MARKERS_PROPERTY] = "\n".join(name for name, _ in removed)
