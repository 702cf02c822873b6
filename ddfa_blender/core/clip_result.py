"""What happened to one clip: the one result type of every batch runner.

``scripts/capture.py``'s :func:`run_clip` returns a :class:`ClipResult`; its
folder batch prints one line per clip from it, and the farm job writes it
into the clip's record (``<stem>.capture.json``, see :mod:`.clip_record`),
from which the job's summary is made. Pure standard library, so the summary
reads it without numpy or Blender.
"""

from __future__ import annotations

import dataclasses

STATUS_DONE = "done"
STATUS_FAILED = "failed"


@dataclasses.dataclass
class ClipResult:
    """How one clip's capture went; :meth:`to_dict` is its machine-readable form.

    ``input``: the footage (or the take read, when there was none);
    ``status``: ``"done"`` or ``"failed"``; ``frames``: frames read from the
    footage or the take (of a failed clip, those read before it failed, e.g.
    every frame of footage without a face); ``frames_with_face``: frames where at least one face was
    tracked, and ``tracks``: face tracks with a face (both 0 for a clip that
    failed before its capture finished); ``seconds``: wall-clock time;
    ``error``: the one-line error (failed only); ``outputs``: the files
    written (done only); ``warnings``: sentences for the user.
    """

    input: str
    status: str
    frames: int = 0
    frames_with_face: int = 0
    tracks: int = 0
    seconds: float = 0.0
    error: str = ""
    outputs: list = dataclasses.field(default_factory=list)
    warnings: list = dataclasses.field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.status == STATUS_DONE

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def counts(self) -> str:
        """``72 frames, 70 with a face, 1 track, 4.2 s``."""
        tracks = f"{self.tracks} track" + ("" if self.tracks == 1 else "s")
        return f"{self.frames} frames, {self.frames_with_face} with a face, {tracks}, {self.seconds:.1f} s"

    def line(self) -> str:
        """One line for the user."""
        if not self.done:
            return f"failed {self.input}: {self.error}"
        return f"done   {self.input}: {self.counts()}"
