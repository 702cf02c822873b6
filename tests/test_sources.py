"""Footage sources: videos, image sequences, single images, and bad input."""

import numpy as np
import pytest

from ddfa_blender.core.errors import CaptureError
from ddfa_blender.core.sources import ImageSequence, VideoSource, open_source

cv2 = pytest.importorskip("cv2")


def test_edit_list_video_presents_55_frames(shared_dir):
    source = open_source(str(shared_dir / "data/video/obama.mp4"))
    assert isinstance(source, VideoSource)
    frames = [(f.number, f.time, f.image.shape) for f in source]
    assert [n for n, _, _ in frames] == list(range(55))
    times = np.array([t for _, t, _ in frames])
    assert (np.diff(times) > 0).all()
    assert frames[0][2] == (720, 1280, 3) and source.image_size == (1280, 720)
    assert source.fps == pytest.approx(25.0)


def test_container_count_is_only_an_estimate(shared_dir):
    source = open_source(str(shared_dir / "data/video/no_face.mp4"))
    assert sum(1 for _ in source) == 95


def write_images(folder, names, size=(32, 24)):
    folder.mkdir(exist_ok=True)
    for i, name in enumerate(names):
        cv2.imwrite(str(folder / name), np.full((size[1], size[0], 3), 10 * i, np.uint8))


def test_folder_sequence_keeps_file_numbers(tmp_path):
    write_images(tmp_path / "seq", ["shot_0007.png", "shot_0008.png", "shot_0010.png"])
    (tmp_path / "seq" / "notes.txt").write_text("not an image")
    source = open_source(str(tmp_path / "seq"), fps=25)
    frames = list(source)
    assert [f.number for f in frames] == [7, 8, 10]
    assert frames[2].time == pytest.approx(10 / 25)
    assert source.image_size == (32, 24)


def test_printf_pattern_and_single_image(tmp_path):
    write_images(tmp_path, ["a_001.jpg", "a_002.jpg", "b_001.jpg"])
    assert [f.number for f in open_source(str(tmp_path / "a_%03d.jpg"))] == [1, 2]
    single = list(open_source(str(tmp_path / "b_001.jpg")))
    assert len(single) == 1 and single[0].image.shape == (24, 32, 3)


def test_grayscale_and_alpha_images_become_bgr(shared_dir):
    for name in ("BWPictureHuman.jpg", "Image_with_alpha.png"):
        frame = next(iter(open_source(str(shared_dir / "data/images" / name))))
        assert frame.image.ndim == 3 and frame.image.shape[2] == 3


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(CaptureError, match="Input not found"):
        open_source(str(tmp_path / "missing.mp4"))
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CaptureError, match="corrupt|no decodable"):
        open_source(str(corrupt))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaptureError, match="No images found"):
        open_source(str(tmp_path / "empty"))
    with pytest.raises(CaptureError, match="No images found"):
        open_source(str(tmp_path / "none_%04d.png"))
    bad = tmp_path / "bad"
    write_images(bad, ["f_1.png"])
    (bad / "f_2.png").write_bytes(b"garbage")
    source = open_source(str(bad))
    with pytest.raises(CaptureError, match="Cannot read image .*f_2.png"):
        list(source)
    mixed = tmp_path / "mixed"
    write_images(mixed, ["m_1.png"])
    cv2.imwrite(str(mixed / "m_2.png"), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(CaptureError, match="one size"):
        list(open_source(str(mixed)))


def test_empty_video_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (32, 32))
    writer.release()
    with pytest.raises(CaptureError):
        open_source(str(path))
