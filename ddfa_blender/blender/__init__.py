"""Blender layer of ddfa-blender: creates data from takes; all maths lives in ..core.

Importing it with Blender 4.2-4.5 as a Python module arranges a clean exit
(see :mod:`.module_exit`).
"""

from . import module_exit

module_exit.install()
