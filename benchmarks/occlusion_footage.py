"""Occluded test footage made at test time: occluders pasted over faces in real frames.

Used by ``benchmarks/bench_accuracy.py`` and the occlusion tests. Each
:class:`Occlusion` event pastes one occluder over part of the face on a run
of frames, placed from the landmarks of a clean capture of the same frames
(so it follows the face):

* ``hand``: a skin-coloured hand (palm and fingers), its colour taken from
  the performer's own cheeks, shaded, with a soft edge;
* ``bar``: a dark, slightly noisy bar;
* ``blur``: a strong Gaussian blur of the region;
* ``mic``: a dark microphone head on a handle;
* ``cup``: a light cup with a rim shadow.

Regions (image pixels, from the clean 68 landmarks, iBUG layout): ``mouth``
(lips and chin), ``eyes`` (both eyes and brows), ``left`` / ``right`` (that
half of the face as seen in the image), ``lower`` (nose tip to chin).
Everything is deterministic (seeded per event).
"""

from __future__ import annotations

import dataclasses

import numpy as np

REGIONS = ("mouth", "eyes", "left", "right", "lower")
KINDS = ("hand", "bar", "blur", "mic", "cup")


@dataclasses.dataclass(frozen=True)
class Occlusion:
    """One occluder on frames ``first`` .. ``first + count - 1`` (indices into the clip)."""

    kind: str
    region: str
    first: int
    count: int

    def frames(self) -> range:
        return range(self.first, self.first + self.count)


def _face_frame(lmk68):
    """Centre (2,), size (pixels, sqrt of the landmark box area) and in-plane angle of a face."""
    points = np.asarray(lmk68, dtype=np.float64)[:, :2]
    low, high = points.min(axis=0), points.max(axis=0)
    size = float(np.sqrt(np.prod(np.maximum(high - low, 1.0))))
    eyes = points[42:48].mean(axis=0) - points[36:42].mean(axis=0)
    return (low + high) / 2.0, size, float(np.arctan2(eyes[1], eyes[0]))


def region_box(lmk68, region: str) -> tuple[np.ndarray, float, float]:
    """Centre (2,), half-extent (2,) along the face's axes, and angle of a face region."""
    points = np.asarray(lmk68, dtype=np.float64)[:, :2]
    centre, size, angle = _face_frame(points)
    if region == "mouth":
        middle = points[48:68].mean(axis=0) * 0.7 + points[8] * 0.3
        half = np.array([0.42, 0.26]) * size
    elif region == "eyes":
        middle = np.concatenate([points[36:48], points[17:27]]).mean(axis=0)
        half = np.array([0.58, 0.2]) * size
    elif region in ("left", "right"):
        side = points[0:8] if region == "left" else points[9:17]
        middle = (side.mean(axis=0) + points[30]) / 2.0
        half = np.array([0.3, 0.5]) * size
    elif region == "lower":
        middle = (points[33] + points[8]) / 2.0
        half = np.array([0.5, 0.32]) * size
    else:
        raise ValueError(f"unknown region {region!r}; use one of {REGIONS}")
    return middle, half, angle


def _rotated_grid(shape, centre, angle):
    """Per-pixel coordinates (u, v) in a frame rotated by ``angle`` around ``centre``."""
    height, width = shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    dx, dy = xs - np.float32(centre[0]), ys - np.float32(centre[1])
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return dx * cos + dy * sin, -dx * sin + dy * cos


def _capsule(u, v, a, b, radius):
    """Mask of points within ``radius`` of the segment a-b (coordinates u, v)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    d = b - a
    t = np.clip(((u - a[0]) * d[0] + (v - a[1]) * d[1]) / max(float(d @ d), 1e-6), 0, 1)
    return ((u - a[0] - t * d[0]) ** 2 + (v - a[1] - t * d[1]) ** 2) <= radius**2


def _soft(mask, edge_px):
    import cv2

    alpha = mask.astype(np.float32)
    k = max(int(edge_px) | 1, 3)
    return cv2.GaussianBlur(alpha, (k, k), 0)[..., None]


def _skin_colour(image, lmk68):
    """Median BGR colour of the cheeks under the eyes (uint8 (3,))."""
    points = np.asarray(lmk68, dtype=np.float64)[:, :2]
    samples = []
    for eye, jaw in ((points[36:42].mean(0), points[3]), (points[42:48].mean(0), points[13])):
        for t in np.linspace(0.3, 0.7, 5):
            x, y = (eye * (1 - t) + jaw * t).round().astype(int)
            if 0 <= y < image.shape[0] and 0 <= x < image.shape[1]:
                samples.append(image[y, x])
    if not samples:
        return np.array([140, 160, 200], dtype=np.float32)
    return np.median(np.asarray(samples, dtype=np.float32), axis=0)


def paste(image, lmk68, kind: str, region: str, seed: int = 0) -> np.ndarray:
    """A copy of ``image`` (BGR uint8 (H, W, 3)) with one occluder over ``region`` of the face."""
    import cv2

    rng = np.random.default_rng(seed)
    out = image.astype(np.float32)
    centre, half, angle = region_box(lmk68, region)
    size = _face_frame(lmk68)[1]
    u, v = _rotated_grid(image.shape, centre, angle)
    if kind == "blur":
        mask = (u / half[0]) ** 2 + (v / half[1]) ** 2 <= 1.0
        sigma = max(size / 12.0, 2.0)
        blurred = cv2.GaussianBlur(out, (0, 0), sigma)
        alpha = _soft(mask, size / 10)
        return np.clip(out * (1 - alpha) + blurred * alpha, 0, 255).astype(np.uint8)
    if kind == "bar":
        mask = (np.abs(u) <= half[0] * 1.15) & (np.abs(v) <= half[1])
        colour = np.array([28, 26, 30], np.float32) + rng.normal(0, 6, size=image.shape).astype(np.float32)
        alpha = _soft(mask, 3)
        return np.clip(out * (1 - alpha) + colour * alpha, 0, 255).astype(np.uint8)
    if kind == "mic":
        r = 0.22 * size
        head = (u**2 + (v + 0.05 * size) ** 2) <= r**2
        handle = _capsule(u, v, (0, 0), (0.05 * size, 1.6 * size), 0.07 * size)
        mask = head | handle
        mesh = 0.75 + 0.25 * (np.sin(u * 1.3) * np.sin(v * 1.3) > 0)
        colour = (np.array([45, 45, 48], np.float32) * np.where(head, mesh, 0.8)[..., None])
        alpha = _soft(mask, 3)
        return np.clip(out * (1 - alpha) + colour * alpha, 0, 255).astype(np.uint8)
    if kind == "cup":
        w, h = half[0] * 0.9, half[1] * 1.6
        mask = (np.abs(u) <= w * (1 - 0.1 * (v + h) / (2 * h))) & (v >= -h * 0.6) & (v <= h * 1.6)
        shade = 0.85 + 0.15 * np.cos(np.clip(u / max(w, 1), -1.5, 1.5))
        base = np.array([215, 225, 235], np.float32) if seed % 2 else np.array([60, 90, 200], np.float32)
        colour = base * shade[..., None]
        rim = mask & (v <= -h * 0.6 + 0.05 * size)
        colour = np.where(rim[..., None], colour * 0.6, colour)
        alpha = _soft(mask, 3)
        return np.clip(out * (1 - alpha) + colour * alpha, 0, 255).astype(np.uint8)
    if kind == "hand":
        skin = _skin_colour(image, lmk68) * np.array([0.95, 0.97, 1.05], np.float32)
        palm_r = np.array([0.33, 0.26]) * size
        tilt = rng.uniform(-0.5, 0.5)
        cu, sv = np.cos(tilt), np.sin(tilt)
        uu, vv = u * cu + v * sv, -u * sv + v * cu
        palm_centre = np.array([0.0, 0.25 * size])
        mask = ((uu - palm_centre[0]) / palm_r[0]) ** 2 + ((vv - palm_centre[1]) / palm_r[1]) ** 2 <= 1
        for k, offset in enumerate((-0.24, -0.08, 0.08, 0.24)):
            length = (0.5, 0.58, 0.55, 0.45)[k] * size
            base = (offset * size, 0.05 * size)
            tip = (offset * size * 1.25, 0.05 * size - length)
            mask |= _capsule(uu, vv, base, tip, 0.075 * size)
        mask |= _capsule(uu, vv, (0.3 * size, 0.3 * size), (0.5 * size, 0.0), 0.08 * size)
        shading = 0.8 + 0.2 * np.clip(1 - (uu**2 + (vv - 0.2 * size) ** 2) / (0.7 * size) ** 2, 0, 1)
        noise = cv2.GaussianBlur(rng.normal(0, 1, image.shape[:2]).astype(np.float32), (0, 0), 2) * 12
        colour = skin * shading[..., None] + noise[..., None]
        alpha = _soft(mask, size / 25)
        return np.clip(out * (1 - alpha) + colour * alpha, 0, 255).astype(np.uint8)
    raise ValueError(f"unknown occluder {kind!r}; use one of {KINDS}")


# Where each occluder goes: microphones and cups are held in front of the mouth.
PLACES = {
    "hand": ("mouth", "eyes", "left", "lower", "right"),
    "bar": ("eyes", "mouth", "right", "left"),
    "blur": ("left", "eyes", "mouth", "lower", "right"),
    "mic": ("mouth", "lower"),
    "cup": ("lower", "mouth"),
}


def default_events(valid_frames, clip_seed: int = 0, run: int = 12, spacing: int = 45) -> list[Occlusion]:
    """Occlusion events over the frames with a face: runs of ``run`` frames every ``spacing``.

    Kinds cycle (starting at ``clip_seed``) and each kind moves through its
    places (:data:`PLACES`), so every clip gets a mix. ``valid_frames``:
    sorted clip indices where the clean capture has a face.
    """
    valid = np.asarray(sorted(valid_frames))
    if len(valid) == 0:
        return []
    events = []
    start = int(valid[0]) + 10 if len(valid) else 0
    index = 0
    while len(valid) and start + run <= valid[-1]:
        frames = np.arange(start, start + run)
        if np.isin(frames, valid).all():
            kind = KINDS[(clip_seed + index) % len(KINDS)]
            places = PLACES[kind]
            events.append(Occlusion(kind, places[(index // len(KINDS) + clip_seed) % len(places)], start, run))
            index += 1
            start += spacing
        else:
            start += 1
    return events


def occlude_frames(images, lmk68, events, seed: int = 0) -> tuple[list, np.ndarray]:
    """Frames with the events pasted in, and a bool mask (len(images),) of occluded frames.

    ``images``: the clip's frames (BGR uint8); ``lmk68``: (len(images), 68, 2+)
    landmarks of a clean capture, used to place each occluder.
    """
    out = list(images)
    occluded = np.zeros(len(images), dtype=bool)
    for number, event in enumerate(events):
        for index in event.frames():
            out[index] = paste(images[index], lmk68[index], event.kind, event.region, seed + 1000 * number)
            occluded[index] = True
    return out, occluded
