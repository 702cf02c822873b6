"""The add-on in a real Blender window, driven as a user drives it (runs inside Blender).

Started by ``test_real_blender.py`` through ``real_blender/run.sh`` after the
extension zip was installed with Blender's own ``extension install-file``.
Buttons are pressed with real clicks and keys (``blender_ui``); fields are
filled through their RNA properties, as typing into them would, except the
Faces field, which is typed into for real. Each step prints ``DDFA-GUI``
lines (step, checks, expected reports, figures) that the host reads from
Blender's output together with Blender's own reports and any traceback.

Arguments after ``--``: ``--run-dir`` (scratch folder, visible to the host),
``--shared`` (the ../shared folder), ``--bfm-wheel`` and
``--landmarker-wheel`` (downloaded by the host, so Prepare Models works from
local files only), ``--live-clip`` (the shared talking head played several
times over, written by the host: live plays it in real time, and a slow
software-GL event loop needs more than its 20 s), ``--rotated`` (a phone video
with rotation metadata and an EXIF-rotated photo, with their upright pictures
beside them, written by the host: the camera view must show them upright).

The last step starts a capture and quits Blender in the middle of it
(``wm.quit_blender``, as File > Quit): the host checks that nothing is
reported on the way out.
"""

import argparse
import math
import os
import re
import subprocess
import sys
import time

import bpy
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import blender_ui as ui  # noqa: E402
import guidriver as gd  # noqa: E402

MODULE = "bl_ext.user_default.ddfa_blender"
CATEGORY = "Face Capture"
CAPTURE = "bpy.ops.ddfa.capture()"
CAPTURE_AGAIN = "bpy.ops.ddfa.capture(replace_active=True)"
PREPARE = "bpy.ops.ddfa.prepare_models()"
RESMOOTH = "bpy.ops.ddfa.resmooth()"
RETARGET = "bpy.ops.ddfa.retarget()"
START_LIVE = "bpy.ops.ddfa.live()"
RECORD = "bpy.ops.ddfa.live_record()"
STOP_LIVE = "bpy.ops.ddfa.live_stop()"


def arguments():
    parser = argparse.ArgumentParser()
    for name in ("--run-dir", "--shared", "--bfm-wheel", "--landmarker-wheel", "--live-clip", "--rotated"):
        parser.add_argument(name, required=True)
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    return parser.parse_args(argv)


ARGS = arguments()
RUN = ARGS.run_dir
VIDEO = os.path.join(ARGS.shared, "data", "video")
IMAGES = os.path.join(ARGS.shared, "data", "images")
AVATAR = os.path.join(ARGS.shared, "data", "avatars", "ict_facekit_arkit.blend")
TAKES = os.path.join(RUN, "takes")


def addon():
    """The add-on's own modules (as installed: ``bl_ext.user_default.ddfa_blender``)."""
    return sys.modules[MODULE]


def module(name):
    return sys.modules[f"{MODULE}.{name}"]


def prefs():
    return bpy.context.preferences.addons[MODULE].preferences


def capture_settings():
    return bpy.context.scene.ddfa_capture


def job():
    return bpy.context.window_manager.ddfa_job


def scene_state() -> dict:
    """What a failed or cancelled operation must leave as it was, as plain data."""
    scene = bpy.context.scene
    objects = {}
    for obj in bpy.data.objects:
        entry = {
            "type": obj.type,
            "parent": obj.parent.name if obj.parent else None,
            "matrix": [round(v, 6) for row in obj.matrix_local for v in row],
            "action": _action_name(obj),
        }
        if obj.type == "MESH" and obj.data.shape_keys:
            entry["keys"] = {b.name: round(b.value, 6) for b in obj.data.shape_keys.key_blocks}
            entry["key_action"] = _action_name(obj.data.shape_keys)
        objects[obj.name] = entry
    return {
        "objects": objects,
        "meshes": sorted(m.name for m in bpy.data.meshes),
        "cameras": sorted(c.name for c in bpy.data.cameras),
        "actions": sorted(a.name for a in bpy.data.actions),
        "clips": sorted(c.name for c in bpy.data.movieclips),
        "markers": sorted((m.name, m.frame) for m in scene.timeline_markers),
        "scene": (scene.camera.name if scene.camera else None, scene.frame_start, scene.frame_end,
                  scene.render.fps, round(scene.render.fps_base, 6)),
        "takes": sorted(os.listdir(TAKES)) if os.path.isdir(TAKES) else [],
    }


def _action_name(id_data):
    anim = id_data.animation_data
    return anim.action.name if anim is not None and anim.action is not None else None


def keyed_frames(id_data, data_path):
    """Frames keyed on ``data_path`` of ``id_data`` (layered or legacy actions)."""
    channels = module("blender.animation").animation_channels(id_data)
    fcurve = channels.fcurves.find(data_path) if channels is not None else None
    if fcurve is None:
        return np.array([])
    return np.array([k.co[0] for k in fcurve.keyframe_points])


def curve_values(id_data, data_path):
    channels = module("blender.animation").animation_channels(id_data)
    fcurve = channels.fcurves.find(data_path)
    return np.array([k.co[1] for k in fcurve.keyframe_points])


def select_only(*objects):
    layer = bpy.context.view_layer
    for obj in layer.objects:
        obj.select_set(obj in objects)
    layer.objects.active = objects[0] if objects else None
    ui.invalidate()


def shot_sidebar(name):
    """A screenshot of the sidebar (for the README) and one of the whole screen."""
    gd.shot(name)
    win, area, sidebar = ui.sidebar()
    x, y = gd.screen_xy(win, sidebar, 0, sidebar.height)
    path = os.path.join(gd.SHOTS, f"{name}_sidebar.png")
    subprocess.run(["import", "-window", "root", "-crop", f"{sidebar.width}x{sidebar.height}+{x}+{y}",
                    "+repage", path], check=True)


def run_capture(samples, timeout=120.0):
    """``yield from``: wait while a capture runs, sampling (progress, label) every tick."""
    deadline = time.monotonic() + timeout
    while job().running and time.monotonic() < deadline:
        samples.append((job().progress, job().label))
        yield 0.1
    return not job().running


def redraw_whole_areas(window_manager) -> None:
    """What the add-on did before it redrew only the sidebar: tag every 3D view area (its
    viewport too), for benchmarks/bench_gui_redraw.py's comparison."""
    for window in window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


# -- steps ----------------------------------------------------------------------------


def startup():
    ui.step("startup")
    ui.check(MODULE in bpy.context.preferences.addons, "the extension is enabled")
    ui.check(hasattr(bpy.types, "DDFA_PT_capture"), "its panels are registered")
    gd.xdo("key", "Escape")  # the splash screen
    ok = yield from gd.open_sidebar(CATEGORY)
    ui.check(ok, "the sidebar shows the Face Capture tab")
    os.makedirs(TAKES, exist_ok=True)
    capture_settings().take_folder = TAKES
    for name in ("DDFA_ASSETS", "DDFA_BFM_WHEEL", "DDFA_LANDMARKER_WHEEL", "DDFA_MODELS"):
        os.environ.pop(name, None)
    if os.environ.get("REAL_BLENDER_GUI_REDRAW") == "area":  # benchmarks/bench_gui_redraw.py: the old way
        module("blender.progress").redraw_sidebars = redraw_whole_areas
    prefs().models_dir = os.path.join(RUN, "models_offline")
    os.makedirs(prefs().models_dir, exist_ok=True)
    yield 0.5
    ui.check(bool(module("blender.preferences").missing_models(prefs().models_dir)), "models are missing")
    shot_sidebar("panel_models_missing")


def preferences_window():
    """The add-on's preferences, opened as a user does (Edit > Preferences > Add-ons)."""
    ui.step("preferences")
    bpy.context.window_manager.addon_search = "DDFA"
    bpy.ops.screen.userpref_show(section="ADDONS")
    yield 1.0
    try:
        bpy.ops.preferences.addon_expand(module=MODULE)
    except RuntimeError as err:
        gd.log("cannot expand the add-on's preferences:", err)
    yield 1.0
    ids = gd.xdo("search", "--name", "Preferences").split()
    ui.check(bool(ids), "the Preferences window opened")
    if ids:  # guidriver.shot() redraws every window, which a temporary screen refuses
        subprocess.run(["import", "-window", ids[-1], os.path.join(gd.SHOTS, "preferences.png")], check=True)
    for window in list(bpy.context.window_manager.windows)[1:]:
        with bpy.context.temp_override(window=window):
            bpy.ops.wm.window_close()
    yield 0.5
    ui.check(len(bpy.context.window_manager.windows) == 1, "the Preferences window is closed again")


def prepare_offline():
    """Prepare Models with no local files and no internet: one error naming the fix in Blender."""
    ui.step("prepare_offline")
    ui.expect_report("Error", r"^Could not prepare the models: could not download mb05_120x120\.pth \([^)]+\): "
                     r"connect to the internet and press Prepare Models again, or set Models Folder")
    if (yield from ui.click(PREPARE)):
        yield 0.2
        yield from ui.wait(lambda: not job().running, 60, "Prepare Models ends")
        yield 0.5
        gd.shot("error_popup")
        yield from ui.dismiss_popups()
    ui.check(os.listdir(prefs().models_dir) == [], "nothing, not even a partial file, was left in the models folder")


def prepare_local():
    """Prepare Models from local files (../shared and two wheels): the button's progress, then ready."""
    ui.step("prepare_local")
    os.environ["DDFA_ASSETS"] = os.path.join(ARGS.shared, "assets", "3ddfa_v2")
    os.environ["DDFA_BFM_WHEEL"] = ARGS.bfm_wheel
    os.environ["DDFA_LANDMARKER_WHEEL"] = ARGS.landmarker_wheel
    prefs().models_dir = os.path.join(RUN, "models")
    ui.invalidate()
    yield 0.3
    ui.expect_report("Info", r"Models ready: .*bfm_face\.npz.*mb05_120x120\.onnx")
    labels = set()
    started = time.monotonic()
    if (yield from ui.click(PREPARE)):
        yield 0.1
        if not ui.check(job().running, "Prepare Models started"):
            gd.shot("prepare_not_started")
        deadline = time.monotonic() + 600
        while (job().running or time.monotonic() - started < 0.5) and time.monotonic() < deadline:
            labels.add(job().label)
            yield 0.2
    ui.measure("prepare_models_s", round(time.monotonic() - started, 1))
    ui.check(len(labels - {""}) >= 2, f"the panel showed the steps ({len(labels - {''})} lines)")
    missing = module("blender.preferences").missing_models(prefs().models_dir)
    ui.check(not missing, f"models prepared ({missing or 'none missing'})")
    ui.check(os.path.isfile(os.path.join(prefs().models_dir, "face_landmarker.task")),
             "the face landmarker is prepared too")
    ui.invalidate()


def capture():
    """Capture obama.mp4: the bar advances to the presented frame count, the face is baked."""
    ui.step("capture")
    settings = capture_settings()
    settings.source_kind = "FILE"
    settings.source_file = os.path.join(VIDEO, "obama.mp4")
    ui.invalidate()
    yield 0.5
    shot_sidebar("panel_before_capture")
    ui.expect_report("Info", r"Captured 55 frames into obama\.face0")
    samples = []
    with ui.RedrawCounter() as redraws:
        started = time.monotonic()
        if (yield from ui.click(CAPTURE)):
            deadline = time.monotonic() + 180
            while (job().running or not samples) and time.monotonic() < deadline:
                samples.append((job().progress, job().label))
                yield 0.05
        seconds = time.monotonic() - started
    progress = [p for p, _ in samples if p > 0]
    ui.check(len(set(progress)) >= 3, f"the progress bar advanced ({len(set(progress))} distinct values)")
    totals = {int(m.group(1)) for _, label in samples for m in [re.search(r"/(\d+)$", label)] if m}
    ui.check(totals == {55}, f"the bar counts the 55 frames the video presents (its totals: {sorted(totals)})")
    ui.measure("capture_progress_reached", round(max(progress, default=0), 2))
    ui.measure("capture_s", round(seconds, 1))
    ui.measure("sidebar_redraws_per_s", round(redraws.per_second("UI"), 1))
    ui.measure("viewport_redraws_per_s", round(redraws.per_second("WINDOW"), 1))
    face = bpy.data.objects.get("obama.face0")
    ui.check(face is not None, "the face obama.face0 was baked")
    if face is None:
        return
    frames = keyed_frames(face.data.shape_keys, 'key_blocks["exp_00"].value')
    ui.check(len(frames) == 55, f"its expressions are keyed on 55 frames ({len(frames)})")
    ui.check(len(keyed_frames(face, "rotation_quaternion")) == 55, "its head rotation is keyed")
    ui.check(os.path.isfile(bpy.path.abspath(face.ddfa_capture.take_path)), "its take file was saved")
    scene = bpy.context.scene
    ui.check(scene.camera is not None and scene.camera.name == "obama.camera", "the capture camera is the scene camera")
    origin = bpy.data.objects.get("obama.origin")
    ui.check(origin is not None and origin.type == "EMPTY", "the capture has its origin empty obama.origin")
    ui.check(origin is not None and face.parent == origin and getattr(scene.camera, "parent", None) == origin,
             "the face and the camera are children of obama.origin")
    cube = bpy.data.objects.get("Cube")
    ui.check(cube is not None, "the default cube is still there")
    if origin is not None and cube is not None:
        bpy.context.view_layer.update()
        ui.check(origin.location.x > 1.0, f"the capture sits beside the default cube (x = {origin.location.x:.2f} m)")
    ui.check(bpy.context.active_object == face, "the new face is selected")
    ui.invalidate()
    yield 0.5
    shot_sidebar("panel_after_capture")
    win, area, region, _ = gd.view3d()
    space = area.spaces.active
    view = space.region_3d.view_perspective
    space.region_3d.view_perspective = "CAMERA"
    scene.frame_set(20)
    yield 0.5
    gd.shot("camera_view")
    space.region_3d.view_perspective = view
    scene.frame_set(1)


def cancel():
    """Esc mid-capture: the scene and the take folder as they were, one info report."""
    ui.step("cancel")
    settings = capture_settings()
    settings.source_file = os.path.join(VIDEO, "talking_head_640x360.mp4")
    before = scene_state()
    ui.invalidate()
    ui.expect_report("Info", r"Capture cancelled")
    labels = []
    if (yield from ui.click(CAPTURE)):
        yield from ui.wait(lambda: job().progress > 0.1, 60, "the capture is under way")
        shot_sidebar("panel_during_capture")
        ui.check(job().running, "still running after the screenshot")
        ui.hover_viewport()
        gd.xdo("key", "Escape")
        deadline = time.monotonic() + 60
        while job().running and time.monotonic() < deadline:
            labels.append(job().label)
            yield 0.05
    ui.check(not job().running, "the capture ended after Esc")
    ui.check("Cancelling" in labels, "the panel said Cancelling")
    yield 0.3
    after = scene_state()
    ui.check(after == before, "the scene and take folder are as they were")
    if after != before:
        gd.log("before:", before)
        gd.log("after:", after)


def resmooth():
    """Re-smooth the captured face with the heavy preset: smoother curves, same object."""
    ui.step("resmooth")
    face = bpy.data.objects.get("obama.face0")
    if face is None:
        ui.check(False, "a captured face to re-smooth")
        return
    select_only(face)
    path = 'key_blocks["exp_00"].value'
    rough_before = np.abs(np.diff(curve_values(face.data.shape_keys, path), 2)).mean()
    face.ddfa_capture.smoothing.preset = "heavy"
    ui.invalidate()
    yield 0.3
    ui.expect_report("Info", r"Re-smoothed obama\.face0")
    yield from ui.scroll_to_top()
    if (yield from ui.click(RESMOOTH)):
        yield 1.0
    rough_after = np.abs(np.diff(curve_values(face.data.shape_keys, path), 2)).mean()
    ui.check(rough_after < 0.7 * rough_before,
             f"the expression curve is smoother ({rough_before:.4f} -> {rough_after:.4f})")
    ui.check(bpy.data.objects.get("obama.face0") == face and "obama.face0.001" not in bpy.data.objects,
             "re-smoothed in place")


def retarget():
    """Retarget the captured face onto the ICT FaceKit avatar (Keyframes)."""
    ui.step("retarget")
    with bpy.data.libraries.load(AVATAR) as (source, target):
        target.objects = ["ICT_Head"]
    avatar = target.objects[0]
    bpy.context.scene.collection.objects.link(avatar)
    face = bpy.data.objects["obama.face0"]
    avatar.location = (face.matrix_world.translation.x + 0.5, 1.0, 0.0)
    settings = bpy.context.scene.ddfa_retarget
    settings.source_face = face
    settings.avatar = avatar
    select_only(face)
    ui.invalidate()
    yield 0.3
    ui.expect_report("(Info|Warning)", r"Retarget onto ICT_Head: \d+ key\(s\) driven")
    yield from ui.scroll_to_top()
    if (yield from ui.click(RETARGET)):
        yield 1.0
    frames = keyed_frames(avatar.data.shape_keys, 'key_blocks["jawOpen"].value')
    ui.check(len(frames) == 55, f"the avatar's jawOpen is keyed on every frame ({len(frames)})")
    blink = keyed_frames(avatar.data.shape_keys, 'key_blocks["eyeBlink_L"].value')
    ui.check(len(blink) == 55, "eyeBlink_L is keyed too")
    ui.check(len(keyed_frames(avatar, "rotation_quaternion")) == 55, "the avatar's head turns")
    ui.check(bool(settings.report), "the panel lists what was not matched")
    ui.scroll(ui.WHEEL_CLICKS_PER_PAGE)  # the Retarget panel, below Live
    yield 0.5
    shot_sidebar("retarget_panel")
    yield from ui.scroll_to_top()


def sub_panels():
    """The less-used settings sit in sub-panels, closed by default; open, they read at 291 px."""
    ui.step("sub_panels")
    state = bpy.context.window_manager.ddfa_panels
    names = [prop.identifier for prop in state.bl_rna.properties if prop.type == "BOOLEAN"]
    ui.check(len(names) == 6 and not any(getattr(state, n) for n in names),
             f"{len(names)} sub-panels, all closed by default")
    select_only(bpy.data.objects["obama.face0"])
    for name in names:
        setattr(state, name, True)
    yield from ui.scroll_to_top()
    for page in range(3):
        shot_sidebar(f"sub_panels_{page}")
        ui.scroll(ui.WHEEL_CLICKS_PER_PAGE)
        yield 0.5
    for name in names:
        setattr(state, name, False)
    yield from ui.scroll_to_top()


def type_into(wanted, text):
    """``yield from``: click a field and type ``text`` into it with real keys."""
    position = yield from ui.find(wanted)
    if position is None:
        ui.check(False, f"field {wanted} found")
        return False
    gd.click(*position)  # a click (no drag) on a number field edits its text
    yield 0.3
    gd.xdo("key", "ctrl+a")
    gd.xdo("type", text)
    gd.xdo("key", "Return")
    yield 0.3
    ui.invalidate()
    return True


def failed_steps():
    """A capture whose bake fails leaves no half-built scene: a real refusal (a track the
    take does not have) and a fault injected into the bake of the second face."""
    ui.step("failed_bake")
    settings = capture_settings()
    settings.source_file = os.path.join(IMAGES, "multi_face.jpg")
    select_only()
    yield from ui.scroll_to_top()
    yield from type_into("ddfa_capture.max_faces", "5")
    ui.check(settings.max_faces == 5, f"Faces typed in ({settings.max_faces})")
    settings.tracks = "7"
    ui.invalidate()
    before = scene_state()
    ui.expect_report("Error", r"Track\(s\) 7 not in the take")
    if (yield from ui.click(CAPTURE)):
        yield from run_capture([])
        yield from ui.dismiss_popups()
    ui.check(scene_state() == before, "refused track: the scene and take folder are as they were")

    ui.step("injected_failure")
    settings.tracks = ""
    mesh = module("blender.mesh")
    real = mesh.set_face_shapes
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise module("core.errors").CaptureError("Injected failure while baking the second face.")
        return real(*args, **kwargs)

    mesh.set_face_shapes = failing
    ui.expect_report("Error", r"Injected failure while baking the second face")
    try:
        ui.invalidate()
        if (yield from ui.click(CAPTURE)):
            yield from run_capture([])
            yield from ui.dismiss_popups()
    finally:
        mesh.set_face_shapes = real
    ui.check(len(calls) >= 2, "the second face's bake was reached")
    ui.check(scene_state() == before, "failed mid-bake: the scene and take folder are as they were")


def several_faces():
    """multi_face.jpg with Faces = 5: one face object per person."""
    ui.step("faces")
    ui.expect_report("Info", r"Captured 1 frames into multi_face\.face0, multi_face\.face1")
    ui.invalidate()
    if (yield from ui.click(CAPTURE)):
        yield from run_capture([])
        yield 0.3
    faces = [o for o in bpy.data.objects if o.name.startswith("multi_face.face")]
    ui.check(len(faces) == 5, f"one face object per performer ({len(faces)} of 5)")
    ui.check(all(o.parent is not None and o.parent.name == "multi_face.origin" for o in faces),
             "all under one capture origin")
    capture_settings().max_faces = 1
    select_only()


def live():
    """Live from a video file: Start Live, Record, Stop and Bake; then Esc on a second run."""
    ui.step("live")
    settings = bpy.context.scene.ddfa_live
    settings.source_kind = "FILE"
    settings.video_file = ARGS.live_clip
    state = bpy.context.window_manager.ddfa_live
    select_only()
    yield from ui.scroll_to_top()
    ui.expect_report("Info", r"Recording$")
    ui.expect_report("Info", r"Recorded \d+ frames into live\.face0")
    position = yield from ui.find(START_LIVE)
    if position is None:
        ui.check(False, "Start Live is in the sidebar")
        return
    gd.click(*position)
    # The clip plays in real time, like a camera, whether the event loop keeps up or not,
    # and software GL redraws a moving face slowly (each probe of the sidebar then waits
    # for a redraw): Record and Stop take Start Live's row, so they are looked for there
    # and Record is pressed while the models load.
    yield from ui.wait(lambda: state.running, 10, "live starts")
    yield from ui.settle()  # Capture greys out and says why: the rows below move down by one
    record = yield from ui.find_near(RECORD, 0.3, position[1], expected=20)
    stop = yield from ui.find_near(STOP_LIVE, 0.78, record[1] if record else position[1], span=10)
    ui.check(record is not None and stop is not None, "Record and Stop and Bake replace Start Live")
    yield from ui.click(RECORD)
    yield from ui.wait(lambda: state.recording, 5, "recording")
    yield from ui.wait(lambda: bpy.data.objects.get("live.preview") is not None, 60, "a preview face appears")
    preview = bpy.data.objects.get("live.preview")
    if preview is None:
        return
    driver = module("blender.live")._RUNNING[0]
    start, applied = tuple(preview.location), driver.frames_applied
    yield from gd.wait_until(lambda: driver.frames_applied >= applied + 5, 60, what="5 more live frames")
    ui.check(tuple(preview.location) != start,
             f"the preview face moves live ({driver.frames_applied - applied} more frames applied)")
    win, area, region, _ = gd.view3d()
    preview.select_set(True)  # the sidebar's layout stays: Stop keeps its place
    bpy.context.view_layer.objects.active = preview
    with gd.override(win, area, region):  # as a user frames the face (View > Frame Selected)
        bpy.ops.view3d.view_selected(use_all_regions=False)
        bpy.ops.view3d.zoom(delta=-3)
    yield 0.5
    shot_sidebar("live")
    yield from ui.click(STOP_LIVE)
    yield from ui.wait(lambda: not state.running, 30, "live ends")
    yield 0.3
    face = bpy.data.objects.get("live.face0")
    ui.check(face is not None, "the recording was baked into live.face0")
    if face is not None:
        frames = keyed_frames(face.data.shape_keys, 'key_blocks["exp_00"].value')
        ui.check(len(frames) >= 5, f"with a key per recorded frame ({len(frames)})")
    ui.check(bpy.data.objects.get("live.preview") is None, "the preview face is gone")

    ui.step("live_esc")
    target = bpy.data.objects["obama.face0"]
    select_only(target)
    before = scene_state()
    ui.expect_report("Info", r"Live ended \(nothing baked\)")
    ui.invalidate()
    yield from ui.scroll_to_top()
    if (yield from ui.click(START_LIVE)):
        moved = yield from gd.wait_until(
            lambda: [round(v, 4) for row in target.matrix_local for v in row] != before["objects"]["obama.face0"]["matrix"],
            60, what="the captured face is driven live")
        ui.check(moved, "Start Live drives the selected captured face")
        ui.hover_viewport()
        gd.xdo("key", "Escape")
        yield from ui.wait(lambda: not state.running, 10, "Esc ends live")
        yield 0.3
    ui.check(scene_state() == before, "after Esc the scene is as it was")


def visible_box(area, region):
    """The part of the 3D view's main region that no header, toolbar or sidebar overlaps:
    (left, bottom, right, top) in region pixels."""
    left, bottom, right, top = 0, 0, region.width, region.height
    for other in area.regions:
        if other == region or other.width <= 1 or other.height <= 1:
            continue
        if other.type == "UI":
            right = min(right, other.x - region.x)
        elif other.type == "TOOLS":
            left = max(left, other.x + other.width - region.x)
        elif other.type in ("HEADER", "TOOL_HEADER"):
            top = min(top, other.y - region.y)
    return left, bottom, right, top


def camera_frame_shot(name):
    """``yield from``: a screenshot of what the capture camera's view shows inside its frame
    (the 3D view looking through the scene camera, zoomed out until the frame is clear of
    headers and the sidebar; meshes, floor, axes, text and extras hidden): ``SHOTS/name.png``."""
    from bpy_extras.view3d_utils import location_3d_to_region_2d

    scene = bpy.context.scene
    win, area, region, _ = gd.view3d()
    space = area.spaces.active
    view = space.region_3d
    hidden = [o for o in bpy.context.view_layer.objects if o.type == "MESH" and o.visible_get()]
    overlay = space.overlay
    shown = {k: getattr(overlay, k) for k in ("show_floor", "show_axis_x", "show_axis_y", "show_text",
                                             "show_cursor", "show_extras")}
    before = (view.view_perspective, view.view_camera_zoom, tuple(view.view_camera_offset))
    try:
        for obj in hidden:
            obj.hide_set(True)
        for key in shown:
            setattr(overlay, key, False)
        view.view_perspective = "CAMERA"
        camera = scene.camera
        left, bottom, right, top = visible_box(area, region)
        margin = 8
        for zoom in range(0, -40, -4):
            view.view_camera_zoom = zoom
            view.view_camera_offset = (0.0, 0.0)
            yield 0.2
            gd.redraw()
            corners = [location_3d_to_region_2d(region, view, camera.matrix_world @ corner)
                       for corner in camera.data.view_frame(scene=scene)]
            box = (min(c.x for c in corners), min(c.y for c in corners),
                   max(c.x for c in corners), max(c.y for c in corners))
            if box[0] > left + margin and box[1] > bottom + margin and box[2] < right - margin and box[3] < top - margin:
                break
        inset = 3  # the frame's own outline
        x, y = gd.screen_xy(win, region, int(box[0]) + inset, int(box[3]) - inset)
        width, height = int(box[2] - box[0]) - 2 * inset, int(box[3] - box[1]) - 2 * inset
        path = os.path.join(gd.SHOTS, f"{name}.png")
        subprocess.run(["import", "-window", "root", "-crop", f"{width}x{height}+{x}+{y}", "+repage", path],
                       check=True)
        gd.log("camera frame", name, f"{width}x{height}+{x}+{y}", "zoom", zoom)
    finally:
        view.view_perspective, view.view_camera_zoom, view.view_camera_offset = before
        for key, value in shown.items():
            setattr(overlay, key, value)
        for obj in hidden:
            obj.hide_set(False)


def rotated_footage():
    """A phone video with rotation metadata and a photo with an EXIF orientation: the
    capture camera shows each upright behind the face (the host compares the camera
    frame's screenshot with the upright picture)."""
    ui.step("rotated_footage")
    settings = capture_settings()
    settings.source_kind = "FILE"
    select_only()
    for name, stem in (("phone90.mp4", "phone90"), ("IMG_0042.jpg", "IMG_0042")):
        settings.source_file = os.path.join(ARGS.rotated, name)
        ui.invalidate()
        ui.expect_report("Info", rf"Captured \d+ frames into {stem}\.face0")
        yield from ui.scroll_to_top()
        if (yield from ui.click(CAPTURE)):
            yield from run_capture([])
            yield 0.3
        face = bpy.data.objects.get(f"{stem}.face0")
        ui.check(face is not None, f"{name} was captured")
        camera = bpy.context.scene.camera
        ui.check(camera is not None and camera.name == f"{stem}.camera", f"{stem}.camera is the scene camera")
        if face is None or camera is None:
            continue
        background = camera.data.background_images[0]
        ui.measure(f"{stem}_background", f"{round(math.degrees(background.rotation))}deg"
                   f"{'_flipped' if background.use_flip_x else ''}_x{background.scale:.3f}")
        bpy.context.scene.frame_set(bpy.context.scene.frame_start)
        yield from camera_frame_shot(f"upright_{stem}")
        select_only()


def quit_mid_capture():
    """Start a capture and quit Blender meanwhile (the host checks the way out is silent)."""
    ui.step("quit_mid_capture")
    select_only()
    capture_settings().source_file = os.path.join(VIDEO, "talking_head_640x360.mp4")
    ui.invalidate()
    yield from ui.scroll_to_top()
    if (yield from ui.click(CAPTURE)):
        yield from ui.wait(lambda: job().progress > 0.05, 60, "the capture is under way")
    ui.collect_reports()
    print(f"{ui.PREFIX} QUIT", flush=True)


PARTS = (startup, preferences_window, prepare_offline, prepare_local, capture, cancel, resmooth, retarget,
         sub_panels, failed_steps, several_faces, live, rotated_footage, quit_mid_capture)


def scenario():
    # REAL_BLENDER_GUI_PARTS (while working on one part): the parts to run, by function name.
    only = os.environ.get("REAL_BLENDER_GUI_PARTS", "").split()
    for part in PARTS:
        if only and part.__name__ not in only:
            continue
        try:
            yield from part()
        except Exception:
            import traceback

            ui.check(False, f"{part.__name__} ran without raising")
            gd.log(traceback.format_exc())
    return 0  # wm.quit_blender (File > Quit): the host reads the checks from the output


gd.start(scenario)
