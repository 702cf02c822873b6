"""Pure-Python core of ddfa-blender: models, reconstruction, pose, tracking, takes.

Nothing in this sub-package imports ``bpy``; it runs in any Python 3.11 with
numpy, OpenCV, onnxruntime and MediaPipe, and is what the tests exercise most.
"""
