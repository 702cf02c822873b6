"""Live capture in bpy: the main-thread step poses the face, Stop bakes the recording, and
ending live in any way (Esc, file load, disabling the add-on) leaves nothing running.

There is no window in these tests, so the modal operator's timer is replaced
by calling the driver's main-thread step directly, as the timer does.
"""

import time

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="the bpy module (Blender as a Python module) is not installed")

from ddfa_blender.blender import animation, bake, bake_channels, live, properties, registration  # noqa: E402
from ddfa_blender.core import pose  # noqa: E402
from ddfa_blender.core.camera import RealtimeFileSource  # noqa: E402
from ddfa_blender.core.live import LiveOptions, LiveSession  # noqa: E402
from ddfa_blender.core.smoothing import PRESETS  # noqa: E402
from ddfa_blender.core.take import Take  # noqa: E402
from test_blender_synthetic import synthetic_face_model, synthetic_take  # noqa: E402

EXPR_NAMES = [f"exp_{k:02d}" for k in range(10)]
STEP_SECONDS = 2.0


@pytest.fixture(autouse=True)
def addon(tmp_path):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    registration.register()  # registers the live module too
    settings = bpy.context.scene.ddfa_capture
    settings.take_folder = str(tmp_path)
    properties.write_smoothing(settings.smoothing, PRESETS["none"])
    yield
    live.release_all()
    registration.unregister()
    bpy.ops.wm.read_factory_settings(use_empty=True)


@pytest.fixture
def session(shared_dir, models_dir):
    source = RealtimeFileSource(str(shared_dir / "data/video/talking_head_640x360.mp4"))
    session = LiveSession(source, LiveOptions(models_dir=str(models_dir), threads=1))
    yield session
    session.stop()


def keys(id_data, data_path, index=0):
    fcurve = animation.animation_channels(id_data).fcurves.find(data_path, index=index)
    assert fcurve is not None, f"{id_data.name} has no F-curve {data_path}[{index}]"
    return animation.fcurve_values(fcurve)


def drive(driver, seconds):
    """Call the main-thread step with each new result for ``seconds``; the poses it set."""
    context = bpy.context
    posed = []
    last = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        result = driver.session.latest()
        if result is not None and result.sequence != last:
            last = result.sequence
            assert driver.apply_live_result(context, result)
            obj = driver.target or driver.preview
            blocks = obj.data.shape_keys.key_blocks
            posed.append((result, np.array(obj.rotation_quaternion), np.array(obj.location),
                          obj.scale[0], np.array([blocks[n].value for n in EXPR_NAMES])))
        time.sleep(0.005)
    return posed


def test_live_step_animates_the_face_and_stop_bakes_the_recording(session):
    driver = live.LiveDriver(session).start()
    assert session.wait_ready(60)
    driver.set_recording(True)
    posed = drive(driver, STEP_SECONDS)
    assert len(posed) >= 0.5 * STEP_SECONDS * 23.976
    preview = driver.preview
    assert preview.name == live.PREVIEW_NAME and driver.frames_applied == len(posed)

    # Each step set exactly the pose of its result, as the bake maps it.
    distance = driver.distance
    scale = driver.expression_scale
    previous = None
    for result, rotation, location, head_scale, values in posed:
        face = result.face(0)
        want = live.live_pose(face.param, face.roi, result.image_size, distance, scale, previous)
        previous = want[0]
        np.testing.assert_allclose(rotation, want[0], atol=1e-5)
        np.testing.assert_allclose(location, want[1], rtol=1e-5, atol=1e-6)
        assert head_scale == pytest.approx(want[2], rel=1e-5)
        np.testing.assert_allclose(values, want[3], rtol=1e-5, atol=1e-5)
    rotations = np.array([p[1] for p in posed])
    values = np.array([p[4] for p in posed])
    assert rotations.std(axis=0).max() > 1e-3 and values.std(axis=0).max() > 1e-2  # it moved
    assert (np.einsum("ij,ij->i", rotations[1:], rotations[:-1]) > 0).all()  # continuous

    objects = driver.finish(bpy.context)
    assert session.alive_threads() == []
    take = driver.last_take
    assert live.PREVIEW_NAME not in bpy.data.objects  # the preview made way for the bake
    assert [o.name for o in objects] == ["live.face0"] and len(take) >= len(posed)
    face = objects[0]
    saved = Take.load(bpy.path.abspath(face.ddfa_capture.take_path))
    np.testing.assert_array_equal(saved.param, take.param)

    # The baked action is the recorded take, keyed as an offline capture is.
    channels = bake_channels.track_channels(take, 0)
    frames, _ = keys(face, "location", 0)
    np.testing.assert_array_equal(frames, 1 + take.frame - take.frame.min())
    stored_scale = np.array(face[bake.EXPRESSION_SCALE_PROPERTY])
    for k, name in enumerate(EXPR_NAMES):
        _, baked = keys(face.data.shape_keys, f'key_blocks["{name}"].value')
        np.testing.assert_allclose(baked * stored_scale[k], take.param[:, 52 + k], rtol=1e-5, atol=1e-5)
    rotation = np.stack([keys(face, "rotation_quaternion", i)[1] for i in range(4)], axis=-1)
    np.testing.assert_allclose(rotation, channels.rotation, atol=1e-6)
    expected = pose.head_pose_blender(take.param, take.roi, take.image_size).rotation
    assert np.abs(np.abs(np.einsum("ij,ij->i", rotation, expected)) - 1.0).max() < 1e-5
    location = np.stack([keys(face, "location", i)[1] for i in range(3)], axis=-1)
    np.testing.assert_allclose(location, channels.location, rtol=1e-5, atol=1e-6)


def captured_face(tmp_path):
    """A face baked from a synthetic take, as Capture leaves it."""
    take = synthetic_take(n=30)
    return bake.bake_take(bpy.context.scene, take, face_model=synthetic_face_model(),
                          take_path=str(tmp_path / "t.npz"))


def test_esc_ends_live_and_leaves_the_captured_face_as_it_was(session, tmp_path):
    face = captured_face(tmp_path)
    bpy.context.scene.frame_set(7)
    action = face.animation_data.action
    keys_action = face.data.shape_keys.animation_data.action
    before = (tuple(face.location), tuple(face.rotation_quaternion), tuple(face.scale))
    blocks = face.data.shape_keys.key_blocks
    values = [blocks[n].value for n in EXPR_NAMES]
    sliders = [(blocks[n].slider_min, blocks[n].slider_max) for n in EXPR_NAMES]

    driver = live.LiveDriver(session, target=face).start()
    assert face.animation_data.action is None  # live poses it directly
    assert session.wait_ready(60)
    posed = drive(driver, 0.6)
    assert posed and driver.preview is None
    assert tuple(face.location) != before[0]

    driver.cancel()
    assert session.alive_threads() == []
    assert face.animation_data.action == action and face.data.shape_keys.animation_data.action == keys_action
    assert (tuple(face.location), tuple(face.rotation_quaternion), tuple(face.scale)) == before
    assert [blocks[n].value for n in EXPR_NAMES] == pytest.approx(values)
    assert [(blocks[n].slider_min, blocks[n].slider_max) for n in EXPR_NAMES] == sliders
    assert sorted(o.name for o in bpy.data.objects) == ["t.camera", "t.face0", "t.origin"]


def test_loading_a_file_releases_the_camera(session):
    driver = live.LiveDriver(session).start()
    released = []
    driver.on_release = lambda: released.append(True)
    assert session.wait_ready(60)
    live.release_on_load()  # what bpy.app.handlers.load_pre calls
    assert driver.released and released == [True]
    assert session.alive_threads() == [] and not session.running
    assert driver.finish(bpy.context) == []  # nothing touched after the release
    assert live.release_on_load in bpy.app.handlers.load_pre
    bpy.context.window_manager.ddfa_live.running = True  # as a saved file may carry it
    live.clear_state_on_load()  # what load_post calls
    assert not bpy.context.window_manager.ddfa_live.running


def test_disabling_the_addon_releases_the_camera_and_registers_again(session):
    driver = live.LiveDriver(session).start()
    live.unregister()
    assert driver.released and session.alive_threads() == []
    assert live.release_on_load not in bpy.app.handlers.load_pre
    assert live.clear_state_on_load not in bpy.app.handlers.load_post
    assert not hasattr(bpy.types.Scene, "ddfa_live")
    for _ in range(2):
        live.register()
        assert hasattr(bpy.types.WindowManager, "ddfa_live")
        live.unregister()
    live.register()


def test_live_operator_refuses_background_mode():
    assert bpy.app.background
    with pytest.raises(RuntimeError, match="window"):
        bpy.ops.ddfa.live("EXEC_DEFAULT")
