"""scripts/adapt.py: user mistakes, too little footage, cancel, and a whole (short) adaptation."""

import importlib.util
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "adapt.py"
HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed: runs in .venv-train (make test-train)")


def _run(*args, **kwargs):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, **kwargs)


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("adapt.py")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_output_must_be_onnx(tmp_path):
    result = _run("--input", "clip.mp4", "--output", tmp_path / "actor.npz")
    assert result.returncode == 2 and "--output must name an .onnx file" in result.stderr


def test_missing_input_is_one_line(tmp_path):
    result = _run("--input", tmp_path / "nope.mp4", "--output", tmp_path / "actor.onnx")
    assert result.returncode == 1
    assert "Input not found" in _one_line(result.stderr)
    assert not any(tmp_path.iterdir())


def test_output_equal_to_an_input_is_refused(tmp_path):
    clip = tmp_path / "clip.onnx"
    clip.write_bytes(b"footage")
    result = _run("--input", clip, "--output", clip)
    assert result.returncode == 1 and "is one of the inputs" in _one_line(result.stderr)
    assert clip.read_bytes() == b"footage"


def test_performer_footage_is_not_accepted_as_other_faces(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"footage")
    result = _run("--input", clip, "--other-faces", clip, "--output", tmp_path / "actor.onnx")
    assert result.returncode == 1 and "both as --input and as --other-faces" in _one_line(result.stderr)
    result = _run("--input", clip, "--other-faces", tmp_path / "nope.mp4", "--output", tmp_path / "actor.onnx")
    assert result.returncode == 1 and "Input not found" in _one_line(result.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


@pytest.mark.skipif(HAS_TORCH, reason="checks the message shown where PyTorch is missing")
def test_without_torch_says_how_to_get_it(shared_dir, models_dir, tmp_path):
    result = _run("--input", shared_dir / "data/video/single_face.mp4", "--output", tmp_path / "a.onnx", "--models", models_dir)
    assert result.returncode == 1 and "make train-venv" in _one_line(result.stderr)


@needs_torch
def test_too_few_usable_frames_is_one_line(shared_dir, models_dir, tmp_path):
    result = _run("--input", shared_dir / "data/video/obama.mp4", "--output", tmp_path / "a.onnx",
                  "--models", models_dir, "--threads", "1")
    assert result.returncode == 1
    line = _one_line(result.stderr)
    assert "usable frames" in line and "at least 100" in line, line
    assert not any(tmp_path.iterdir())


@needs_torch
def test_ctrl_c_leaves_nothing(shared_dir, models_dir, tmp_path):
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--input", str(shared_dir / "data/video/talking_head_640x360.mp4"),
         "--output", str(tmp_path / "a.onnx"), "--models", str(models_dir), "--threads", "1"],
        stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    for line in process.stderr:
        if "tracking" in line and not line.strip().endswith("(0 s)") or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == 130, rest
    assert "nothing was written" in rest and "Traceback" not in rest
    assert not any(tmp_path.iterdir())


@needs_torch
def test_short_adaptation_writes_a_model_capture_uses(shared_dir, models_dir, tmp_path):
    from ddfa_blender.core.engine import CaptureOptions, capture
    from ddfa_train.adaptation import adapt

    out = tmp_path / "actor.onnx"
    clip = shared_dir / "data/video/talking_head_640x360.mp4"
    other = shared_dir / "data/video/single_face.mp4"
    result = adapt([clip], out, str(models_dir), minutes=0.05, window=(0.0, 6.0), threads=1, other_faces=[other])
    assert result.frames_usable >= 100 and result.checks["heads_px_median"] <= 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["actor.onnx"]
    take = capture(str(other), CaptureOptions(model=str(out), models_dir=str(models_dir)))
    assert take.model == "actor" and take.valid.mean() > 0.9
