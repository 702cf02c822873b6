"""Storage behind the take: rows spilled to disk while a capture runs, and ``.npz`` written in chunks.

A capture of an hour is about 90,000 frames; holding each row's 68 landmarks,
62 parameters and channels in memory would grow the process by about a
kilobyte a frame. :class:`RecordSpill` appends fixed-size records (a NumPy
structured dtype) to an anonymous temporary file in blocks, so memory stays
flat however long the footage is; the file disappears when it is closed or the
process ends (it is unlinked on creation where the system allows it).

:func:`write_npz` writes an ``.npz`` archive (the format ``numpy.load``
reads: a zip of ``.npy`` files) from whole arrays or from
:class:`ChunkedArray` generators, one block at a time, so a take is written
without ever being assembled in memory.
"""

from __future__ import annotations

import dataclasses
import tempfile
import zipfile
from typing import Callable, Iterator

import numpy as np

BLOCK_RECORDS = 2048  # records buffered in memory before they go to the spill file


class RecordSpill:
    """An append-only sequence of records of one structured ``dtype``, kept in a temporary file.

    ``append()`` returns a one-record view to fill in place (fields by name);
    :meth:`blocks` reads the records back in order, a block at a time.
    """

    def __init__(self, dtype: np.dtype, block: int = BLOCK_RECORDS):
        self.dtype = np.dtype(dtype)
        self._file = tempfile.TemporaryFile(prefix="ddfa-rows-")
        self._buffer = np.zeros(block, dtype=self.dtype)
        self._filled = 0
        self._flushed = 0

    def __len__(self) -> int:
        return self._flushed + self._filled

    def append(self) -> np.void:
        """A fresh record (zeroed) at the end of the sequence, to be filled by the caller."""
        if self._filled == len(self._buffer):
            self._flush()
        record = self._buffer[self._filled]
        self._filled += 1
        return record

    def _flush(self) -> None:
        if self._filled:
            self._file.seek(0, 2)
            self._file.write(self._buffer[: self._filled].tobytes())
            self._flushed += self._filled
            self._filled = 0
            self._buffer[...] = 0

    def blocks(self, size: int = BLOCK_RECORDS) -> Iterator[np.ndarray]:
        """The records in order, as arrays of at most ``size`` records (copies). Several
        readers may iterate at once (each keeps its own place in the file)."""
        self._flush()
        offset, remaining = 0, self._flushed
        while remaining:
            count = min(size, remaining)
            self._file.seek(offset)
            data = self._file.read(count * self.dtype.itemsize)
            offset += len(data)
            yield np.frombuffer(data, dtype=self.dtype).copy()
            remaining -= count

    def close(self) -> None:
        self._file.close()


@dataclasses.dataclass
class ChunkedArray:
    """An array of ``shape`` and ``dtype`` produced in row blocks by ``chunks()`` (in order)."""

    shape: tuple
    dtype: np.dtype
    chunks: Callable[[], Iterator[np.ndarray]]

    def materialise(self) -> np.ndarray:
        """The whole array in memory."""
        out = np.empty(self.shape, dtype=self.dtype)
        start = 0
        for chunk in self.chunks():
            out[start : start + len(chunk)] = chunk
            start += len(chunk)
        if start != self.shape[0]:
            raise ValueError(f"chunks gave {start} rows, expected {self.shape[0]}")
        return out


def write_npz(handle, arrays: dict) -> None:
    """Write ``arrays`` (name -> ndarray or :class:`ChunkedArray`) to the open binary file ``handle``
    as an uncompressed ``.npz`` that ``numpy.load(..., allow_pickle=False)`` reads."""
    with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, value in arrays.items():
            if isinstance(value, ChunkedArray):
                shape, dtype, chunks = tuple(value.shape), np.dtype(value.dtype), value.chunks()
            else:
                value = np.asanyarray(value)
                shape, dtype, chunks = value.shape, value.dtype, iter([value])
            if dtype.hasobject:
                raise ValueError(f"{name}: object arrays cannot be stored in a take")
            header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
            with archive.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_2_0(member, header)
                written = 0
                for chunk in chunks:
                    chunk = np.ascontiguousarray(chunk, dtype=dtype)
                    member.write(chunk.tobytes())
                    written += chunk.shape[0] if chunk.ndim else 1
                expected = shape[0] if shape else 1
                if written != expected:
                    raise ValueError(f"{name}: wrote {written} rows, expected {expected}")
