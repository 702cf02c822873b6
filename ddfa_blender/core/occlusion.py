"""The occlusion signature of a tracked face: how much of it no longer looks like itself.

3DDFA-V2 has no notion of occlusion: a hand, a microphone or a cup over part
of the face still yields a confident-looking fit (the network's two heads
keep agreeing), often with a wrong head pose. What does change is the
appearance of the face where the fitted mesh says skin should be. Each
frame, :class:`AppearanceMonitor` samples the 120-px face crop at a fixed set
of mesh vertices (about 1,000 of the 38,365, every ``VERTEX_STEP``-th) placed
by that frame's own fit, keeps those facing the camera, and reads four
values there: blue, green, red and the local detail (mean absolute
difference from a 1.5-px blur, which a blur or a smooth occluder removes).
Each is normalised over the face (zero mean, unit spread), so exposure and
contrast changes cancel, and compared with how the face looked when it last
looked like this: the per-vertex median of the ``REFERENCE_FRAMES`` frames,
among the last ``BANK_FRAMES`` it accepted, nearest in expression, head
rotation and time (so a smile is compared with earlier smiles, and teeth
showing are not an occluder). Before vertices are compared, the part of
the difference that a change of lighting explains is removed: a robust fit of
the difference, per value, as a linear function of the vertex normal (a head
turning under a fixed light darkens one side and brightens the other
smoothly; an occluder does not follow the normals). A vertex has *changed*
when a colour differs by more than ``VERTEX_CHANGE`` or the detail dropped by
more than ``DETAIL_LOSS`` (in units of the face's own spread). Occluders
cover connected areas, so a changed vertex counts only when at least
``MIN_CHANGED_NEIGHBOURS`` of its ``NEIGHBOURS`` nearest mesh neighbours
changed too; isolated changes (noise, teeth) drop out.

The score is the fraction of visible sampled vertices that changed, 0..1
(NaN during a track's first ``WARM_UP_FRAMES`` frames, when there is nothing
to compare with). What the bank learns:

* frames scoring under ``ACCEPT_SCORE``;
* frames that drifted there: a frame that differs from the previous frame
  (itself learned) by under ``DRIFT_STEP`` and from the bank by under
  ``DRIFT_CAP``. A head turning to a pose the bank has never seen, or an
  expression building up, changes the face a little every frame and is
  learned as it goes; an occluder arrives within a frame or two and is not.
  Without this the bank locked itself: a new pose scored over
  ``ACCEPT_SCORE``, so it was never learned, so the next frames of that pose
  scored higher still (held-out synthetic heads turning to -25 degrees
  yaw were flagged for two seconds);
* when no frame has joined for ``RELEARN_SECONDS``, the next
  ``RELEARN_FRAMES`` whatever they score, so an occluder that stays (a
  microphone held in front of the mouth for a whole take) is learned as
  part of the face over the following frames rather than flagging the whole
  take.

A blink is an abrupt change of the eye region and scores like a small
occluder for a few frames; the take's confidence (:mod:`.confidence`) only
counts occlusion that lasts (``OCCLUSION_MIN_SECONDS``). Measured by
``benchmarks/bench_accuracy.py`` (pasted hands, bars, blurs, microphones and
cups on the shared clips score 0.07-0.4; clean faces and held-out synthetic
heads under 0.05 once short runs are discounted).
"""

from __future__ import annotations

import numpy as np

from .reconstruct import CROP_SIZE, crop_to_image, model_to_crop

VERTEX_STEP = 37
NEIGHBOURS = 6
MIN_CHANGED_NEIGHBOURS = 3
VERTEX_CHANGE = 1.0
DETAIL_LOSS = 2.0
FACING_MIN = 0.6  # cosine between a vertex normal and the view direction
BANK_FRAMES = 40
REFERENCE_FRAMES = 10
POSE_WEIGHT = 5.0
AGE_WEIGHT = 0.5
KEY_SIZE = 10 + 6 + 1  # expression, two rows of the rotation, time
WARM_UP_FRAMES = 5
ACCEPT_SCORE = 0.06
DRIFT_STEP = 0.05
DRIFT_CAP = 0.15
PREVIOUS_MAX_SECONDS = 0.2  # a previous frame older than this is no step of a drift
RELEARN_SECONDS = 2.0
RELEARN_FRAMES = 10
MIN_VISIBLE = 50
LIGHTING_ROUNDS = 2  # fits, each without the vertices that changed before it


def vertex_normals(vertices, triangles) -> np.ndarray:
    """Unit normals (V, 3) of a mesh's vertices (V, 3) with triangles (T, 3), outward for BFM."""
    v = np.asarray(vertices, dtype=np.float64)
    t = np.asarray(triangles)
    t = t if t.shape[-1] == 3 else t.T
    face_normals = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    normals = np.zeros_like(v)
    for corner in range(3):
        np.add.at(normals, t[:, corner], face_normals)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    # The face looks toward +z: most normals must too, whatever the triangle winding.
    return normals if normals[:, 2].mean() >= 0 else -normals


def nan_median(values) -> np.ndarray:
    """Median over axis 0 ignoring NaN (NaN where a column has none); faster than np.nanmedian."""
    ordered = np.sort(values, axis=0)  # NaN sort last
    count = np.isfinite(ordered).sum(axis=0)
    low = np.maximum((count - 1) // 2, 0)[None]
    high = np.maximum(count // 2, 0)[None]
    middle = 0.5 * (np.take_along_axis(ordered, low, 0)[0] + np.take_along_axis(ordered, high, 0)[0])
    return np.where(count > 0, middle, np.nan)


class VertexProbe:
    """The sampled vertices of a :class:`.face_model.FaceModel`, shared by every track."""

    def __init__(self, face, step: int = VERTEX_STEP):
        index = np.arange(0, face.n_vertices, step)
        mean = np.asarray(face.mean, dtype=np.float64)[index]
        # One matrix (K * 3, 51): [mean | shape basis | expression basis] per coordinate.
        self.basis = np.concatenate(
            [mean[..., None], np.asarray(face.shape_basis)[index], np.asarray(face.expr_basis)[index]], axis=-1
        ).reshape(len(index) * 3, -1).astype(np.float32)
        self.normals = vertex_normals(face.mean, face.triangles)[index]
        # Regressors of the lighting fit (K, 4): a constant and the normal (model frame).
        self.lighting = np.concatenate([np.ones((len(index), 1)), self.normals], axis=1)
        distance = np.linalg.norm(mean[:, None] - mean[None], axis=-1)
        np.fill_diagonal(distance, np.inf)
        self.neighbours = np.argpartition(distance, NEIGHBOURS, axis=1)[:, :NEIGHBOURS]

    def sample(self, crop_bgr, param, roi, image_size) -> tuple[np.ndarray, np.ndarray]:
        """Blue, green, red and detail (K, 4) float32 at the sampled vertices of ``param`` (62,)
        in the 120-px crop (BGR uint8) of ``roi`` (4,), and which of them face the camera
        inside both the crop and the image (``image_size``: width, height) (K,) bool."""
        import cv2

        param = np.asarray(param, dtype=np.float32)
        pose = param[:12].reshape(3, 4).astype(np.float64)
        coefficients = np.concatenate([[1.0], param[12:62]]).astype(np.float32)
        # einsum and sums, not matmul: a BLAS call here would wait for BLAS threads
        # competing with decoding and onnxruntime for the same cores.
        points = np.einsum("ij,j->i", self.basis, coefficients).reshape(-1, 3)
        crop_points = model_to_crop(pose[None], points[None])[0]
        toward_camera = pose[2, :3] / max(float(np.sqrt((pose[0, :3] ** 2).sum())), 1e-12)
        facing = (self.normals * toward_camera).sum(axis=1) > FACING_MIN
        inside = ((crop_points[:, :2] >= 0) & (crop_points[:, :2] <= CROP_SIZE - 1)).all(axis=1)
        image_points = crop_to_image(crop_points[None], np.asarray(roi, dtype=np.float64)[None])[0, :, :2]
        inside &= ((image_points >= 0) & (image_points <= np.asarray(image_size) - 1)).all(axis=1)
        map_x = crop_points[None, :, 0].astype(np.float32)
        map_y = crop_points[None, :, 1].astype(np.float32)
        grey = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
        detail = cv2.GaussianBlur(np.abs(grey - cv2.GaussianBlur(grey, (0, 0), 1.5)), (0, 0), 1.5)
        planes = np.dstack([crop_bgr.astype(np.float32), detail])
        values = cv2.remap(planes, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return values[0].astype(np.float32), facing & inside


class AppearanceMonitor:
    """One track's occlusion score per frame (see the module doc)."""

    def __init__(self, probe: VertexProbe):
        self.probe = probe
        # The bank: a ring of the last BANK_FRAMES accepted frames (keys and appearance).
        self._keys = np.zeros((BANK_FRAMES, KEY_SIZE))
        self._looks = np.zeros((BANK_FRAMES, len(probe.normals), 4), dtype=np.float32)
        self._banked = 0  # frames in the bank (at most BANK_FRAMES)
        self._next = 0  # ring position of the next frame
        self._last_accepted = None
        self._relearning = 0  # frames still to accept whatever they score
        self._previous = None  # (normalised look, time) of the previous frame if it was learned

    def update(self, crop_bgr, param, roi, image_size, time: float) -> float:
        """Score 0..1 (NaN while warming up) of one frame: its crop (BGR uint8, 120x120),
        parameters (62,), crop box (4,) and image size (width, height) in pixels, and
        its time (seconds)."""
        values, visible = self.probe.sample(crop_bgr, param, roi, image_size)
        return self.update_sampled(values, visible, param, time)

    def update_sampled(self, values, visible, param, time: float) -> float:
        """:meth:`update` on values already sampled by :meth:`VertexProbe.sample`: values
        (K, 4) float32, visible (K,) bool."""
        if visible.sum() < MIN_VISIBLE:
            return float("nan")
        face = values[visible]
        normalised = np.full(values.shape, np.nan, dtype=np.float32)
        normalised[visible] = (face - face.mean(axis=0)) / np.maximum(face.std(axis=0), 1.0)
        key = self._key(param, time)
        score = float("nan")
        if self._banked >= WARM_UP_FRAMES:
            score = self._changed_fraction(normalised, self._reference(key))
        accepted = not score >= ACCEPT_SCORE
        if not accepted and self._previous is not None and score < DRIFT_CAP:
            previous, previous_time = self._previous
            if time - previous_time <= PREVIOUS_MAX_SECONDS:
                accepted = self._changed_fraction(normalised, previous) < DRIFT_STEP
        if self._last_accepted is not None and time - self._last_accepted > RELEARN_SECONDS:
            self._relearning = RELEARN_FRAMES
        if accepted or self._relearning > 0:
            self._relearning = max(self._relearning - 1, 0)
            self._keys[self._next] = key
            self._looks[self._next] = normalised
            self._next = (self._next + 1) % BANK_FRAMES
            self._banked = min(self._banked + 1, BANK_FRAMES)
            self._last_accepted = time
        self._previous = (normalised, time) if accepted else None
        return score

    def _changed_fraction(self, normalised, reference) -> float:
        """Fraction of the vertices seen in both (K, 4) normalised looks that changed and
        have changed neighbours, after removing the lighting change; NaN if too few are seen."""
        compared = np.isfinite(normalised).all(axis=1) & np.isfinite(reference).all(axis=1)
        if compared.sum() < MIN_VISIBLE:
            return float("nan")
        difference = np.where(compared[:, None], normalised - reference, 0.0)
        changed = self._changed(difference, compared)
        if not changed.any():  # most frames: nothing for the lighting to explain
            return 0.0
        fitted = compared & ~changed
        for _ in range(LIGHTING_ROUNDS):
            if fitted.sum() < MIN_VISIBLE:
                break
            regressors = self.probe.lighting[fitted]
            # einsum, not matmul: no BLAS call in the per-frame path (see VertexProbe.sample).
            normal_matrix = np.einsum("ki,kj->ij", regressors, regressors) + 1e-6 * np.eye(4)
            coefficients = np.linalg.solve(normal_matrix, np.einsum("ki,kj->ij", regressors, difference[fitted]))
            changed = self._changed(difference - np.einsum("ki,ij->kj", self.probe.lighting, coefficients), compared)
            fitted = compared & ~changed  # refit on the vertices that look like themselves
        connected = changed & (changed[self.probe.neighbours].sum(axis=1) >= MIN_CHANGED_NEIGHBOURS)
        return float(connected.sum() / compared.sum())

    @staticmethod
    def _changed(difference, compared) -> np.ndarray:
        """Vertices (K,) whose difference (K, 4) from the reference is a change (module doc)."""
        return compared & ((np.abs(difference[:, :3]).max(axis=1) > VERTEX_CHANGE) | (difference[:, 3] < -DETAIL_LOSS))

    @staticmethod
    def _key(param, time):
        """What a banked frame is matched on: expression (10,), head rotation, time."""
        param = np.asarray(param, dtype=np.float64)
        linear = param[:12].reshape(3, 4)[:, :3]
        rotation = linear / max(np.linalg.norm(linear[0]), 1e-12)
        return np.concatenate([param[52:62], POSE_WEIGHT * rotation[:2].ravel(), [AGE_WEIGHT * time]])

    def _reference(self, key) -> np.ndarray:
        """Per-vertex median (K, 4) of the banked frames nearest in expression, pose and time."""
        banked = self._ring_rows()
        distance = ((self._keys[banked] - key) ** 2).sum(axis=1)
        nearest = banked[np.argsort(distance)[:REFERENCE_FRAMES]]
        return nan_median(self._looks[nearest])

    def _ring_rows(self) -> np.ndarray:
        """Ring positions holding banked frames."""
        if self._banked < BANK_FRAMES:
            return (self._next - 1 - np.arange(self._banked)) % BANK_FRAMES
        return np.arange(BANK_FRAMES)
