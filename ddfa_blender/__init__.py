"""ddfa-blender: 3DDFA-V2 facial capture for Blender.

The add-on entry points only delegate to :mod:`.blender.registration`, so the
pure sub-package :mod:`.core` imports without ``bpy`` (command line, tests).
"""

__version__ = "0.1.0"


def register():
    from .blender import registration

    registration.register()


def unregister():
    from .blender import registration

    registration.unregister()
