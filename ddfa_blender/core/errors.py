"""The one exception type that carries a message meant for the user."""


class CaptureError(Exception):
    """A problem the user can fix, stated as one sentence naming the fix.

    Raised by the pure layer for bad input (missing or unreadable footage, no
    face found, missing or corrupt model files, incompatible take files). The
    command-line script prints it without a traceback and exits non-zero; the
    Blender operators pass it to ``self.report({'ERROR'}, str(err))``.
    """


class CaptureCancelled(Exception):
    """The user stopped a capture; nothing was written."""
