"""The presented length of an MP4 video track (edit lists) and the frame estimate built on it."""

import struct

import pytest

from ddfa_blender.core.mp4_boxes import video_track_duration
from ddfa_blender.core.sources import open_source


def box(kind: bytes, payload: bytes, large: bool = False) -> bytes:
    if large:
        return struct.pack(">I4sQ", 1, kind, 16 + len(payload)) + payload
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def movie(timescale: int, tracks, mvhd_version: int = 0) -> bytes:
    """A minimal moov: mvhd with ``timescale``, one trak per ``(handler, duration, tkhd version)``."""
    if mvhd_version == 0:
        mvhd = bytes([0, 0, 0, 0]) + struct.pack(">III", 0, 0, timescale) + bytes(88)
    else:
        mvhd = bytes([1, 0, 0, 0]) + struct.pack(">QQI", 0, 0, timescale) + bytes(88)
    traks = b""
    for handler, duration, version in tracks:
        if version == 0:
            tkhd = bytes([0, 0, 0, 1]) + struct.pack(">IIIII", 0, 0, 1, 0, duration) + bytes(60)
        else:
            tkhd = bytes([1, 0, 0, 1]) + struct.pack(">QQIIQ", 0, 0, 1, 0, duration) + bytes(60)
        hdlr = bytes(4) + bytes(4) + handler + bytes(12) + b"\0"
        traks += box(b"trak", box(b"tkhd", tkhd) + box(b"mdia", box(b"mdhd", bytes(24)) + box(b"hdlr", hdlr)))
    return box(b"moov", box(b"mvhd", mvhd) + traks)


@pytest.mark.parametrize("version", [0, 1])
def test_the_video_track_duration_in_movie_time_units(tmp_path, version):
    path = tmp_path / "clip.mp4"
    tracks = [(b"soun", 9000, version), (b"vide", 2186, version)]
    path.write_bytes(box(b"ftyp", b"isom" + bytes(4)) + box(b"mdat", bytes(100), large=True)
                     + movie(1000, tracks, version))
    assert video_track_duration(str(path)) == pytest.approx(2.186)


@pytest.mark.parametrize("content", [
    b"", b"not a movie at all", box(b"ftyp", b"isom") + b"\x00\x00",  # truncated header
    box(b"moov", box(b"mvhd", bytes(100))),  # no track
    movie(1000, [(b"soun", 5000, 0)]),  # no video track
    movie(0, [(b"vide", 5000, 0)]),  # no time scale
    movie(1000, [(b"vide", 0xFFFFFFFF, 0)]),  # duration unknown
])
def test_anything_else_is_unknown(tmp_path, content):
    path = tmp_path / "clip.mp4"
    path.write_bytes(content)
    assert video_track_duration(str(path)) is None


def test_missing_file_is_unknown(tmp_path):
    assert video_track_duration(str(tmp_path / "none.mp4")) is None


def test_frame_estimate_counts_the_presented_frames(shared_dir):
    """obama.mp4 codes 158 frames; its edit list presents 55 (the progress bar's total)."""
    source = open_source(str(shared_dir / "data/video/obama.mp4"))
    try:
        presented = sum(1 for _ in source)
        assert presented == 55
        assert source.frame_count == presented
    finally:
        source.close()
    talking = open_source(str(shared_dir / "data/video/talking_head_640x360.mp4"))
    assert talking.frame_count == 472
    talking.close()
