"""Bad and awkward inputs through scripts/capture.py: the exit code, one line naming the cause
(no traceback), and what is left on disk (previous files byte-for-byte, no temporary files).

Inputs are made here at test time from the shared talking head with ffmpeg and numpy
(about a second of footage each). Rotation, variable frame rate and stills are checked
against upright / real-time references, not only by exit code.
"""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT

cv2 = pytest.importorskip("cv2")

CLI = [sys.executable, str(ROOT / "scripts/capture.py")]


# -- helpers ------------------------------------------------------------------------------


def run_cli(*args, timeout=300, env=None):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def snapshot(folder) -> dict:
    """Every file under ``folder`` (relative path -> sha256)."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, folder)] = hashlib.sha256(handle.read()).hexdigest()
    return found


def assert_error(result, code, *words):
    """Exit ``code`` and, as the last line of stderr, one ``error:`` line holding ``words``."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert lines and lines[-1].startswith("error: "), result.stderr
    for word in words:
        assert word.lower() in lines[-1].lower(), lines[-1]


def assert_no_temporaries(folder):
    leftovers = [n for n in os.listdir(folder) if ".partial" in n or n.endswith("@") or n.endswith(".part")]
    assert not leftovers, leftovers


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True, timeout=120)


@pytest.fixture(scope="module")
def media(shared_dir, tmp_path_factory):
    """Footage made for these tests (about one second each)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (make test installs Debian's ffmpeg)")
    folder = tmp_path_factory.mktemp("media")
    head = shared_dir / "data/video/talking_head_640x360.mp4"
    clip = folder / "clip.mp4"
    ffmpeg("-i", head, "-t", "1.2", "-an", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "14", clip)
    ffmpeg("-i", clip, "-vf", "transpose=1", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "14",
           folder / "stored90.mp4")
    ffmpeg("-i", folder / "stored90.mp4", "-c", "copy", "-metadata:s:v:0", "rotate=90", folder / "phone90.mp4")
    ffmpeg("-i", clip, "-vf", "hflip,vflip", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "14",
           folder / "stored180.mp4")
    ffmpeg("-i", folder / "stored180.mp4", "-c", "copy", "-metadata:s:v:0", "rotate=180", folder / "phone180.mp4")
    # Variable frame rate: frames 8-15 dropped, the others keep their own timestamps.
    ffmpeg("-i", clip, "-vf", r"select=not(between(n\,8\,15))", "-vsync", "vfr", "-c:v", "libx264",
           "-preset", "ultrafast", "-crf", "14", folder / "dropped.mp4")
    # A raw H.264 stream cut from the original: no container timing (OpenCV reports 24000 fps).
    ffmpeg("-i", head, "-t", "1.2", "-an", "-c:v", "copy", "-bsf:v", "h264_mp4toannexb", folder / "raw.h264")
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=320x240:r=25:d=0.6", "-c:v", "libx264", "-preset", "ultrafast",
           folder / "noface.mp4")
    data = clip.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 10])
    # Index first (as cameras and web exports write it), then cut: it opens, then stops decoding.
    ffmpeg("-i", clip, "-c", "copy", "-movflags", "+faststart", folder / "indexed.mp4")
    indexed = (folder / "indexed.mp4").read_bytes()
    (folder / "cut_short.mp4").write_bytes(indexed[: len(indexed) * 6 // 10])
    # Matroska declares no frame count: OpenCV estimates it from the duration, which dropped frames keep.
    ffmpeg("-i", clip, "-vf", r"select=not(between(n\,8\,15))", "-vsync", "vfr", "-c:v", "libx264",
           "-preset", "ultrafast", "-crf", "14", folder / "dropped.mkv")
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "text.mp4").write_text("this is not a video\n" * 50)
    (folder / "random.mov").write_bytes(np.random.default_rng(1).bytes(20000))
    return folder


@pytest.fixture(scope="module")
def upright(media, models_dir):
    """The reference capture of the upright clip."""
    from ddfa_blender.core.engine import CaptureOptions, capture

    return capture(str(media / "clip.mp4"), CaptureOptions(models_dir=str(models_dir)))


@pytest.fixture
def work(tmp_path):
    """A folder holding a good previous take, preview and .blend that no failed run may change."""
    folder = tmp_path / "work"
    folder.mkdir()
    for name in ("old.npz", "old.mp4", "old.blend"):
        (folder / name).write_bytes(f"previous {name}".encode() * 10)
    return folder


# -- messages -------------------------------------------------------------------------------


def test_error_lines_are_never_lost(tmp_path, models_dir):
    """Errors raised while MediaPipe starts on another thread still reach stderr, every time."""
    (tmp_path / "models").mkdir()
    clip = tmp_path / "c.png"
    cv2.imwrite(str(clip), np.zeros((64, 64, 3), np.uint8))
    for attempt in range(6):
        missing_input = run_cli("--input", tmp_path / "nothing.mp4", "--take", tmp_path / "t.npz")
        assert_error(missing_input, 1, "Input not found")
        missing_models = run_cli("--input", clip, "--take", tmp_path / "t.npz", "--models", tmp_path / "models")
        assert_error(missing_models, 1, "fetch_models")
    assert sorted(os.listdir(tmp_path)) == ["c.png", "models"]


def test_debug_shows_the_traceback(tmp_path):
    result = run_cli("--input", tmp_path / "nothing.mp4", "--take", tmp_path / "t.npz", "--debug")
    assert result.returncode == 1 and "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: Input not found")


# -- bad usage: exit 2, nothing run ------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["--threads", "1000"], ["--threads", "core"]),
    (["--threads", "0"], ["--threads"]),
    (["--max-faces", "0"], ["--max-faces"]),
    (["--fps", "0"], ["--fps"]),
    (["--fps", "nan"], ["--fps"]),
    (["--fps", "-24"], ["--fps"]),
    (["--start-frame", "-5"], ["--start-frame"]),
    (["--preview", "{w}/p.avi"], ["--preview", ".mp4"]),
    (["--output", "{w}/shot.npz"], ["--output", ".blend"]),
    (["--take", "{w}/t.blend"], ["--take", ".npz"]),
    (["--take", "{clip}"], [".npz"]),
    (["--preview", "{clip}"], ["overwrite the input"]),
    (["--take", "{w}/a.npz", "--preview", "{w}/a.npz"], [".npz"]),
    (["--take", "{w}/same.npz", "--output", "{w}/same.npz"], [".blend"]),
    (["--take", "{w}/x.npz", "--retarget", "avatar.blend"], ["--retarget needs --output"]),
    (["--take", "{w}/x.npz", "--frobnicate"], ["unrecognized", "--help"]),
    (["--take", "{w}/x.npz", "--smooth", "silky"], ["smoothing preset"]),
    (["--take", "{w}/x.npz", "--smooth-rotation", "-1"], ["--smooth-rotation"]),
    (["--take", "{w}/x.npz", "--model", "resnet"], ["--model"]),
])
def test_bad_usage_exits_2_before_anything_runs(media, work, args, words):
    clip = work / "clip.mp4"
    shutil.copy(media / "clip.mp4", clip)
    before = snapshot(work)
    args = [a.format(w=work, clip=clip) for a in args]
    if "--take" not in args:
        args += ["--take", str(work / "t.npz")]
    result = run_cli("--input", clip, *args, "--quiet")
    assert_error(result, 2, *words)
    assert len(result.stderr.strip().splitlines()) == 1
    assert snapshot(work) == before


def test_outputs_colliding_with_the_take_read_or_its_footage(media, work, models_dir):
    clip = work / "clip.mp4"
    shutil.copy(media / "clip.mp4", clip)
    assert run_cli("--input", clip, "--take", work / "t.npz", "--models", models_dir, "--quiet").returncode == 0
    before = snapshot(work)
    assert_error(run_cli("--take", work / "t.npz", "--preview", clip, "--quiet"), 2, "footage")
    assert_error(run_cli("--take", work / "t.npz", "--output", work / "t.npz"), 2, ".blend")
    assert snapshot(work) == before


# -- failures: exit 1, one line, nothing changed -----------------------------------------------


@pytest.mark.parametrize("name, words", [
    ("missing.mp4", ["not found"]),
    ("empty.mp4", ["empty"]),
    ("truncated.mp4", ["damaged"]),
    ("text.mp4", ["damaged"]),
    ("random.mov", ["damaged"]),
    ("noface.mp4", ["No face found"]),
])
def test_unusable_footage_fails_cleanly(media, work, models_dir, name, words):
    before = snapshot(work)
    result = run_cli("--input", media / name, "--take", work / "old.npz", "--preview", work / "old.mp4",
                     "--models", models_dir, "--quiet")
    assert_error(result, 1, *words)
    assert snapshot(work) == before
    assert_no_temporaries(work)


def test_image_inputs_that_cannot_work(tmp_path, work, models_dir):
    exr = tmp_path / "exr"
    exr.mkdir()
    for i in range(3):
        (exr / f"plate_{i:04d}.exr").write_bytes(b"v/1\x01" + bytes(100))
    empty = tmp_path / "nothing"
    empty.mkdir()
    bad = tmp_path / "bad"
    bad.mkdir()
    cv2.imwrite(str(bad / "f_0001.png"), np.zeros((64, 64, 3), np.uint8))
    (bad / "f_0002.png").write_bytes(b"garbage")
    before = snapshot(work)
    for source, words in ((exr, [".exr", "PNG"]), (exr / "plate_%04d.exr", [".exr"]),
                          (empty, ["No images"]), (tmp_path / "none_%04d.png", ["No images"]),
                          (bad, ["f_0002.png", "damaged"])):
        result = run_cli("--input", source, "--take", work / "old.npz", "--models", models_dir, "--quiet")
        assert_error(result, 1, *words)
    assert snapshot(work) == before


def test_corrupt_models_and_takes_are_one_line(tmp_path, media, work, models_dir):
    broken = tmp_path / "models"
    broken.mkdir()
    for name in os.listdir(models_dir):
        (broken / name).symlink_to(models_dir / name)
    (broken / "bfm_face.npz").unlink()
    (broken / "bfm_face.npz").write_bytes(b"PK\x03\x04 not really a zip")
    before = snapshot(work)
    result = run_cli("--input", media / "clip.mp4", "--take", work / "old.npz", "--models", broken, "--quiet")
    assert_error(result, 1, "bfm_face.npz", "corrupt", "fetch_models")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a take")
    result = run_cli("--take", junk, "--preview", work / "old.mp4", "--quiet")
    assert_error(result, 1, "not a readable", "capture it again")
    assert snapshot(work) == before


def test_output_folders_that_cannot_be_written(media, work, models_dir, tmp_path):
    before = snapshot(work)
    result = run_cli("--input", media / "clip.mp4", "--take", work / "old.npz", "--preview",
                     work / "missing" / "p.mp4", "--models", models_dir, "--quiet")
    assert_error(result, 1, "does not exist", "create it")
    result = run_cli("--input", media / "clip.mp4", "--take", work, "--models", models_dir, "--quiet")
    assert_error(result, 2, ".npz")
    readonly = tmp_path / "ro"
    readonly.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(readonly)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        result = run_cli("--input", media / "clip.mp4", "--take", work / "old.npz", "--preview",
                         readonly / "p.mp4", "--models", models_dir, "--quiet")
        assert_error(result, 1, "read-only")
    finally:
        subprocess.run(["umount", str(readonly)], check=True)
    assert snapshot(work) == before


def test_full_disk_leaves_previous_files_and_no_new_ones(media, models_dir, tmp_path):
    """A preview that does not fit: the run fails, the take it had captured is not written either,
    and the previous take and preview are byte-for-byte as they were."""
    disk = tmp_path / "small"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        (disk / "old.npz").write_bytes(b"previous take" * 100)
        (disk / "old.mp4").write_bytes(b"previous preview" * 100)
        before = snapshot(disk)
        result = run_cli("--input", media / "clip.mp4", "--take", disk / "old.npz", "--preview",
                         disk / "old.mp4", "--models", models_dir, "--quiet")
        assert_error(result, 1, "disk")
        assert snapshot(disk) == before
        assert_no_temporaries(disk)
    finally:
        subprocess.run(["umount", str(disk)], check=True)


# -- interrupts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("signum, code, word", [(signal.SIGTERM, 143, "terminated"),
                                                (signal.SIGINT, 130, "interrupted")])
def test_interrupt_leaves_previous_files(shared_dir, work, models_dir, signum, code, word):
    before = snapshot(work)
    process = subprocess.Popen(
        [*CLI, "--input", str(shared_dir / "data/video/talking_head_640x360.mp4"), "--take", str(work / "old.npz"),
         "--preview", str(work / "old.mp4"), "--models", str(models_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)  # models loaded, capture under way
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1].startswith(word)
    assert snapshot(work) == before
    assert_no_temporaries(work)


# -- a folder of clips ------------------------------------------------------------------------


def test_folder_batch_goes_on_past_bad_clips(media, models_dir, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("clip.mp4", "truncated.mp4", "noface.mp4"):
        shutil.copy(media / name, clips / name)
    takes = tmp_path / "takes"
    result = run_cli("--input", clips, "--take", takes, "--models", models_dir, "--quiet")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert sorted(os.listdir(takes)) == ["clip.npz"]
    assert result.stdout.splitlines()[0].startswith(f"done   {clips / 'clip.mp4'}: 29 frames, 29 with a face")
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed")]
    assert len(failed) == 2 and "No face found" in " ".join(failed)
    assert result.stderr.strip().splitlines()[-1].startswith("3 clips: 1 done, 2 failed")
    preview_into_input = run_cli("--input", clips, "--preview", clips, "--quiet")
    assert_error(preview_into_input, 2, "input folder")


# -- footage as it plays ----------------------------------------------------------------------


@pytest.mark.parametrize("name, turn", [("phone90.mp4", 90), ("phone180.mp4", 180)])
def test_rotated_phone_clips_match_the_upright_capture(media, models_dir, upright, name, turn):
    """Stored sideways or upside down with a rotation tag: landmarks land where a player shows
    the face, and the take records the displayed size."""
    from ddfa_blender.core.engine import CaptureOptions, capture

    take = capture(str(media / name), CaptureOptions(models_dir=str(models_dir)))
    assert take.image_size == upright.image_size == (640, 360)
    assert take.meta["rotation"] in (90, 270) if turn == 90 else take.meta["rotation"] == 180
    assert len(take) == len(upright) and take.valid.all()
    error = np.linalg.norm(take.lmk68[:, :, :2] - upright.lmk68[:, :, :2], axis=-1)
    assert np.median(error) < 2.0 and error.mean(axis=1).max() < 4.0  # pixels (re-encoded footage)


def test_exif_rotated_still_matches_the_upright_still(shared_dir, models_dir, tmp_path):
    from PIL import Image

    from ddfa_blender.core.engine import CaptureOptions, capture

    upright_path = shared_dir / "data/images/JianzhuGuo.jpg"
    image = cv2.imread(str(upright_path))
    stored = Image.fromarray(cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)[:, :, ::-1])
    exif = stored.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    stored.save(tmp_path / "IMG_0042.jpg", exif=exif.tobytes(), quality=95)
    options = CaptureOptions(models_dir=str(models_dir))
    reference = capture(str(upright_path), options)
    rotated = capture(str(tmp_path / "IMG_0042.jpg"), options)
    assert rotated.image_size == reference.image_size == (image.shape[1], image.shape[0])
    error = np.linalg.norm(rotated.lmk68[0, :, :2] - reference.lmk68[0, :, :2], axis=-1)
    assert error.mean() < 2.0


def test_dropped_frames_keep_their_real_times(media, models_dir, upright):
    """Frames 8-15 missing: the later samples keep their own timestamps, and the bake keys
    each at time * scene fps, so it lines up with the upright capture frame for frame."""
    from ddfa_blender.blender import bake_channels
    from ddfa_blender.core.engine import CaptureOptions, capture

    take = capture(str(media / "dropped.mp4"), CaptureOptions(models_dir=str(models_dir)))
    assert len(take) == len(upright) - 8
    assert take.fps == pytest.approx(24000 / 1001)
    np.testing.assert_allclose(take.time[8:], upright.time[16:], atol=1e-3)
    channels = bake_channels.track_channels(take)
    reference = bake_channels.track_channels(upright)
    np.testing.assert_array_equal(channels.frames[8:], reference.frames[16:])
    np.testing.assert_array_equal(channels.frames[:8], reference.frames[:8])
    error = np.linalg.norm(take.lmk68[8:, :, :2] - upright.lmk68[16:, :, :2], axis=-1)
    assert np.median(error) < 1.5


def test_raw_stream_gets_a_default_rate_and_a_warning(media, models_dir, tmp_path):
    reported = cv2.VideoCapture(str(media / "raw.h264")).get(cv2.CAP_PROP_FPS)
    if 1 <= reported <= 240:
        pytest.skip(f"this OpenCV reports a plausible {reported} fps for the raw stream")
    result = run_cli("--input", media / "raw.h264", "--take", tmp_path / "t.npz", "--models", models_dir,
                     "--quiet")
    assert result.returncode == 0, result.stderr
    assert "warning:" in result.stderr and "--fps" in result.stderr and "Traceback" not in result.stderr
    from ddfa_blender.core.take import Take

    take = Take.load(str(tmp_path / "t.npz"))
    assert take.fps == 30.0 and np.allclose(np.diff(take.time), 1 / 30)
    result = run_cli("--input", media / "raw.h264", "--take", tmp_path / "u.npz", "--fps", "23.976",
                     "--models", models_dir, "--quiet")
    assert result.returncode == 0 and "warning" not in result.stderr
    assert Take.load(str(tmp_path / "u.npz")).fps == pytest.approx(23.976)


def test_footage_cut_short_is_captured_with_a_warning(media, models_dir, tmp_path):
    result = run_cli("--input", media / "cut_short.mp4", "--take", tmp_path / "t.npz", "--models", models_dir,
                     "--quiet")
    assert result.returncode == 0, result.stderr
    assert "warning: cut_short.mp4 stopped decoding after" in result.stderr and "Traceback" not in result.stderr
    from ddfa_blender.core.take import Take

    for whole in ("dropped.mkv", "indexed.mp4"):  # whole files, the first with frames dropped (VFR)
        result = run_cli("--input", media / whole, "--take", tmp_path / "u.npz", "--models", models_dir,
                         "--quiet")
        assert result.returncode == 0 and "warning" not in result.stderr, (whole, result.stderr)
    whole_frames = len(Take.load(str(tmp_path / "u.npz")).time)
    assert 0 < len(Take.load(str(tmp_path / "t.npz")).time) < 0.9 * whole_frames


def test_percent_in_a_real_file_name_is_a_file(media, models_dir, tmp_path):
    odd = tmp_path / "take 100% final.mp4"
    shutil.copy(media / "clip.mp4", odd)
    result = run_cli("--input", odd, "--take", tmp_path / "t 100%.npz", "--models", models_dir, "--quiet")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "t 100%.npz").is_file()
