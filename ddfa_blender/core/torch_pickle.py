"""Read a legacy (pre-zip) PyTorch ``.pth`` checkpoint into NumPy arrays, without torch.

A legacy checkpoint is several pickles back to back: the magic number, the
protocol version, a dict of system information, the saved object itself, and
the list of storage keys; then, for each key in that order, an 8-byte
little-endian element count followed by the storage's raw little-endian data.
Inside the saved object each tensor is a call to
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` and each
storage is a persistent id ``('storage', storage_type, key, location, numel,
view_metadata)``; offsets, sizes and strides count elements, not bytes.

Only the classes a state dict needs are resolved (``collections.OrderedDict``,
``_rebuild_tensor_v2`` and the ``torch.*Storage`` types); any other class in the
file is refused, so reading a checkpoint never runs code it names.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import pickle
import struct

import numpy as np

from .errors import CaptureError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
MODULE_PREFIX = "module."

STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclasses.dataclass
class _Storage:
    """One storage named by the pickle; ``data`` is filled from the file's tail."""

    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclasses.dataclass
class _TensorRef:
    """A tensor view into a storage, resolved to an array once storages are read."""

    storage: _Storage
    offset: int
    size: tuple
    stride: tuple

    def to_array(self, path) -> np.ndarray:
        extent = sum((n - 1) * s for n, s in zip(self.size, self.stride) if n > 0)
        empty = any(n == 0 for n in self.size)
        if self.offset < 0 or (not empty and self.offset + extent >= self.storage.numel):
            raise CaptureError(
                f"{path} is corrupt (a tensor reaches past its storage): "
                "download the checkpoint again"
            )
        flat = self.storage.data
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.array(view)


def _rebuild_tensor_v2(storage, offset, size, stride, *_unused):
    return _TensorRef(
        storage, int(offset), tuple(int(n) for n in size), tuple(int(s) for s in stride)
    )


class _StorageType:
    """What ``find_class`` hands back for ``torch.<Name>Storage``."""

    def __init__(self, name: str):
        self.dtype = STORAGE_DTYPES[name]


class _CheckpointUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the classes a legacy state dict uses."""

    def __init__(self, stream, path, storages: dict):
        super().__init__(stream)
        self._path = path
        self._storages = storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise CaptureError(
            f"{self._path} is not a plain PyTorch state dict (it names {module}.{name}): "
            "use the original checkpoint file"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise CaptureError(
                f"{self._path} has an unknown storage record: use the original checkpoint file"
            )
        _, storage_type, key, _location, numel, view_metadata = pid
        if not isinstance(storage_type, _StorageType) or view_metadata is not None:
            raise CaptureError(
                f"{self._path} uses an unsupported storage layout: "
                "use the original checkpoint file"
            )
        storage = self._storages.get(key)
        if storage is None:
            storage = self._storages[key] = _Storage(str(key), storage_type.dtype, int(numel))
        return storage


def read_state_dict(path) -> dict[str, np.ndarray]:
    """Read a legacy PyTorch checkpoint's state dict as ``{name: array}``.

    Accepts either ``{'state_dict': {...}, ...}`` or a bare state dict. A leading
    ``module.`` (from ``DataParallel``) is stripped from every name. Arrays keep
    the storage dtype (float32 weights, int64 counters). Raises CaptureError
    naming the file when it is missing, truncated, corrupt, a zip-format
    checkpoint, or names anything beyond tensors and dicts.
    """
    try:
        with open(path, "rb") as file:
            blob = file.read()
    except OSError as err:
        raise CaptureError(
            f"cannot read {path} ({err.strerror}): run python scripts/fetch_models.py"
        ) from err
    if blob[:4] == b"PK\x03\x04":
        raise CaptureError(
            f"{path} is a zip-format PyTorch checkpoint; only the legacy format of the "
            "3DDFA-V2 release is supported: use the upstream weights file"
        )
    stream = io.BytesIO(blob)
    storages: dict = {}
    try:
        magic, protocol, _sys_info, obj, keys = (
            _CheckpointUnpickler(stream, path, storages).load() for _ in range(5)
        )
    except CaptureError:
        raise
    except Exception as err:  # pickle reports truncation and corruption with many types
        raise CaptureError(f"{path} is truncated or corrupt ({err}): download it again") from err
    if magic != LEGACY_MAGIC or protocol != LEGACY_PROTOCOL:
        raise CaptureError(
            f"{path} is not a legacy PyTorch checkpoint: use the upstream weights file"
        )
    _read_storages(stream, blob, keys, storages, path)
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, _TensorRef) for v in state.values()):
        raise CaptureError(f"{path} holds no state dict of tensors: use the upstream weights file")
    return {_strip_prefix(name): ref.to_array(path) for name, ref in state.items()}


def _read_storages(stream: io.BytesIO, blob: bytes, keys, storages: dict, path) -> None:
    """Fill every storage from the data records after the pickles; check sizes and the end."""
    if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(storages):
        raise CaptureError(
            f"{path} is corrupt (storage list does not match the tensors): download it again"
        )
    pos = stream.tell()
    for key in keys:
        storage = storages[key]
        if pos + 8 > len(blob):
            raise CaptureError(f"{path} is truncated: download it again")
        (count,) = struct.unpack_from("<q", blob, pos)
        nbytes = count * storage.dtype.itemsize
        pos += 8
        if count != storage.numel or pos + nbytes > len(blob):
            raise CaptureError(
                f"{path} is truncated or corrupt (storage {key} size mismatch): download it again"
            )
        storage.data = np.frombuffer(blob, dtype=storage.dtype, count=count, offset=pos)
        pos += nbytes
    if pos != len(blob):
        raise CaptureError(
            f"{path} is corrupt ({len(blob) - pos} bytes left over after the tensors): "
            "download it again"
        )


def _strip_prefix(name: str) -> str:
    return name[len(MODULE_PREFIX) :] if name.startswith(MODULE_PREFIX) else name
