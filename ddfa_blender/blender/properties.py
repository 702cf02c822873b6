"""Blender properties: capture settings on the scene, bake settings on each captured object.

* ``Scene.ddfa_capture``: what the panel's Capture button uses (source,
  model, options, the smoothing applied after capture).
* ``Object.ddfa_capture``: on each baked face object, everything needed to
  bake it again from its take file: the take path, track, bake options and
  the smoothing settings (edited in the panel, applied by Re-smooth).
* ``WindowManager.ddfa_job``: the progress of the running capture (runtime).
* ``WindowManager.ddfa_panels``: which sidebar sub-panels are open.

The smoothing group mirrors :class:`..core.smoothing.SmoothingSettings` field
by field (same names and meaning: seconds of Gaussian sigma per channel
group; 0 = off). No ``from __future__ import annotations`` here: Blender
reads the property annotations as objects.
"""

import math

import bpy
from bpy.props import (
    BoolProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ..core.smoothing import PRESETS, SmoothingSettings
from .rna_callbacks import callback

SMOOTHING_FIELDS = (
    "rotation", "translation", "expression", "bridge_gaps", "max_gap", "split_jump",
    "min_confidence", "keep_flagged",
)
_DEFAULT = PRESETS["default"]
PRESET_ITEMS = [
    ("none", "None", "No smoothing: the take as captured"),
    ("light", "Light", "Light zero-lag smoothing"),
    ("default", "Default", "Zero-lag smoothing tuned on talking-head footage"),
    ("heavy", "Heavy", "Strong zero-lag smoothing (slow, calm motion)"),
    ("custom", "Custom", "The values below"),
]
MISSING_ITEMS = [
    ("hold", "Hold", "Frames without a face keep the last tracked pose"),
    ("gap", "Gap", "No keys on frames without a face (curves interpolate across them)"),
]


def _apply_preset(self, _context):
    if self.preset != "custom":
        values = PRESETS[self.preset].to_dict()
        for name in SMOOTHING_FIELDS:
            setattr(self, name, values[name])


class DDFA_SmoothingProperties(bpy.types.PropertyGroup):
    """Mirror of ``SmoothingSettings`` (see :mod:`..core.smoothing`).

    Choosing a preset copies its values; editing a value afterwards keeps the
    preset's name shown (the panel marks it modified, :func:`preset_name`).
    """

    preset: EnumProperty(
        name="Preset", items=PRESET_ITEMS, default="default", update=callback(__name__, "_apply_preset")
    )
    rotation: FloatProperty(
        name="Rotation", description="Head rotation smoothing, Gaussian sigma in seconds (0: off)",
        default=_DEFAULT.rotation, min=0.0, soft_max=0.5, step=1, precision=3, unit="TIME_ABSOLUTE",
    )
    translation: FloatProperty(
        name="Translation", description="Head position and size smoothing, sigma in seconds (0: off)",
        default=_DEFAULT.translation, min=0.0, soft_max=0.5, step=1, precision=3, unit="TIME_ABSOLUTE",
    )
    expression: FloatProperty(
        name="Expression", description="Expression smoothing, sigma in seconds (0: off)",
        default=_DEFAULT.expression, min=0.0, soft_max=0.5, step=1, precision=3, unit="TIME_ABSOLUTE",
    )
    bridge_gaps: BoolProperty(
        name="Bridge Gaps", description="Fill short gaps without a face by interpolation",
        default=_DEFAULT.bridge_gaps,
    )
    max_gap: FloatProperty(
        name="Longest Gap", description="Longest gap bridged, in seconds",
        default=_DEFAULT.max_gap, min=0.0, soft_max=5.0, precision=2, unit="TIME_ABSOLUTE",
    )
    split_jump: FloatProperty(
        name="Jump Split", description="A re-detection moving the face more than this fraction "
        "of its size starts a new segment (never smoothed across)",
        default=_DEFAULT.split_jump, min=0.0, soft_max=0.5, precision=3,
    )
    # Flagged frames (trust issue): see ..core.confidence and ..core.smoothing.
    min_confidence: FloatProperty(
        name="Flag Below", description="Frames whose confidence (0..1: occlusion, implausible motion, "
        "the network's heads disagreeing) is under this are flagged: marked on the timeline and "
        "bridged from their neighbours",
        default=_DEFAULT.min_confidence, min=0.0, max=1.0, precision=2,
    )
    keep_flagged: BoolProperty(
        name="Keep Flagged", description="Bake flagged frames as captured instead of bridging them "
        "(they stay marked on the timeline)",
        default=_DEFAULT.keep_flagged,
    )


def read_smoothing(props) -> SmoothingSettings:
    """The ``SmoothingSettings`` a smoothing property group holds.

    Floats are rounded to 6 decimals, undoing the float32 storage of Blender
    properties, so a preset read back equals the preset exactly.
    """
    values = {name: getattr(props, name) for name in SMOOTHING_FIELDS}
    return SmoothingSettings.from_dict(
        {k: round(v, 6) if isinstance(v, float) else v for k, v in values.items()}
    )


def write_smoothing(props, settings) -> None:
    """Copy ``settings`` (a ``SmoothingSettings``, or None = no smoothing) into a property group."""
    settings = settings if settings is not None else PRESETS["none"]
    values = settings.to_dict()
    for name in SMOOTHING_FIELDS:
        setattr(props, name, values[name])
    props.preset = preset_name(settings)


def preset_name(settings) -> str:
    """The name of the preset equal to ``settings`` (to float32 precision), else ``custom``."""
    values = settings.to_dict()
    for name, preset in PRESETS.items():
        if all(
            math.isclose(float(values[key]), float(value), rel_tol=1e-6, abs_tol=1e-9)
            for key, value in preset.to_dict().items()
        ):
            return name
    return "custom"


class DDFA_CaptureSettings(bpy.types.PropertyGroup):
    """The panel's capture settings (``Scene.ddfa_capture``)."""

    source_kind: EnumProperty(
        name="Source", items=[
            ("FILE", "Video", "A video file"),
            ("SEQUENCE", "Images", "A folder of numbered images (an image sequence)"),
        ], default="FILE",
    )
    source_file: StringProperty(name="Video", subtype="FILE_PATH")
    source_folder: StringProperty(name="Folder", subtype="DIR_PATH")
    sequence_fps: FloatProperty(
        name="Frame Rate", description="Frame rate of the image sequence, in frames per second",
        default=24.0, min=1.0, max=240.0,
    )
    model: EnumProperty(
        name="Model", items=[
            ("mb05", "MobileNet 0.5", "Fast model (mb05_120x120)"),
            ("mb1", "MobileNet 1.0", "Full-width model (mb1_120x120, if prepared)"),
        ], default="mb05",
    )
    max_faces: IntProperty(name="Faces", description="Faces tracked at once", default=1, min=1, max=8)
    record_eyes: BoolProperty(
        name="Blendshapes",
        description="Also run MediaPipe's face landmarker: its 52 ARKit blendshapes, blinks and gaze, "
        "for retargeting (capture runs several times slower)",
        default=True,
    )
    tracks: StringProperty(
        name="Bake Tracks",
        description="Track numbers to bake, e.g. 0, 2 (empty: every face found)",
    )
    start_frame: IntProperty(
        name="Start Frame", description="Scene frame of the first footage frame", default=1
    )
    missing: EnumProperty(name="Missing Frames", items=MISSING_ITEMS, default="hold")
    key_camera: BoolProperty(
        name="Animate Camera", description="Key the camera around a still head instead of the head",
        default=False,
    )
    lean_keys: BoolProperty(
        name="Lean Keys",
        description="Bake only the keys needed to stay within a small tolerance of every frame "
        "(0.1 degree, 0.5 mm, 0.005 of a shape key) instead of a key on every frame",
        default=False,
    )
    use_footage: BoolProperty(
        name="Show Footage", description="Show the footage behind the capture camera (its background)",
        default=True,
    )
    take_folder: StringProperty(
        name="Take Folder", subtype="DIR_PATH",
        description="Where take files are saved (empty: next to the .blend, or the add-on's folder)",
    )
    smoothing: PointerProperty(type=DDFA_SmoothingProperties)


class DDFA_CapturedObject(bpy.types.PropertyGroup):
    """How a face object was baked (``Object.ddfa_capture``): enough to bake it again."""

    is_capture: BoolProperty(name="Captured Face", default=False)
    take_path: StringProperty(name="Take", subtype="FILE_PATH", description="The take file baked here")
    track: IntProperty(name="Track", default=0, min=0)
    start_frame: IntProperty(name="Start Frame", default=1)
    missing: EnumProperty(name="Missing Frames", items=MISSING_ITEMS, default="hold")
    key_camera: BoolProperty(name="Animate Camera", default=False)
    lean_keys: BoolProperty(
        name="Lean Keys",
        description="Bake only the keys needed to stay within a small tolerance of every frame "
        "(0.1 degree, 0.5 mm, 0.005 of a shape key) instead of a key on every frame",
        default=False,
    )
    footage: StringProperty(name="Footage", subtype="FILE_PATH")
    camera: PointerProperty(name="Camera", type=bpy.types.Object)
    smoothing: PointerProperty(type=DDFA_SmoothingProperties)


class DDFA_JobState(bpy.types.PropertyGroup):
    """The running capture, for the panel's progress bar (``WindowManager.ddfa_job``)."""

    running: BoolProperty(default=False)
    cancellable: BoolProperty(default=True)
    title: StringProperty(default="", description="What runs (the operator's label)")
    progress: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    label: StringProperty(default="", description="The progress line: counts or the last message")


class DDFA_PanelState(bpy.types.PropertyGroup):
    """Which sub-panels of the sidebar are open (``WindowManager.ddfa_panels``; all
    closed by default: they hold what is changed less often)."""

    capture_options: BoolProperty(name="Options", default=False)
    capture_smoothing: BoolProperty(name="Smoothing", default=False)
    face_smoothing: BoolProperty(name="Smoothing and Keys", default=False)
    retarget_head: BoolProperty(name="Head", default=False)
    retarget_mapping: BoolProperty(name="Mapping", default=False)
    retarget_export: BoolProperty(name="Export", default=False)


CLASSES = (DDFA_SmoothingProperties, DDFA_CaptureSettings, DDFA_CapturedObject, DDFA_JobState, DDFA_PanelState)
POINTERS = (
    (bpy.types.Scene, "ddfa_capture", DDFA_CaptureSettings),
    (bpy.types.Object, "ddfa_capture", DDFA_CapturedObject),
    (bpy.types.WindowManager, "ddfa_job", DDFA_JobState),
    (bpy.types.WindowManager, "ddfa_panels", DDFA_PanelState),
)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    for owner, name, cls in POINTERS:
        setattr(owner, name, PointerProperty(type=cls))


def unregister() -> None:
    for owner, name, _ in reversed(POINTERS):
        if hasattr(owner, name):
            delattr(owner, name)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)


def is_registered() -> bool:
    """True when the object properties exist (the add-on or :func:`register` ran)."""
    return hasattr(bpy.types.Object, "ddfa_capture")
