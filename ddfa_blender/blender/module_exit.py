"""A clean process exit with Blender 4.2-4.5 as a Python module (the ``bpy`` wheel).

Blender built as a module shuts itself down (frees its data and registered
classes, stops its audio-device thread, deletes its session temp folder) when
Python frees the ``bpy`` module object while finalizing the interpreter. If
something Blender still holds reaches that object, 4.2 and 4.5 never shut
down: Python finishes, then C++ static destructors run with Blender still up;
4.2 dies with SIGSEGV (they call into the finalized interpreter) and 4.5
hangs forever (one destroys the condition variable the audio thread waits
on). Both happen after all the work is done and all output written, but the
process fails. Blender 5.0 and later shut down at exit regardless (checked on
5.0.1 and 5.3.0 with classes left registered: exit 0, temp folder removed).

What Blender holds are Python classes it registered and property callbacks.
Python clears a module's globals at exit only while the module object is
alive; a module object freed earlier (nothing but ``sys.modules`` and its
package referred to it) leaves its globals to whatever still holds one of
its functions. So a registered class, or anything reachable from one, whose
methods' globals hold the ``bpy`` imported by a script keeps Blender up.
(Blender's own start-up modules are not a problem: they hold Blender's
internal ``bpy`` package, not the module object that Python frees.) Two
chains occur in this project's processes, found by walking the referrers of
the ``bpy`` module at exit:

- the add-on's own classes and load handlers, when a process registers the
  add-on and never unregisters it (Blender in a window disables add-ons when
  it quits; a module has no quit). :func:`release` unregisters them.
- typing's caches: Blender's registered operators carry annotations such as
  ``Set[str]``; through the typing classes these reach the caches of every
  parametrised alias ever made, e.g. ``typing.Union[Filter, Callable]`` that
  the glTF exporter's ``search_node_tree`` module creates on import, whose
  class ``Filter`` holds that module's globals and so ``bpy``. Any glTF
  export with materials creates it. :func:`release` clears the caches (what
  CPython's own test runner does between tests); they are only caches.

Property callbacks are the third chain: 4.2 keeps them after unregistering,
so they never reach ``bpy`` (see :mod:`.rna_callbacks`).

:func:`install` registers :func:`release_if_needed` to run at exit, before Python
finalizes; it does its work only in module-mode Blender older than 5.0 (in a
Blender window, or 5.0 and later, it does nothing). The Blender layer's
package calls it on import. This module does not import ``bpy`` itself, so
the layer's pure modules (``bake_channels``, ``progress``) still
import without it; at exit it looks at the ``bpy`` already loaded, if any.
"""

import atexit
import sys
import typing

_FIXED_IN = (5, 0, 0)


def needs_release(bpy) -> bool:
    """True for a ``bpy`` older than 5.0 running as a Python module (no Blender binary)."""
    return not bpy.app.binary_path and tuple(bpy.app.version) < _FIXED_IN


def release() -> None:
    """Unregister the add-on (whatever of it is registered) and clear typing's caches."""
    from . import registration

    registration.unregister()
    for clear in getattr(typing, "_cleanups", ()):
        clear()


def release_if_needed() -> None:
    """:func:`release` when this process loaded a ``bpy`` that :func:`needs_release`."""
    bpy = sys.modules.get("bpy")
    if bpy is not None and needs_release(bpy):
        release()


def install() -> None:
    """Run :func:`release_if_needed` at exit (registered once per process)."""
    atexit.unregister(release_if_needed)
    atexit.register(release_if_needed)
