"""Minimal reader for MATLAB level-5 ``.mat`` files: real numeric matrices only.

Enough for 3DDFA-V2's ``BFM_UV.mat``. A level-5 file is a 128-byte header (the
last two bytes, ``IM`` or ``MI``, give the byte order) followed by data
elements, each an 8-byte tag (type, byte count) and its data padded to 8 bytes;
a "small" element packs the count into the tag's upper half and its data into
the tag's second four bytes. Variables are ``miMATRIX`` elements, usually
wrapped in zlib-compressed ``miCOMPRESSED`` elements. A matrix holds array
flags, dimensions, name and real part (stored column-major, possibly in a
narrower type than its class). Variables of other kinds (cell, struct, char,
sparse, complex) are skipped.
"""

from __future__ import annotations

import zlib

import numpy as np

from .errors import CaptureError

HEADER_BYTES = 128
MI_MATRIX, MI_COMPRESSED = 14, 15
ELEMENT_DTYPES = {
    1: "i1",
    2: "u1",
    3: "i2",
    4: "u2",
    5: "i4",
    6: "u4",
    7: "f4",
    9: "f8",
    12: "i8",
    13: "u8",
}
# MATLAB array classes holding plain numbers, and their NumPy dtype.
NUMERIC_CLASSES = {
    6: "f8",
    7: "f4",
    8: "i1",
    9: "u1",
    10: "i2",
    11: "u2",
    12: "i4",
    13: "u4",
    14: "i8",
    15: "u8",
}
FLAG_COMPLEX = 0x0800


def read_mat(path) -> dict[str, np.ndarray]:
    """The real numeric matrices of a level-5 MAT file as ``{name: array}`` (C order).

    Arrays keep MATLAB's shape and class dtype (a 53215x2 double matrix becomes a
    float64 (53215, 2) array). Raises CaptureError naming the file when it cannot
    be read, is not a level-5 MAT file, or is truncated or corrupt.
    """
    try:
        with open(path, "rb") as file:
            blob = file.read()
    except OSError as err:
        raise CaptureError(
            f"cannot read {path} ({err.strerror}): run python scripts/fetch_models.py"
        ) from err
    if len(blob) < HEADER_BYTES or blob[126:128] not in (b"IM", b"MI"):
        raise CaptureError(f"{path} is not a MATLAB level-5 file: use the upstream BFM_UV.mat")
    order = "<" if blob[126:128] == b"IM" else ">"
    try:
        return _read_elements(blob, HEADER_BYTES, order)
    except (ValueError, KeyError, IndexError, zlib.error) as err:
        raise CaptureError(f"{path} is truncated or corrupt ({err}): download it again") from err


def _read_elements(blob: bytes, pos: int, order: str) -> dict[str, np.ndarray]:
    arrays = {}
    while pos < len(blob):
        kind, data, pos = _element(blob, pos, order)
        if kind == MI_COMPRESSED:
            kind, data, _ = _element(zlib.decompress(data), 0, order)
        if kind == MI_MATRIX:
            name, array = _matrix(data, order)
            if array is not None:
                arrays[name] = array
    return arrays


def _element(blob: bytes, pos: int, order: str) -> tuple[int, bytes, int]:
    """Type, data and the position after one data element (small or normal)."""
    if pos + 8 > len(blob):
        raise ValueError("element tag cut short")
    kind, nbytes = np.frombuffer(blob, dtype=f"{order}u4", count=2, offset=pos)
    kind, nbytes = int(kind), int(nbytes)
    if kind >> 16:
        small_bytes = kind >> 16
        return kind & 0xFFFF, blob[pos + 4 : pos + 4 + small_bytes], pos + 8
    end = pos + 8 + nbytes
    if end > len(blob):
        raise ValueError("element data cut short")
    padded = end if kind == MI_COMPRESSED else pos + 8 + (nbytes + 7) // 8 * 8
    return kind, blob[pos + 8 : end], padded


def _matrix(data: bytes, order: str) -> tuple[str, np.ndarray | None]:
    """Name and array of one miMATRIX body; the array is None for non-numeric kinds."""
    _, flags, pos = _element(data, 0, order)
    _, dims, pos = _element(data, pos, order)
    _, name, pos = _element(data, pos, order)
    flag_word = int(np.frombuffer(flags, dtype=f"{order}u4", count=1)[0])
    array_class = flag_word & 0xFF
    if array_class not in NUMERIC_CLASSES or flag_word & FLAG_COMPLEX:
        return name.decode("ascii", "replace"), None
    shape = tuple(int(n) for n in np.frombuffer(dims, dtype=f"{order}i4"))
    kind, real, _ = _element(data, pos, order)
    values = np.frombuffer(real, dtype=order + ELEMENT_DTYPES[kind])
    if values.size != int(np.prod(shape)):
        raise ValueError(
            f"variable {name.decode('ascii', 'replace')} has {values.size} values "
            f"for shape {shape}"
        )
    array = values.astype(NUMERIC_CLASSES[array_class]).reshape(shape, order="F")
    return name.decode("ascii", "replace"), np.ascontiguousarray(array)
