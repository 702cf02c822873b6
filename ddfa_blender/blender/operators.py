"""Operators: Capture (footage to an animated face), Re-smooth, Prepare Models.

Capture and Prepare Models are modal: the pure work (decoding, tracking, the
network, saving the take; or building the models folder) runs on a worker
thread, a window-manager timer drains its progress on the main thread, Esc
cancels, and only the main thread touches ``bpy`` (the bake, at the end). In
background mode (no window) ``execute`` runs the same steps synchronously.
A cancelled or failed capture removes its take file and leaves the scene as it
was. Every operator ends with one ``self.report``; messages from the pure
layer that name a command-line fix are reworded for Blender
(:func:`user_message`). Each operator's ``poll`` says why it is unavailable
(``poll_message_set``, shown in the button's tooltip) with the same sentence
the panel prints under the greyed-out button (the ``*_blocker`` functions).
Heavy modules are imported inside the operators, so enabling the add-on
stays instant. No ``from __future__ import annotations``: Blender reads the
property annotations as objects.
"""

import os
import re
import tempfile

import bpy
from bpy.props import BoolProperty

from ..core.errors import CaptureCancelled, CaptureError
from ..core.take import parse_tracks
from . import bake, preferences, progress, properties, review

TIMER_STEP_S = 0.1
TAKES_SUBFOLDER = "takes"
PREPARE_FIX = "press Prepare Models in the add-on's preferences (Edit > Preferences > Add-ons)"
OFFLINE_FIX = (
    "connect to the internet and press Prepare Models again, or set Models Folder (add-on "
    "preferences) to models prepared on another machine"
)
# A pure-layer fix for command-line users: the clause from here on is replaced in Blender.
_COMMAND_LINE_FIX = re.compile(r"\bscripts/|fetch_models\.py|\bDDFA_[A-Z_]+|--from\b|--models\b")
# Long details a pop-up has no room for: a download's URL, urllib's wrapping of the reason.
_DETAILS = ((re.compile(r" from https?://\S+"), ""), (re.compile(r"<urlopen error (?:\[Errno -?\d+\] )?([^>]*)>"), r"\1"))


def user_message(err, fix: str = PREPARE_FIX) -> str:
    """The pure layer's message ``err`` for a Blender user, one line that fits a pop-up: a
    trailing fix that names a command line (``python scripts/fetch_models.py ...``, an
    environment variable) is replaced by ``fix``, and a download's URL is left out."""
    message = str(err)
    for pattern, replacement in _DETAILS:
        message = pattern.sub(replacement, message)
    parts = message.split(": ")
    for index, part in enumerate(parts[1:], start=1):
        if _COMMAND_LINE_FIX.search(part):
            cause = ": ".join(parts[:index]).rstrip(". ")
            return f"{cause[:1].upper()}{cause[1:]}: {fix}."
    return message


class _WorkerOperator:
    """Runs ``work`` from :meth:`begin` on a worker thread (modal) or inline (background).

    Subclasses define ``label``, ``begin(context) -> work``,
    ``complete(context, result) -> set`` and ``abandon(context)`` (clean-up
    after a cancel or an error). Every way of ending reports once.

    Modal protocol: the operator keeps the window-manager timer it added and
    drains the worker's events on each ``TIMER`` event (Blender's
    ``bpy.types.Event`` does not say which timer fired; draining is cheap, so
    any timer's tick does). Esc asks the worker to stop; from then on the
    operator only waits for it to end, and whatever it ends with (even a
    finished result that raced the key press) is discarded.
    """

    label = "Working"
    cancellable = True  # Esc stops the work (it checks should_stop)
    _job = None
    _timer = None
    _bar = None
    _cancel_requested = False

    def abandon(self, context) -> None:
        pass

    def message(self, err) -> str:
        """The one-line report for ``err`` (a ``CaptureError``)."""
        return user_message(err)

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        try:
            work = self.begin(context)
        except CaptureError as err:
            self.abandon(context)
            self.report({"ERROR"}, self.message(err))
            return {"CANCELLED"}
        wm = context.window_manager
        self._bar = progress.ProgressBar(wm, self.label).begin(self.cancellable)
        self._job = progress.WorkerJob(work, (CaptureCancelled,)).start()
        self._timer = wm.event_timer_add(TIMER_STEP_S, window=context.window)
        self._cancel_requested = False
        wm.modal_handler_add(self)
        progress.redraw_sidebars(wm)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS" and self.cancellable:
            if not self._cancel_requested:
                self._cancel_requested = True
                self._job.cancel()
                self._bar.update(message="Cancelling")
                progress.redraw_sidebars(context.window_manager)
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        events = self._job.poll()
        for job_event in events:
            if job_event.kind != "progress":
                return self._end(context, job_event)
            if not self._cancel_requested:
                self._bar.update(job_event.done, job_event.total, job_event.message)
        if events:
            progress.redraw_sidebars(context.window_manager)
        return {"PASS_THROUGH"}

    def cancel(self, context):
        """Blender ends the operator (a file is loaded, Blender quits): stop the worker, clean up."""
        if self._job is not None:
            self._job.cancel()
            self._job.join()
            self._stop_modal(context)
            self.abandon(context)

    def execute(self, context):
        bar = progress.ProgressBar(context.window_manager, self.label).begin(cancellable=False)
        try:
            work = self.begin(context)
            result = progress.run_inline(work, bar.update)
            bar.end()
            return self.complete(context, result)
        except CaptureError as err:
            bar.end()
            self.abandon(context)
            self.report({"ERROR"}, self.message(err))
            return {"CANCELLED"}
        except BaseException:
            bar.end()
            self.abandon(context)
            raise

    def _stop_modal(self, context) -> None:
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        self._bar.end()
        self._job = self._timer = self._bar = None
        progress.redraw_sidebars(wm)

    def _end(self, context, job_event):
        self._job.join()
        self._stop_modal(context)
        if self._cancel_requested or job_event.kind == "cancelled":
            self.abandon(context)
            self.report({"INFO"}, f"{self.label} cancelled")
            return {"CANCELLED"}
        if job_event.kind == "done":
            try:
                return self.complete(context, job_event.result)
            except CaptureError as err:
                self.abandon(context)
                self.report({"ERROR"}, self.message(err))
                return {"CANCELLED"}
        self.abandon(context)
        if isinstance(job_event.error, CaptureError):
            self.report({"ERROR"}, self.message(job_event.error))
            return {"CANCELLED"}
        raise job_event.error  # a bug: let Blender print the traceback


def capture_source(settings) -> str:
    """The absolute path of the footage chosen in the panel; CaptureError if it is missing."""
    if settings.source_kind == "FILE":
        path = bpy.path.abspath(settings.source_file)
        if not settings.source_file or not os.path.isfile(path):
            raise CaptureError("Choose a video file to capture (Face Capture > Source).")
    else:
        path = bpy.path.abspath(settings.source_folder)
        if not settings.source_folder or not os.path.isdir(path):
            raise CaptureError("Choose a folder of images to capture (Face Capture > Source).")
    return os.path.normpath(path)


def take_folder(settings) -> str:
    """Where new take files go: the panel's folder, else ``//takes`` next to a saved .blend,
    else the extension's user folder, else the system's temporary folder."""
    if settings.take_folder:
        folder = bpy.path.abspath(settings.take_folder)
    elif bpy.data.filepath:
        folder = bpy.path.abspath("//" + TAKES_SUBFOLDER)
    elif preferences.is_extension():
        folder = bpy.utils.extension_path_user(preferences.ADDON_PACKAGE, path=TAKES_SUBFOLDER)
    else:
        folder = os.path.join(tempfile.gettempdir(), "ddfa_takes")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise CaptureError(
            f"Cannot create the take folder {folder} ({err.strerror}); choose another Take Folder."
        ) from err
    return folder


def unique_take_path(folder: str, stem: str) -> str:
    """``folder/stem.npz``, or ``stem_2.npz``, ... if taken (a take file is never overwritten)."""
    path, number = os.path.join(folder, f"{stem}.npz"), 1
    while os.path.exists(path):
        number += 1
        path = os.path.join(folder, f"{stem}_{number}.npz")
    return path


def prepared_models_dir(context) -> str:
    """The models folder, if its models are prepared; else CaptureError naming the button."""
    folder = preferences.models_dir(context)
    missing = preferences.missing_models(folder)
    if missing:
        raise CaptureError(
            f"Models not prepared in {folder} (missing {', '.join(missing)}): {PREPARE_FIX}."
        )
    return folder


def captured_object(context):
    """The active object if it is a baked face, else None."""
    obj = context.active_object
    if obj is None or not properties.is_registered() or not obj.ddfa_capture.is_capture:
        return None
    return obj


def busy_blocker(context) -> str:
    """Why nothing new can start now ("" when nothing runs): a capture, model
    preparation or live session is running."""
    wm = context.window_manager
    job = getattr(wm, "ddfa_job", None)
    if job is not None and job.running:
        return f"{job.title} running (Esc cancels)" if job.cancellable else f"{job.title}: wait for it to end"
    live = getattr(wm, "ddfa_live", None)
    if live is not None and live.running:
        return "Live is running: Stop or Esc first"
    return ""


def video_file_blocker(path: str) -> str:
    """Why the video file property ``path`` cannot be read ("" when it can)."""
    if not path:
        return "Choose a video file above"
    if not os.path.isfile(bpy.path.abspath(path)):
        return "The video file does not exist"
    return ""


def capture_blocker(context, replace_active: bool = False) -> str:
    """Why Capture cannot start now, as the panel prints it ("" when it can)."""
    if context.scene is None or not properties.is_registered():
        return "No scene"
    busy = busy_blocker(context)
    if busy:
        return busy
    settings = context.scene.ddfa_capture
    if settings.source_kind == "FILE":
        missing = video_file_blocker(settings.source_file)
        if missing:
            return missing
    else:
        if not settings.source_folder:
            return "Choose a folder of images above"
        if not os.path.isdir(bpy.path.abspath(settings.source_folder)):
            return "The image folder does not exist"
    if preferences.missing_models(preferences.models_dir(context)):
        return "Prepare the models first"
    if replace_active and captured_object(context) is None:
        return "Select a captured face"
    return ""


def resmooth_blocker(context) -> str:
    """Why Re-smooth cannot run now ("" when it can)."""
    obj = captured_object(context)
    if obj is None:
        return "Select a captured face"
    busy = busy_blocker(context)
    if busy:
        return busy
    stored = obj.ddfa_capture
    if not stored.take_path or not os.path.isfile(bpy.path.abspath(stored.take_path)):
        return "Take file not found: set Take above"
    if preferences.missing_models(preferences.models_dir(context)):
        return "Prepare the models first"
    return ""


def poll_with_reason(cls, reason: str) -> bool:
    """``poll`` helper: True when ``reason`` is empty, else False with ``reason`` as the
    tooltip's explanation."""
    if reason:
        cls.poll_message_set(reason + ".")
        return False
    return True


class DDFA_OT_capture(_WorkerOperator, bpy.types.Operator):
    """Track the face in the footage and bake it as an animated face mesh (Esc cancels)"""

    bl_idname = "ddfa.capture"
    bl_label = "Capture"
    bl_options = {"REGISTER", "UNDO"}
    label = "Capture"

    replace_active: BoolProperty(
        name="Replace Active",
        description="Bake into the active face object, replacing its shapes and animation",
        default=False, options={"SKIP_SAVE"},
    )

    _take_path = None
    _tracks = None

    @classmethod
    def poll(cls, context):
        return poll_with_reason(cls, capture_blocker(context))

    def begin(self, context):
        from ..core.engine import CaptureOptions

        settings = context.scene.ddfa_capture
        source = capture_source(settings)
        folder = prepared_models_dir(context)
        if self.replace_active and captured_object(context) is None:
            raise CaptureError("Select a captured face to replace, or capture a new one.")
        self._tracks = parse_tracks(settings.tracks) if settings.max_faces > 1 and not self.replace_active else None
        options = CaptureOptions(
            model=settings.model,
            models_dir=folder,
            threads=preferences.threads(context),
            max_faces=settings.max_faces,
            fps=settings.sequence_fps if settings.source_kind == "SEQUENCE" else None,
        )
        if settings.record_eyes:
            from ..core.face_landmarker import LANDMARKER_FILE, make_channels

            if not os.path.isfile(os.path.join(folder, LANDMARKER_FILE)):
                raise CaptureError(
                    f"The face landmarker ({LANDMARKER_FILE}) is not prepared in {folder}: press "
                    "Prepare Models in the add-on's preferences, or turn off Capture > Options > Blendshapes."
                )
            options.channels = make_channels(folder)
        stem = os.path.splitext(os.path.basename(source))[0] or "take"
        take_path = unique_take_path(take_folder(settings), stem)
        self._take_path = take_path
        return _capture_work(source, options, take_path)

    def complete(self, context, result):
        take, face_model = result
        settings = context.scene.ddfa_capture
        options = dict(
            face_model=face_model,
            smoothing=properties.read_smoothing(settings.smoothing),
            start_frame=settings.start_frame,
            key_camera=settings.key_camera,
            missing=settings.missing,
            lean_keys=settings.lean_keys,
            footage=take.source if settings.use_footage else None,
            take_path=self._take_path,
        )
        target = captured_object(context) if self.replace_active else None
        if target is not None:
            track = target.ddfa_capture.track
            track = track if track in take.track_ids() else take.track_ids()[0]
            objects = [bake.bake_take(context.scene, take, track=track, target=target, **options)]
        else:
            objects = bake.bake_tracks(context.scene, take, tracks=self._tracks, **options)
        _select_only(context, objects)
        frames = len(take.frames())
        summary = f"Captured {frames} frames into {', '.join(o.name for o in objects)}" + _flagged_note(objects)
        warnings = take.meta.get("warnings") or []
        if warnings:  # e.g. footage cut short, a raw stream timed at a default rate
            self.report({"WARNING"}, f"{summary}. {' '.join(warnings)}")
        else:
            self.report({"INFO"}, summary)
        return {"FINISHED"}

    def abandon(self, context):
        if self._take_path and os.path.exists(self._take_path):
            os.unlink(self._take_path)


def _capture_work(source, options, take_path):
    """The worker's job: capture, save the take, load the face model (pure, no bpy)."""

    def work(report, should_stop):
        from ..core.engine import capture, load_face_model

        take = capture(source, options, progress=report, should_stop=should_stop)
        take.save(take_path)
        return take, load_face_model(options.models_dir)

    return work


def _flagged_note(objects) -> str:
    """``"; N flagged frames (timeline markers)"`` for baked faces with flagged frames, else ""."""
    flagged = sum(int(obj.get(review.FLAGGED_PROPERTY, 0)) for obj in objects)
    return f"; {flagged} flagged frame{'s' if flagged != 1 else ''} (timeline markers)" if flagged else ""


def _select_only(context, objects) -> None:
    view_layer = context.view_layer
    for obj in view_layer.objects:
        obj.select_set(obj in objects)
    if objects:
        view_layer.objects.active = objects[0]


class DDFA_OT_resmooth(bpy.types.Operator):
    """Bake the active face again from its take file with its smoothing settings (no new capture)"""

    bl_idname = "ddfa.resmooth"
    bl_label = "Re-smooth"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return poll_with_reason(cls, resmooth_blocker(context))

    def execute(self, context):
        from ..core.engine import load_face_model
        from ..core.take import Take

        obj = captured_object(context)
        stored = obj.ddfa_capture
        take_path = bpy.path.abspath(stored.take_path) if stored.take_path else ""
        try:
            if not os.path.isfile(take_path):
                raise CaptureError(
                    f"Take file of {obj.name} not found ({take_path or 'none stored'}): "
                    "set its Take path or capture again."
                )
            take = Take.load(take_path)
            bake.bake_take(
                context.scene,
                take,
                face_model=load_face_model(prepared_models_dir(context)),
                track=stored.track,
                target=obj,
                smoothing=properties.read_smoothing(stored.smoothing),
                start_frame=stored.start_frame,
                key_camera=stored.key_camera,
                missing=stored.missing,
                lean_keys=stored.lean_keys,
                footage=bpy.path.abspath(stored.footage) if stored.footage else None,
                take_path=stored.take_path,
            )
        except CaptureError as err:
            self.report({"ERROR"}, user_message(err))
            return {"CANCELLED"}
        samples, keys = obj[bake.KEY_COUNTS_PROPERTY]
        self.report({"INFO"}, f"Re-smoothed {obj.name}: {keys} keys for {samples} samples" + _flagged_note([obj]))
        return {"FINISHED"}


class DDFA_OT_prepare_models(_WorkerOperator, bpy.types.Operator):
    """Download and convert the 3DDFA-V2 network and the face model into the models folder"""

    bl_idname = "ddfa.prepare_models"
    bl_label = "Prepare Models"
    bl_options = {"REGISTER"}
    label = "Preparing models"
    cancellable = False  # model setup runs to the end (it leaves no partial files)

    @classmethod
    def poll(cls, context):
        return poll_with_reason(cls, busy_blocker(context))

    def message(self, err) -> str:
        return user_message(f"Could not prepare the models: {err}", OFFLINE_FIX)

    def begin(self, context):
        folder = preferences.models_dir(context)

        def work(report, should_stop):
            from ..core import model_setup

            return model_setup.prepare_models(
                folder,
                assets_dir=model_setup.find_assets_dir(),
                progress=lambda line: report(message=line),
            )

        return work

    def complete(self, context, result):
        self.report({"INFO"}, f"Models ready: {', '.join(sorted(result))}")
        return {"FINISHED"}


CLASSES = (DDFA_OT_capture, DDFA_OT_resmooth, DDFA_OT_prepare_models)
