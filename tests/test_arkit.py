"""The ARKit solver on the sample videos: jaw, blinks, neutral calibration, pose invariance, names.

``captured_take`` (imported by the other retarget tests) captures a sample
video once per session with MediaPipe's face landmarker recorded.

Blink frames were found by looking at the frames (eye crops written to PNG):
single_face.mp4 has one blink, eyes shut on frames 26-28 (half-shut on 25
and 29); talking_head_640x360.mp4 has the eyes closed or cast down for the
first ~140 frames (crying), then blinks on frames 153, 202 (mostly the
performer's left eye), 248, 288 and 386-387, with open eyes in between.
"""

import functools

import numpy as np
import pytest

from ddfa_blender.core import arkit
from ddfa_blender.core.engine import CaptureOptions, capture, load_face_model
from ddfa_blender.core.errors import CaptureError
from ddfa_blender.core.face_landmarker import MEDIAPIPE_BLENDSHAPES, make_channels

BLINKS = {
    "single_face": [26, 27, 28],
    "talking_head_640x360": [153, 202, 248, 288, 386],
}
OPEN_EYES = {
    "single_face": np.r_[0:22, 34:72],
    "talking_head_640x360": np.r_[160:198, 208:244, 256:284, 296:380],
}


@functools.lru_cache(maxsize=None)
def captured_take(shared_dir, models_dir, name):
    """The take of ``<name>.mp4`` with ``ch.mp_blendshapes`` (cached for the session)."""
    options = CaptureOptions(models_dir=str(models_dir), threads=1, channels=make_channels(models_dir))
    return capture(str(shared_dir / "data" / "video" / f"{name}.mp4"), options)


@pytest.fixture(scope="module")
def face(models_dir):
    return load_face_model(models_dir)


@pytest.fixture(scope="module", params=sorted(BLINKS))
def solved(request, shared_dir, models_dir, face):
    take = captured_take(shared_dir, models_dir, request.param)
    return request.param, take, arkit.solve_arkit(take, face)


def inner_lip_gap(lmk68) -> np.ndarray:
    """Mean distance between the inner-lip pairs 61-67, 62-66, 63-65 over the eye-corner distance."""
    points = np.asarray(lmk68, dtype=np.float64)[..., :2]
    gap = np.linalg.norm(points[:, [61, 62, 63]] - points[:, [67, 66, 65]], axis=-1).mean(axis=1)
    return gap / np.linalg.norm(points[:, 45] - points[:, 36], axis=-1)


@pytest.mark.parametrize("spelling", [
    "eyeBlinkLeft", "eyeBlink_L", "EyeBlinkLeft", "eyeBlink_Left", "eye_blink_left",
    "EYE_BLINK_LEFT", "eyeBlink.L", "eyeBlinkL", "L_eyeBlink", "Face.eyeBlinkLeft", "eyeBlink-left",
])
def test_names_match_across_conventions(spelling):
    assert arkit.arkit_name(spelling) == "eyeBlinkLeft"


def test_names_keep_sides_and_unsided_channels_apart():
    assert arkit.arkit_name("mouthSmile_R") == "mouthSmileRight"
    assert arkit.arkit_name("jaw_open") == "jawOpen"
    assert arkit.canonical("browInnerUp_L") == ("browinnerup", "L")
    assert arkit.canonical("browInnerUp") == ("browinnerup", None)
    assert arkit.arkit_name("browInnerUp_L") is None  # a split half, not an ARKit channel
    assert arkit.arkit_name("PupilDilate_L") is None
    assert len(set(arkit.ARKIT_NAMES)) == 52
    assert len({arkit.canonical(n) for n in arkit.ARKIT_NAMES}) == 52


def test_mediapipe_columns_are_arkit_names():
    mapped = [arkit.arkit_name(c) for c in MEDIAPIPE_BLENDSHAPES]
    assert mapped[0] is None  # _neutral
    assert sorted(mapped[1:]) == sorted(n for n in arkit.ARKIT_NAMES if n != "tongueOut")


def test_jaw_open_follows_the_inner_lip_gap(solved):
    name, take, weights = solved
    ok = weights.valid
    r = np.corrcoef(weights.channel("jawOpen")[ok], inner_lip_gap(take.lmk68)[ok])[0, 1]
    assert r > 0.9, (name, r)


def test_blinks_fire_on_the_closed_eye_frames(solved):
    name, take, weights = solved
    blink = np.maximum(weights.channel("eyeBlinkLeft"), weights.channel("eyeBlinkRight"))
    row = {int(f): i for i, f in enumerate(weights.frame)}
    closed = blink[[row[f] for f in BLINKS[name]]]
    assert (closed >= 0.5).all(), (name, closed)
    opened = blink[[row[f] for f in OPEN_EYES[name]]]
    assert np.percentile(opened, 95) < 0.25, name
    assert weights.sources["eyeBlinkLeft"] == "mediapipe"


def test_weights_are_in_range_and_supported_channels_move(solved):
    name, _, weights = solved
    values = weights.weights[weights.valid]
    assert np.isfinite(values).all() and values.min() >= 0.0 and values.max() <= 1.0
    # Both clips show a broad open smile: the mouth channels of a smile must move. The jaw
    # opens less than the lips part (single_face's teeth nearly meet while it smiles; MediaPipe
    # scores its jawOpen 0.07 at most): 0.2.
    for channel in ("mouthSmileLeft", "mouthSmileRight", "mouthUpperUpLeft",
                    "mouthUpperUpRight", "cheekSquintLeft", "cheekSquintRight"):
        assert weights.channel(channel)[weights.valid].max() > 0.3, (name, channel)
    assert weights.channel("jawOpen")[weights.valid].max() > 0.2, name
    for channel in arkit.UNSUPPORTED:
        assert weights.sources[channel] == "none"
        assert np.all(weights.channel(channel)[weights.valid] == 0.0)


def test_crying_then_laughing_moves_the_matching_channels(shared_dir, models_dir, face):
    take = captured_take(shared_dir, models_dir, "talking_head_640x360")
    weights = arkit.solve_arkit(take, face)
    crying, covering, laughing = slice(0, 96), slice(96, 230), slice(230, 472)

    def p90(channel, span):
        return np.percentile(weights.channel(channel)[span], 90)

    def median(channel, span):
        return np.median(weights.channel(channel)[span])

    # The crying segment has grimace frames that read as smiles (MediaPipe itself scores
    # mouthSmile 0.75 median there, 0.82 while laughing): compare typical frames, not peaks.
    assert median("mouthSmileRight", laughing) > 2 * median("mouthSmileRight", crying)
    assert p90("mouthShrugLower", crying) > 2 * p90("mouthShrugLower", laughing)
    assert p90("eyeBlinkLeft", crying) > 0.8  # eyes shut while crying
    assert p90("browInnerUp", covering) > 0.2


def test_neutral_range_reads_zero(shared_dir, models_dir, face):
    take = captured_take(shared_dir, models_dir, "single_face")
    weights = arkit.solve_arkit(take, face, neutral=(0, 15))
    solved = [i for i, n in enumerate(arkit.ARKIT_NAMES) if weights.sources[n] != "none"]
    assert len(solved) == 51
    rest = weights.weights[:16][:, solved]
    assert np.median(rest) < 0.02 and np.percentile(rest, 95) < 0.15
    assert list(weights.neutral_frames) == list(range(16))
    assert weights.channel("mouthSmileLeft")[40:70].mean() > 0.5  # the smile that follows
    with pytest.raises(CaptureError, match="neutral range"):
        arkit.solve_arkit(take, face, neutral=(500, 600))


def test_automatic_neutral_picks_calm_frames(shared_dir, models_dir, face):
    take = captured_take(shared_dir, models_dir, "single_face")
    weights = arkit.solve_arkit(take, face)
    assert len(weights.neutral_frames) >= arkit.MIN_NEUTRAL_ROWS
    assert np.median(weights.neutral_frames) < 22  # the clip starts calm, then smiles


def test_head_pose_does_not_leak_into_expression(shared_dir, models_dir, face):
    take = captured_take(shared_dir, models_dir, "single_face")
    turned = take.rows(np.ones(len(take), dtype=bool))
    angle = 0.5
    turn = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    pose = turned.param[:, :12].reshape(-1, 3, 4).copy()
    pose[:, :, :3] = pose[:, :, :3] @ turn.T
    turned.param[:, :12] = pose.reshape(-1, 12)
    before = arkit.solve_arkit(take, face, eyes="3ddfa").weights
    after = arkit.solve_arkit(turned, face, eyes="3ddfa").weights
    np.testing.assert_allclose(after, before, atol=1e-6)


def test_linear_channels_reproduce_the_solver(shared_dir, models_dir, face):
    """3DDFA-V2 alone: every channel it can show is a clipped linear formula of the expression."""
    take = captured_take(shared_dir, models_dir, "talking_head_640x360")
    weights = arkit.solve_arkit(take, face, eyes="3ddfa")
    expression = take.param[:, 52:62].astype(np.float64)
    linear = arkit.linear_channels(weights)
    assert "jawOpen" in linear and "eyeBlinkLeft" in linear and "eyeLookUpLeft" not in linear  # no gaze
    for name, (a, b) in linear.items():
        formula = np.clip(expression @ a + b, 0.0, 1.0)
        np.testing.assert_allclose(formula[weights.valid], weights.channel(name)[weights.valid], atol=1e-5)
    fused = arkit.solve_arkit(take, face)  # MediaPipe's evidence too: not a formula of the expression
    assert arkit.linear_channels(fused) == {} and fused.sources["jawOpen"] == "fused"


def test_eyes_without_mediapipe(shared_dir, models_dir, face):
    take = captured_take(shared_dir, models_dir, "single_face")
    plain = take.rows(np.ones(len(take), dtype=bool))
    plain.channels = {}
    weights = arkit.solve_arkit(plain, face)
    assert weights.sources["eyeBlinkLeft"] == "3ddfa" and weights.sources["eyeLookUpLeft"] == "none"
    with pytest.raises(CaptureError, match="landmarker"):
        arkit.solve_arkit(plain, face, eyes="mediapipe")
