"""Adapt the regressor to one performer from their unlabeled footage (the whole pipeline).

1. Track the footage with the base regressor (:mod:`.footage`) and run
   MediaPipe's face landmarker on every frame.
2. Fit pseudo-labels against MediaPipe's 2-D landmarks (:mod:`.pseudo_labels`).
3. Turn every usable frame into short synthetic clips: in-plane moves
   (:mod:`.synthesis`), half of them first re-rendered at another head
   rotation (:mod:`.rerender`).
4. Fine-tune the network's tail with meta-joint optimisation (:mod:`.training`),
   with the temporal-consistency term on every synthetic clip and, given
   footage of other people (``other_faces``), distillation from the stock
   network on synthetic clips of them.
5. Export to ONNX in the stock layout and check it (:mod:`.export`).

Time: the training loop gets ``minutes`` of wall time (default
``TRAIN_SECONDS_PER_FOOTAGE_SECOND`` times the usable footage's duration);
tracking, labels and export come on top (a few seconds per minute of footage
each). Nothing is written unless every step succeeds.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from ddfa_blender.core.engine import load_face_model
from ddfa_blender.core.errors import CaptureError
from ddfa_blender.core.metrics import face_size
from ddfa_blender.core.regressor import resolve_model

from . import export, pseudo_labels, rerender, synthesis, training
from .face_torch import TorchFace, landmark_head_crop
from .footage import collect
from .mobilenet import MobileNetRegressor, from_state_dict, state_dict_from_onnx

MIN_USABLE_FRAMES = 100
VALIDATION_FRACTION = 0.2  # the last fifth of each clip's usable frames: early stopping
MAX_VALIDATION_HEADS_PX = 1.0
TRAIN_SECONDS_PER_FOOTAGE_SECOND = 4.0
MAX_ROUNDS = 2000
FRAMES_PER_CLIP = 3
MAX_SAMPLES = 12000
MAX_CLIPS_PER_FRAME = 4
MAX_OTHER_SAMPLES = 3000
OUT_OF_PLANE = 0.5  # fraction of synthetic clips re-rendered at another head rotation
CHECK_CROPS = 64


@dataclasses.dataclass
class AdaptResult:
    """What an adaptation did: frames used, seconds per stage, training record, export checks."""

    frames_tracked: int
    frames_usable: int
    footage_seconds: float
    seconds: dict
    history: list
    checks: dict
    validation: list
    best_round: int | None


def load_base(model: str, models_dir) -> tuple[MobileNetRegressor, dict]:
    """The trainable network and metadata of a prepared regressor (name or ``.onnx`` path)."""
    path = resolve_model(model, models_dir)
    return from_state_dict(state_dict_from_onnx(path)), export.base_metadata(path)


def footage_seconds(footage, usable) -> float:
    """Duration (s) covered by the usable rows: one frame period per row."""
    periods = np.array([1.0 / footage.fps[c] for c in footage.clip])
    return float(periods[usable].sum())


def build_training_set(model, face_t, footage, labels, usable, rng, frames=FRAMES_PER_CLIP, face=None) -> training.TrainingSet:
    """Synthetic clips from the usable rows, with trunk features cached.

    With ``face`` (the FaceModel), a fraction ``OUT_OF_PLANE`` of the clips start from the
    face re-rendered at another head rotation (:mod:`.rerender`); their 2-D evidence is the
    turned label's own landmarks.
    """
    rows = np.flatnonzero(usable)
    per_frame = int(np.clip(MAX_SAMPLES // (len(rows) * frames), 1, MAX_CLIPS_PER_FRAME))
    spread = synthesis.MoveSpread()
    label_points = landmarks_crop_t(face_t, labels.param[rows])
    crops, targets, points, label_pts, move_list = [], [], [], [], []
    for index, row in enumerate(rows):
        for _ in range(per_frame):
            context, param, evidence, own = footage.context[row], labels.param[row], labels.points[row], label_points[index]
            if face is not None and rng.random() < OUT_OF_PLANE:
                yaw = rng.uniform(-rerender.MAX_YAW, rerender.MAX_YAW)
                pitch = rng.uniform(-rerender.MAX_PITCH, rerender.MAX_PITCH)
                context, param = rerender.rerender(context, param, face, yaw, pitch)
                own = evidence = landmarks_crop_t(face_t, param[None])[0]
            moves = synthesis.clip_moves(rng, frames, spread)
            clip = np.stack([synthesis.render_move(context, a, b) for a, b in moves])
            crops.append(synthesis.photometric(rng, clip))
            for a, b in moves:
                targets.append(synthesis.move_param(param, a, b))
                points.append(synthesis.move_points(evidence, a, b))
                label_pts.append(synthesis.move_points(own, a, b))
                move_list.append(np.c_[a, b])
    crops = np.concatenate(crops)
    target = torch.as_tensor(np.asarray(targets), dtype=torch.float32)
    return training.TrainingSet(
        features=training.trunk_features(model, crops),
        target_raw=face_t.normalise(target),
        points=torch.as_tensor(np.asarray(points), dtype=torch.float32),
        label_points=torch.as_tensor(np.asarray(label_pts), dtype=torch.float32),
        moves=torch.as_tensor(np.asarray(move_list), dtype=torch.float32),
        frames=frames,
    )


def build_other_faces(model, footage, rng, frames=FRAMES_PER_CLIP, max_samples=MAX_OTHER_SAMPLES) -> training.OtherFaces:
    """Synthetic clips of other people's tracked frames, labelled by ``model`` (still the stock).

    Rows are taken evenly over the footage, one clip of in-plane moves each, at most
    ``max_samples`` samples in all; must run before training changes ``model``.
    """
    count = min(len(footage), max(1, max_samples // frames))
    rows = np.linspace(0, len(footage) - 1, count).round().astype(int)
    spread = synthesis.MoveSpread()
    crops, move_list = [], []
    for row in rows:
        moves = synthesis.clip_moves(rng, frames, spread)
        clip = np.stack([synthesis.render_move(footage.context[row], a, b) for a, b in moves])
        crops.append(synthesis.photometric(rng, clip))
        move_list.extend(np.c_[a, b] for a, b in moves)
    features = training.trunk_features(model, np.concatenate(crops))
    teacher_raw, teacher_lmk = training.tail_outputs(model, features)
    return training.OtherFaces(
        features=features, teacher_raw=teacher_raw, teacher_lmk=teacher_lmk,
        moves=torch.as_tensor(np.asarray(move_list), dtype=torch.float32), frames=frames,
    )


def validation_rows(footage, usable) -> np.ndarray:
    """Mask (N,) of the last ``VALIDATION_FRACTION`` of each clip's usable rows."""
    held = np.zeros(len(footage), dtype=bool)
    for clip in np.unique(footage.clip):
        rows = np.flatnonzero(usable & (footage.clip == clip))
        keep = int(round(len(rows) * (1 - VALIDATION_FRACTION)))
        held[rows[keep:]] = True
    return held


def validation_score(model, face_t, footage, labels, held):
    """A scorer of the network on the held rows' own crops (lower is better; None: unusable).

    Score: mean distance of the parameter head's landmarks to the low-passed 2-D evidence,
    in face sizes, plus the same for frame-to-frame motion (jitter shows there); None when
    the two heads disagree by more than ``MAX_VALIDATION_HEADS_PX`` (median), which would
    stop the tracker from starting on a face.
    """
    rows = np.flatnonzero(held)
    crops = np.stack([synthesis.render_move(footage.context[r], np.eye(2), np.zeros(2)) for r in rows])
    features = training.trunk_features(model, crops).float()
    points = torch.as_tensor(labels.points[rows], dtype=torch.float32)
    size = torch.as_tensor(face_size(labels.points[rows]), dtype=torch.float32)
    consecutive = torch.as_tensor(np.diff(rows) == 1)

    def score():
        with torch.no_grad():
            x = features
            for name in model.block_names[training.TAIL_FROM - 1 :]:
                x = getattr(model, name)(x)
            raw, raw_lmk = model.heads(x)
            predicted = face_t.landmarks_crop(face_t.denormalise(raw))
            heads = (predicted - landmark_head_crop(raw_lmk)).norm(dim=-1).mean(-1).median()
            if heads > MAX_VALIDATION_HEADS_PX:
                return None
            error = ((predicted - points).norm(dim=-1).mean(-1) / size).mean()
            motion = (predicted.diff(dim=0) - points.diff(dim=0)).norm(dim=-1).mean(-1) / size[1:]
            return float(error + motion[consecutive].mean())

    return score


def landmarks_crop_t(face_t: TorchFace, param) -> np.ndarray:
    """Landmarks (N, 68, 2) in crop px of de-normalised parameters (N, 62)."""
    with torch.no_grad():
        return face_t.landmarks_crop(torch.as_tensor(np.asarray(param), dtype=torch.float32)).numpy()


def adapt(
    clips,
    output,
    models_dir,
    base: str = "mb05",
    minutes: float | None = None,
    window=None,
    progress=None,
    should_stop=None,
    seed: int = 0,
    threads: int | None = None,
    train_blocks: bool = True,
    max_rounds: int = MAX_ROUNDS,
    other_faces=(),
    weights: training.Weights | None = None,
) -> AdaptResult:
    """Adapt ``base`` to the performer in ``clips`` and write the checked model to ``output``.

    ``window``: optional ``(start_s, stop_s)`` of each clip to use. ``progress(stage,
    fraction)`` reports ``tracking``, ``labels``, ``synthesis``, ``training`` and
    ``export``. ``should_stop()`` true cancels (CaptureCancelled; nothing written).
    ``threads``: PyTorch's CPU threads (None: its default, one per core).
    ``other_faces``: clips of people other than the performer (any faces it tracks): the
    stock network's outputs on them are kept (distillation), so that the adapted model
    still works on other faces. ``weights``: the loss weights (default :class:`training.Weights`).
    Raises CaptureError for footage with too few usable frames, or a failed check.
    """
    if threads:
        torch.set_num_threads(int(threads))
    report = progress or (lambda stage, fraction: None)
    seconds = {}
    started = time.perf_counter()
    model, props = load_base(base, models_dir)
    face = load_face_model(models_dir)
    face_t = TorchFace(face, np.array(_json(props["param_mean"])), np.array(_json(props["param_std"])))
    footage = collect(
        clips, models_dir, model=resolve_model(base, models_dir), window=window,
        progress=lambda done, total: report("tracking", done / total if total else 0.0),
        should_stop=should_stop,
    )
    seconds["tracking"] = time.perf_counter() - started
    names = ", ".join(str(c) for c in clips)
    if len(footage) < MIN_USABLE_FRAMES:
        raise CaptureError(_too_few(len(footage), names))
    mark = time.perf_counter()
    report("labels", 0.0)
    labels = pseudo_labels.fit(footage, face_t, should_stop=should_stop)
    usable = labels.usable
    seconds["labels"] = time.perf_counter() - mark
    if usable.sum() < MIN_USABLE_FRAMES:
        raise CaptureError(_too_few(int(usable.sum()), names))
    mark = time.perf_counter()
    report("synthesis", 0.0)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    held = validation_rows(footage, usable)
    data = build_training_set(model, face_t, footage, labels, usable & ~held, rng, face=face)
    other = None
    if other_faces:
        others = collect(list(other_faces), models_dir, model=resolve_model(base, models_dir), mesh=False,
                         should_stop=should_stop)
        if len(others) == 0:
            raise CaptureError(f"No face tracked in the other-faces footage {', '.join(str(c) for c in other_faces)}.")
        other = build_other_faces(model, others, rng)
    validate = validation_score(model, face_t, footage, labels, held)
    seconds["synthesis"] = time.perf_counter() - mark
    duration = footage_seconds(footage, usable)
    budget = 60.0 * minutes if minutes is not None else TRAIN_SECONDS_PER_FOOTAGE_SECOND * duration
    mark = time.perf_counter()
    trainer = training.MetaJointTrainer(model, face_t, data, seed=seed, train_blocks=train_blocks,
                                        weights=weights, other=other)
    trainer.run(budget, max_rounds, validate=validate, progress=lambda f: report("training", f), should_stop=should_stop)
    seconds["training"] = time.perf_counter() - mark
    mark = time.perf_counter()
    report("export", 0.0)
    model.eval()
    rows = np.flatnonzero(usable)
    check_rows = rows[np.linspace(0, len(rows) - 1, min(CHECK_CROPS, len(rows))).astype(int)]
    crops = np.stack([synthesis.render_move(footage.context[r], np.eye(2), np.zeros(2)) for r in check_rows])
    note = {"clips": [str(c) for c in clips], "frames": int(usable.sum()), "base": str(base),
            "other_faces": [str(c) for c in other_faces],
            "window": list(window) if window else None, "rounds": len(trainer.history)}
    onnx_model = export.build(model, props, note)
    if should_stop is not None and should_stop():
        from ddfa_blender.core.errors import CaptureCancelled

        raise CaptureCancelled()
    checks = export.write_checked(output, onnx_model, model, crops, face)
    seconds["export"] = time.perf_counter() - mark
    seconds["total"] = time.perf_counter() - started
    return AdaptResult(
        len(footage), int(usable.sum()), duration, seconds, trainer.history, checks,
        trainer.validation, trainer.best_round,
    )


def _too_few(count: int, names: str) -> str:
    return (
        f"Only {count} usable frames of a face in {names} (adaptation needs at least "
        f"{MIN_USABLE_FRAMES}): give more footage of the performer, face visible and unoccluded."
    )


def _json(text: str):
    import json

    return json.loads(text)
