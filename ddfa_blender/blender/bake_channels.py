"""What the bake keys for one face track, computed with numpy only (no ``bpy``).

The Blender modules next to this one only copy these arrays into Blender data,
so everything that can be wrong about a bake (frame mapping, identity, the
expression scaling, missing frames, the head or camera transform) is here and
is tested without Blender.

Frames (:func:`scene_frames`). A take row shown at time ``t`` (seconds, the
footage's presentation time) is keyed on scene frame
``start_frame + (t - time_origin) * fps``: ``time_origin`` is the take's first
time, so the first captured frame lands on ``start_frame``, and ``fps`` is the
scene rate (the take's nominal rate unless the user picks another). Footage
at a constant rate keys whole frames; variable-rate footage (phones, dropped
frames) keys each sample at its real time, so the face stays in sync with the
footage and its sound.

Identity. The 40 shape coefficients are aggregated per coefficient with the
median over the track's valid rows: a few outlier frames (a bad re-detect, a
profile view) cannot move the neutral face, and the mesh is built once.

Expression scaling. Expression key ``exp_k`` holds the BFM expression basis
column k multiplied by ``expression_scale[k]`` = the largest absolute value the
coefficient takes on the track's valid rows (1 if it is always 0). The keyed
slider value is ``coefficient / expression_scale[k]``, so the captured range
lies in [-1, 1] (each key's slider range) and ``value * scale`` gives back the
coefficient exactly. The scale is stored on the object as the custom property
``ddfa_expression_scale`` so tests and retargeting can undo it.

Head transform (Blender frame of :mod:`..core.pose`: Z up, metres, camera at
the origin looking along +Y with a ``lens_mm`` lens on a 36 mm sensor). The
head sits at the track's median distance ``distance`` (metres); its apparent
size change is keyed as a uniform scale ``distance / true_depth`` and its
location is scaled by the same factor. Scaling the whole scene about the camera
centre leaves the image unchanged, so this is exactly the picture of the true
3-D placement, without the head swimming in depth with the noise of the
weak-perspective scale. Rotation is a continuous quaternion (w, x, y, z).

Camera mode (``key_camera``): the head rests at the origin (identity rotation,
unit scale) and the camera carries the inverse motion: rotation
``conj(q_head) * q_camera_rest`` and location ``-R_head^T @ location_true``,
where ``location_true`` is the head's true-depth position.

Missing frames (rows without a face). ``"hold"`` keys them with the last
tracked values (before the first tracked frame: the first tracked values);
``"gap"`` writes no key there, so the F-curves interpolate between the
tracked frames around the gap. Neither ever sends the head to the origin.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..core import pose as pose_mod
from ..core.errors import CaptureError
from ..core.face_model import MICROMETRES_TO_METRES, N_EXPR
from ..core.pose import quaternion_multiply

MISSING_MODES = ("hold", "gap")
SHAPE_SLICE = slice(12, 52)
EXPR_SLICE = slice(52, 62)
# Camera at rest looks along +Y with Z up: 90 degrees about X, as (w, x, y, z).
CAMERA_REST_QUATERNION = np.array([np.sqrt(0.5), np.sqrt(0.5), 0.0, 0.0])


@dataclasses.dataclass
class TrackChannels:
    """Per-key arrays for one track (K keyed frames), see the module doc for units."""

    track: int
    frames: np.ndarray  # (K,) float64 scene frames
    identity: np.ndarray  # (40,) shape coefficients
    expression_scale: np.ndarray  # (10,) coefficient per unit of slider value
    expression_values: np.ndarray  # (K, 10) slider values
    rotation: np.ndarray  # (K, 4) quaternion (w, x, y, z) of the keyed object
    location: np.ndarray  # (K, 3) metres, keyed object
    scale: np.ndarray | None  # (K,) uniform head scale; None in camera mode
    distance: float  # metres, median camera-to-head distance
    key_camera: bool
    span: tuple  # (first, last) scene frame of the take
    present: tuple  # (first, last) scene frame where this track has a face


def robust_identity(shape_coeffs: np.ndarray) -> np.ndarray:
    """The per-coefficient median (40,) of the shape coefficients (M, 40) of valid rows."""
    return np.median(np.asarray(shape_coeffs, dtype=np.float64), axis=0)


def expression_scale(expr_coeffs: np.ndarray) -> np.ndarray:
    """Largest absolute value (10,) of each expression coefficient over valid rows (M, 10); 1 if 0."""
    peak = np.max(np.abs(np.asarray(expr_coeffs, dtype=np.float64)), axis=0)
    return np.where(np.isfinite(peak) & (peak > 0.0), peak, 1.0)


def fill_missing(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Rows where ``valid`` is false take the last valid row (the first one before it)."""
    values = np.asarray(values)
    index = np.where(valid, np.arange(len(valid)), -1)
    index = np.maximum.accumulate(index)
    index[index < 0] = np.flatnonzero(valid)[0]
    return values[index]


def take_times(take) -> np.ndarray:
    """Presentation times (s) of a take's rows; ``frame / fps`` where a time is unknown."""
    times = np.asarray(take.time, dtype=np.float64)
    return np.where(np.isfinite(times), times, take.frame / take.fps)


def scene_frames(times, *, fps: float, start_frame: float, time_origin: float) -> np.ndarray:
    """Scene frames (float64) of samples at ``times`` (s): ``start_frame + (t - time_origin) * fps``,
    snapped to the whole frame within 0.001 of a frame (rounding noise of constant-rate footage)."""
    frames = start_frame + (np.asarray(times, dtype=np.float64) - time_origin) * fps
    whole = np.round(frames)
    return np.where(np.abs(frames - whole) < 1e-3, whole, frames)


def track_channels(
    take,
    track: int = 0,
    *,
    start_frame: int = 1,
    time_origin: float | None = None,
    scene_fps: float | None = None,
    missing: str = "hold",
    key_camera: bool = False,
    lens_mm: float = pose_mod.DEFAULT_LENS_MM,
) -> TrackChannels:
    """The channels to key for ``track`` of ``take`` (a :class:`..core.take.Take`).

    ``time_origin`` (s) defaults to the take's first time (all tracks of a take
    share it, so they stay in sync); ``scene_fps`` to the take's rate.
    """
    if missing not in MISSING_MODES:
        raise CaptureError(f"Unknown missing-frame mode '{missing}'; use 'hold' or 'gap'.")
    if len(take) == 0:
        raise CaptureError("The take is empty (no frames); capture the footage again.")
    if time_origin is None:
        time_origin = float(take_times(take).min())
    rows = take.for_track(track)
    valid = rows.valid & np.isfinite(rows.param).all(axis=1) & np.isfinite(rows.roi).all(axis=1)
    if not valid.any():
        raise CaptureError(
            f"Track {track} of the take has no frame with a face; "
            "capture footage where the face is visible."
        )
    head = pose_mod.head_pose_blender(rows.param, rows.roi, rows.image_size, lens_mm)
    valid &= np.isfinite(head.location).all(axis=1) & np.isfinite(head.rotation).all(axis=1)
    if not valid.any():
        raise CaptureError(
            f"Track {track} of the take has no usable head pose; capture the footage again."
        )

    identity = robust_identity(rows.param[valid, SHAPE_SLICE])
    scale = expression_scale(rows.param[valid, EXPR_SLICE])
    expression = rows.param[:, EXPR_SLICE].astype(np.float64) / scale
    depth = head.location[:, 1]
    distance = float(np.median(depth[valid]))
    frames = scene_frames(take_times(rows), fps=scene_fps or take.fps, start_frame=start_frame,
                          time_origin=time_origin)

    if key_camera:
        inverse = head.rotation * np.array([1.0, -1.0, -1.0, -1.0])
        rotation = quaternion_multiply(inverse, CAMERA_REST_QUATERNION)
        matrices = pose_mod.quaternion_to_matrix(np.where(valid[:, None], head.rotation, 1.0))
        location = -np.einsum("nji,nj->ni", matrices, head.location)
        head_scale = None
    else:
        rotation = head.rotation
        head_scale = distance / depth
        location = head.location * head_scale[:, None]

    if missing == "hold":
        keep = np.ones(len(rows), dtype=bool)
        expression, rotation, location = (
            fill_missing(a, valid) for a in (expression, rotation, location)
        )
        if head_scale is not None:
            head_scale = fill_missing(head_scale, valid)
    else:
        keep = valid
    rotation = pose_mod.make_continuous(rotation[keep])
    return TrackChannels(
        track=int(track),
        frames=frames[keep],
        identity=identity,
        expression_scale=scale,
        expression_values=expression[keep],
        rotation=rotation,
        location=location[keep],
        scale=None if head_scale is None else head_scale[keep],
        distance=distance,
        key_camera=bool(key_camera),
        span=(float(frames.min()), float(frames.max())),
        present=(float(frames[valid].min()), float(frames[valid].max())),
    )


def identity_vertices(face_model, identity) -> np.ndarray:
    """The neutral face (V, 3) float32 for shape coefficients (40,): Blender frame, metres."""
    bfm = face_model.vertices(identity).astype(np.float64)
    return (bfm @ pose_mod.BLENDER_FROM_BFM.T * MICROMETRES_TO_METRES).astype(np.float32)


def expression_offsets(face_model, scale) -> np.ndarray:
    """Offsets (10, V, 3) float32 of the expression keys at value 1: Blender frame, metres."""
    basis = face_model.expr_basis.astype(np.float64) * np.asarray(scale)[None, None, :N_EXPR]
    mapped = np.einsum("vck,dc->kvd", basis, pose_mod.BLENDER_FROM_BFM)
    return (mapped * MICROMETRES_TO_METRES).astype(np.float32)
