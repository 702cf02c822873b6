"""Retargeting onto the ICT FaceKit avatar through bpy: the CLI function, drivers, head bone, exports, panel.

The take is single_face.mp4 with MediaPipe recorded (test_arkit.captured_take);
its blink (frames 26-28, eyes shut) must reach the avatar's eyeBlink_L/_R keys.
bpy state is global per process: every test starts from an empty factory scene.
"""

import json
import math

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="the bpy module (Blender as a Python module) is not installed")

from ddfa_blender.blender import animation, headless, properties, retarget, retarget_ui  # noqa: E402
from ddfa_blender.core import arkit  # noqa: E402
from ddfa_blender.core.engine import load_face_model  # noqa: E402
from ddfa_blender.core.errors import CaptureError  # noqa: E402
from test_arkit import BLINKS, captured_take  # noqa: E402

AVATAR = "ict_facekit_arkit.blend"
UNDRIVEN_ICT_KEYS = ["PupilDilate_L", "PupilDilate_R", "cheekRaiser_L", "cheekRaiser_R"]


@pytest.fixture(autouse=True)
def empty_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield
    bpy.ops.wm.read_factory_settings(use_empty=True)


@pytest.fixture(scope="module")
def take(shared_dir, models_dir):
    return captured_take(shared_dir, models_dir, "single_face")


@pytest.fixture(scope="module")
def avatar_spec(shared_dir):
    return f"{shared_dir / 'data' / 'avatars' / AVATAR}:ICT_Head"


@pytest.fixture
def captured_blend(tmp_path, take, models_dir):
    """A .blend written by headless.write_blend from the take (its take file saved beside it)."""
    take_path = tmp_path / "single_face.npz"
    take.save(str(take_path))
    blend = tmp_path / "capture.blend"
    headless.write_blend(take, blend, models_dir=models_dir, take_path=str(take_path))
    return blend


def shape_keys_keyed(obj) -> dict:
    """``{key name: (frames, values)}`` of the keyed shape keys of ``obj``."""
    channels = animation.animation_channels(obj.data.shape_keys)
    out = {}
    for fcurve in channels.fcurves:
        name = fcurve.data_path.split('"')[1]
        out[name] = animation.fcurve_values(fcurve)
    return out


def test_retarget_blend_animates_the_avatar(tmp_path, captured_blend, take, avatar_spec, models_dir):
    output = tmp_path / "retargeted.blend"
    result = retarget.retarget_blend(str(captured_blend), take, avatar_spec, output_path=str(output),
                                     models_dir=models_dir)
    assert result.report.unmatched_rows == [("tongueOut", "tongueOut")]
    assert result.report.unmatched_keys == UNDRIVEN_ICT_KEYS
    # Names matched across conventions: eyeBlinkLeft -> eyeBlink_L, browInnerUp -> both halves.
    assert ("eyeBlinkLeft", "eyeBlinkLeft", "eyeBlink_L") in result.report.matched
    assert {k for s, _, k in result.report.matched if s == "browInnerUp"} == {"browInnerUp_L", "browInnerUp_R"}
    assert {k for s, _, k in result.report.matched if s == "cheekPuff"} == {"cheekPuff_L", "cheekPuff_R"}

    bpy.ops.wm.open_mainfile(filepath=str(output))
    scene = bpy.context.scene
    avatar = bpy.data.objects["ICT_Head"]
    keyed = shape_keys_keyed(avatar)
    assert len(keyed) == 53 and not set(UNDRIVEN_ICT_KEYS) & set(keyed)
    frames, blink_left = keyed["eyeBlink_L"]
    np.testing.assert_array_equal(frames, scene.frame_start + take.frame - take.frame.min())
    assert blink_left[BLINKS["single_face"]].min() > 0.7
    assert np.percentile(blink_left[40:], 95) < 0.3
    weights = arkit.solve_arkit(take, load_face_model(models_dir))
    np.testing.assert_allclose(keyed["jawOpen"][1], weights.channel("jawOpen"), atol=1e-6)
    rotation = animation.animation_channels(avatar)
    assert len([c for c in rotation.fcurves if c.data_path == "rotation_quaternion"]) == 4
    assert "single_face.face0" in bpy.data.objects  # the captured face is still there
    assert result.action == "single_face.retarget" and result.action in bpy.data.actions


def _rigged_avatar(path):
    """A small avatar .blend: a mesh with keys in other conventions, skinned to a rig with a head bone."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    data = bpy.data.armatures.new("Rig")
    rig = bpy.data.objects.new("Rig", data)
    scene.collection.objects.link(rig)
    bpy.context.view_layer.objects.active = rig
    bpy.ops.object.mode_set(mode="EDIT")
    bone = data.edit_bones.new("Head")
    bone.head, bone.tail = (0.0, 0.0, 1.5), (0.0, 0.0, 1.7)
    bpy.ops.object.mode_set(mode="OBJECT")
    bpy.ops.mesh.primitive_cube_add(size=0.2, location=(0.0, 0.0, 1.6))
    head = bpy.context.active_object
    head.name = "Avatar"
    head.shape_key_add(name="Basis")
    for name in ("EyeBlinkLeft", "eye_blink_right", "jaw_open", "Wrinkle"):
        head.shape_key_add(name=name, from_mix=False)
    head.parent = rig
    head.modifiers.new("Armature", "ARMATURE").object = rig
    bpy.ops.wm.save_as_mainfile(filepath=str(path))


def test_retarget_blend_onto_a_rigged_avatar(tmp_path, captured_blend, take, models_dir):
    avatar_file = tmp_path / "rigged.blend"
    _rigged_avatar(avatar_file)
    output = tmp_path / "rigged_out.blend"
    result = retarget.retarget_blend(str(captured_blend), take, f"{avatar_file}:Avatar", output_path=str(output),
                                     models_dir=models_dir, head="bone", head_bone="Head")
    assert result.head == "Rig:Head" and result.report.unmatched_keys == ["Wrinkle"]
    bpy.ops.wm.open_mainfile(filepath=str(output))
    assert [o.name for o in bpy.data.objects if o.type == "ARMATURE"] == ["Rig"]  # appended once
    assert set(shape_keys_keyed(bpy.data.objects["Avatar"])) == {"EyeBlinkLeft", "eye_blink_right", "jaw_open"}
    bone_keys = animation.animation_channels(bpy.data.objects["Rig"]).fcurves
    assert len([c for c in bone_keys if c.data_path == 'pose.bones["Head"].rotation_quaternion']) == 4


def test_avatar_spec_errors(captured_blend, take, models_dir, shared_dir, tmp_path):
    avatar_file = shared_dir / "data" / "avatars" / AVATAR
    with pytest.raises(CaptureError, match="No object 'Nobody'"):
        retarget.retarget_blend(str(captured_blend), take, f"{avatar_file}:Nobody", models_dir=models_dir)
    with pytest.raises(CaptureError, match="not found"):
        retarget.retarget_blend(str(captured_blend), take, str(tmp_path / "missing.blend"), models_dir=models_dir)
    assert retarget.parse_avatar_spec("C:/a/b.blend:Head") == ("C:/a/b.blend", "Head")
    assert retarget.parse_avatar_spec("C:/a/b.blend") == ("C:/a/b.blend", None)


def _open_with_avatar(blend, avatar_spec):
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    avatar, _ = retarget.append_avatar(avatar_spec)
    return bpy.context.scene, avatar, retarget.find_captured_face(0)


def test_drivers_follow_the_captured_face(captured_blend, take, avatar_spec, models_dir):
    from ddfa_blender.core.retarget import default_mapping

    face_model = load_face_model(models_dir)
    scene, avatar, captured = _open_with_avatar(captured_blend, avatar_spec)
    mapping = default_mapping()
    for row in mapping.rows:  # a curve on a 3DDFA channel and on a MediaPipe one
        if row.source in ("jawOpen", "eyeBlinkLeft"):
            row.gain, row.offset, row.curve = 1.2, -0.05, [[0.0, 0.0], [0.3, 0.6], [1.0, 1.0]]
    options = dict(face_model=face_model, captured=captured, head_target=avatar, mapping=mapping,
                   start_frame=scene.frame_start)
    retarget.retarget_object(scene, take, avatar, mode="keys", **options)
    frames = list(range(scene.frame_start, scene.frame_end + 1, 3))
    keyed = retarget.sample_shape_keys(scene, avatar, frames)
    keyed_rotation = _sample_rotation(scene, avatar, frames)
    retarget.retarget_object(scene, take, avatar, mode="drivers", **options)
    drivers = avatar.data.shape_keys.animation_data.drivers
    assert len(drivers) == 53
    assert all(d.driver.is_simple_expression for d in drivers)  # no Python needed
    driven = retarget.sample_shape_keys(scene, avatar, frames)
    for name in keyed:
        np.testing.assert_allclose(driven[name], keyed[name], atol=1e-4, err_msg=name)
    # Drivers read the captured face's smoothed bake, keys the take: rotations agree closely.
    angle = _angles_between(_sample_rotation(scene, avatar, frames), keyed_rotation)
    assert angle.max() < math.radians(3.0)
    # Keys again: the drivers go away.
    retarget.retarget_object(scene, take, avatar, mode="keys", **options)
    assert avatar.data.shape_keys.animation_data.drivers.find('key_blocks["jawOpen"].value') is None


def _sample_rotation(scene, obj, frames, bone=None):
    out = []
    for frame in frames:
        scene.frame_set(frame)
        matrix = obj.matrix_world @ obj.pose.bones[bone].matrix if bone else obj.matrix_world
        out.append(list(matrix.to_quaternion()))
    return np.asarray(out)


def _quaternion_product(a, b):
    from mathutils import Quaternion

    return list(Quaternion(a) @ Quaternion(b))


def _angles_between(a, b):
    dots = np.abs(np.sum(a * b, axis=1)) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return 2 * np.arccos(np.clip(dots, 0.0, 1.0))


def test_head_rotation_on_a_bone_with_axis_correction(take, models_dir, avatar_spec):
    from mathutils import Euler, Quaternion

    from ddfa_blender.core import pose

    scene = bpy.context.scene
    avatar, _ = retarget.append_avatar(avatar_spec)
    data = bpy.data.armatures.new("Rig")
    rig = bpy.data.objects.new("Rig", data)
    scene.collection.objects.link(rig)
    rig.rotation_euler = (0.0, 0.0, 0.4)  # a turned armature and a bone with odd rest axes
    bpy.context.view_layer.objects.active = rig
    bpy.ops.object.mode_set(mode="EDIT")
    bone = data.edit_bones.new("head")
    bone.head, bone.tail, bone.roll = (0.0, 0.0, 1.5), (0.0, 0.05, 1.7), 0.7
    bpy.ops.object.mode_set(mode="OBJECT")
    correction = Euler((0.0, 0.0, math.pi)).to_quaternion()  # an avatar that faces +Y
    retarget.retarget_object(scene, take, avatar, face_model=load_face_model(models_dir),
                             head_target=rig, head_bone="head", axis_correction=tuple(correction),
                             start_frame=1)
    rows = take.for_track(0)
    captured = pose.head_pose_blender(rows.param, rows.roi, rows.image_size).rotation
    frames = [1, 20, 45, 70]
    rest = (rig.matrix_world @ data.bones["head"].matrix_local).to_quaternion()
    expected = [
        list(correction @ Quaternion(captured[f - 1]) @ correction.inverted() @ rest) for f in frames
    ]
    actual = _sample_rotation(scene, rig, frames, bone="head")
    assert _angles_between(actual, np.asarray(expected)).max() < 1e-4
    with pytest.raises(CaptureError, match="Bone 'jaw'"):
        retarget.retarget_object(scene, take, avatar, face_model=load_face_model(models_dir),
                                 head_target=rig, head_bone="jaw")


@pytest.mark.parametrize("file_format, what", [("GLB", "avatar"), ("FBX", "avatar"), ("GLB", "captured")])
def test_exports_reimport_with_the_same_animation(tmp_path, captured_blend, take, avatar_spec, models_dir,
                                                  file_format, what):
    scene, avatar, captured = _open_with_avatar(captured_blend, avatar_spec)
    retarget.retarget_object(scene, take, avatar, face_model=load_face_model(models_dir),
                             head_target=avatar, start_frame=scene.frame_start)
    exported = avatar if what == "avatar" else captured
    frames = list(range(scene.frame_start, scene.frame_end + 1))
    before = retarget.sample_shape_keys(scene, exported, frames)
    before_rotation = _sample_rotation(scene, exported, frames)
    path = str(tmp_path / f"{what}{retarget.EXPORT_FORMATS[file_format]}")
    retarget.export_animation([exported], path, file_format)
    exported.name += ".original"
    imported = [o for o in retarget.import_animation(path) if o.type == "MESH"]
    assert len(imported) == 1
    after = retarget.sample_shape_keys(scene, imported[0], frames)
    assert set(after) == set(before)
    worst = max(np.abs(after[name] - before[name]).max() for name in before)
    assert worst < 1e-4, worst
    assert _angles_between(_sample_rotation(scene, imported[0], frames), before_rotation).max() < 1e-3


def test_panel_operators_register_and_report(tmp_path, captured_blend, avatar_spec):
    properties.register()
    retarget_ui.register()
    try:
        bpy.ops.wm.open_mainfile(filepath=str(captured_blend))
        scene = bpy.context.scene
        avatar, _ = retarget.append_avatar(avatar_spec)
        settings = scene.ddfa_retarget
        settings.source_face = retarget.find_captured_face(0)
        settings.avatar = avatar
        assert bpy.ops.ddfa.retarget() == {"FINISHED"}
        assert len(settings.rows) == 52  # the default mapping, shown in the list
        assert "tongueOut" in settings.report and "PupilDilate_L" in settings.report
        assert len(shape_keys_keyed(avatar)) == 53
        # Edit a row, save the preset, reset, load it back.
        settings.rows[0].gain, settings.rows[0].curve = 2.0, "0,0; 0.5,0.9; 1,1"
        preset = tmp_path / "preset.json"
        assert bpy.ops.ddfa.mapping_save(filepath=str(preset)) == {"FINISHED"}
        assert json.loads(preset.read_text())["rows"][0]["curve"] == [[0, 0], [0.5, 0.9], [1, 1]]
        bpy.ops.ddfa.mapping_reset()
        assert settings.rows[0].gain == 1.0
        assert bpy.ops.ddfa.mapping_load(filepath=str(preset)) == {"FINISHED"}
        assert settings.rows[0].gain == 2.0 and settings.rows[0].curve == "0,0; 0.5,0.9; 1,1"
        csv_path = tmp_path / "take.csv"
        assert bpy.ops.ddfa.export_channels(filepath=str(csv_path), file_format="LIVE_LINK") == {"FINISHED"}
        assert csv_path.read_text().startswith("Timecode,BlendShapeCount,EyeBlinkLeft")
    finally:
        retarget_ui.unregister()
        properties.unregister()
    assert not hasattr(bpy.types.Scene, "ddfa_retarget")
    retarget_ui.register()
    retarget_ui.unregister()


def test_capture_cli_retargets_the_footage_onto_the_avatar(tmp_path, shared_dir, models_dir):
    """scripts/capture.py --retarget: the avatar's keys animated, names matched, unmatched listed."""
    import subprocess
    import sys

    from conftest import ROOT

    output = tmp_path / "avatar.blend"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/capture.py"), "--input",
         str(shared_dir / "data/video/single_face.mp4"), "--take", str(tmp_path / "t.npz"),
         "--output", str(output), "--models", str(models_dir),
         "--retarget", f"{shared_dir / 'data/avatars/ict_facekit_arkit.blend'}:ICT_Head"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "no key for: tongueOut" in result.stdout  # the avatar has no tongueOut: reported
    assert "PupilDilate_L" in result.stdout  # avatar keys nothing drives: listed
    bpy.ops.wm.open_mainfile(filepath=str(output))
    avatar = bpy.data.objects["ICT_Head"]
    channels = animation.animation_channels(avatar.data.shape_keys)
    animated = {fc.data_path.split('"')[1] for fc in channels.fcurves}
    # ARKit names matched across conventions: eyeBlinkLeft -> eyeBlink_L, cheekPuff -> cheekPuff_L/_R
    assert {"jawOpen", "eyeBlink_L", "eyeBlink_R", "mouthSmile_L", "cheekPuff_L", "cheekPuff_R"} <= animated
    jaw = channels.fcurves.find('key_blocks["jawOpen"].value')
    _, values = animation.fcurve_values(jaw)
    assert len(values) == 72 and np.ptp(values) > 0.1
    # The avatar turns exactly as the baked face does: both from the take smoothed as the bake was.
    scene = bpy.context.scene
    captured = retarget.find_captured_face(0)
    frames = list(range(scene.frame_start, scene.frame_end + 1))
    rest = np.asarray(avatar["ddfa_rest_rotation"])
    avatar_turn = _sample_rotation(scene, avatar, frames)
    avatar_turn = np.array([_quaternion_product(q, rest * [1, -1, -1, -1]) for q in avatar_turn])
    angle = _angles_between(avatar_turn, _sample_rotation(scene, captured, frames))
    assert np.degrees(angle.max()) < 0.01
