"""Register and unregister the add-on: unregister is the exact mirror of register.

Order: property groups (and their pointers on Scene, Object and
WindowManager), preferences, operators, panels; unregister walks it back.
The add-on adds no timers or handlers of its own outside a running operator
(a Capture's timer is removed when it ends, see :mod:`.operators`).
"""

import bpy

from . import operators, panel, preferences, properties

_CLASSES = (*preferences.CLASSES, *operators.CLASSES, *panel.CLASSES)


def register() -> None:
    properties.register()
    for cls in _CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(_CLASSES):
        if getattr(cls, "is_registered", False):
            bpy.utils.unregister_class(cls)
    if properties.is_registered():
        properties.unregister()
