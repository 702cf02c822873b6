"""Files written whole or not at all: to a temporary name beside the target, then renamed."""

from __future__ import annotations

import contextlib
import os
import re
import secrets

from .errors import CaptureError


@contextlib.contextmanager
def atomic_write(path, what: str = "", binary: bool = False):
    """Open ``path`` for writing; the file appears only if the ``with`` block succeeds.

    The temporary file lives in the target's folder (so the rename is atomic)
    and takes the umask's permissions. On any error it is removed and the
    error propagates; a missing folder is a ``CaptureError`` naming ``what``
    is written (e.g. ``"take"``).
    """
    path = os.fspath(path)
    label = f"{what} {path}" if what else path
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CaptureError(f"Cannot write {label}: folder {folder} does not exist.")
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(4)}.part")
    try:
        handle = open(temporary, "xb") if binary else open(temporary, "x", newline="", encoding="utf-8")
    except OSError as err:
        raise CaptureError(f"Cannot write {label}: {err.strerror}.") from err
    try:
        with handle:
            yield handle
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def remove_stale_temporaries(path) -> list[str]:
    """Remove what :func:`atomic_write` (and Blender's own save, ``<path>@``)
    leaves beside ``path`` when a process is killed outright (SIGKILL, power
    loss); returns the removed paths. Call it only while nothing else writes
    ``path``, e.g. before capturing a clip again. Matches the temporary names
    ``.<name>.<8 hex>.part`` and ``.<name>.<8 hex>.partial<ext>`` (and a
    Blender save's ``@`` beside either).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    extension = re.escape(os.path.splitext(name)[1])
    pattern = re.compile(rf"\.{re.escape(name)}\.[0-9a-f]{{8}}\.part(?:ial{extension})?@?")
    names = os.listdir(folder) if os.path.isdir(folder) else []
    stale = [os.path.join(folder, n) for n in names if pattern.fullmatch(n)]
    if os.path.exists(path + "@"):
        stale.append(path + "@")
    for leftover in stale:
        os.unlink(leftover)
    return stale
