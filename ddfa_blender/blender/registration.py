"""Register and unregister the add-on: unregister is the exact mirror of register.

Order: property groups (and their pointers on Scene, Object and
WindowManager), preferences, operators, panels, then the live-capture and
retargeting modules (their panels are children of the capture panel);
unregister walks it back. Timers
exist only while an operator runs (a Capture's or a live session's timer is
removed when it ends). The live module adds ``load_pre``/``load_post``
handlers that release the camera when another file is opened; its
``unregister`` removes them and stops a running session.
"""

import bpy

from . import live, operators, panel, preferences, properties, retarget_ui

_CLASSES = (*preferences.CLASSES, *operators.CLASSES, *panel.CLASSES)


def register() -> None:
    properties.register()
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    live.register()
    retarget_ui.register()


def unregister() -> None:
    retarget_ui.unregister()
    live.unregister()
    for cls in reversed(_CLASSES):
        if getattr(cls, "is_registered", False):
            bpy.utils.unregister_class(cls)
    if properties.is_registered():
        properties.unregister()
