"""The exception types that carry a message meant for the user."""


class CaptureError(Exception):
    """A problem the user can fix, stated as one sentence naming the fix.

    Raised by the pure layer for bad input (missing or unreadable footage, no
    face found, missing or corrupt model files, incompatible take files, an
    output that cannot be written). The command-line script prints it as one
    line without a traceback and exits 1; the Blender operators pass it to
    ``self.report({'ERROR'}, str(err))``.
    """


class UsageError(CaptureError):
    """The command itself is wrong (an option out of range, an output that is also an
    input, a wrong file extension): nothing was run. The command line exits 2."""


class CaptureCancelled(Exception):
    """The user stopped a capture; nothing was written."""


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM); handled like Ctrl-C, reported apart."""
