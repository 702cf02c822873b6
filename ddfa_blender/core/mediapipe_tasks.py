"""MediaPipe's Tasks API (mediapipe >= 1.0), loaded once with its native logging quieted.

MediaPipe 1.x runs every task in one native library, ``libmediapipe``, called
through ctypes. That library writes start-up chatter straight to the
process's standard error, from its own threads: LiteRT's environment set-up
("INFO: [environment.cc:36] ..."), "Created TensorFlow Lite XNNPACK delegate",
46 "Sparsity tensors may not yet be fully supported" warnings for the
full-range BlazeFace, and absl warnings "logged before InitGoogle()".

Nothing outside the library lowers those levels: mediapipe 1.2.3 reads no
environment variable or flag for them (``GOOGLE_STDERRTHRESHOLD``,
``GLOG_minloglevel`` and ``TF_CPP_MIN_LOG_LEVEL`` change nothing, and a trace
of its ``getenv`` calls shows no other), and pointing file descriptor 2 at
/dev/null meanwhile swallows what other threads print (an error message of
the main thread was lost that way). So, on Linux, once the library is loaded
and before any task is created, :func:`vision` raises the three thresholds
the library keeps in its own data to ERROR: TFLite's and LiteRT's minimal
loggers and absl's minimum log level. They are found by name in the
library's ELF symbol table, checked to be writable integer data objects
(LiteRT's is one byte, the others four), and set through ctypes. In a build
without them nothing is written and MediaPipe is as talkative as before;
errors always print. On Windows and macOS nothing is changed (Blender shows
no console there unless asked to).
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import struct
import sys
import threading
import weakref

import numpy as np

# Library data symbol -> the level written: ERROR on each logger's own scale.
LOG_THRESHOLDS = {
    # TFLite's MinimalLogger (VERBOSE 0, INFO 1, WARNING 2, ERROR 3, SILENT 4).
    "_ZN6tflite16logging_internal13MinimalLogger21minimum_log_severity_E": 3,
    # LiteRT's copy of it (same scale): "INFO: [environment.cc:36] ...".
    "_ZN12_GLOBAL__N_113MinimalLogger21minimum_log_severity_E": 3,
    # absl's minimum log level (INFO 0, WARNING 1, ERROR 2, FATAL 3).
    "_ZN4absl12_GLOBAL__N_113min_log_levelE.0": 2,
}

_SHT_SYMTAB = 2
_SHF_WRITE = 0x1
_STT_OBJECT = 1
_PT_LOAD = 1
_INTEGER_TYPES = {1: ctypes.c_int8, 2: ctypes.c_int16, 4: ctypes.c_int32}  # by size in bytes
_ELF64_SYM = np.dtype(
    [("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"), ("value", "<u8"), ("size", "<u8")]
)


def vision():
    """``mediapipe.tasks.python.vision``, its native library loaded and quieted (see the module doc)."""
    _load_library()
    from mediapipe.tasks.python import vision as tasks_vision

    return tasks_vision


def base_options(model: bytes):
    """MediaPipe ``BaseOptions`` for a model held in memory (CPU)."""
    from mediapipe.tasks.python import BaseOptions

    return BaseOptions(model_asset_buffer=model)


def image_from_bgr(image_bgr: np.ndarray):
    """A MediaPipe SRGB image from an image (BGR, uint8, (H, W, 3)); the pixels are copied."""
    from mediapipe import Image, ImageFormat

    return Image(image_format=ImageFormat.SRGB, data=np.ascontiguousarray(image_bgr[:, :, ::-1]))


# Tasks created and not closed yet; whatever is left is closed at exit (_close_open_tasks).
_OPEN_TASKS: weakref.WeakSet = weakref.WeakSet()


def close_with(owner, tasks) -> weakref.finalize:
    """Close MediaPipe ``tasks`` when ``owner`` is collected, when the returned
    finalizer is called, or at exit, whichever comes first.

    MediaPipe runs every native call on a thread-pool worker, which Python
    stops early in its shutdown; a task still open then (closed by
    ``atexit``, or by MediaPipe's own ``__del__`` while modules are torn down)
    fails to close with a traceback. So the tasks left open are closed just
    before Python joins its threads.
    """
    _register_exit_hook()
    tasks = list(tasks)
    _OPEN_TASKS.update(tasks)
    finalizer = weakref.finalize(owner, _close_all, tasks)
    finalizer.atexit = False  # too late then: _close_open_tasks has done it
    return finalizer


def _close_all(tasks) -> None:
    for task in tasks:
        _OPEN_TASKS.discard(task)
        task.close()


def _close_open_tasks() -> None:
    _close_all(list(_OPEN_TASKS))


@functools.cache
def _register_exit_hook() -> None:
    # threading's exit hooks run before it joins non-daemon threads (concurrent.futures
    # stops its workers there too, registered earlier, so after this one).
    register = getattr(threading, "_register_atexit", atexit.register)
    register(_close_open_tasks)


@functools.cache
def _load_library() -> None:
    """Load libmediapipe once and raise its log thresholds (Linux; see the module doc)."""
    try:
        from mediapipe.tasks.python.core import mediapipe_c_bindings

        library = mediapipe_c_bindings.load_raw_library()
    except (ImportError, AttributeError, OSError):
        return  # creating a task will load it and report what is wrong
    if sys.platform.startswith("linux"):
        quiet_native_logging(library)


def quiet_native_logging(library: ctypes.CDLL) -> list[str]:
    """Set :data:`LOG_THRESHOLDS` in a loaded ELF library; returns the symbols it set."""
    base = _load_base(library)
    if base is None:
        return []
    try:
        offsets = elf_data_symbols(library._name, LOG_THRESHOLDS)
    except (OSError, ValueError, struct.error):
        return []
    for name, (offset, size) in offsets.items():
        _INTEGER_TYPES[size].from_address(base + offset).value = LOG_THRESHOLDS[name]
    return sorted(offsets)


def _load_base(library: ctypes.CDLL) -> int | None:
    """The address ``library`` is loaded at (glibc's ``dladdr`` on one of its exported functions)."""

    class DlInfo(ctypes.Structure):
        _fields_ = [("fname", ctypes.c_char_p), ("fbase", ctypes.c_void_p),
                    ("sname", ctypes.c_char_p), ("saddr", ctypes.c_void_p)]

    try:
        dladdr = ctypes.CDLL(None).dladdr
        anchor = ctypes.cast(library.MpErrorFree, ctypes.c_void_p)
    except (OSError, AttributeError):
        return None
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(DlInfo)]
    info = DlInfo()
    if not dladdr(anchor, ctypes.byref(info)) or not info.fbase:
        return None
    return info.fbase


def elf_data_symbols(path, names) -> dict[str, tuple[int, int]]:
    """``{name: (offset from the load base, size in bytes)}`` of the writable 1-, 2- or
    4-byte data objects ``names`` in the ``.symtab`` of the 64-bit little-endian ELF shared
    library at ``path`` (names that are absent, or not such objects, are left out)."""
    with open(path, "rb") as file:
        header = file.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            return {}
        phoff, shoff = struct.unpack_from("<QQ", header, 0x20)
        phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", header, 0x36)
        file.seek(phoff)
        programs = file.read(phentsize * phnum)
        file.seek(shoff)
        table = file.read(shentsize * shnum)
        # Section header: name, type, flags, addr, offset, size, link, info, addralign, entsize.
        sections = [struct.unpack_from("<IIQQQQIIQQ", table, i * shentsize) for i in range(shnum)]
        symtab = next((s for s in sections if s[1] == _SHT_SYMTAB), None)
        if symtab is None:
            return {}
        strtab = sections[symtab[6]]
        file.seek(strtab[4])
        strings = file.read(strtab[5])
        file.seek(symtab[4])
        symbols = np.frombuffer(file.read(symtab[5]), dtype=_ELF64_SYM)
    # Symbol addresses are relative to the lowest loaded segment's virtual address.
    loads = [struct.unpack_from("<IIQQ", programs, i * phentsize) for i in range(phnum)]
    first_vaddr = min((p[3] for p in loads if p[0] == _PT_LOAD), default=0)
    wanted = {}
    for name in names:
        needle = name.encode() + b"\0"
        at = strings.find(needle)
        while at >= 0:  # a name may also be stored as the tail of a longer one
            wanted[at] = name
            at = strings.find(needle, at + 1)
    found = {}
    for entry in symbols[np.isin(symbols["name"], np.array(list(wanted), dtype=np.uint32))]:
        name = wanted[int(entry["name"])]
        shndx = int(entry["shndx"])
        writable = 0 < shndx < len(sections) and sections[shndx][2] & _SHF_WRITE
        size = int(entry["size"])
        if entry["info"] & 0xF == _STT_OBJECT and size in _INTEGER_TYPES and writable:
            found[name] = (int(entry["value"]) - first_vaddr, size)
    return found
