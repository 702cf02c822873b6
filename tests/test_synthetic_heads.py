"""The synthetic-head renderer (benchmarks/synthetic_heads.py): curves, truth and a tiny render."""

import json
import time

import numpy as np
import pytest

from benchmarks import synthetic_heads as sh


def test_curves_are_deterministic_neutral_first_and_in_range():
    spec = sh.SequenceSpec(seed=1234, frames=300)
    a, b = sh.expression_curves(spec), sh.expression_curves(spec)
    assert set(a) == set(sh.ICT_KEYS) and len(sh.ICT_KEYS) == 57
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
        assert a[key].min() >= 0.0 and a[key].max() <= 1.0
        assert not a[key][: int(spec.fps * spec.neutral_seconds)].any(), key
    other = sh.expression_curves(sh.SequenceSpec(seed=1235, frames=300))
    assert any(not np.array_equal(a[k], other[k]) for k in a)
    assert sum(a[k].max() > 0.2 for k in a) > 30  # most channels move in 10 s


def test_blinks_last_four_to_eight_frames():
    lengths = []
    for seed in range(1000, 1010):
        w = sh.expression_curves(sh.SequenceSpec(seed=seed, frames=450))
        for side in "LR":
            closed = np.concatenate([[0], (w[f"eyeBlink_{side}"] > 0).astype(int), [0]])
            starts, ends = np.flatnonzero(np.diff(closed) == 1), np.flatnonzero(np.diff(closed) == -1)
            lengths += list(ends - starts)
    assert len(lengths) > 40
    assert min(lengths) >= 4 and max(lengths) <= 8


def test_head_motion_stays_within_limits_and_still_during_the_neutral_second():
    for seed in range(9000, 9010):
        spec = sh.SequenceSpec(seed=seed)
        angles = sh.head_motion(spec)["yaw_pitch_roll"]
        assert np.all(np.abs(angles) <= [30.0, 15.0, 10.0])
        neutral = angles[: int(spec.fps)]
        assert np.ptp(neutral, axis=0).max() == 0.0
    spread = np.concatenate([sh.head_motion(sh.SequenceSpec(seed=s))["yaw_pitch_roll"] for s in range(9000, 9010)])
    assert np.abs(spread).max(axis=0)[0] > 25.0  # the yaw range is used


def test_yaw_pitch_roll_round_trip_and_directions():
    angles = np.array([[25.0, -12.0, 7.0], [-30.0, 15.0, -10.0], [0.0, 0.0, 0.0]])
    matrices = sh.rotation_matrix(angles)
    np.testing.assert_allclose(sh.yaw_pitch_roll(matrices), angles, atol=1e-9)
    np.testing.assert_allclose(matrices @ np.swapaxes(matrices, -1, -2), np.broadcast_to(np.eye(3), (3, 3, 3)), atol=1e-12)
    facing = sh.rotation_matrix([20.0, 0.0, 0.0]) @ np.array([0.0, -1.0, 0.0])  # rest: facing -Y
    assert facing[0] > 0  # yaw > 0 turns the face toward +X (image right)
    chin = sh.rotation_matrix([0.0, 10.0, 0.0]) @ np.array([0.0, -1.0, 0.0])
    assert chin[2] < 0  # pitch > 0 lowers the face


def test_seeds_and_cache_keys():
    train, held = sh.split_seeds("train", 50), sh.split_seeds("heldout", 50)
    assert not set(train) & set(held)
    spec = sh.SequenceSpec(seed=train[0])
    assert spec.key("a") == sh.SequenceSpec(seed=train[0]).key("a")
    assert spec.key("a") != spec.key("b")  # another avatar file
    assert spec.key("a") != sh.SequenceSpec(seed=train[0], frames=10).key("a")
    assert sh.SequenceSpec(seed=5).identity_seed == 5 and sh.SequenceSpec(seed=5, identity=7).identity_seed == 7
    with pytest.raises(ValueError):
        sh.split_seeds("test", 1)


def test_hold_drives_only_the_named_keys():
    spec = sh.SequenceSpec(seed=1, frames=60, hold=(("mouthSmile_L", 0.8),), still=True)
    w = sh.expression_curves(spec)
    assert w["mouthSmile_L"][-1] == pytest.approx(0.8) and w["mouthSmile_L"][:30].max() == 0.0
    assert all(v.max() == 0.0 for k, v in w.items() if k != "mouthSmile_L")
    assert not sh.head_motion(spec)["yaw_pitch_roll"].any()
    with pytest.raises(ValueError):
        sh.expression_curves(sh.SequenceSpec(seed=1, hold=(("smile", 1.0),)))


def test_identity_warp_changes_proportions_but_turns_nothing():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(3000, 3)) * [0.07, 0.09, 0.05]  # a face-sized cloud, local frame
    names = ["M_Face"]
    by_vertex = np.zeros(len(points), int)
    landmarks = np.arange(68)
    identity = sh.identity_params(sh.SequenceSpec(seed=4321))
    warp = sh.identity_warp(points, by_vertex, names, landmarks, identity)
    assert 0.001 < np.abs(warp).max() < 0.02  # millimetres to a centimetre or so
    rotation, shift = sh._rigid_fit(points, points + warp)
    np.testing.assert_allclose(rotation, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(shift, 0.0, atol=1e-9)
    turn = sh.rotation_matrix([10.0, -5.0, 3.0])
    found, _ = sh._rigid_fit(points, points @ turn.T + 0.01)
    np.testing.assert_allclose(found, turn, atol=1e-9)


@pytest.fixture(scope="module")
def tiny_sequence(shared_dir, tmp_path_factory):
    """Eight frames at 320x180: a still head that smiles on its left side after 4 neutral frames."""
    pytest.importorskip("bpy")
    cache = tmp_path_factory.mktemp("synthetic")
    spec = sh.SequenceSpec(seed=1000, frames=8, fps=8.0, width=320, height=180,
                           hold=(("mouthSmile_L", 1.0), ("jawOpen", 0.4)), still=True, neutral_seconds=0.5)
    start = time.perf_counter()
    sequence = sh.render(spec, cache=cache, quiet=True)
    return sequence, time.perf_counter() - start, cache


def test_render_writes_video_and_truth_and_caches(tiny_sequence):
    import cv2

    sequence, seconds, cache = tiny_sequence
    truth = sequence.truth
    assert truth["arkit"].shape == (8, 52) and truth["landmarks"].shape == (8, 68, 2)
    names = list(truth["arkit_names"])
    assert truth["arkit"][-1, names.index("mouthSmileLeft")] == pytest.approx(1.0)
    assert truth["arkit"][-1, names.index("mouthSmileRight")] == 0.0
    assert truth["arkit"][:4].max() == 0.0
    assert not truth["driven"][names.index("tongueOut")]
    params = json.loads(str(truth["params"]))
    assert params["spec"]["seed"] == 1000
    video = cv2.VideoCapture(str(sequence.video))
    count = 0
    while video.read()[0]:
        count += 1
    assert count == 8
    again = time.perf_counter()
    assert sh.render(sequence.spec, cache=cache, quiet=True).folder == sequence.folder
    assert time.perf_counter() - again < 0.5 * seconds  # the cache answers, nothing renders
    assert [p.name for p in cache.iterdir()] == [sequence.folder.name]  # no temporary folders left


def test_landmarks_land_on_the_rendered_face(tiny_sequence):
    """Projected landmarks fall on the head's pixels; the mouth corners on lip-coloured ones."""
    import cv2

    sequence, _, _ = tiny_sequence
    truth = sequence.truth
    video = cv2.VideoCapture(str(sequence.video))
    frames = []
    while True:
        ok, image = video.read()
        if not ok:
            break
        frames.append(image.astype(np.float64))
    background_bgr = 255 * np.array(json.loads(str(truth["params"]))["look"]["background"])[::-1]
    for frame, points in zip(frames, truth["landmarks"]):
        assert points[:, 0].min() > 0 and points[:, 0].max() < 319
        seen = np.median(frame[:3, :3].reshape(-1, 3), axis=0)
        assert np.abs(seen - background_bgr).max() < 8  # the corner shows the background colour
        head = np.linalg.norm(frame - seen, axis=2) > 12
        inner = points[17:]  # brows, nose, eyes, mouth (the jaw line lies on the silhouette)
        rows, cols = np.round(inner[:, 1]).astype(int), np.round(inner[:, 0]).astype(int)
        assert head[rows, cols].all()
    # The box of the landmarks matches the head's pixels across the face (not shifted or scaled).
    last = frames[-1]
    points = truth["landmarks"][-1]
    width_px = points[16, 0] - points[0, 0]
    head = np.linalg.norm(last - np.median(last[:3, :3].reshape(-1, 3), axis=0), axis=2) > 12
    row = int(round(points[36:48, 1].mean()))  # across the eyes: the silhouette is a bit wider
    span = np.flatnonzero(head[row])
    assert span[0] < points[0, 0] < span[0] + 0.15 * width_px
    assert span[-1] - 0.15 * width_px < points[16, 0] < span[-1]
