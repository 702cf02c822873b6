"""The sidebar panel: View3D > Sidebar > Face Capture.

Capture: source, model, options, smoothing, the Capture button (a progress
bar and "Esc to cancel" while it runs). Captured Face (when the active object
is a baked face): its take, its smoothing settings and Re-smooth.
"""

import bpy

from . import operators, preferences, properties, review

CATEGORY = "Face Capture"


def _draw_smoothing(layout, smoothing) -> None:
    row = layout.row(align=True)
    row.prop(smoothing, "preset", text="Preset")
    if smoothing.preset != "custom" and properties.preset_name(
        properties.read_smoothing(smoothing)
    ) != smoothing.preset:
        row.label(text="(modified)")
    column = layout.column(align=True)
    column.prop(smoothing, "rotation")
    column.prop(smoothing, "translation")
    column.prop(smoothing, "expression")
    row = layout.row(align=True)
    row.prop(smoothing, "bridge_gaps")
    sub = row.row(align=True)
    sub.active = smoothing.bridge_gaps
    sub.prop(smoothing, "max_gap", text="Max")
    _draw_flagged(layout, smoothing)


def _draw_flagged(layout, smoothing) -> None:
    """Flagged-frame settings (see ``..core.confidence``)."""
    layout.prop(smoothing, "min_confidence")
    layout.prop(smoothing, "keep_flagged")


def _draw_flagged_count(layout, obj) -> None:
    """How many frames of a baked face are flagged (marked on the timeline)."""
    if review.FLAGGED_PROPERTY not in obj:
        return
    flagged = int(obj[review.FLAGGED_PROPERTY])
    text = f"{flagged} flagged frame{'s' if flagged != 1 else ''}: see the markers" if flagged else "No flagged frames"
    layout.label(text=text, icon="ERROR" if flagged else "CHECKMARK")


class DDFA_PT_capture(bpy.types.Panel):
    bl_idname = "DDFA_PT_capture"
    bl_label = "Face Capture"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        settings = context.scene.ddfa_capture
        job = context.window_manager.ddfa_job

        layout.prop(settings, "source_kind", expand=True)
        if settings.source_kind == "FILE":
            layout.prop(settings, "source_file")
        else:
            layout.prop(settings, "source_folder")
            layout.prop(settings, "sequence_fps")
        layout.prop(settings, "model")
        layout.prop(settings, "record_eyes")
        layout.prop(settings, "max_faces")
        if settings.max_faces > 1:
            layout.prop(settings, "tracks")

        column = layout.column(heading="Bake")
        column.prop(settings, "start_frame")
        column.prop(settings, "missing")
        column.prop(settings, "key_camera")
        column.prop(settings, "lean_keys")
        column.prop(settings, "use_footage")
        column.prop(settings, "take_folder")

        missing = preferences.missing_models(preferences.models_dir(context))
        if missing:
            box = layout.box()
            box.label(text="Models not prepared", icon="ERROR")
            box.operator("ddfa.prepare_models", icon="IMPORT")

        if job.running:
            layout.progress(factor=job.progress, type="BAR", text=job.label or "Working")
            if job.cancellable:
                layout.label(text="Esc to cancel", icon="CANCEL")
        else:
            row = layout.row()
            row.scale_y = 1.5
            row.operator(operators.DDFA_OT_capture.bl_idname, icon="REC")


class DDFA_PT_capture_smoothing(bpy.types.Panel):
    bl_idname = "DDFA_PT_capture_smoothing"
    bl_label = "Smoothing"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY
    bl_parent_id = "DDFA_PT_capture"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        self.layout.use_property_split = True
        _draw_smoothing(self.layout, context.scene.ddfa_capture.smoothing)


class DDFA_PT_captured_face(bpy.types.Panel):
    bl_idname = "DDFA_PT_captured_face"
    bl_label = "Captured Face"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY

    @classmethod
    def poll(cls, context):
        return operators.captured_object(context) is not None

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        stored = operators.captured_object(context).ddfa_capture
        layout.prop(stored, "take_path")
        layout.label(text=f"Track {stored.track}")
        _draw_smoothing(layout, stored.smoothing)
        _draw_flagged_count(layout, operators.captured_object(context))
        layout.prop(stored, "missing")
        layout.prop(stored, "lean_keys")
        row = layout.row()
        row.scale_y = 1.3
        row.operator(operators.DDFA_OT_resmooth.bl_idname, icon="FILE_REFRESH")
        layout.operator(
            operators.DDFA_OT_capture.bl_idname, text="Capture Again Into This Face", icon="REC"
        ).replace_active = True


CLASSES = (DDFA_PT_capture, DDFA_PT_capture_smoothing, DDFA_PT_captured_face)
