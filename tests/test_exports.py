"""Live Link Face CSV and channel tables: layout, angles, timecodes, and read-back round trips."""

import math

import numpy as np
import pytest

from ddfa_blender.core import exports, pose
from ddfa_blender.core.arkit import solve_arkit
from ddfa_blender.core.engine import load_face_model
from ddfa_blender.core.errors import CaptureError
from test_arkit import captured_take

# Epic's Live Link Face recording header (checked against several public importers).
EXPECTED_HEADER = (
    "Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,"
    "EyeLookUpLeft,EyeSquintLeft,EyeWideLeft,EyeBlinkRight,EyeLookDownRight,EyeLookInRight,"
    "EyeLookOutRight,EyeLookUpRight,EyeSquintRight,EyeWideRight,JawForward,JawRight,JawLeft,"
    "JawOpen,MouthClose,MouthFunnel,MouthPucker,MouthRight,MouthLeft,MouthSmileLeft,"
    "MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,MouthDimpleRight,"
    "MouthStretchLeft,MouthStretchRight,MouthRollLower,MouthRollUpper,MouthShrugLower,"
    "MouthShrugUpper,MouthPressLeft,MouthPressRight,MouthLowerDownLeft,MouthLowerDownRight,"
    "MouthUpperUpLeft,MouthUpperUpRight,BrowDownLeft,BrowDownRight,BrowInnerUp,BrowOuterUpLeft,"
    "BrowOuterUpRight,CheekPuff,CheekSquintLeft,CheekSquintRight,NoseSneerLeft,NoseSneerRight,"
    "TongueOut,HeadYaw,HeadPitch,HeadRoll,LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,"
    "RightEyePitch,RightEyeRoll"
)


@pytest.fixture(scope="module")
def take(shared_dir, models_dir):
    return captured_take(shared_dir, models_dir, "single_face")


@pytest.fixture(scope="module")
def face(models_dir):
    return load_face_model(models_dir)


def test_live_link_header_is_epics():
    assert ",".join(exports.LIVE_LINK_HEADER) == EXPECTED_HEADER
    assert exports.LIVE_LINK_COUNT == 61


@pytest.mark.parametrize("seconds, fps, text", [
    (0.0, 30.0, "00:00:00:00.000"),
    (3661.5, 30.0, "01:01:01:15.000"),
    (1.0 / 23.976, 23.976, "00:00:00:01.000"),
    (0.05, 30.0, "00:00:00:01.500"),
])
def test_timecode(seconds, fps, text):
    assert exports.timecode(seconds, fps) == text
    assert exports.parse_timecode(text, fps) == pytest.approx(seconds, abs=1e-6)


def _rotation(yaw=0.0, pitch=0.0, roll=0.0):
    cy, sy, cp, sp, cr, sr = (f(a) for a in (yaw, -pitch, roll) for f in (math.cos, math.sin))
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return ry @ rx @ rz


def test_head_angles_invert_yaw_pitch_roll():
    angles = np.array([[0.3, 0.0, 0.0], [0.0, 0.2, 0.0], [0.0, 0.0, -0.1], [0.4, -0.3, 0.2]])
    rotations = np.stack([_rotation(*a) for a in angles])
    np.testing.assert_allclose(exports.head_angles(rotations), angles, atol=1e-12)
    # Turning toward the performer's left (image right) swings the nose (+z) toward +x.
    assert (_rotation(yaw=0.3) @ [0, 0, 1])[0] > 0


def test_eye_angles_follow_gaze_channels():
    names = ("eyeLookOutLeft", "eyeLookInLeft", "eyeLookUpLeft", "eyeLookDownLeft",
             "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight", "eyeLookDownRight")
    weights = {n: np.zeros(2) for n in names}
    weights["eyeLookOutLeft"][0] = weights["eyeLookInRight"][0] = 1.0  # both look to the left
    weights["eyeLookDownLeft"][1] = weights["eyeLookDownRight"][1] = 0.5
    angles = exports.eye_angles(weights)
    np.testing.assert_allclose(angles[0], [exports.EYE_LOOK_RADIANS, 0, 0, exports.EYE_LOOK_RADIANS, 0, 0])
    np.testing.assert_allclose(angles[1], [0, -0.5 * exports.EYE_LOOK_RADIANS, 0, 0, -0.5 * exports.EYE_LOOK_RADIANS, 0])


def test_live_link_csv_round_trip(tmp_path, take, face):
    weights = solve_arkit(take, face)
    _, rotation, _ = pose.decompose_pose(pose.split_param(take.param)[0])
    path = tmp_path / "take.csv"
    exports.write_live_link_csv(path, weights, rotation, take.fps)
    read = exports.read_live_link_csv(path, fps=take.fps)
    assert ",".join(["Timecode", "BlendShapeCount", *read["names"]]) == EXPECTED_HEADER
    codes, values = exports.live_link_rows(weights, rotation, take.fps)
    assert read["timecode"] == codes and len(codes) == len(take)
    np.testing.assert_allclose(read["values"], values, atol=1e-6)
    np.testing.assert_allclose(read["time"], take.time, atol=1e-3)
    jaw = read["names"].index("JawOpen")
    np.testing.assert_allclose(read["values"][:, jaw], weights.channel("jawOpen"), atol=1e-6)
    assert path.read_text().splitlines()[1].split(",")[1] == "61"


def test_live_link_holds_frames_without_a_face(take, face):
    gap = take.rows(np.ones(len(take), dtype=bool))
    gap.valid[10:14] = False
    gap.param[10:14] = np.nan
    weights = solve_arkit(gap, face)
    _, rotation, _ = pose.decompose_pose(pose.split_param(gap.param)[0])
    _, values = exports.live_link_rows(weights, rotation, gap.fps)
    assert np.isfinite(values).all()
    np.testing.assert_array_equal(values[10:14], np.repeat(values[9:10], 4, axis=0))


def test_channel_tables_round_trip(tmp_path, take, face):
    columns, values = exports.take_table(take, face)
    assert columns[:3] == ["frame", "time", "valid"] and "jawOpen" in columns and "mp.jawOpen" in columns
    values = values.copy()
    values[3, 5] = np.nan
    exports.write_table_csv(tmp_path / "t.csv", columns, values)
    read_columns, read_values = exports.read_table_csv(tmp_path / "t.csv")
    assert read_columns == columns
    np.testing.assert_allclose(read_values, values, rtol=1e-7, atol=1e-9, equal_nan=True)
    exports.write_table_json(tmp_path / "t.json", columns, values, fps=take.fps)
    json_columns, json_values, meta = exports.read_table_json(tmp_path / "t.json")
    assert json_columns == columns and meta["fps"] == take.fps
    np.testing.assert_array_equal(json_values, values)


def test_exports_refuse_missing_folder(tmp_path):
    with pytest.raises(CaptureError, match="does not exist"):
        exports.write_table_csv(tmp_path / "nowhere" / "t.csv", ["a"], np.zeros((1, 1)))
