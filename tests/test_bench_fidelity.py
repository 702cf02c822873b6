"""Smoke test of the fidelity benchmark (benchmarks/bench_fidelity.py) on a tiny rendered sequence.

A still synthetic head (held-out seed) smiles on its own left side and opens
its jaw after a neutral second; the benchmark's own path (render, the CLI's
capture + bake + retarget onto the same head, reading the avatar back,
scoring) must see the jaw open, the smile on the performer's left and not
its right (ARKit's Left/Right convention, end to end), the head where it is,
and print its last line. The full benchmark (minutes) stays out of the suite.
"""

import io
import re

import numpy as np
import pytest

from benchmarks import bench_fidelity as bf
from benchmarks import synthetic_heads as sh


@pytest.fixture(scope="module")
def measured(shared_dir, models_dir, tmp_path_factory):
    pytest.importorskip("bpy")
    avatar = shared_dir / "data" / "avatars" / "ict_facekit_arkit.blend"
    if not avatar.is_file():
        pytest.skip(f"no ICT avatar at {avatar}")
    spec = sh.SequenceSpec(seed=sh.split_seeds("heldout", 1)[0], frames=20, fps=10.0, width=480, height=270,
                           hold=(("mouthSmile_L", 1.0), ("jawOpen", 0.5)), still=True, neutral_seconds=1.0)
    sequence = sh.render(spec, cache=tmp_path_factory.mktemp("synthetic"), avatar=avatar, quiet=True)
    result = bf.measure_sequence(sequence, tmp_path_factory.mktemp("bench"), models_dir, avatar)
    return spec, result


def test_tiny_sequence_reads_jaw_and_a_left_smile(measured):
    spec, result = measured
    neutral, held = slice(0, int(spec.fps) - 2), slice(-4, None)
    jaw, left, right = (result.ours[n] for n in ("jawOpen", "mouthSmileLeft", "mouthSmileRight"))
    assert jaw[held].mean() > 0.2 and jaw[neutral].mean() < 0.1
    assert left[held].mean() > 0.3 and left[neutral].mean() < 0.1
    assert left[held].mean() > right[held].mean() + 0.1  # the performer's left, not the mirror image
    error = bf.geodesic_deg(result.rotation, result.true_rotation)
    assert error.mean() < 6.0
    assert result.frames == spec.frames and result.loop_seconds > 0


def test_report_prints_the_last_line(measured):
    _, result = measured
    out = io.StringIO()
    last = bf.report([result], out=out)
    assert out.getvalue().rstrip().splitlines()[-1] == last
    match = re.fullmatch(r"mean_r_ours=(\S+) mean_r_mediapipe=(\S+) groups_ours_better=(\d+)/(\d+) "
                         r"head_err_deg=(\S+) fps_eyes=(\S+)", last)
    assert match, last
    assert float(match[1]) > 0.8  # jawOpen and the left smile, the two channels that move
    assert int(match[4]) == 2 and float(match[6]) > 0  # jaw and mouth groups


def test_scores_count_a_flat_estimate_as_zero():
    truth = {"jawOpen": np.linspace(0.0, 1.0, 50), "still": np.zeros(50)}
    scores = bf.channel_scores({"jawOpen": np.zeros(50)}, truth)
    assert list(scores) == ["jawOpen"] and scores["jawOpen"][0] == 0.0
    assert scores["jawOpen"][1] == pytest.approx(0.5)
    good = bf.channel_scores({"jawOpen": 0.5 * truth["jawOpen"] + 0.1}, truth)
    assert good["jawOpen"][0] == pytest.approx(1.0)
