"""The sidebar panels: View3D > Sidebar > Face Capture.

Face Capture: the models box (until they are prepared), source, model,
faces, the Capture button (a progress bar and "Esc to cancel" while it
runs); its sub-panels Options and Smoothing are closed by default. Captured
Face (when the active object is a baked face): its take, smoothing preset,
Re-smooth and Capture Again Into This Face, with the smoothing values in a
closed sub-panel. Sub-panels are layout panels (:func:`sub_panel`) whose
open state is ``WindowManager.ddfa_panels``. A greyed-out button always has
a line under it saying why (the operators' ``*_blocker`` functions, also
their tooltips).

Everything reads at the default sidebar width (291 px at 1080p): short
labels, checkboxes grouped under a heading, one value per row.
"""

import bpy

from . import operators, preferences, properties, review

CATEGORY = "Face Capture"


def draw_reason(layout, reason: str) -> None:
    """A line saying why the button above is greyed out (nothing when it is not)."""
    if reason:
        layout.label(text=reason, icon="INFO")


def _split(layout):
    layout.use_property_split = True
    layout.use_property_decorate = False
    return layout


def _draw_preset(layout, smoothing) -> None:
    layout.prop(smoothing, "preset")
    if smoothing.preset != "custom" and properties.preset_name(
        properties.read_smoothing(smoothing)
    ) != smoothing.preset:
        layout.label(text="Values edited since the preset", icon="INFO")


def _draw_smoothing_values(layout, smoothing) -> None:
    column = layout.column(align=True)
    column.prop(smoothing, "rotation")
    column.prop(smoothing, "translation")
    column.prop(smoothing, "expression")
    layout.prop(smoothing, "bridge_gaps")
    row = layout.row()
    row.active = smoothing.bridge_gaps
    row.prop(smoothing, "max_gap")
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
    text = f"{flagged} flagged frame{'s' if flagged != 1 else ''}: see markers" if flagged else "No flagged frames"
    layout.label(text=text, icon="ERROR" if flagged else "CHECKMARK")


def sub_panel(layout, context, name: str, label: str):
    """A closed-by-default sub-panel inside a panel (a layout panel whose open state is
    ``WindowManager.ddfa_panels.<name>``): its body layout, or None while it is closed."""
    header, body = layout.panel_prop(context.window_manager.ddfa_panels, name)
    header.label(text=label)
    return _split(body) if body is not None else None


class DDFA_PT_capture(bpy.types.Panel):
    bl_idname = "DDFA_PT_capture"
    bl_label = "Face Capture"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY

    def draw(self, context):
        layout = _split(self.layout)
        settings = context.scene.ddfa_capture
        job = context.window_manager.ddfa_job

        if preferences.missing_models(preferences.models_dir(context)):
            box = layout.box().column()
            box.label(text="Models not prepared", icon="ERROR")
            box.operator(operators.DDFA_OT_prepare_models.bl_idname, icon="IMPORT")
            draw_reason(box, operators.busy_blocker(context))

        layout.prop(settings, "source_kind", expand=True)
        if settings.source_kind == "FILE":
            layout.prop(settings, "source_file")
        else:
            layout.prop(settings, "source_folder")
            layout.prop(settings, "sequence_fps")
        layout.prop(settings, "model")
        layout.prop(settings, "max_faces")
        if settings.max_faces > 1:
            layout.prop(settings, "tracks")

        if job.running:
            layout.progress(factor=job.progress, type="BAR", text=job.label or job.title)
            if job.cancellable:
                layout.label(text="Esc to cancel", icon="CANCEL")
        else:
            row = layout.row()
            row.scale_y = 1.5
            row.operator(operators.DDFA_OT_capture.bl_idname, icon="REC")
            draw_reason(layout, operators.capture_blocker(context))

        body = sub_panel(layout, context, "capture_options", "Options")
        if body is not None:
            body.column(heading="MediaPipe").prop(settings, "record_eyes")
            body.prop(settings, "start_frame")
            body.prop(settings, "missing")
            column = body.column(heading="Bake")
            column.prop(settings, "key_camera")
            column.prop(settings, "lean_keys")
            column.prop(settings, "use_footage")
            body.prop(settings, "take_folder")
        body = sub_panel(layout, context, "capture_smoothing", "Smoothing")
        if body is not None:
            _draw_preset(body, settings.smoothing)
            _draw_smoothing_values(body, settings.smoothing)


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
        layout = _split(self.layout)
        obj = operators.captured_object(context)
        stored = obj.ddfa_capture
        layout.label(text=f"{obj.name}, track {stored.track}", icon="OUTLINER_OB_MESH")
        layout.prop(stored, "take_path")
        _draw_preset(layout, stored.smoothing)
        _draw_flagged_count(layout, obj)
        row = layout.row()
        row.scale_y = 1.3
        row.operator(operators.DDFA_OT_resmooth.bl_idname, icon="FILE_REFRESH")
        resmooth_reason = operators.resmooth_blocker(context)
        draw_reason(layout, resmooth_reason)
        layout.operator(
            operators.DDFA_OT_capture.bl_idname, text="Capture Again Into This Face", icon="REC"
        ).replace_active = True
        capture_reason = operators.capture_blocker(context, replace_active=True)
        draw_reason(layout, capture_reason if capture_reason != resmooth_reason else "")

        body = sub_panel(layout, context, "face_smoothing", "Smoothing and Keys")
        if body is not None:
            _draw_smoothing_values(body, stored.smoothing)
            body.prop(stored, "missing")
            body.column(heading="Keys").prop(stored, "lean_keys", text="Lean")


CLASSES = (DDFA_PT_capture, DDFA_PT_captured_face)
