"""Blender layer of ddfa-blender: creates data from takes; all maths lives in ..core."""
