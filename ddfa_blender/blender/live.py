"""Live capture in Blender: Start Live, Record, Stop (View3D > Sidebar > Face Capture > Live).

The pure :class:`..core.live.LiveSession` grabs and tracks on its own threads;
on the main thread a window-manager timer of the modal operator
:class:`DDFA_OT_live` hands its newest result to :class:`LiveDriver`, which
poses the face object (head transform and expression key values). ``bpy`` is
touched only there.

What is driven: the active captured face (a face baked by Capture; its stored
expression scale and camera distance are used, so the live face moves as its
bake does), or, with no captured face selected, a preview face built from the
first live frame. An avatar retargeted in ``"drivers"`` mode
(:mod:`.retarget`) follows the captured face, so it moves live with it (its
channels keyed as ``ddfa_src_*`` properties hold their values meanwhile).
The head is always moved in front of a still camera (a face
baked in camera mode has its camera put at rest for the live view). A
preview face is placed like a new capture (clear of what the scene shows,
:func:`.scene.free_spot`), where Stop and Bake puts the baked face. While
live, the face's own animation is detached and its expression sliders are
widened to [-10, 10], so live values are not clamped; all of it is put back
when live ends.

Record / Stop: Record starts a take (:meth:`LiveSession.start_recording`);
Stop ends live and bakes the recording exactly as the Capture button bakes an
offline capture (the take saved in the take folder, the scene's smoothing and
bake options, :func:`.bake.bake_take` into the driven captured face or
:func:`.bake.bake_tracks` for new faces), so the baked action equals the
recorded take. Esc ends live without baking and leaves the scene as it was.

Releasing the camera: ending live in any way stops the session (threads
joined, device released). Loading another file (a ``load_pre`` handler) and
disabling the add-on (:func:`unregister`) release every running session too;
after that the driver never touches ``bpy`` data again (it may be gone). A
``load_post`` handler clears the panel's live state a loaded file may carry.
No ``from __future__ import annotations``: Blender reads the property
annotations as objects.
"""

import os

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, IntProperty, PointerProperty, StringProperty

from ..core import pose as pose_mod
from ..core.errors import CaptureError
from . import bake, bake_channels, mesh, operators, preferences, progress, properties
from . import scene as scene_mod

TIMER_STEP_S = 1.0 / 60.0
PREVIEW_NAME = "live.preview"
TAKE_STEM = "live"
LIVE_SLIDER_RANGE = (-10.0, 10.0)
# A preview face's expression keys span this many regressor standard deviations.
PREVIEW_EXPRESSION_SPREAD = 3.0
EXPR = slice(52, 62)
SHAPE = slice(12, 52)

# Running drivers, so a file load or disabling the add-on can release their cameras
# (handlers are global in Blender; this list is the add-on's only module state).
_RUNNING = []


def live_pose(param, roi, image_size, distance, expression_scale, previous_rotation=None,
              lens_mm=pose_mod.DEFAULT_LENS_MM):
    """Head rotation (4,), location (3,), uniform scale and expression slider values (10,)
    for one result, as :func:`.bake_channels.track_channels` keys them in head mode.

    ``distance``: the face's camera distance in metres (its bake's median);
    ``expression_scale`` (10,): coefficient per slider unit; the rotation's
    sign is chosen nearest ``previous_rotation`` so it stays continuous.
    """
    param = np.asarray(param, dtype=np.float64)
    head = pose_mod.head_pose_blender(param[None], np.asarray(roi, dtype=np.float64)[None], image_size, lens_mm)
    rotation = head.rotation[0]
    if previous_rotation is not None and np.dot(rotation, previous_rotation) < 0.0:
        rotation = -rotation
    scale = float(distance) / float(head.location[0, 1])
    location = head.location[0] * scale
    expression = param[EXPR] / np.asarray(expression_scale, dtype=np.float64)
    return rotation, location, scale, expression


class _SavedState:
    """What live changes on the driven face (and its camera), to put back when it ends."""

    def __init__(self, obj, camera):
        self.items = []
        for id_data in (obj, obj.data.shape_keys, camera):
            if id_data is None:
                continue
            anim = id_data.animation_data
            action = anim.action if anim is not None else None
            slot = getattr(anim, "action_slot", None) if action is not None else None
            self.items.append((id_data, action, slot))
        self.transforms = [
            (o, o.rotation_mode, tuple(o.rotation_quaternion), tuple(o.location), tuple(o.scale))
            for o in (obj, camera) if o is not None
        ]
        blocks = obj.data.shape_keys.key_blocks if obj.data.shape_keys else []
        self.keys = [(b, b.value, b.slider_min, b.slider_max) for b in blocks]

    def detach(self) -> None:
        """Take the animation off (live sets the values directly) and widen the sliders."""
        for id_data, action, _ in self.items:
            if action is not None:
                id_data.animation_data.action = None
        for block, _, _, _ in self.keys:
            block.slider_min, block.slider_max = LIVE_SLIDER_RANGE

    def restore(self) -> None:
        for id_data, action, slot in self.items:
            if action is not None:
                anim = id_data.animation_data or id_data.animation_data_create()
                anim.action = action
                if slot is not None:
                    anim.action_slot = slot
        for obj, mode, rotation, location, scale in self.transforms:
            obj.rotation_mode = "QUATERNION"
            obj.rotation_quaternion, obj.location, obj.scale = rotation, location, scale
            obj.rotation_mode = mode
        for block, value, low, high in self.keys:
            block.slider_min, block.slider_max = low, high
            block.value = value


class LiveDriver:
    """The main-thread half of live capture: poses a face from a :class:`LiveSession`.

    ``target``: the captured face object to drive, or None for a preview face
    made from the first result. Call :meth:`start`, then :meth:`step` from a
    timer (or :meth:`apply_live_result` with results directly), and end with
    :meth:`finish` (bake the recording) or :meth:`cancel` (scene as it was).

    ``distance`` (metres) and ``expression_scale`` (10,) map results to the
    face as :func:`live_pose` does: the captured face's stored values, or for a
    preview face the first result's distance and ``PREVIEW_EXPRESSION_SPREAD``
    regressor standard deviations.
    """

    def __init__(self, session, target=None):
        self.session = session
        self.target = target
        self.track = target.ddfa_capture.track if target is not None and properties.is_registered() else None
        self.preview = None
        self.frames_applied = 0
        self.last_take = None
        self.released = False
        self.on_release = None  # called once by release() (the operator removes its timer)
        self._saved = None
        self._sequence = 0
        self._rotation = None
        self.distance = None
        self.expression_scale = None
        self._spot = None

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> "LiveDriver":
        if self.target is not None:
            camera = _camera_of(self.target)
            self._saved = _SavedState(self.target, camera)
            self._saved.detach()
            if camera is not None:
                camera.rotation_mode = "QUATERNION"
                camera.rotation_quaternion = bake_channels.CAMERA_REST_QUATERNION
                camera.location = (0.0, 0.0, 0.0)
            self.distance = self.target.get(bake.DISTANCE_PROPERTY)
            scale = self.target.get(bake.EXPRESSION_SCALE_PROPERTY)
            self.expression_scale = None if scale is None else np.array(scale, dtype=np.float64)
        _RUNNING.append(self)
        try:
            self.session.start()
        except BaseException:
            self._end_session()
            self._put_back()
            raise
        return self

    def step(self, context) -> bool:
        """Apply the session's newest result if it is new; True when the face moved.

        Re-raises the session's error (for example the camera was unplugged).
        """
        result = self.session.latest()
        if result is None or result.sequence == self._sequence:
            return False
        return self.apply_live_result(context, result)

    def apply_live_result(self, context, result) -> bool:
        """Pose the face from one :class:`..core.live.LiveResult` (main thread only).

        Follows the driven track (the lowest track id present when it is
        absent); holds the last pose when no face is found. True when posed.
        """
        self._sequence = result.sequence
        face = result.face(self.track) or result.face(None)
        if face is None or not np.isfinite(face.param).all():
            return False
        if self.track != face.track_id:
            self.track, self._rotation = face.track_id, None
        obj = self.target or self.preview or self._make_preview(context, face)
        if self.expression_scale is None:
            self.expression_scale = self._preview_expression_scale()
        if self.distance is None:
            self.distance = float(
                pose_mod.head_pose_blender(face.param[None], face.roi[None], result.image_size).location[0, 1]
            )
        rotation, location, scale, expression = live_pose(
            face.param, face.roi, result.image_size, self.distance, self.expression_scale, self._rotation
        )
        self._rotation = rotation
        if obj == self.preview:
            location = location + self._preview_spot(context, location)
        obj.rotation_mode = "QUATERNION"
        obj.rotation_quaternion = rotation
        obj.location = location
        obj.scale = (scale, scale, scale)
        blocks = obj.data.shape_keys.key_blocks if obj.data.shape_keys else {}
        for index, value in enumerate(expression):
            block = blocks.get(mesh.expression_key_name(index))
            if block is not None:
                block.value = float(np.clip(value, *LIVE_SLIDER_RANGE))
        self.frames_applied += 1
        return True

    def set_recording(self, recording: bool) -> None:
        """Start or end (and keep in :attr:`last_take`) the session's recording."""
        if recording and not self.session.recording:
            self.session.start_recording()
        elif not recording and self.session.recording:
            self.last_take = self.session.stop_recording()

    def finish(self, context, settings=None) -> list:
        """End live and bake what was recorded like an offline capture; the new/baked objects.

        ``settings``: the scene's capture settings (``Scene.ddfa_capture``: take
        folder, smoothing and bake options). Nothing recorded: nothing baked,
        the scene as it was. Raises ``CaptureError`` (scene as it was) when the
        recording cannot be baked; its take file is then removed.
        """
        take = self.last_take
        try:
            if self.session.recording:
                take = self.session.stop_recording()
        finally:
            self._end_session()
            self._put_back()
        if take is None or self.released:
            return []
        self.last_take = take
        return self._bake(context, take, settings or context.scene.ddfa_capture)

    def cancel(self, context=None) -> None:
        """End live without baking; the scene as it was."""
        self._end_session()
        self._put_back()

    def release(self) -> None:
        """Stop the session and free the camera without touching ``bpy`` data (file load, disable)."""
        if not self.released:
            self.released = True
            self._end_session()
            if self.on_release is not None:
                self.on_release()

    # -- internals -------------------------------------------------------------------

    def _end_session(self) -> None:
        self.session.stop()
        if self in _RUNNING:
            _RUNNING.remove(self)

    def _put_back(self) -> None:
        if self.released:
            return
        if self._saved is not None:
            self._saved.restore()
            self._saved = None
        if self.preview is not None:
            data = self.preview.data
            bpy.data.objects.remove(self.preview)
            if data.users == 0:
                bpy.data.meshes.remove(data)
            self.preview = None

    def _preview_spot(self, context, location) -> np.ndarray:
        """Where the preview's camera would be (world, metres): chosen on the first pose
        like a capture's origin (:func:`.scene.free_spot`), so the preview face shows
        where Stop and Bake will put the baked one."""
        if self._spot is None:
            low, high = scene_mod.capture_extent([location])
            self._spot = np.array(scene_mod.free_spot(context.scene, low, high, ignore=(self.preview,)))
        return self._spot

    def _preview_expression_scale(self) -> np.ndarray:
        spread = np.asarray(self.session.regressor.param_std[EXPR], dtype=np.float64)
        return PREVIEW_EXPRESSION_SPREAD * spread

    def _make_preview(self, context, face):
        face_model = self.session.face_model
        neutral = bake_channels.identity_vertices(face_model, face.param[SHAPE])
        self.expression_scale = self._preview_expression_scale()
        offsets = bake_channels.expression_offsets(face_model, self.expression_scale)
        data = mesh.build_face_mesh(PREVIEW_NAME, face_model, neutral)
        obj = bpy.data.objects.new(PREVIEW_NAME, data)
        context.scene.collection.objects.link(obj)
        mesh.set_face_shapes(obj, neutral, offsets)
        for block in obj.data.shape_keys.key_blocks:
            block.slider_min, block.slider_max = LIVE_SLIDER_RANGE
        self.preview = obj
        return obj

    def _bake(self, context, take, settings) -> list:
        take_path = operators.unique_take_path(operators.take_folder(settings), TAKE_STEM)
        take.save(take_path)
        options = dict(
            face_model=self.session.face_model,
            smoothing=properties.read_smoothing(settings.smoothing),
            start_frame=settings.start_frame,
            key_camera=settings.key_camera,
            missing=settings.missing,
            footage=take.source if settings.use_footage and os.path.isfile(take.source) else None,
            take_path=take_path,
        )
        try:
            if self.target is not None:
                valid = [t for t in take.track_ids() if take.valid[take.track == t].any()]
                track = self.track if self.track in valid else (valid[0] if valid else 0)
                return [bake.bake_take(context.scene, take, track=track, target=self.target, **options)]
            return bake.bake_tracks(context.scene, take, **options)
        except BaseException:
            os.unlink(take_path)
            raise


def _camera_of(obj):
    """The camera a captured face was baked with, when it was baked in camera mode."""
    if not properties.is_registered() or not obj.ddfa_capture.key_camera:
        return None
    camera = obj.ddfa_capture.camera
    return camera if camera is not None and camera.name in bpy.data.objects else None


# -- Blender UI ----------------------------------------------------------------------


def open_live_source(settings):
    """The frame source the Live panel names (CaptureError with the fix if it cannot open)."""
    from ..core.camera import CameraSource, RealtimeFileSource

    if settings.source_kind == "FILE":
        path = bpy.path.abspath(settings.video_file)
        if not settings.video_file or not os.path.isfile(path):
            raise CaptureError("Choose a video file to play as a live source (Face Capture > Live).")
        return RealtimeFileSource(path)
    return CameraSource(
        settings.device.strip() or "0",
        width=settings.width or None,
        height=settings.height or None,
        fps=settings.fps or None,
    )


class DDFA_LiveSettings(bpy.types.PropertyGroup):
    """The Live panel's settings (``Scene.ddfa_live``)."""

    source_kind: EnumProperty(
        name="Live Source", items=[
            ("CAMERA", "Camera", "A webcam (index or device path) or a stream URL"),
            ("FILE", "Video", "A video file played at its real-time pace, as a camera would"),
        ], default="CAMERA",
    )
    device: StringProperty(
        name="Camera", default="0",
        description="Camera index (0 = first), device path (/dev/video0) or stream URL (rtsp://...)",
    )
    video_file: StringProperty(name="Video", subtype="FILE_PATH")
    width: IntProperty(name="Width", description="Requested width (0: the camera's default)", default=0, min=0)
    height: IntProperty(name="Height", description="Requested height (0: the camera's default)", default=0, min=0)
    fps: IntProperty(name="FPS", description="Requested frame rate (0: the camera's default)", default=0, min=0)
    max_faces: IntProperty(name="Faces", description="Faces tracked at once", default=1, min=1, max=8)


class DDFA_LiveState(bpy.types.PropertyGroup):
    """The running live session, for the panel (``WindowManager.ddfa_live``)."""

    running: BoolProperty(default=False)
    recording: BoolProperty(default=False)
    stop_requested: BoolProperty(default=False)
    status: StringProperty(default="")


class DDFA_OT_live(bpy.types.Operator):
    """Track the camera live and drive the face in the viewport (Esc ends without baking)"""

    bl_idname = "ddfa.live"
    bl_label = "Start Live"
    bl_options = {"REGISTER"}

    _driver = None
    _timer = None

    @classmethod
    def poll(cls, context):
        return operators.poll_with_reason(cls, live_blocker(context))

    def execute(self, context):
        self.report({"ERROR"}, "Live capture needs Blender's window (it cannot run in background mode).")
        return {"CANCELLED"}

    def invoke(self, context, event):
        from ..core.live import LiveOptions, LiveSession

        if bpy.app.background or context.window is None:
            return self.execute(context)
        settings = context.scene.ddfa_live
        try:
            folder = operators.prepared_models_dir(context)
            source = open_live_source(settings)
        except CaptureError as err:
            self.report({"ERROR"}, operators.user_message(err))
            return {"CANCELLED"}
        options = LiveOptions(
            model=context.scene.ddfa_capture.model,
            models_dir=folder,
            threads=preferences.threads(context) or 1,
            max_faces=settings.max_faces,
        )
        self._driver = LiveDriver(LiveSession(source, options), operators.captured_object(context))
        try:
            self._driver.start()
        except CaptureError as err:
            self._driver = None
            self.report({"ERROR"}, operators.user_message(err))
            return {"CANCELLED"}
        notes = getattr(source, "notes", [])
        if notes:
            self.report({"WARNING"}, " ".join(notes))
        wm = context.window_manager
        self._timer = wm.event_timer_add(TIMER_STEP_S, window=context.window)
        self._driver.on_release = lambda: self._released(wm)
        state = wm.ddfa_live
        state.running, state.recording, state.stop_requested = True, False, False
        state.status = "Loading models"
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        driver = self._driver
        if driver is None or driver.released:
            return {"CANCELLED"}
        state = context.window_manager.ddfa_live
        if event.type == "ESC" and event.value == "PRESS":
            driver.cancel(context)
            self._end(context)
            self.report({"INFO"}, "Live ended (nothing baked)")
            return {"CANCELLED"}
        if event.type != "TIMER":  # Blender's events do not say which timer fired
            return {"PASS_THROUGH"}
        try:
            if state.stop_requested:
                objects = driver.finish(context)
                self._end(context)
                if objects:
                    self.report({"INFO"}, f"Recorded {len(driver.last_take.frames())} frames into "
                                + ", ".join(o.name for o in objects))
                else:
                    self.report({"INFO"}, "Live ended (nothing was recorded)")
                return {"FINISHED"}
            driver.set_recording(state.recording)
            driver.step(context)
        except CaptureError as err:
            driver.cancel(context)
            self._end(context)
            self.report({"ERROR"}, operators.user_message(err))
            return {"CANCELLED"}
        except BaseException:
            driver.cancel(context)
            self._end(context)
            raise  # a bug: let Blender print the traceback
        status = _status_line(driver.session)
        if status != state.status:
            state.status = status
            progress.redraw_sidebars(context.window_manager)
        return {"PASS_THROUGH"}

    def cancel(self, context):
        """Blender ends the operator (a window closes): end live without baking."""
        if self._driver is not None:
            self._driver.cancel(context)
            self._end(context)

    def _end(self, context) -> None:
        self._released(context.window_manager)
        self._driver = None
        progress.redraw_sidebars(context.window_manager)

    def _released(self, wm) -> None:
        """Remove the timer and clear the panel's state (also from a file load or disable)."""
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        state = getattr(wm, "ddfa_live", None)
        if state is not None:
            state.running = state.recording = state.stop_requested = False
            state.status = ""


def _status_line(session) -> str:
    if not session.ready:
        return "Loading models"
    stats = session.stats()
    return f"{stats.fps:.0f} fps, {stats.latency_ms:.0f} ms, {stats.dropped} dropped"


class DDFA_OT_live_record(bpy.types.Operator):
    """Start or end recording the live stream as a take"""

    bl_idname = "ddfa.live_record"
    bl_label = "Record"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return operators.poll_with_reason(cls, _live_stopped(context))

    def execute(self, context):
        state = context.window_manager.ddfa_live
        state.recording = not state.recording
        self.report({"INFO"}, "Recording" if state.recording else "Recording ended (Stop and Bake bakes it)")
        return {"FINISHED"}


class DDFA_OT_live_stop(bpy.types.Operator):
    """End live and bake the recording like a capture"""

    bl_idname = "ddfa.live_stop"
    bl_label = "Stop"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return operators.poll_with_reason(cls, _live_stopped(context))

    def execute(self, context):
        context.window_manager.ddfa_live.stop_requested = True  # the live operator ends and reports
        return {"FINISHED"}


def _live_stopped(context) -> str:
    state = getattr(context.window_manager, "ddfa_live", None)
    return "" if state is not None and state.running else "Live is not running"


class DDFA_PT_live(bpy.types.Panel):
    bl_idname = "DDFA_PT_live"
    bl_label = "Live"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Face Capture"

    def draw(self, context):
        from .panel import draw_reason

        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        settings = context.scene.ddfa_live
        state = context.window_manager.ddfa_live
        column = layout.column()
        column.enabled = not state.running
        column.row().prop(settings, "source_kind", expand=True)
        if settings.source_kind == "FILE":
            column.prop(settings, "video_file")
        else:
            column.prop(settings, "device")
            column.prop(settings, "width")
            column.prop(settings, "height")
            column.prop(settings, "fps")
        column.prop(settings, "max_faces")
        if not state.running:
            target = operators.captured_object(context)
            layout.label(text=f"Drives {target.name}" if target else "Drives a new preview face")
            row = layout.row()
            row.scale_y = 1.5
            row.operator(DDFA_OT_live.bl_idname, icon="PLAY")
            draw_reason(layout, live_blocker(context))
            return
        layout.label(text=state.status or "Live", icon="REC" if state.recording else "VIEW_CAMERA")
        row = layout.row(align=True)
        row.scale_y = 1.5
        row.operator(DDFA_OT_live_record.bl_idname, text="End Recording" if state.recording else "Record",
                     icon="PAUSE" if state.recording else "REC", depress=state.recording)
        row.operator(DDFA_OT_live_stop.bl_idname, text="Stop and Bake", icon="SNAP_FACE")
        layout.label(text="Esc ends live without baking", icon="CANCEL")


def live_blocker(context) -> str:
    """Why Start Live cannot run now ("" when it can)."""
    if context.scene is None or getattr(context.window_manager, "ddfa_live", None) is None:
        return "No scene"
    busy = operators.busy_blocker(context)
    if busy:
        return busy
    settings = context.scene.ddfa_live
    if settings.source_kind == "FILE":
        missing = operators.video_file_blocker(settings.video_file)
        if missing:
            return missing
    if preferences.missing_models(preferences.models_dir(context)):
        return "Prepare the models first"
    return ""


CLASSES = (DDFA_LiveSettings, DDFA_LiveState, DDFA_OT_live, DDFA_OT_live_record, DDFA_OT_live_stop, DDFA_PT_live)
POINTERS = (
    (bpy.types.Scene, "ddfa_live", DDFA_LiveSettings),
    (bpy.types.WindowManager, "ddfa_live", DDFA_LiveState),
)


@bpy.app.handlers.persistent
def release_on_load(*_args) -> None:
    """``load_pre`` handler: free every camera before another file replaces this one."""
    release_all()


@bpy.app.handlers.persistent
def clear_state_on_load(*_args) -> None:
    """``load_post`` handler: no live session or capture survives a load, whatever the
    file saved (the window manager's runtime state is saved with it)."""
    for wm in bpy.data.window_managers:
        state = getattr(wm, "ddfa_live", None)
        if state is not None:
            state.running = state.recording = state.stop_requested = False
            state.status = ""
        job = getattr(wm, "ddfa_job", None)
        if job is not None:
            job.running, job.progress, job.label = False, 0.0, ""


def release_all() -> None:
    """Stop every running live session (their cameras released; bpy data untouched)."""
    for driver in list(_RUNNING):
        driver.release()


def register() -> None:
    """Register after :func:`.registration.register` (its panel comes after the capture panels)."""
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    for owner, name, cls in POINTERS:
        setattr(owner, name, PointerProperty(type=cls))
    if release_on_load not in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.append(release_on_load)
    if clear_state_on_load not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(clear_state_on_load)


def unregister() -> None:
    """Release running sessions, remove the handler, then the classes (the mirror of register)."""
    release_all()
    if clear_state_on_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(clear_state_on_load)
    if release_on_load in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(release_on_load)
    for owner, name, _ in reversed(POINTERS):
        if hasattr(owner, name):
            delattr(owner, name)
    for cls in reversed(CLASSES):
        if getattr(cls, "is_registered", False):
            bpy.utils.unregister_class(cls)
