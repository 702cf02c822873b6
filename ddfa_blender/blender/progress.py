"""Long work off Blender's main thread, and the progress bar that shows it.

:class:`WorkerJob` runs a pure function on a worker thread. The function gets
``progress(done, total)`` and ``should_stop()`` callbacks and never touches
``bpy``; everything it reports goes through a queue that the operator's
window-manager timer drains on the main thread (:meth:`WorkerJob.poll`).

:class:`ProgressBar` begins and ends the window manager's progress indicator
and mirrors it in ``WindowManager.ddfa_job`` for the panel; a modal operator
spans many calls, so it ends the bar explicitly (:meth:`ProgressBar.end` is
safe to call twice). :func:`redraw_sidebars` asks Blender to redraw only the
3D views' sidebars, where the panel is, not the whole viewport.
"""

from __future__ import annotations

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
    """The window manager's progress indicator (0..1) plus the panel's mirror of it."""

    def __init__(self, window_manager, label: str):
        self.wm = window_manager
        self.label = label
        self._running = False

    def begin(self, cancellable: bool = True) -> "ProgressBar":
        self.wm.progress_begin(0.0, 1.0)
        self._running = True
        state = getattr(self.wm, "ddfa_job", None)
        if state is not None:
            state.running, state.progress, state.label = True, 0.0, self.label
            state.title, state.cancellable = self.label, cancellable
        return self

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

    def end(self) -> None:
        """End the indicator and clear the panel's mirror (a second call does nothing)."""
        if not self._running:
            return
        self._running = False
        self.wm.progress_end()
        state = getattr(self.wm, "ddfa_job", None)
        if state is not None:
            state.running, state.progress, state.label = False, 0.0, ""


def redraw_sidebars(window_manager) -> None:
    """Tag the sidebar (``UI`` region) of every 3D view in every window for a redraw.

    Only that region: tagging the whole area redraws the viewport too, which
    with a dense face mesh costs far more than the panel (a few updates a
    second instead of ten).
    """
    for window in window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                for region in area.regions:
                    if region.type == "UI":
                        region.tag_redraw()
