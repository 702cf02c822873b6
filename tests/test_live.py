"""Live capture without Blender: camera errors, the real-time file source, the live session.

The session test drives :class:`LiveSession` from :class:`RealtimeFileSource`
on talking_head_640x360.mp4 for a few seconds and compares the recording with
an offline capture of the very frames the session processed.
"""

import os
import sys
import threading
import time

import numpy as np
import pytest

from ddfa_blender.core import camera
from ddfa_blender.core.camera import CameraSource, RealtimeFileSource, camera_open_error, parse_device
from ddfa_blender.core.engine import CaptureOptions, capture
from ddfa_blender.core.errors import CaptureError
from ddfa_blender.core.live import FILTERED_CHANNEL, LiveOptions, LiveSession, NewestFrameSlot
from ddfa_blender.core.one_euro import LiveFilter

cv2 = pytest.importorskip("cv2")

LIVE_SECONDS = 4.0


class FakeClock:
    """A clock that only moves when slept on or advanced by the test."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += max(seconds, 0.0)


@pytest.fixture
def single_face(shared_dir):
    return str(shared_dir / "data/video/single_face.mp4")


# -- device names and errors ---------------------------------------------------------


def test_device_names_are_classified(single_face):
    assert parse_device(0) == ("index", 0)
    assert parse_device(" 2 ") == ("index", 2)
    assert parse_device("/dev/video1") == ("path", "/dev/video1")
    assert parse_device("rtsp://host/stream") == ("stream", "rtsp://host/stream")
    assert parse_device(single_face) == ("stream", single_face)
    with pytest.raises(CaptureError, match="Unknown camera 'front cam'"):
        parse_device("front cam")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="device files are Linux's")
def test_missing_camera_is_a_clear_error():
    with pytest.raises(CaptureError, match=r"No camera found at /dev/video97: connect a webcam"):
        CameraSource(97)
    with pytest.raises(CaptureError, match=r"No camera found at /dev/video96"):
        CameraSource("/dev/video96")


def test_permission_denied_and_busy_camera_messages(tmp_path, monkeypatch):
    device = tmp_path / "video0"  # exists and opens, but is no camera: what a busy device looks like
    device.write_bytes(b"")
    busy = camera_open_error("path", str(device), platform="linux")
    assert "busy or gives no frames" in str(busy) and "close other applications" in str(busy)
    monkeypatch.setattr(camera.os, "access", lambda path, mode: False)
    denied = camera_open_error("path", str(device), platform="linux")
    assert str(denied).startswith(f"Permission denied for {device}") and "'video' group" in str(denied)
    mac = camera_open_error("index", 0, platform="darwin")
    assert "Privacy & Security > Camera" in str(mac)
    windows = camera_open_error("index", 1, platform="win32")
    assert "Privacy & security > Camera" in str(windows)


def test_unreachable_stream_is_a_clear_error():
    with pytest.raises(CaptureError, match="Cannot open the stream rtsp://127.0.0.1:9/none"):
        CameraSource("rtsp://127.0.0.1:9/none")


def test_stream_source_reports_what_it_gives_and_closes_from_another_thread(single_face):
    source = CameraSource(single_face)
    assert source.image_size == (640, 360) and source.fps == pytest.approx(30.0)
    assert source.frame_count is None and source.notes == []
    frames = []
    for frame in source:
        frames.append(frame)
        if len(frames) == 5:
            closer = threading.Thread(target=source.close)
            closer.start()
            closer.join()
    assert len(frames) == 5
    assert [f.number for f in frames] == list(range(len(frames)))
    assert np.all(np.diff([f.time for f in frames]) >= 0)


# -- real-time file source -----------------------------------------------------------


def test_realtime_source_hands_frames_out_at_their_time(single_face):
    clock = FakeClock()
    source = RealtimeFileSource(single_face, clock=clock, sleep=clock.sleep)
    start = None
    for frame in source:
        start = clock.now - frame.time if start is None else start
        assert clock.now == pytest.approx(start + frame.time)  # never early, and not late
        if frame.number == 20:
            break
    source.close()
    assert source.dropped == 0 and source.delivered == 21


def test_realtime_source_drops_frames_a_slow_consumer_misses(single_face):
    clock = FakeClock()
    source = RealtimeFileSource(single_face, clock=clock, sleep=clock.sleep)
    period = 1.0 / source.fps
    numbers = []
    for frame in source:
        numbers.append(frame.number)
        clock.now += 2.5 * period  # the consumer takes 2.5 frame periods per frame
    assert source.delivered + source.dropped == 72  # every decoded frame is delivered or dropped
    assert 72 / 3.5 - 2 <= source.delivered <= 72 / 2.5 + 2
    steps = np.diff(numbers)
    assert set(steps) <= {2, 3} and numbers[-1] >= 70  # the newest due frame, to the end


def test_realtime_source_close_interrupts_a_wait(single_face):
    source = RealtimeFileSource(single_face, speed=0.01)  # 3.3 s between frames
    frames = iter(source)
    next(frames)
    threading.Timer(0.2, source.close).start()
    started = time.perf_counter()
    assert next(frames, None) is None
    assert time.perf_counter() - started < 3.0


def test_newest_frame_slot_keeps_one_item():
    slot = NewestFrameSlot()
    for item in range(5):
        slot.put(item)
        assert len(slot) == 1
    assert slot.replaced == 4 and slot.take() == 4 and len(slot) == 0
    assert slot.take(timeout=0.01) is None
    slot.put(7)
    slot.close()
    assert slot.take() == 7 and slot.take() is None


# -- the live session ----------------------------------------------------------------


def resident_mb():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


@pytest.fixture(scope="module")
def live_run(shared_dir, models_dir):
    """A live session on the talking head for LIVE_SECONDS, recording from its first frame."""
    video = str(shared_dir / "data/video/talking_head_640x360.mp4")
    source = RealtimeFileSource(video)
    session = LiveSession(source, LiveOptions(models_dir=str(models_dir), threads=1))
    session.start_recording()
    session.start()
    assert session.wait_ready(60)
    started = time.perf_counter()
    pending, memory, sequences = [], [], []
    while time.perf_counter() - started < LIVE_SECONDS:
        time.sleep(0.05)
        stats = session.stats()
        pending.append(stats.pending)
        result = session.latest()
        if result is not None:
            sequences.append(result.sequence)
        if time.perf_counter() - started > 1.0:
            memory.append(resident_mb())
    take = session.stop_recording()
    session.stop()
    stats = session.stats()  # after stop: every delivered frame is processed or dropped
    print(
        f"\nlive: {stats.processed} results from {source.delivered} frames in {LIVE_SECONDS:.0f} s, "
        f"{stats.fps:.1f} fps, latency median {stats.latency_ms:.1f} ms "
        f"(p90 {stats.latency_p90_ms:.1f} ms), dropped {stats.dropped}"
    )
    return dict(video=video, source=source, session=session, take=take, stats=stats,
                pending=pending, memory=memory, sequences=sequences)


def test_results_for_most_frames_at_the_source_pace(live_run):
    stats, source = live_run["stats"], live_run["source"]
    expected = LIVE_SECONDS * source.fps
    assert stats.processed >= 0.6 * expected  # loose: the machine is shared
    assert stats.processed + stats.dropped >= source.delivered
    assert stats.processed <= 1.05 * expected + 2  # never faster than the footage
    assert 0.6 * source.fps <= stats.fps <= 1.2 * source.fps
    assert np.all(np.diff(live_run["sequences"]) >= 0)
    assert 0.0 < stats.latency_ms < 500.0  # printed above; a loose bound only


def test_no_queue_or_memory_grows(live_run):
    assert max(live_run["pending"]) <= 1
    memory = live_run["memory"]
    assert memory[-1] - memory[0] < 50.0, f"resident memory grew {memory[-1] - memory[0]:.1f} MB"


def test_stop_joins_threads_and_releases_the_source(live_run):
    session = live_run["session"]
    assert session.alive_threads() == [] and not session.running
    assert next(iter(live_run["source"]), None) is None  # closed: nothing more to read


def write_frames(video, numbers, folder):
    """The video's frames ``numbers`` as lossless PNGs named by frame number."""
    wanted = set(int(n) for n in numbers)
    reader = cv2.VideoCapture(video)
    index = 0
    while index <= max(wanted):
        ok, image = reader.read()
        assert ok
        if index in wanted:
            cv2.imwrite(str(folder / f"frame_{index:05d}.png"), image)
        index += 1
    reader.release()


def test_recording_equals_an_offline_capture_of_the_same_frames(live_run, models_dir, tmp_path):
    take = live_run["take"]
    assert len(take) >= 0.6 * LIVE_SECONDS * take.fps and take.valid.all()
    write_frames(live_run["video"], take.frame, tmp_path)
    offline = capture(str(tmp_path), CaptureOptions(models_dir=str(models_dir), threads=1, fps=take.fps))
    np.testing.assert_array_equal(offline.frame, take.frame)
    np.testing.assert_allclose(offline.time, take.time, atol=1e-6)
    for name in ("track", "valid", "detected", "param", "roi", "lmk68", "quality"):
        np.testing.assert_array_equal(getattr(offline, name), getattr(take, name), err_msg=name)
    assert take.meta["channels"][FILTERED_CHANNEL][52] == "expr_00"
    assert take.image_size == offline.image_size and take.fps == pytest.approx(23.976, abs=1e-3)


def test_recorded_filter_channel_is_the_live_filter_over_the_rows(live_run):
    take = live_run["take"]
    live_filter = LiveFilter()
    expected = np.array([live_filter(t, p, r) for t, p, r in zip(take.time, take.param, take.roi)])
    filtered = take.channels[FILTERED_CHANNEL]
    np.testing.assert_allclose(filtered, expected, rtol=1e-6, atol=1e-6)
    assert not np.allclose(filtered[:, 52:], take.param[:, 52:])  # it did filter


def test_missing_models_surface_in_the_caller(single_face, tmp_path):
    session = LiveSession(RealtimeFileSource(single_face), LiveOptions(models_dir=str(tmp_path)))
    session.start()
    with pytest.raises(CaptureError, match="fetch_models"):
        session.wait_ready(30)
    session.stop()
    assert session.alive_threads() == []
    with pytest.raises(CaptureError, match="Nothing was recorded"):
        session.stop_recording()
