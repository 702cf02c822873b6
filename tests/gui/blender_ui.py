"""Finding and pressing the add-on's buttons in a real Blender window (runs inside Blender).

Blender's Python API says nothing about where a button is drawn, so buttons
are found the way a user's eyes would, but through Blender itself: the
pointer is moved over the sidebar (real X motion events, ``xdotool``), the
event loop runs so Blender highlights the button under the pointer, and
Blender's own "Copy Python Command" / "Copy Data Path" operators
(``ui.copy_python_command_button``, ``ui.copy_data_path_button``) say which
button that is (they act on the highlighted button and write to the
clipboard). A scan down the sidebar maps each button to a screen position;
:func:`click` then presses it with a real click, and Blender's event loop
runs the operator exactly as for a user.

Steps are generator functions (``yield from``) of a ``guidriver`` scenario:
the event loop runs between them. ``log``/``check`` lines carry the prefix
``DDFA-GUI`` so the host-side test (``test_real_blender.py``) can read the
outcome of each step from Blender's output.
"""

import re
import time

import bpy
import guidriver as gd

PREFIX = "DDFA-GUI"
SCAN_STEP_PX = 20  # a widget row is 20 px high at 1x: a scan with offset 0, then 10, meets every row
SCAN_PASSES = ((0.78, 0), (0.78, 10), (0.3, 0), (0.3, 10))  # (fraction of the sidebar's width, y offset)
WHEEL_CLICKS_PER_PAGE = 12

_positions = {}  # button identity -> (x, y) screen pixels, valid until the layout changes


def step(name: str) -> None:
    """Mark the start of a named step in Blender's output (the reports of the step
    before are collected first: each step owns the reports it caused)."""
    collect_reports()
    print(f"{PREFIX} STEP {name}", flush=True)


def check(condition, message: str) -> bool:
    """Record a check of the current step (also counted by guidriver's exit code)."""
    print(f"{PREFIX} CHECK {'ok' if condition else 'fail'} {message}", flush=True)
    return gd.check(condition, message)


def expect_report(level: str, pattern: str) -> None:
    """Tell the host that this step must print a report ``level`` ("Info", "Error",
    "Warning") matching the regular expression ``pattern`` (and that such an error
    report is expected, not a failure)."""
    print(f"{PREFIX} EXPECT {level} {pattern}", flush=True)


def measure(name: str, value) -> None:
    """A figure for the host's summary (printed as ``name=value``)."""
    print(f"{PREFIX} FIGURE {name}={value}", flush=True)


def collect_reports() -> list:
    """The messages Blender reported since the last call, printed for the host.

    Blender prints an operator's reports on the console ("Info: ...") only when
    it finishes; one that ends cancelled (every error, a cancel) shows them in
    the pop-up and the Info editor only. So they are read where a user reads
    them: the smallest area shows the Info editor for a moment, its own Copy
    operator copies every report, the Python command lines it also logs are
    left out, and the reports are deleted so the next call sees only new ones.
    The Info editor does not tell the level; the host matches messages.
    """
    win = gd.main_window()
    area = min((a for a in win.screen.areas if a.type != "VIEW_3D"), key=lambda a: a.width * a.height)
    previous = area.ui_type
    area.ui_type = "INFO"
    region = gd.find_region(area, "WINDOW")
    wm = bpy.context.window_manager
    try:
        with gd.override(win, area, region):
            bpy.ops.info.select_all(action="SELECT")
            wm.clipboard = ""
            bpy.ops.info.report_copy()
            bpy.ops.info.report_delete()
    finally:
        area.ui_type = previous
    messages = [line for line in wm.clipboard.splitlines()
                if line.strip() and not re.match(r"bpy\.(ops|context|data)\.", line)]
    for message in messages:
        print(f"{PREFIX} REPORT {message}", flush=True)
    return messages


def sidebar():
    """(window, area, UI region) of the first 3D view's sidebar."""
    win, area, _, ui = gd.view3d()
    return win, area, ui


def invalidate() -> None:
    """Forget button positions (after anything that changes the panel's layout)."""
    _positions.clear()


def settle():
    """``yield from``: after a change of the panel's layout (a selection, a setting),
    redraw now, so the sidebar's height and scroll are final before buttons are
    looked for, and forget the old positions."""
    invalidate()
    yield 0.1
    gd.redraw()
    yield 0.1


def identify(x: int, y: int):
    """``yield from``: the identity of the button under screen pixel (x, y), or "".

    Operator buttons read as ``bpy.ops.ddfa.capture()`` (with the properties
    the button sets), property buttons as their full data path.
    """
    gd.xdo("mousemove", x, y)
    yield 0.02  # two turns of the event loop: the X motion event arrives, then
    yield 0.02  # Blender's UI handler highlights the button under the pointer
    win, area, ui = sidebar()
    wm = bpy.context.window_manager
    wm.clipboard = ""
    with gd.override(win, area, ui):
        for copy, options in ((bpy.ops.ui.copy_python_command_button, {}),
                              (bpy.ops.ui.copy_data_path_button, {"full_path": True})):
            try:
                copy(**options)
            except RuntimeError:  # nothing of that kind under the pointer
                continue
            if wm.clipboard:
                break
    return wm.clipboard


def remember(x: int, y: int):
    """``yield from``: identify the button at screen pixel (x, y) and remember where it is;
    its identity ("" if none)."""
    identity = yield from identify(x, y)
    if identity:
        _positions[identity] = (x, y)
    return identity


def find_near(wanted: str, fraction: float, y: int, expected: int = 0, span: int = 60):
    """``yield from``: look for ``wanted`` in one column (``fraction`` of the sidebar's width)
    near screen row ``y + expected``, nearest rows first, up to ``span`` pixels away; its
    screen position, or None. A few probes instead of a whole scan when the place is known
    (each probe waits for a redraw, slow while the viewport shows a moving face)."""
    win, area, ui = sidebar()
    x = gd.screen_xy(win, ui, int(ui.width * fraction), 0)[0]
    offsets = sorted(range(-span, span + 1, SCAN_STEP_PX // 4), key=abs)
    for offset in offsets:
        identity = yield from remember(x, y + expected + offset)
        if _matches(identity, wanted):
            return x, y + expected + offset
    return None


def _matches(identity: str, wanted: str) -> bool:
    return identity == wanted or (not wanted.startswith("bpy.ops.") and identity.endswith("." + wanted))


def scan(wanted: str):
    """``yield from``: scan the visible sidebar top to bottom until ``wanted`` is found;
    its screen position, or None. Every button met on the way is remembered."""
    win, area, ui = sidebar()
    for fraction, offset in SCAN_PASSES:
        x = int(ui.width * fraction)
        for y in range(ui.height - 6 - offset, 0, -SCAN_STEP_PX):
            position = gd.screen_xy(win, ui, x, y)
            identity = yield from identify(*position)
            if identity:
                _positions.setdefault(identity, position)
            if identity and _matches(identity, wanted):
                _positions[identity] = position
                return position
    return None


def scroll(clicks: int) -> None:
    """Turn the mouse wheel over the sidebar: positive scrolls down (real X wheel buttons)."""
    win, area, ui = sidebar()
    gd.xdo("mousemove", *gd.screen_xy(win, ui, ui.width // 2, ui.height // 2))
    button = 5 if clicks > 0 else 4
    for _ in range(abs(clicks)):
        gd.xdo("click", button)
    invalidate()


def find(wanted: str, pages: int = 3):
    """``yield from``: the screen position of button ``wanted`` (an operator call such as
    ``bpy.ops.ddfa.capture()`` or the end of a data path such as ``ddfa_capture.model``),
    scrolling the sidebar down page by page if needed; None when it is not there."""
    for identity, position in list(_positions.items()):
        if _matches(identity, wanted):
            seen = yield from identify(*position)
            if seen == identity:
                return position
            invalidate()
            break
    for page in range(pages + 1):
        position = yield from scan(wanted)
        if position is not None:
            return position
        if page < pages:
            scroll(WHEEL_CLICKS_PER_PAGE)
            yield 0.3
    gd.log("button not found:", wanted)
    return None


def scroll_to_top():
    """``yield from``: settle the layout, then scroll the sidebar back to its top."""
    yield from settle()
    scroll(-4 * WHEEL_CLICKS_PER_PAGE)
    yield 0.3


def click(wanted: str, pages: int = 3):
    """``yield from``: find button ``wanted`` and click it (a real click); True if found."""
    position = yield from find(wanted, pages)
    if position is None:
        check(False, f"button {wanted} is in the sidebar")
        return False
    gd.click(*position)
    yield 0.1
    return True


def hover_viewport():
    """Put the pointer over the 3D viewport (keys go to the window under the pointer)."""
    win, area, region, _ = gd.view3d()
    gd.xdo("mousemove", *gd.screen_xy(win, region, region.width // 2, region.height // 2))


def dismiss_popups():
    """``yield from``: close the error pop-up Blender shows next to the pointer (Esc over
    the viewport, as a user would; 5.2 keeps it open when the pointer moves away)."""
    hover_viewport()
    yield 0.3
    gd.xdo("key", "Escape")
    yield 0.3


def wait(condition, timeout: float, what: str, interval: float = 0.1):
    """``yield from``: wait for ``condition`` (checked), returning whether it held."""
    ok = yield from gd.wait_until(condition, timeout, interval, what=what)
    check(ok, what)
    return ok


class RedrawCounter:
    """Counts redraws of the 3D views' sidebar and main regions (draw handlers)."""

    def __init__(self):
        self.counts = {"UI": 0, "WINDOW": 0}
        self._handles = []

    def __enter__(self):
        for kind in self.counts:
            handle = bpy.types.SpaceView3D.draw_handler_add(self._count, (kind,), kind, "POST_PIXEL")
            self._handles.append((handle, kind))
        self.started = time.monotonic()
        return self

    def _count(self, kind):
        self.counts[kind] += 1

    def __exit__(self, *exc):
        self.seconds = time.monotonic() - self.started
        for handle, kind in self._handles:
            bpy.types.SpaceView3D.draw_handler_remove(handle, kind)

    def per_second(self, kind: str) -> float:
        return self.counts[kind] / max(self.seconds, 1e-6)
