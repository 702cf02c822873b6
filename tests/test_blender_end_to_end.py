"""Headless end to end, as a studio runs it: footage -> take -> bake -> retarget onto a rigged avatar -> .blend.

One run of ``scripts/capture.py`` (the bpy module of whatever Blender this venv
holds; ``make test-matrix`` runs it in each supported version) on a short
clip, retargeting onto the shared ICT FaceKit head rigged here with a head
bone. Checked: the process exits 0 with Blender shut down (its session temp
folder removed: the 4.2 crash and the 4.5 hang at exit), and the .blend,
reopened, holds the captured face and the avatar with keys on the head bone's
rotation and on the ARKit shape keys, one key per frame of the clip.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="the bpy module (Blender as a Python module) is not installed")

from conftest import ROOT  # noqa: E402

from ddfa_blender.blender import animation  # noqa: E402

CLIP = "data/video/single_face.mp4"  # 72 frames at 30 fps: about 15 s of capture on this machine
CLIP_FRAMES = 72

# Rigs the shared avatar: an armature "Rig" with a bone "Head" at the neck, the head
# mesh parented and skinned to it (every vertex weighted to the bone), saved by this
# Blender so that it can read it back whatever its version.
RIG_AVATAR = """
    import sys
    import bpy
    source, target = sys.argv[-2:]
    bpy.ops.wm.open_mainfile(filepath=source)
    head = bpy.data.objects["ICT_Head"]
    scene = bpy.context.scene
    rig = bpy.data.objects.new("Rig", bpy.data.armatures.new("Rig"))
    scene.collection.objects.link(rig)
    bpy.context.view_layer.objects.active = rig
    bpy.ops.object.mode_set(mode="EDIT")
    bone = rig.data.edit_bones.new("Head")
    low = min(corner[2] for corner in head.bound_box)
    bone.head, bone.tail = (0.0, 0.0, low), (0.0, 0.0, low + 0.1)
    bpy.ops.object.mode_set(mode="OBJECT")
    group = head.vertex_groups.new(name="Head")
    group.add(range(len(head.data.vertices)), 1.0, "REPLACE")
    head.parent = rig
    head.modifiers.new("Armature", "ARMATURE").object = rig
    bpy.ops.wm.save_as_mainfile(filepath=target)
"""


def _run(argv, temp, timeout):
    """Run ``argv`` with a private TMPDIR; fail naming a hang instead of waiting forever."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=temp.parent,
                              env={**os.environ, "TMPDIR": str(temp)})
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{argv[1]} did not exit within {err.timeout} s (Blender hangs at exit?)")


def _blender_session_folders(temp):
    return sorted(p.name for p in temp.iterdir() if p.name.startswith("blender_"))


def test_capture_bake_retarget_onto_a_rigged_avatar_and_reopen(tmp_path, shared_dir, models_dir):
    temp = tmp_path / "tmp"
    temp.mkdir()
    avatar = tmp_path / "ict_rigged.blend"
    rigged = _run([sys.executable, "-c", textwrap.dedent(RIG_AVATAR),
                   str(shared_dir / "data/avatars/ict_facekit_arkit.blend"), str(avatar)], temp, 240)
    assert rigged.returncode == 0 and avatar.is_file(), rigged.stderr[-2000:]

    output = tmp_path / "shot.blend"
    result = _run([sys.executable, str(ROOT / "scripts/capture.py"), "--input", str(shared_dir / CLIP),
                   "--output", str(output), "--models", str(models_dir),
                   "--retarget", f"{avatar}:ICT_Head", "--head-bone", "Head"], temp, 900)
    assert result.returncode == 0, f"exit status {result.returncode}: {result.stderr[-3000:]}"
    assert output.is_file() and (tmp_path / "shot.npz").is_file()  # the take is kept beside the .blend
    assert "Not freed memory blocks" not in result.stdout + result.stderr  # Blender shut down
    assert _blender_session_folders(temp) == []

    bpy.ops.wm.open_mainfile(filepath=str(output))
    try:
        assert "shot.face0" in bpy.data.objects  # the captured face
        scene = bpy.context.scene
        frames = range(scene.frame_start, scene.frame_end + 1)
        assert len(frames) == CLIP_FRAMES

        rig = bpy.data.objects["Rig"]
        bone_curves = [c for c in animation.animation_channels(rig).fcurves
                       if c.data_path == 'pose.bones["Head"].rotation_quaternion']
        assert len(bone_curves) == 4
        turn = []
        for frame in frames:
            scene.frame_set(frame)
            turn.append(rig.pose.bones["Head"].rotation_quaternion.copy())
        turn = np.array(turn)
        assert np.ptp(turn, axis=0).max() > 1e-3  # the head bone turns with the performer

        keys = bpy.data.objects["ICT_Head"].data.shape_keys
        channels = animation.animation_channels(keys)
        animated = {c.data_path.split('"')[1] for c in channels.fcurves}
        assert {"jawOpen", "eyeBlink_L", "eyeBlink_R", "mouthSmile_L", "browInnerUp_L"} <= animated
        _, jaw = animation.fcurve_values(channels.fcurves.find('key_blocks["jawOpen"].value'))
        assert len(jaw) == CLIP_FRAMES and np.ptp(jaw) > 0.05
    finally:
        bpy.ops.wm.read_factory_settings(use_empty=True)
