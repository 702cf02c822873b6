"""Out-of-plane moves for short-video synthesis: the fitted face, textured from the image,
re-rendered at a perturbed head rotation.

Works on a context crop (see :mod:`.footage`; crop pixel ``c`` is context pixel
``c + MARGIN``). The label's dense face (every ``VERTEX_STEP``-th vertex) is
posed in the crop, each vertex takes its colour from where it lies in the
image if it is visible there (front-most at its pixel, a z-buffer), and the
head is turned by ``yaw``/``pitch`` degrees about its centroid in the
camera frame (y up, z toward the viewer). Every output pixel covered by the
turned face samples the image where that face point was (a backward map, so
the texture is the image's own, resampled once); pixels outside the turned
face keep the original image. The turned label is exact: ``P' = [R_d s R |
t']`` keeps the centroid where it was. Limits: skin hidden in the original
(the far cheek) is filled from its neighbours, and background uncovered by
the turn shows the old face; both stay small within ``MAX_YAW``/``MAX_PITCH``.
"""

from __future__ import annotations

import numpy as np

from ddfa_blender.core.face_model import FaceModel
from ddfa_blender.core.reconstruct import model_to_crop

from .footage import CONTEXT_SIZE
from .synthesis import MARGIN

VERTEX_STEP = 2
MAX_YAW = 15.0
MAX_PITCH = 8.0
FILL_PASSES = 3


def turn_param(param, face: FaceModel, yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """The label (62,) of the same face turned about its centroid (camera frame, y up)."""
    param = np.asarray(param, dtype=np.float64).copy()
    pose = param[:12].reshape(3, 4)
    centroid = pose[:, :3] @ face.vertices(param[12:52], param[52:62]).mean(axis=0) + pose[:, 3]
    yaw, pitch = np.radians(yaw_deg), np.radians(pitch_deg)
    turn_y = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    turn_x = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    turn = turn_x @ turn_y
    turned = np.empty((3, 4))
    turned[:, :3] = turn @ pose[:, :3]
    turned[:, 3] = centroid - turn @ (centroid - pose[:, 3])
    param[:12] = turned.reshape(12)
    return param


def _splat(points, depth, size):
    """Index (size*size,) of the front-most point per pixel (-1: none), points in pixels."""
    cols = np.round(points[:, 0]).astype(int)
    rows = np.round(points[:, 1]).astype(int)
    inside = (cols >= 0) & (cols < size) & (rows >= 0) & (rows < size)
    pixel = rows[inside] * size + cols[inside]
    index = np.flatnonzero(inside)
    order = np.lexsort((depth[index], pixel))  # by pixel, then depth ascending
    pixel, index = pixel[order], index[order]
    last = np.r_[pixel[1:] != pixel[:-1], True]  # the deepest-last = front-most (z toward viewer)
    front = np.full(size * size, -1)
    front[pixel[last]] = index[last]
    return front


def rerender(context, param, face: FaceModel, yaw_deg: float, pitch_deg: float):
    """``(context', param')``: the context crop with the face turned, and its label."""
    import cv2

    param = np.asarray(param, dtype=np.float64)
    turned = turn_param(param, face, yaw_deg, pitch_deg)
    vertices = face.vertices(param[12:52], param[52:62])[::VERTEX_STEP].astype(np.float64)
    source = model_to_crop(param[:12].reshape(1, 3, 4), vertices[None])[0] + (MARGIN, MARGIN, 0)
    target = model_to_crop(turned[:12].reshape(1, 3, 4), vertices[None])[0] + (MARGIN, MARGIN, 0)
    size = CONTEXT_SIZE
    seen = np.zeros(len(vertices), dtype=bool)
    front = _splat(source[:, :2], source[:, 2], size)
    seen[front[front >= 0]] = True
    # A vertex hidden behind another at its pixel in the original has no colour of its own.
    visible_target = _splat(target[seen][:, :2], target[seen][:, 2], size)
    ids = np.flatnonzero(seen)
    map_x = np.zeros(size * size, dtype=np.float32)
    map_y = np.zeros(size * size, dtype=np.float32)
    covered = visible_target >= 0
    hit = ids[visible_target[covered]]
    pixel = np.flatnonzero(covered)
    # the vertex's source point, moved by where the pixel centre lies from the vertex (first order)
    map_x[covered] = source[hit, 0] + (pixel % size - target[hit, 0])
    map_y[covered] = source[hit, 1] + (pixel // size - target[hit, 1])
    map_x, map_y = map_x.reshape(size, size), map_y.reshape(size, size)
    weight = covered.reshape(size, size).astype(np.float32)
    for _ in range(FILL_PASSES):  # fill pinholes from the neighbours
        total = cv2.blur(weight, (3, 3))
        fill = (weight == 0) & (total > 0)
        map_x[fill] = (cv2.blur(map_x * weight, (3, 3)) / np.maximum(total, 1e-9))[fill]
        map_y[fill] = (cv2.blur(map_y * weight, (3, 3)) / np.maximum(total, 1e-9))[fill]
        weight[fill] = 1.0
    hull = cv2.convexHull(target[:, :2].astype(np.float32)).astype(np.int32)
    face_mask = np.zeros((size, size), dtype=np.uint8)
    cv2.fillConvexPoly(face_mask, hull, 1)
    use = (face_mask > 0) & (weight > 0)
    grid_x, grid_y = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))
    map_x = np.where(use, map_x, grid_x)
    map_y = np.where(use, map_y, grid_y)
    image = cv2.remap(context, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return image, turned
