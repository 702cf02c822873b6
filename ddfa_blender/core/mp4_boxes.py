"""The presented length of an MP4 / QuickTime video track, read from its boxes.

OpenCV reports a stream's coded frame count, but an edit list can present
only part of it (the shared ``obama.mp4`` codes 158 frames and presents 55),
so a progress bar sized by the coded count stops early. A track header
(``moov/trak/tkhd``) holds the track's presented duration (the sum of its
edits) in the movie's time scale (``moov/mvhd``); :func:`video_track_duration`
reads it with file seeks only (no decoding, a few reads per file).
"""

from __future__ import annotations

import struct

_CONTAINERS = (b"moov", b"trak", b"mdia")


def _boxes(file, start: int, end: int):
    """``(type, payload start, payload end)`` of each box between byte ``start`` and ``end``."""
    position = start
    while position + 8 <= end:
        file.seek(position)
        header = file.read(8)
        if len(header) < 8:
            return
        size, kind = struct.unpack(">I4s", header)
        payload = position + 8
        if size == 1:
            large = file.read(8)
            if len(large) < 8:
                return
            size = struct.unpack(">Q", large)[0]
            payload += 8
        elif size == 0:
            size = end - position
        if size < payload - position:
            return
        yield kind, payload, min(position + size, end)
        position += size


def _read(file, offset: int, length: int) -> bytes:
    file.seek(offset)
    return file.read(length)


def _track(file, start: int, end: int) -> tuple[bytes | None, int | None]:
    """``(handler type, duration in movie time units)`` of one ``trak`` box."""
    handler = duration = None
    for kind, payload, stop in _boxes(file, start, end):
        if kind == b"tkhd":
            version = _read(file, payload, 1)
            if version == b"\x00":
                duration = struct.unpack(">I", _read(file, payload + 20, 4))[0]
            elif version == b"\x01":
                duration = struct.unpack(">Q", _read(file, payload + 28, 8))[0]
        elif kind == b"mdia":
            for inner, inner_payload, _ in _boxes(file, payload, stop):
                if inner == b"hdlr":
                    handler = _read(file, inner_payload + 8, 4)
    return handler, duration


def video_track_duration(path: str) -> float | None:
    """Seconds the first video track of an MP4/MOV file presents, or None when the file
    is not one, the header is missing or malformed, or the duration is unknown."""
    try:
        with open(path, "rb") as file:
            file.seek(0, 2)
            size = file.tell()
            for kind, payload, stop in _boxes(file, 0, size):
                if kind != b"moov":
                    continue
                timescale = None
                tracks = []
                for inner, inner_payload, inner_stop in _boxes(file, payload, stop):
                    if inner == b"mvhd":
                        version = _read(file, inner_payload, 1)
                        offset = 12 if version == b"\x00" else 20
                        timescale = struct.unpack(">I", _read(file, inner_payload + offset, 4))[0]
                    elif inner == b"trak":
                        tracks.append(_track(file, inner_payload, inner_stop))
                for handler, duration in tracks:
                    if handler == b"vide" and timescale and duration and duration < 0xFFFFFFFF:
                        return duration / timescale
                return None
    except (OSError, struct.error):
        return None
    return None
