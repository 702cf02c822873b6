"""The Retarget panel (View3D > Sidebar > Face Capture > Retarget) and its operators.

The user picks a captured face (the source: its take file), an avatar (any
mesh with shape keys), how the head moves (not, the avatar object, or a bone
of an armature with an axis correction), keys or drivers, and edits the
mapping in a list (one row per source channel -> target key, with gain,
offset, clamp and an optional curve), which loads from and saves to JSON
presets. Retarget fills the list with the default ARKit mapping when it is
empty, then lists what it could not match (rows without a key, keys nothing
drives) in the panel and in the status report. Export writes the avatar (or
the captured face) with its animation as glTF/FBX, or the take's channels as
Live Link Face CSV, CSV or JSON.

Registration: :func:`register` registers :data:`CLASSES` and adds
``Scene.ddfa_retarget``; :func:`unregister` is its mirror. No
``from __future__ import annotations``: Blender reads the property
annotations as objects.
"""

import os
import textwrap

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    FloatVectorProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)
from bpy_extras.io_utils import ExportHelper, ImportHelper

from ..core.errors import CaptureError
from . import retarget
from .rna_callbacks import callback

CATEGORY = "Face Capture"
CHAR_WIDTH_PX = 7  # about the width of a character of Blender's interface font at 1x scale
EXPRESSION_SCALE_PROPERTY = "ddfa_expression_scale"


def _is_avatar(_self, obj) -> bool:
    return obj.type == "MESH" and bool(retarget.shape_key_names(obj)) and EXPRESSION_SCALE_PROPERTY not in obj


def _is_captured(_self, obj) -> bool:
    return EXPRESSION_SCALE_PROPERTY in obj


class DDFA_MappingRow(bpy.types.PropertyGroup):
    """One mapping row (mirror of :class:`..core.retarget.MappingRow`)."""

    enabled: BoolProperty(name="Enabled", default=True)
    source: StringProperty(name="Source", description="Source channel: an ARKit name, or mp.<name> for MediaPipe's")
    target: StringProperty(name="Target", description="Target shape key (matched across naming conventions)")
    gain: FloatProperty(name="Gain", default=1.0, soft_min=0.0, soft_max=3.0)
    offset: FloatProperty(name="Offset", default=0.0, soft_min=-1.0, soft_max=1.0)
    clamp_min: FloatProperty(name="Min", default=0.0)
    clamp_max: FloatProperty(name="Max", default=1.0)
    curve: StringProperty(
        name="Curve", description="Optional remapping curve as x,y points: 0,0; 0.5,0.8; 1,1 (empty: none)",
    )


class DDFA_RetargetSettings(bpy.types.PropertyGroup):
    """The Retarget panel's settings (``Scene.ddfa_retarget``)."""

    source_face: PointerProperty(
        name="Captured Face", type=bpy.types.Object, poll=callback(__name__, "_is_captured"),
        description="The face baked by Capture whose take drives the avatar",
    )
    avatar: PointerProperty(
        name="Avatar", type=bpy.types.Object, poll=callback(__name__, "_is_avatar"),
        description="Mesh with ARKit-style shape keys to animate",
    )
    mode: EnumProperty(name="Animate With", items=[
        ("keys", "Keyframes", "Bake the values as keyframes (one action per retarget)"),
        ("drivers", "Drivers", "Drivers that follow the captured face (re-smoothing it moves the avatar)"),
    ], default="keys")
    eyes: EnumProperty(name="Eyes", items=[
        ("auto", "Auto", "MediaPipe when the take recorded it, else the 3DDFA eyelids"),
        ("mediapipe", "MediaPipe", "Blinks and gaze from MediaPipe's face landmarker"),
        ("3ddfa", "3DDFA", "Eyelids from the 3DDFA mesh only (no gaze)"),
    ], default="auto")
    head_mode: EnumProperty(name="Head", items=[
        ("none", "None", "Do not move the head"),
        ("object", "Object", "Rotate an object (the avatar by default)"),
        ("bone", "Bone", "Rotate a bone of an armature"),
    ], default="object")
    head_object: PointerProperty(name="Head Object", type=bpy.types.Object,
                                 description="Object or armature rotated with the head (empty: the avatar)")
    head_bone: StringProperty(name="Bone", description="The armature's head bone")
    axis_correction: FloatVectorProperty(
        name="Axis Correction", subtype="EULER", size=3,
        description="Rotation from a -Y facing head to the avatar's facing (e.g. 180 degrees Z for +Y)",
    )
    head_reference: EnumProperty(name="Reference", items=[
        ("camera", "Camera", "Head rotation as seen by the camera (rest = facing the camera)"),
        ("median", "Median", "Relative to the take's median head rotation"),
    ], default="camera")
    use_neutral_range: BoolProperty(
        name="Neutral Frames", description="Calibrate the rest face on a frame range (else: automatic)",
    )
    neutral_first: IntProperty(name="First", default=0, min=0, description="First source frame of the rest face")
    neutral_last: IntProperty(name="Last", default=10, min=0, description="Last source frame of the rest face")
    rows: CollectionProperty(type=DDFA_MappingRow)
    active_row: IntProperty(default=0)
    report: StringProperty(default="", description="What the last retarget could not match")


# -- mapping <-> rows -----------------------------------------------------------------


def parse_curve(text: str):
    """``"0,0; 0.5,0.8; 1,1"`` -> [[0, 0], [0.5, 0.8], [1, 1]]; empty -> None."""
    text = text.strip()
    if not text:
        return None
    try:
        return [[float(v) for v in point.split(",")] for point in text.split(";") if point.strip()]
    except ValueError as err:
        raise CaptureError(f"Curve '{text}' is not a list of x,y points (0,0; 0.5,0.8; 1,1).") from err


def format_curve(curve) -> str:
    return "" if curve is None else "; ".join(f"{x:g},{y:g}" for x, y in curve)


def mapping_from_rows(rows):
    """The :class:`..core.retarget.Mapping` the panel's list holds."""
    from ..core.retarget import Mapping, MappingRow

    return Mapping(rows=[
        MappingRow(row.source, row.target, row.gain, row.offset, row.clamp_min, row.clamp_max,
                   parse_curve(row.curve), row.enabled)
        for row in rows
    ])


def rows_from_mapping(rows, mapping) -> None:
    """Replace the panel's list with ``mapping``'s rows."""
    rows.clear()
    for source in mapping.rows:
        row = rows.add()
        row.source, row.target, row.enabled = source.source, source.target, source.enabled
        row.gain, row.offset = source.gain, source.offset
        row.clamp_min, row.clamp_max = source.clamp_min, source.clamp_max
        row.curve = format_curve(source.curve)


# -- operators ------------------------------------------------------------------------


class DDFA_OT_retarget(bpy.types.Operator):
    """Animate the avatar's shape keys (and head) from the captured face's take"""

    bl_idname = "ddfa.retarget"
    bl_label = "Retarget"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        from .operators import poll_with_reason

        return poll_with_reason(cls, retarget_blocker(context))

    def execute(self, context):
        from ..core.retarget import default_mapping
        from ..core.take import Take
        from . import headless, preferences, properties

        settings = context.scene.ddfa_retarget
        face = settings.source_face
        try:
            stored = face.ddfa_capture if properties.is_registered() else None
            take_path = bpy.path.abspath(stored.take_path) if stored and stored.take_path else ""
            if not os.path.isfile(take_path):
                raise CaptureError(
                    f"Take file of {face.name} not found ({take_path or 'none stored'}): set its Take path."
                )
            take = Take.load(take_path)
            if not settings.rows:
                rows_from_mapping(settings.rows, default_mapping())
            head_target, head_bone = _head_choice(settings)
            result = retarget.retarget_object(
                context.scene, take, settings.avatar,
                face_model=headless.load_face_model(preferences.models_dir(context)),
                mapping=mapping_from_rows(settings.rows),
                track=stored.track,
                neutral=(settings.neutral_first, settings.neutral_last) if settings.use_neutral_range else None,
                eyes=settings.eyes,
                head_target=head_target,
                head_bone=head_bone,
                axis_correction=tuple(settings.axis_correction.to_quaternion()),
                head_reference=settings.head_reference,
                mode=settings.mode,
                captured=face,
                start_frame=stored.start_frame,
                smoothing=properties.read_smoothing(stored.smoothing),
            )
        except CaptureError as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        lines = result.report.lines()
        settings.report = "\n".join(lines[1:])
        summary = f"Retarget onto {settings.avatar.name}: {lines[0]}"
        if len(lines) > 1:  # one report: the summary and what was not matched
            self.report({"WARNING"}, f"{summary}; {'; '.join(lines[1:])}")
        else:
            self.report({"INFO"}, summary)
        return {"FINISHED"}


def _head_choice(settings):
    if settings.head_mode == "none":
        return None, None
    target = settings.head_object or settings.avatar
    if settings.head_mode == "bone":
        if target.type != "ARMATURE" or not settings.head_bone:
            raise CaptureError("Choose an armature and its head bone for the head rotation.")
        return target, settings.head_bone
    return target, None


class DDFA_OT_mapping_reset(bpy.types.Operator):
    """Fill the mapping with one row per ARKit channel onto the same-named key"""

    bl_idname = "ddfa.mapping_reset"
    bl_label = "Default Mapping"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        from ..core.retarget import default_mapping

        rows_from_mapping(context.scene.ddfa_retarget.rows, default_mapping())
        return {"FINISHED"}


class DDFA_OT_mapping_add(bpy.types.Operator):
    """Add a mapping row (or remove the active one)"""

    bl_idname = "ddfa.mapping_add"
    bl_label = "Add Mapping Row"
    bl_options = {"REGISTER", "UNDO"}

    remove: BoolProperty(default=False, options={"SKIP_SAVE"})

    def execute(self, context):
        settings = context.scene.ddfa_retarget
        if self.remove:
            if settings.rows:
                settings.rows.remove(settings.active_row)
                settings.active_row = max(0, min(settings.active_row, len(settings.rows) - 1))
        else:
            settings.rows.add()
            settings.active_row = len(settings.rows) - 1
        return {"FINISHED"}


class DDFA_OT_mapping_load(bpy.types.Operator, ImportHelper):
    """Load a mapping preset (JSON)"""

    bl_idname = "ddfa.mapping_load"
    bl_label = "Load Mapping"
    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    def execute(self, context):
        from ..core.retarget import Mapping

        try:
            rows_from_mapping(context.scene.ddfa_retarget.rows, Mapping.load(self.filepath))
        except CaptureError as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        return {"FINISHED"}


class DDFA_OT_mapping_save(bpy.types.Operator, ExportHelper):
    """Save the mapping as a preset (JSON)"""

    bl_idname = "ddfa.mapping_save"
    bl_label = "Save Mapping"
    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    def execute(self, context):
        try:
            mapping = mapping_from_rows(context.scene.ddfa_retarget.rows)
            mapping.name = os.path.splitext(os.path.basename(self.filepath))[0]
            mapping.save(self.filepath)
        except CaptureError as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        return {"FINISHED"}


class DDFA_OT_export_animation(bpy.types.Operator, ExportHelper):
    """Export the avatar (or the captured face) with its shape-key animation"""

    bl_idname = "ddfa.export_animation"
    bl_label = "Export Animation"
    filename_ext = ".glb"
    filter_glob: StringProperty(default="*.glb;*.gltf;*.fbx", options={"HIDDEN"})

    file_format: EnumProperty(name="Format", items=[
        ("GLB", "glTF Binary (.glb)", ""), ("GLTF", "glTF Separate (.gltf)", ""), ("FBX", "FBX (.fbx)", ""),
    ], default="GLB")
    what: EnumProperty(name="Export", items=[
        ("avatar", "Avatar", "The retargeted avatar (and its head armature)"),
        ("captured", "Captured Face", "The captured BFM face mesh"),
    ], default="avatar")

    @classmethod
    def poll(cls, context):
        from .operators import poll_with_reason

        settings = context.scene.ddfa_retarget
        ready = settings.avatar is not None or settings.source_face is not None
        return poll_with_reason(cls, "" if ready else "Choose an avatar or a captured face")

    def check(self, context):
        self.filename_ext = retarget.EXPORT_FORMATS[self.file_format]
        return super().check(context)

    def execute(self, context):
        settings = context.scene.ddfa_retarget
        objects = [settings.source_face] if self.what == "captured" else [settings.avatar]
        if self.what == "avatar" and settings.head_mode != "none" and settings.head_object is not None:
            objects.append(settings.head_object)
        objects = [o for o in objects if o is not None]
        if not objects:
            self.report({"ERROR"}, "Choose the avatar or captured face to export first.")
            return {"CANCELLED"}
        try:
            retarget.export_animation(objects, self.filepath, self.file_format)
        except CaptureError as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Exported {', '.join(o.name for o in objects)} to {self.filepath}")
        return {"FINISHED"}


class DDFA_OT_export_channels(bpy.types.Operator, ExportHelper):
    """Export the captured face's channels: Live Link Face CSV, or a CSV / JSON table"""

    bl_idname = "ddfa.export_channels"
    bl_label = "Export Channels"
    filename_ext = ".csv"
    filter_glob: StringProperty(default="*.csv;*.json", options={"HIDDEN"})

    file_format: EnumProperty(name="Format", items=[
        ("LIVE_LINK", "Live Link Face CSV", "Epic's Live Link Face layout (52 ARKit channels, head, eyes)"),
        ("CSV", "Channels CSV", "Every channel of the take as a CSV table"),
        ("JSON", "Channels JSON", "Every channel of the take as JSON"),
    ], default="LIVE_LINK")

    @classmethod
    def poll(cls, context):
        from .operators import poll_with_reason

        ready = context.scene.ddfa_retarget.source_face is not None
        return poll_with_reason(cls, "" if ready else "Choose a captured face")

    def check(self, context):
        self.filename_ext = ".json" if self.file_format == "JSON" else ".csv"
        return super().check(context)

    def execute(self, context):
        from ..core import exports, pose
        from ..core.arkit import solve_arkit
        from ..core.take import Take
        from . import headless, preferences, properties

        settings = context.scene.ddfa_retarget
        face = settings.source_face
        try:
            if face is None or not properties.is_registered() or not face.ddfa_capture.take_path:
                raise CaptureError("Choose a captured face (with its take file) to export.")
            take = Take.load(bpy.path.abspath(face.ddfa_capture.take_path))
            track = face.ddfa_capture.track
            model = headless.load_face_model(preferences.models_dir(context))
            neutral = (settings.neutral_first, settings.neutral_last) if settings.use_neutral_range else None
            if self.file_format == "LIVE_LINK":
                weights = solve_arkit(take, model, track=track, neutral=neutral, eyes=settings.eyes)
                rows = take.for_track(track)
                _, rotation, _ = pose.decompose_pose(pose.split_param(rows.param)[0])
                exports.write_live_link_csv(self.filepath, weights, rotation, take.fps)
            else:
                columns, values = exports.take_table(take, model, track=track, neutral=neutral, eyes=settings.eyes)
                if self.file_format == "CSV":
                    exports.write_table_csv(self.filepath, columns, values)
                else:
                    exports.write_table_json(self.filepath, columns, values, fps=take.fps)
        except CaptureError as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Exported {self.filepath}")
        return {"FINISHED"}


# -- UI -------------------------------------------------------------------------------


class DDFA_UL_mapping(bpy.types.UIList):
    """Mapping rows, one line each so they read in the sidebar: enabled, then the channel
    (``source -> target`` when they differ) and the gain when it is not 1; the active
    row's fields are edited under the list."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        row = layout.row(align=True)
        row.prop(item, "enabled", text="")
        sub = row.row(align=True)
        sub.active = item.enabled
        text = item.source if item.target in ("", item.source) else f"{item.source} \u2192 {item.target}"
        if abs(item.gain - 1.0) > 1e-6:
            text += f"  \u00d7{item.gain:g}"
        sub.label(text=text)


def retarget_blocker(context) -> str:
    """Why Retarget cannot run now ("" when it can)."""
    settings = context.scene.ddfa_retarget
    if settings.source_face is None:
        return "Choose a captured face"
    if settings.avatar is None:
        return "Choose an avatar mesh"
    from .operators import busy_blocker

    return busy_blocker(context)


def _split(layout):
    layout.use_property_split = True
    layout.use_property_decorate = False
    return layout


class DDFA_PT_retarget(bpy.types.Panel):
    bl_idname = "DDFA_PT_retarget"
    bl_label = "Retarget"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY

    def draw(self, context):
        from .panel import draw_reason, sub_panel

        layout = _split(self.layout)
        settings = context.scene.ddfa_retarget
        layout.prop(settings, "source_face", text="Face")
        layout.prop(settings, "avatar")
        layout.prop(settings, "mode")
        layout.prop(settings, "eyes")
        row = layout.row()
        row.scale_y = 1.4
        row.operator(DDFA_OT_retarget.bl_idname, icon="ARMATURE_DATA")
        draw_reason(layout, retarget_blocker(context))
        if settings.report:
            box = layout.box().column(align=True)
            box.label(text="Not matched", icon="INFO")
            scale = context.preferences.system.ui_scale
            width = max(20, int((context.region.width - 30 * scale) / (CHAR_WIDTH_PX * scale)))
            for line in settings.report.splitlines():
                for part in textwrap.wrap(line, width, subsequent_indent="  "):
                    box.label(text=part)

        body = sub_panel(layout, context, "retarget_head", "Head")
        if body is not None:
            _draw_head(body, settings)
        body = sub_panel(layout, context, "retarget_mapping", "Mapping")
        if body is not None:
            _draw_mapping(body, settings)
        body = sub_panel(layout, context, "retarget_export", "Export")
        if body is not None:
            column = body.column(align=True)
            column.operator(DDFA_OT_export_animation.bl_idname, text="Animation (glTF, FBX)", icon="EXPORT")
            column.operator(DDFA_OT_export_channels.bl_idname, text="Channels (CSV, JSON)", icon="TEXT")


def _draw_head(layout, settings) -> None:
    layout.prop(settings, "head_mode", text="Rotate")
    column = layout.column()
    column.active = settings.head_mode != "none"
    column.prop(settings, "head_object", text="Object")
    head = settings.head_object
    if settings.head_mode == "bone" and head is not None and head.type == "ARMATURE":
        column.prop_search(settings, "head_bone", head.data, "bones")
    column.prop(settings, "axis_correction", text="Axis Fix")
    column.prop(settings, "head_reference")


def _draw_mapping(layout, settings) -> None:
    layout.use_property_split = False
    row = layout.row()
    row.template_list("DDFA_UL_mapping", "", settings, "rows", settings, "active_row", rows=6)
    side = row.column(align=True)
    side.operator(DDFA_OT_mapping_add.bl_idname, text="", icon="ADD")
    side.operator(DDFA_OT_mapping_add.bl_idname, text="", icon="REMOVE").remove = True
    if 0 <= settings.active_row < len(settings.rows):
        item = settings.rows[settings.active_row]
        column = _split(layout.column(align=True))
        column.prop(item, "source")
        column.prop(item, "target")
        column.prop(item, "gain")
        column.prop(item, "offset")
        column.prop(item, "clamp_min")
        column.prop(item, "clamp_max")
        column.prop(item, "curve")
    row = layout.row(align=True)
    row.operator(DDFA_OT_mapping_reset.bl_idname, text="Default", icon="FILE_REFRESH")
    row.operator(DDFA_OT_mapping_load.bl_idname, text="Load", icon="FILEBROWSER")
    row.operator(DDFA_OT_mapping_save.bl_idname, text="Save", icon="FILE_TICK")
    column = _split(layout.column(heading="Neutral"))
    column.prop(settings, "use_neutral_range", text="Frame Range")
    sub = column.column(align=True)
    sub.active = settings.use_neutral_range
    sub.prop(settings, "neutral_first")
    sub.prop(settings, "neutral_last")


CLASSES = (
    DDFA_MappingRow,
    DDFA_RetargetSettings,
    DDFA_OT_retarget,
    DDFA_OT_mapping_reset,
    DDFA_OT_mapping_add,
    DDFA_OT_mapping_load,
    DDFA_OT_mapping_save,
    DDFA_OT_export_animation,
    DDFA_OT_export_channels,
    DDFA_UL_mapping,
    DDFA_PT_retarget,
)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.ddfa_retarget = PointerProperty(type=DDFA_RetargetSettings)


def unregister() -> None:
    if hasattr(bpy.types.Scene, "ddfa_retarget"):
        del bpy.types.Scene.ddfa_retarget
    for cls in reversed(CLASSES):
        if getattr(cls, "is_registered", False):
            bpy.utils.unregister_class(cls)
