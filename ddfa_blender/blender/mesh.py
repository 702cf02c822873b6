"""The face mesh object: BFM triangles and UVs, the identity as Basis, expression keys.

Vertices are in the Blender frame of :mod:`..core.pose` (Z up, metres), the
object's origin is the BFM origin. Keys are ``Basis`` plus ``exp_00`` ..
``exp_09`` (see :mod:`.bake_channels` for their scaling), relative to Basis,
with the slider range [-1, 1]. All data is written in bulk with ``foreach_set``.
"""

from __future__ import annotations

import bpy
import numpy as np

from ..core.face_model import N_EXPR

BASIS_NAME = "Basis"
SLIDER_RANGE = (-1.0, 1.0)


def expression_key_name(index: int) -> str:
    """Name of the shape key of expression coefficient ``index`` (``exp_00`` ..)."""
    return f"exp_{index:02d}"


def build_face_mesh(name: str, face_model, neutral):
    """A new mesh data-block (not linked anywhere) with the face's triangles and UVs.

    ``neutral`` (V, 3) is in Blender-frame metres; the shape keys are added
    once the mesh has an object (:func:`set_face_shapes`).
    """
    # The BFM triangles wind clockwise seen from outside; Blender's normals follow
    # counter-clockwise winding, so the order is reversed to make them point out.
    triangles = np.ascontiguousarray(face_model.triangles[:, ::-1])
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(neutral))
    mesh.vertices.foreach_set("co", np.ascontiguousarray(neutral, dtype=np.float32).ravel())
    mesh.loops.add(triangles.size)
    mesh.loops.foreach_set("vertex_index", triangles.astype(np.int32).ravel())
    mesh.polygons.add(len(triangles))
    mesh.polygons.foreach_set("loop_start", np.arange(0, triangles.size, 3, dtype=np.int32))
    uv_layer = mesh.uv_layers.new(name="UVMap")
    uv_layer.data.foreach_set("uv", face_model.uv[triangles].astype(np.float32).ravel())
    mesh.update()
    mesh.shade_smooth()
    return mesh


def set_face_shapes(obj, neutral, offsets) -> None:
    """Create or overwrite ``Basis`` and the expression keys of a face object in place."""
    mesh = obj.data
    neutral = np.ascontiguousarray(neutral, dtype=np.float32)
    mesh.vertices.foreach_set("co", neutral.ravel())
    if mesh.shape_keys is None:
        obj.shape_key_add(name=BASIS_NAME, from_mix=False)
        mesh.shape_keys.name = f"{obj.name}.keys"
    blocks = mesh.shape_keys.key_blocks
    blocks[BASIS_NAME].data.foreach_set("co", neutral.ravel())
    for index in range(N_EXPR):
        name = expression_key_name(index)
        block = blocks.get(name) or obj.shape_key_add(name=name, from_mix=False)
        block.relative_key = blocks[BASIS_NAME]
        block.slider_min, block.slider_max = SLIDER_RANGE
        block.value = 0.0
        block.data.foreach_set("co", (neutral + offsets[index]).ravel())
    mesh.update()
