"""Mapping presets: matching target keys across conventions, evaluation, JSON presets, sources."""

import json

import numpy as np
import pytest

from ddfa_blender.core import retarget
from ddfa_blender.core.arkit import ARKIT_NAMES
from ddfa_blender.core.errors import CaptureError

# Key names in several conventions (a made-up avatar), with a split channel and extras.
AVATAR_KEYS = [
    "Basis", "EyeBlinkLeft", "eye_blink_right", "jaw_open", "mouthSmile.L", "mouthSmile.R",
    "browInnerUp_L", "browInnerUp_R", "cheekPuff", "eyeSquint", "Extra_Wrinkle",
]


def test_default_mapping_matches_across_conventions():
    resolved = retarget.match_mapping(retarget.default_mapping(), AVATAR_KEYS)
    drives = {key: [row.source for row in rows] for key, rows in resolved.rows_by_key.items()}
    assert drives["EyeBlinkLeft"] == ["eyeBlinkLeft"]
    assert drives["eye_blink_right"] == ["eyeBlinkRight"]
    assert drives["jaw_open"] == ["jawOpen"]
    assert drives["mouthSmile.L"] == ["mouthSmileLeft"]
    assert drives["browInnerUp_L"] == drives["browInnerUp_R"] == ["browInnerUp"]  # split
    assert drives["eyeSquint"] == ["eyeSquintLeft", "eyeSquintRight"]  # merged
    report = resolved.report
    assert report.unmatched_keys == ["Extra_Wrinkle"]  # Basis is never listed
    unmatched = {target for _, target in report.unmatched_rows}
    assert "tongueOut" in unmatched and "jawOpen" not in unmatched
    assert len(unmatched) + len({t for _, t, _ in report.matched}) == len(ARKIT_NAMES)
    assert any("Extra_Wrinkle" in line for line in report.lines())


def test_exact_name_wins_over_split_halves():
    keys = ["browInnerUp", "browInnerUp_L", "browInnerUp_R"]
    assert retarget.resolve_target("browInnerUp", keys) == ["browInnerUp"]
    assert retarget.resolve_target("browInnerUp_Left", keys) == ["browInnerUp_L"]
    assert retarget.resolve_target("mouthLeft", ["mouthLeft", "mouth_L"]) == ["mouthLeft"]
    assert retarget.resolve_target("noseSneerLeft", keys) == []


def test_row_evaluation_gain_offset_curve_clamp():
    row = retarget.MappingRow("a", "k", gain=2.0, offset=-0.2, clamp_min=0.0, clamp_max=0.9)
    np.testing.assert_allclose(row.apply([0.0, 0.3, 0.6, np.nan]), [0.0, 0.4, 0.9, np.nan])
    curved = retarget.MappingRow("a", "k", curve=[[0.0, 0.0], [0.5, 0.8], [1.0, 1.0]])
    np.testing.assert_allclose(curved.apply([-1.0, 0.25, 0.75, 2.0]), [0.0, 0.4, 0.9, 1.0])


def test_clamped_curve_is_the_same_function():
    curve = [[0.0, -0.2], [0.5, 1.4], [1.0, 0.6]]
    points = np.asarray(retarget.clamped_curve(curve, 0.0, 1.0))
    x = np.linspace(-0.5, 1.5, 401)
    row = retarget.MappingRow("a", "k", curve=curve)
    np.testing.assert_allclose(np.interp(x, points[:, 0], points[:, 1]), row.apply(x), atol=1e-12)
    assert points[:, 1].min() >= 0.0 and points[:, 1].max() <= 1.0


def test_several_rows_on_one_key_average_and_disabled_rows_are_skipped():
    mapping = retarget.Mapping(rows=[
        retarget.MappingRow("a", "key"),
        retarget.MappingRow("b", "key", gain=0.5),
        retarget.MappingRow("c", "key", enabled=False),
    ])
    resolved = retarget.match_mapping(mapping, ["key"], sources={"a": 0, "b": 0})
    values = resolved.evaluate({"a": np.array([1.0, 0.0]), "b": np.array([1.0, 1.0]), "c": np.ones(2)})
    np.testing.assert_allclose(values["key"], [0.75, 0.25])
    missing = retarget.match_mapping(mapping, ["key"], sources={"a": 0})
    assert missing.report.missing_sources == ["b"]


def test_preset_json_round_trip(tmp_path):
    mapping = retarget.default_mapping()
    mapping.rows[0].gain = 1.5
    mapping.rows[1].curve = [[0, 0], [1, 0.5]]
    mapping.rows[2].enabled = False
    path = tmp_path / "preset.json"
    mapping.save(path)
    loaded = retarget.Mapping.load(path)
    assert loaded.to_dict() == mapping.to_dict()
    data = json.loads(path.read_text())
    assert data["format"] == retarget.FORMAT and data["rows"][0]["gain"] == 1.5
    hand_written = tmp_path / "short.json"
    hand_written.write_text(json.dumps({"rows": [{"source": "jawOpen", "target": "Jaw"}]}))
    row = retarget.Mapping.load(hand_written).rows[0]
    assert (row.gain, row.offset, row.clamp_min, row.clamp_max, row.curve) == (1.0, 0.0, 0.0, 1.0, None)


@pytest.mark.parametrize("content, message", [
    ("not json", "Cannot read"),
    (json.dumps({"rows": [{"source": "a"}]}), "malformed"),
    (json.dumps({"rows": [{"source": "a", "target": "b", "curve": [[1, 0], [0, 1]]}]}), "increasing"),
    (json.dumps({"rows": [{"source": "a", "target": "b", "min": 1, "max": 0}]}), "above"),
    (json.dumps({"version": 99, "rows": []}), "update the add-on"),
    (json.dumps([1, 2]), "Not a mapping preset"),
])
def test_bad_presets_are_refused_with_a_reason(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(CaptureError, match=message):
        retarget.Mapping.load(path)


def test_take_sources_hold_solver_and_mediapipe_channels(shared_dir, models_dir):
    from ddfa_blender.core.engine import load_face_model
    from test_arkit import captured_take

    take = captured_take(shared_dir, models_dir, "single_face")
    sources = retarget.take_sources(take, load_face_model(models_dir))
    assert set(ARKIT_NAMES) <= set(sources.channels)
    assert "mp.jawOpen" in sources.channels and "mp.tongueOut" in sources.channels
    assert all(len(v) == len(take) for v in sources.channels.values())
    resolved = retarget.match_mapping(retarget.default_mapping(), ["jawOpen"], sources.channels)
    np.testing.assert_array_equal(resolved.evaluate(sources.channels)["jawOpen"], sources.channels["jawOpen"])
