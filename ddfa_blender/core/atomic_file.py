"""Files written whole or not at all: to a temporary name beside the target, then renamed.

:func:`atomic_write` covers one file. :class:`OutputSet` covers a run that
writes several (take, preview, ``.blend``): each is written to its own
temporary file beside its target, and :meth:`OutputSet.commit` renames them
all at the end, with Ctrl-C and SIGTERM held back for those few renames. If
the run fails or is interrupted before that, the temporary files are removed
and every previous file is left as it was: a failed run leaves no new output.

Temporary names are ``.<name>.<random>.partial<ext>`` (hidden, and keeping
the target's extension, which some writers use to choose the format).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import signal
import threading

from .errors import CaptureError

PARTIAL_MARK = ".partial"


def temporary_path(path) -> str:
    """A fresh temporary name in ``path``'s folder, with ``path``'s extension."""
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    extension = os.path.splitext(name)[1]
    return os.path.join(folder, f".{name}.{secrets.token_hex(4)}{PARTIAL_MARK}{extension}")


def describe_os_error(err: OSError) -> str:
    """What went wrong writing a file and what to do about it, as a clause."""
    if err.errno == errno.ENOSPC or err.errno == errno.EDQUOT:
        return "the disk is full; free some space or choose another folder"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "permission denied; choose a folder you can write to"
    if err.errno == errno.EROFS:
        return "the disk is read-only; choose another folder"
    if err.errno == errno.ENAMETOOLONG:
        return "the file name is too long; choose a shorter one"
    return f"{err.strerror or err}; choose another output"


def check_writable_folder(path, what: str = "output") -> None:
    """Raise ``CaptureError`` unless a file can be created beside ``path`` (tried for real:
    permission bits alone say nothing for root or read-only disks)."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    if os.path.isdir(path):
        raise CaptureError(f"Cannot write {what} {path}: it is a folder; give a file name.")
    if not os.path.isdir(folder):
        raise CaptureError(f"Cannot write {what} {path}: folder {folder} does not exist; create it first.")
    probe = temporary_path(path)
    try:
        with open(probe, "xb"):
            pass
    except OSError as err:
        raise CaptureError(f"Cannot write {what} {path}: {describe_os_error(err)}.") from err
    os.unlink(probe)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def atomic_write(path, what: str = "", binary: bool = False):
    """Open ``path`` for writing; the file appears only if the ``with`` block succeeds.

    The temporary file lives in the target's folder (so the rename is atomic)
    and takes the umask's permissions. On any error or interrupt it is
    removed; an ``OSError`` (disk full, permissions) becomes a ``CaptureError``
    naming ``what`` is written (e.g. ``"take"``), anything else propagates.
    """
    path = os.fspath(path)
    label = f"{what} {path}" if what else path
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CaptureError(f"Cannot write {label}: folder {folder} does not exist; create it first.")
    temporary = temporary_path(path)
    try:
        handle = open(temporary, "xb") if binary else open(temporary, "x", newline="", encoding="utf-8")
    except OSError as err:
        raise CaptureError(f"Cannot write {label}: {describe_os_error(err)}.") from err
    try:
        try:
            with handle:
                yield handle
            with signals_deferred():
                os.replace(temporary, path)
        except OSError as err:
            raise CaptureError(f"Cannot write {label}: {describe_os_error(err)}.") from err
    finally:
        _remove(temporary)


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT and SIGTERM back for the block, then deliver them (main thread only;
    elsewhere the block just runs). Keeps a set of renames from being cut in two."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    wanted = [signal.SIGINT] + ([signal.SIGTERM] if hasattr(signal, "SIGTERM") else [])
    previous = {}
    for number in wanted:
        try:
            previous[number] = signal.signal(number, lambda signum, _frame: received.append(signum))
        except (ValueError, OSError):  # not allowed here (e.g. an embedding host)
            pass
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in received:
            signal.raise_signal(number)


class OutputSet:
    """The outputs of one run, written to temporary files and renamed into place together.

    ``path_for(target, what)`` checks that ``target`` can be written and
    returns the temporary path to write instead; :meth:`commit` renames every
    temporary file over its target; :meth:`discard` (also on leaving a
    ``with`` block with an exception) removes them, leaving previous files
    untouched.
    """

    def __init__(self):
        self._pending: list[tuple[str, str, str]] = []  # (temporary, target, what)

    def path_for(self, target, what: str = "output") -> str:
        target = os.path.abspath(os.fspath(target))
        check_writable_folder(target, what)
        temporary = temporary_path(target)
        self._pending.append((temporary, target, what))
        return temporary

    def targets(self) -> list[str]:
        return [target for _, target, _ in self._pending]

    def commit(self) -> None:
        """Rename every temporary file over its target (each must exist: a missing one is a bug)."""
        with signals_deferred():
            for temporary, target, what in self._pending:
                if not os.path.isfile(temporary):
                    raise CaptureError(f"The {what} {target} was not written; nothing was changed.")
            done = []
            try:
                for temporary, target, what in self._pending:
                    os.replace(temporary, target)
                    done.append(target)
            except OSError as err:  # same folder, so only a vanished folder gets here
                raise CaptureError(f"Cannot write {target}: {describe_os_error(err)}.") from err
            finally:
                self._pending = [p for p in self._pending if p[1] not in done]
                self.discard()

    def discard(self) -> None:
        for temporary, _, _ in self._pending:
            _remove(temporary)
            _remove(temporary + "@")  # Blender's own temporary name while it saves
        self._pending = []

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        self.discard()


def remove_stale_temporaries(path) -> list[str]:
    """Remove what :func:`atomic_write` (and Blender's own save, ``<path>@``)
    leaves beside ``path`` when a process is killed outright (SIGKILL, power
    loss); returns the removed paths. Call it only while nothing else writes
    ``path``, e.g. before capturing a clip again. Matches the temporary names
    ``.<name>.<8 hex>.part`` and ``.<name>.<8 hex>.partial<ext>`` (and a
    Blender save's ``@`` beside either), and a temporary of a temporary
    (``..<name>...``: a take saved through :class:`OutputSet`).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    extension = re.escape(os.path.splitext(name)[1])
    pattern = re.compile(
        rf"\.+{re.escape(name)}\.[0-9a-f]{{8}}\.part(?:ial{extension}(?:\.[0-9a-f]{{8}}\.partial{extension})?)?@?"
    )
    names = os.listdir(folder) if os.path.isdir(folder) else []
    stale = [os.path.join(folder, n) for n in names if pattern.fullmatch(n)]
    if os.path.exists(path + "@"):
        stale.append(path + "@")
    for leftover in stale:
        os.unlink(leftover)
    return stale
