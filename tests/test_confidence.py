"""Per-frame confidence: each kind of evidence flags what it should and leaves real motion alone."""

import numpy as np
import pytest

from ddfa_blender.core import confidence
from ddfa_blender.core.confidence import (
    THRESHOLD,
    confidence_factors,
    flagged_rows,
    flagged_summary,
    ramp,
    take_confidence,
)
from ddfa_blender.core.pose import quaternion_exp, quaternion_multiply
from ddfa_blender.core.take import Take
from test_smoothing import make_take, noisy, synthetic_face, truth_channels


@pytest.fixture(scope="module")
def face():
    return synthetic_face()


def yaw_offset(rotation, rows, degrees):
    """``rotation`` with the given rows turned by ``degrees`` about the vertical axis."""
    rotation = rotation.copy()
    rotation[rows] = quaternion_multiply(quaternion_exp(np.radians([0.0, degrees, 0.0])), rotation[rows])
    return rotation


def test_ramp_runs_from_one_to_zero_between_good_and_bad():
    values = ramp([0.0, 1.0, 1.5, 2.0, 3.0, np.nan], 1.0, 2.0)
    np.testing.assert_allclose(values, [1.0, 1.0, 0.5, 0.0, 0.0, 1.0])
    dense = ramp(np.linspace(1.0, 2.0, 50), 1.0, 2.0)
    assert (np.diff(dense) <= 0).all()


def test_a_clean_noisy_performance_is_trusted(face):
    take = make_take(face, *noisy(*truth_channels(150)))
    assert take.confidence.dtype == np.float32 and take.confidence.shape == (150,)
    assert take.confidence.min() > 0.9
    assert not flagged_rows(take).any()


def test_a_jump_away_and_back_is_flagged_but_a_fast_turn_is_not(face):
    rotation, translation, scale, expression = truth_channels(150)
    # A fast real turn: 60 degrees of yaw in a third of a second, then held.
    turn = np.clip((np.arange(150) - 100) / 10.0, 0.0, 1.0) * 60.0
    for row in range(150):
        rotation[row] = quaternion_multiply(quaternion_exp(np.radians([0.0, turn[row], 0.0])), rotation[row])
    # An occluded stretch: the fit swings 40 degrees away for 8 frames and comes back.
    rotation = yaw_offset(rotation, slice(40, 48), -40.0)
    take = make_take(face, *noisy(rotation, translation, scale, expression, level=0.5))
    flagged = flagged_rows(take)
    assert flagged[40:48].all()
    assert not flagged[:38].any() and not flagged[50:].any()
    assert confidence_factors(take)["motion"][95:115].min() > 0.9


def test_expression_spike_is_flagged_but_a_step_is_not(face):
    rotation, translation, scale, expression = truth_channels(150)
    expression[100:] += 3.0 * expression.std(axis=0)  # a sudden held change: real
    expression[40:44] -= 8.0 * expression.std(axis=0)  # away and back in four frames
    take = make_take(face, rotation, translation, scale, expression)
    factor = confidence_factors(take)["expression"]
    assert (factor[40:44] < THRESHOLD).all()
    assert factor[:38].min() == 1.0 and factor[46:].min() == 1.0


def test_heads_occlusion_and_frame_edge_each_flag_a_frame(face):
    take = make_take(face, *noisy(*truth_channels(90)))
    take.quality[10] = 3.5
    occluded = np.zeros(90)
    occluded[30:42] = 0.3  # 0.4 s at 30 fps: an occluder, not a blink
    take.channels = {**take.channels, confidence.OCCLUSION_CHANNEL: occluded}
    take.lmk68[60, :, 0] += take.image_size[0]  # all landmarks right of the image
    take.confidence = take_confidence(take)
    factors = confidence_factors(take)
    assert factors["heads"][10] == 0.0 and factors["in_frame"][60] == 0.0
    assert (factors["occlusion"][30:42] == 0.0).all()
    np.testing.assert_array_equal(np.flatnonzero(flagged_rows(take)), [10, *range(30, 42), 60])


def test_occlusion_counts_only_when_it_lasts_as_an_occluder_does(face):
    """A blink scores like a small occluder for 4-8 frames; a hand or a cup stays longer."""
    take = make_take(face, *noisy(*truth_channels(120)))
    score = np.zeros(120)
    score[20:27] = 0.25  # seven frames (0.23 s): blink-length
    score[60:75] = 0.25  # half a second, with a one-frame dip: an occluder
    score[66] = 0.02
    score[100] = np.nan  # no score (warming up): no evidence
    take.channels = {**take.channels, confidence.OCCLUSION_CHANNEL: score}
    take.confidence = take_confidence(take)
    np.testing.assert_array_equal(np.flatnonzero(flagged_rows(take)), np.arange(60, 75))
    lasting = confidence.lasting_score(score, take.time)
    assert np.isnan(lasting[100]) and lasting[20:27].max() == 0.0
    np.testing.assert_allclose(lasting[60:75], 0.25)


def test_mediapipe_missing_face_lowers_confidence_without_flagging_alone(face):
    take = make_take(face, *noisy(*truth_channels(60)))
    scores = np.full((60, 52), 0.1, dtype=np.float32)
    scores[20] = np.nan
    take.channels = {**take.channels, confidence.MEDIAPIPE_CHANNEL: scores}
    values = take_confidence(take)
    assert values[20] == pytest.approx(confidence.MEDIAPIPE_MISSING_FACTOR * values[19], rel=0.1)
    assert values[20] >= THRESHOLD


def test_rows_without_a_face_have_no_confidence(face):
    take = make_take(face, *noisy(*truth_channels(60)))
    take.valid[30:35] = False
    values = take_confidence(take)
    assert np.isnan(values[30:35]).all() and np.isfinite(values[:30]).all()
    assert not flagged_rows(take.rows(np.ones(60, dtype=bool)))[30:35].any()


def test_an_older_take_without_confidence_gets_it_computed_on_load(face, tmp_path):
    take = make_take(face, *noisy(*truth_channels(60)))
    take.quality[7] = 4.0
    path = tmp_path / "old.npz"
    take.save(str(path))
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if k != "confidence"}
    np.savez(path, **arrays)
    loaded = Take.load(str(path))
    np.testing.assert_allclose(loaded.confidence, take_confidence(take), rtol=1e-6)
    assert flagged_rows(loaded)[7]


def test_the_stored_confidence_round_trips(face, tmp_path):
    take = make_take(face, *noisy(*truth_channels(40)))
    take.confidence[:] = np.linspace(0.0, 1.0, 40)
    take.save(str(tmp_path / "t.npz"))
    np.testing.assert_array_equal(Take.load(str(tmp_path / "t.npz")).confidence, take.confidence)


def test_flagged_summary_names_count_and_frames(face):
    take = make_take(face, *noisy(*truth_channels(60)))
    take.confidence[:] = 1.0
    assert flagged_summary(take).startswith("no frame flagged")
    take.confidence[[5, 6, 7, 30]] = 0.2
    line = flagged_summary(take)
    assert line.startswith("4 of 60 tracked rows flagged") and "frames 5-7, 30" in line
    assert "kept as captured" in flagged_summary(take, kept=True)


def test_cli_reports_flagged_frames_and_checks_the_threshold(face, tmp_path, shared_dir):
    import subprocess
    import sys

    from conftest import ROOT

    take = make_take(face, *noisy(*truth_channels(40)))
    take.confidence[:] = 0.9
    take.confidence[12:15] = 0.1
    take.source = str(shared_dir / "data/video/single_face.mp4")  # the preview draws over footage
    take.image_size = (640, 360)
    take.save(str(tmp_path / "t.npz"))

    def run(*args):
        return subprocess.run([sys.executable, str(ROOT / "scripts/capture.py"), "--take", str(tmp_path / "t.npz"),
                               "--preview", str(tmp_path / "p.mp4"), *args],
                              capture_output=True, text=True, timeout=300)

    result = run()
    assert result.returncode == 0, result.stderr
    assert "3 of 40 tracked rows flagged (confidence < 0.5), bridged from their neighbours: frames 12-14" in result.stdout
    assert "kept as captured" in run("--keep-flagged").stdout
    assert "no frame flagged" in run("--min-confidence", "0.05").stdout
    bad = run("--min-confidence", "2")
    assert bad.returncode == 2 and "--min-confidence" in bad.stderr and "Traceback" not in bad.stderr


def test_a_streamed_take_stores_the_confidence_of_the_whole_take(face, tmp_path, monkeypatch):
    """TakeBuilder.write never holds the take, yet stores the same confidence (computed from a
    compact summary of each row, the temporal factors in chunks of rows)."""
    from ddfa_blender.core.take import TakeBuilder
    from ddfa_blender.core.tracker import FaceObservation

    rotation, translation, scale, expression = truth_channels(150)
    rotation = yaw_offset(rotation, slice(40, 46), -40.0)  # a jump away and back
    take = make_take(face, *noisy(rotation, translation, scale, expression))
    take.quality[90] = 3.5
    occlusion = np.zeros(150, dtype=np.float32)
    occlusion[100:115] = 0.3
    with TakeBuilder() as builder:
        for row in range(150):
            seen = row not in (70, 71)
            observation = FaceObservation(0, take.param[row], take.roi[row], take.lmk68[row], take.quality[row], False)
            builder.add(row, take.time[row], [observation] if seen else [],
                        {confidence.OCCLUSION_CHANNEL: {0: occlusion[row]} if seen else {}})
        whole = builder.build(fps=take.fps, image_size=take.image_size)
        monkeypatch.setattr(confidence, "TEMPORAL_CHUNK_ROWS", 16)  # chunk edges inside the runs
        rows = builder.write(str(tmp_path / "t.npz"), fps=take.fps, image_size=take.image_size)
    flagged = flagged_rows(whole)
    assert flagged[40:46].all() and flagged[90] and flagged[100:115].all()
    np.testing.assert_array_equal(rows.confidence, whole.confidence)
    np.testing.assert_array_equal(flagged_rows(rows), flagged)
    with np.load(tmp_path / "t.npz") as data:
        np.testing.assert_array_equal(data["confidence"], whole.confidence)


def test_cli_counts_flagged_frames_of_a_take_written_straight_to_a_file(tmp_path, shared_dir):
    import subprocess
    import sys

    from conftest import ROOT

    clip = shared_dir / "data/video/single_face.mp4"
    result = subprocess.run([sys.executable, str(ROOT / "scripts/capture.py"), "--input", str(clip),
                             "--take", str(tmp_path / "t.npz")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "no frame flagged (all 72 tracked rows have confidence >= 0.5)" in result.stdout
