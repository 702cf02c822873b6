"""Property callbacks (update=, poll=, items=) that let Blender 4.2 exit cleanly.

Blender 4.2's ``bpy`` keeps every property callback until after Python has
shut down, even once the property is unregistered. A callback defined in a
module that imported ``bpy`` keeps, through its globals, the ``bpy`` module
alive, and the ``bpy`` module runs Blender's own shutdown only when it is
freed; so that shutdown never happens and, once Python is gone, C++ static
destructors free Blender's panel types through Python: the process dies with
SIGSEGV at exit after doing all its work (seen with bpy 4.2.23; 4.5 and
later exit cleanly). A callback whose globals do not reach ``bpy`` avoids it.

So properties name their callback instead of holding it: ``update=callback(
__name__, "_apply_preset")`` gives Blender a small function defined here,
where ``bpy`` is never imported, that looks the real one up by module and
name when Blender calls it. This module must not import ``bpy``.
"""

import sys


def callback(module: str, name: str):
    """A two-argument property callback (``update``, ``poll``, ``items``) calling
    ``module.name`` (``module``: the defining module's ``__name__``)."""

    def forward(first, second):
        return getattr(sys.modules[module], name)(first, second)

    forward.__qualname__ = forward.__name__ = f"forward_to_{name}"
    return forward
