"""MediaPipe 1.x: the BlazeFace detectors, quiet start-up, and errors that always reach the user.

The detectors' behaviour on real faces is also guarded by test_multiface.py
and test_engine.py (false positives, tracking); here: both ranges, the score
filter, a missing model, and what reaches standard error.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import ROOT
from ddfa_blender.core import detector as detector_module
from ddfa_blender.core import mediapipe_tasks
from ddfa_blender.core.errors import CaptureError

cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def detector(models_dir):
    found = detector_module.FaceDetector(models_dir)
    yield found
    found.close()


def _image(shared_dir, name):
    return cv2.imread(str(shared_dir / "data" / "images" / name))


def test_both_ranges_find_every_face_of_a_group_photo(detector, shared_dir):
    image = _image(shared_dir, "multi_face.jpg")
    short = [d for d in detector_module._run(detector._short, mediapipe_tasks.image_from_bgr(image))
             if d.score >= detector.min_score]
    found = detector.detect(image, max_faces=10)
    # The short-range model alone misses these small faces; the full-range model finds all five.
    assert len(short) < 5 and len(found) == 5
    assert all(d.score >= 0.7 for d in found)
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
    boxes = np.array([d.box for d in found])
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert max(detector_module.box_iou(a.box, b.box) for i, a in enumerate(found) for b in found[i + 1:]) < 0.3


def test_one_face_near_the_camera_and_none_in_a_blank_image(detector, shared_dir):
    image = _image(shared_dir, "JianzhuGuo.jpg")
    (face,) = detector.detect(image)
    x0, y0, x1, y1 = face.box
    assert face.score > 0.9 and 100 < x1 - x0 < 300 and 0 <= x0 and x1 <= image.shape[1]
    assert detector.detect(np.zeros((480, 640, 3), np.uint8), max_faces=5) == []


def test_missing_detector_model_names_the_fix(tmp_path):
    with pytest.raises(CaptureError, match=r"face_detection_short_range\.tflite.*fetch_models"):
        detector_module.FaceDetector(tmp_path)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the log thresholds are set on Linux only")
def test_log_thresholds_are_found_in_libmediapipe():
    from mediapipe.tasks.python.core import mediapipe_c_bindings

    library = mediapipe_c_bindings.load_raw_library()
    found = mediapipe_tasks.elf_data_symbols(library._name, mediapipe_tasks.LOG_THRESHOLDS)
    assert set(found) == set(mediapipe_tasks.LOG_THRESHOLDS)
    assert all(size in (1, 4) for _, size in found.values())


QUIET_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from ddfa_blender.core.detector import FaceDetector
    from ddfa_blender.core.face_landmarker import FaceLandmarkerChannel, landmarker_path

    detector = FaceDetector(sys.argv[1])
    detector.detect(np.zeros((120, 160, 3), np.uint8))
    channel = FaceLandmarkerChannel(landmarker_path(sys.argv[1]))
    channel._detect(0, np.zeros((256, 256, 3), np.uint8), 0.0)
    if sys.argv[2] == "close":
        channel.close()
        detector.close()
    print("done")
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the log thresholds are set on Linux only")
@pytest.mark.parametrize("ending", ["close", "left open at exit"])
def test_mediapipe_starts_and_exits_without_a_word_on_stderr(models_dir, ending):
    result = subprocess.run(
        [sys.executable, "-c", QUIET_SCRIPT, str(models_dir), ending],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0 and result.stdout == "done\n", result.stderr
    assert result.stderr == ""


def test_cli_error_is_printed_every_time_while_mediapipe_loads(tmp_path, models_dir):
    """The error of a missing input is printed while MediaPipe loads on another thread;
    it must reach stderr every time (pointing fd 2 elsewhere during MediaPipe's start-up
    lost it about one run in two)."""
    runs = 12
    for run in range(runs):
        result = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "capture.py"), "--input", str(tmp_path / "missing.mp4"),
             "--take", str(tmp_path / "t.npz"), "--models", str(models_dir)],
            capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 1, (run, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Input not found" in lines[0], (run, result.stderr)
