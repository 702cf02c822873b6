"""The shipped ARKit solver and the script that fits it (scripts/fit_arkit_solver.py).

Fitting needs rendered heads (an hour of rendering): not run here. What is
checked: every candidate feature the script names exists (a typo would drop
it silently), the shipped models read only features the solver computes, a
channel's Left and Right models are mirror images, and the solver was fitted
on renders of the current renderer version.
"""

import sys

import numpy as np
import pytest

from benchmarks import synthetic_heads as sh
from ddfa_blender.core import arkit, landmark_geometry
from ddfa_blender.core.engine import load_face_model
from ddfa_blender.core.face_landmarker import MEDIAPIPE_BLENDSHAPES

sys.path.insert(0, str(sh.ROOT / "scripts"))
import fit_arkit_solver as fit  # noqa: E402


@pytest.fixture(scope="module")
def feature_names(models_dir) -> set:
    """Every evidence feature a take with MediaPipe's scores and landmarks gives the solver."""
    face = load_face_model(models_dir)
    geometry = arkit.FaceGeometry(face, np.zeros(40))
    names = {arkit.DDFA + k for k in geometry.features(np.zeros((1, 10)))}
    names |= {arkit.GEOMETRY + c for c in landmark_geometry.COLUMNS if c not in landmark_geometry.FRAME_COLUMNS}
    names |= {arkit.SCORES + n for n in MEDIAPIPE_BLENDSHAPES[1:]}
    return names


def test_every_candidate_exists(feature_names):
    for channel in arkit.ARKIT_NAMES:
        if channel in arkit.UNSUPPORTED:
            continue
        base, side = fit.channel_base(channel)
        assert base in fit.CANDIDATES, channel
        for entry in fit.CANDIDATES[base]:
            for feature in fit._named(entry, side).split("-"):
                assert feature in feature_names, (channel, entry)
        found = fit.candidates(channel, "full", feature_names)
        assert arkit.SCORES + channel in found and len(found) >= 2, channel


def test_shipped_solver_reads_known_features_at_every_level(feature_names):
    solver = arkit.default_solver()
    assert solver.info["renderer_version"] == sh.RENDERER_VERSION  # refit after a renderer change
    for channel in arkit.ARKIT_NAMES:
        if channel in arkit.UNSUPPORTED:
            assert channel not in solver.channels
            continue
        gaze = channel.startswith("eyeLook")  # 3DDFA-V2 has no eyes: no 3ddfa-level model
        assert set(solver.channels[channel]) == set(arkit.LEVELS) - ({"3ddfa"} if gaze else set()), channel
        for level, (bias, weights) in solver.channels[channel].items():
            assert bias <= 0.0 and (weights or level == "3ddfa"), (channel, level)
            assert set(weights) <= feature_names, (channel, level)
            if level == "3ddfa":
                assert all(f.startswith(arkit.DDFA) for f in weights), channel
            if level == "scores":
                assert not any(f.startswith(arkit.GEOMETRY) for f in weights), channel


def test_left_and_right_models_are_mirror_images():
    solver = arkit.default_solver()
    for channel in arkit.ARKIT_NAMES:
        twin, _ = fit.mirror(channel)
        if twin == channel or channel not in solver.channels:
            continue
        assert fit.mirror(twin)[0] == channel
        for level, (bias, weights) in solver.channels[channel].items():
            mirrored = fit.mirror_model({"bias": bias, "weights": weights})
            twin_bias, twin_weights = solver.channels[twin][level]
            assert mirrored["bias"] == twin_bias
            assert mirrored["weights"].keys() == twin_weights.keys(), (channel, level)
            for feature, weight in mirrored["weights"].items():
                assert twin_weights[feature] == pytest.approx(weight, abs=1e-6), (channel, level, feature)
