"""Long work off Blender's main thread, and the progress bar that shows it.

:class:`WorkerJob` runs a pure function on a worker thread. The function gets
``progress(done, total)`` and ``should_stop()`` callbacks and never touches
``bpy``; everything it reports goes through a queue that the operator's
window-manager timer drains on the main thread (:meth:`WorkerJob.poll`).

:func:`progress_bar` begins and always ends the window manager's progress
indicator, and mirrors it in ``WindowManager.ddfa_job`` for the panel.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
from typing import Any, Callable


@dataclasses.dataclass
class JobEvent:
    """One message from the worker: ``kind`` is progress, done, error or cancelled."""

    kind: str
    done: int = 0
    total: int | None = None
    message: str = ""
    result: Any = None
    error: BaseException | None = None


class WorkerJob:
    """Run ``work(progress, should_stop)`` on a daemon thread; read its events with :meth:`poll`."""

    def __init__(self, work: Callable, cancelled_types: tuple = ()):
        self._work = work
        self._cancelled_types = cancelled_types
        self._events: queue.Queue[JobEvent] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ddfa-capture", daemon=True)

    def start(self) -> "WorkerJob":
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the work to stop at its next ``should_stop()`` check."""
        self._stop.set()

    def poll(self) -> list[JobEvent]:
        """Events since the last poll (main thread)."""
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _progress(self, done=0, total=None, message: str = "") -> None:
        total = None if total is None else int(total)
        self._events.put(JobEvent("progress", int(done), total, message=message))

    def _run(self) -> None:
        try:
            result = self._work(self._progress, self._stop.is_set)
        except self._cancelled_types:
            self._events.put(JobEvent("cancelled"))
        except BaseException as err:  # handed to the main thread, which reports it
            self._events.put(JobEvent("cancelled" if self._stop.is_set() else "error", error=err))
        else:
            self._events.put(JobEvent("cancelled" if self._stop.is_set() else "done", result=result))


def run_inline(work: Callable, on_progress: Callable | None = None):
    """Run ``work(progress, should_stop)`` on this thread (background mode): its result."""
    return work(on_progress or (lambda done=0, total=None, message="": None), lambda: False)


class ProgressBar:
    """The window manager's progress indicator plus the panel's mirror of it."""

    def __init__(self, window_manager, label: str):
        self.wm = window_manager
        self.label = label

    def update(self, done: int = 0, total: int | None = None, message: str = "") -> None:
        """Show ``done`` of ``total`` (None: unknown) and an optional one-line message."""
        fraction = min(1.0, done / total) if total else 0.0
        self.wm.progress_update(fraction)
        state = getattr(self.wm, "ddfa_job", None)
        if state is not None:
            state.progress = fraction
            if message:
                state.label = message
            else:
                state.label = f"{self.label} {done}/{total}" if total else f"{self.label} {done}"


@contextlib.contextmanager
def progress_bar(window_manager, label: str, cancellable: bool = True):
    """Begin the progress indicator (0..1) and end it whatever happens."""
    state = getattr(window_manager, "ddfa_job", None)
    window_manager.progress_begin(0.0, 1.0)
    if state is not None:
        state.running, state.progress, state.label = True, 0.0, label
        state.cancellable = cancellable
    try:
        yield ProgressBar(window_manager, label)
    finally:
        window_manager.progress_end()
        if state is not None:
            state.running, state.progress, state.label = False, 0.0, ""
