"""Fine-tuning the regressor's last stages with 3DDFA-V2's meta-joint optimisation.

Only the tail of the network trains (``TAIL_FROM``: the last two
depthwise-separable blocks and both heads); the trunk keeps the stock
weights, so its features are computed once per synthetic frame and cached
(float16), and a training step costs a small fraction of a full
forward-backward pass. Batch norm keeps the stock statistics.

Meta-joint optimisation (3DDFA-V2, Algorithm 1): each round draws ``k``
meta-train batches and one disjoint meta-test batch; from the current
weights it takes ``k`` steps with fWPDC and, separately, ``k`` steps with
VDC (each with the same auxiliary terms), and keeps whichever weights have
the lower vertex error (VDC) on the meta-test batch.

Auxiliary terms (see :mod:`.losses`): lrr (the landmark head against the
label's landmarks, weighted ``|l_main| / |l_lrr|``), 2DASL's 2-D landmark
loss against MediaPipe's low-passed points, the two-heads cycle, the BFM
prior, a stability term (the landmarks' frame-to-frame motion inside a
synthetic clip must match the labels' motion), the temporal-consistency term
(each clip's landmarks, mapped back through their frame's in-plane move,
must coincide: label-free), and an L2 pull toward the stock weights.

Other faces (optional, :class:`OtherFaces`): synthetic clips of people other
than the performer, labelled by the stock network itself (the teacher: the
stock tail on the same cached trunk features). Each training step adds the
distillation loss on a batch of them, and the temporal term on them too, so
the tail learns the performer without forgetting everyone else.
"""

from __future__ import annotations

import copy
import dataclasses
import time

import numpy as np
import torch

from . import losses
from .face_torch import TorchFace
from .mobilenet import MobileNetRegressor, normalise_crops

TAIL_FROM = 12  # stage index: 0 is conv1, 1..13 the blocks; 12 = dw5_6


@dataclasses.dataclass
class TrainingSet:
    """Synthetic clips: ``clips`` x ``frames`` samples, stored flat (clip-major).

    ``features``: cached trunk output (S, C, H, W) float16; ``target_raw`` (S, 62)
    z-scored labels; ``points`` (S, 68, 2) MediaPipe's 2-D evidence, crop px;
    ``label_points`` (S, 68, 2) the label's own landmarks, crop px; ``moves`` (S, 2, 3)
    the in-plane move ``[A | b]`` (crop px) each sample's crop was rendered with.
    """

    features: torch.Tensor
    target_raw: torch.Tensor
    points: torch.Tensor
    label_points: torch.Tensor
    moves: torch.Tensor
    frames: int

    @property
    def clips(self) -> int:
        return self.target_raw.shape[0] // self.frames


@dataclasses.dataclass
class OtherFaces:
    """Synthetic clips of other people, stored flat (clip-major) like :class:`TrainingSet`.

    ``features`` (S, C, H, W) float16 cached trunk output; ``teacher_raw`` (S, 62) and
    ``teacher_lmk`` (S, 136): the stock tail's outputs on those features; ``moves`` (S, 2, 3).
    """

    features: torch.Tensor
    teacher_raw: torch.Tensor
    teacher_lmk: torch.Tensor
    moves: torch.Tensor
    frames: int

    @property
    def clips(self) -> int:
        return self.teacher_raw.shape[0] // self.frames


@dataclasses.dataclass
class Weights:
    """Weights of the terms added to the main loss (crop px^2 unless stated)."""

    landmark_2d: float = 0.5
    cycle: float = 1.0
    prior: float = 1.0
    stability: float = 2.0
    # Chosen on training seeds only (performer identity 1000 adapted on seed 1000, measured
    # on seed 1100; drift from stock on real faces not trained on): distill 1 / 5 / 20 gave
    # NME -14 / -10 / -6 % on the performer and a drift of 1.0 / 0.85 / 0.47 % of the face
    # size on other faces. Other faces come first, so 20.
    temporal: float = 30.0
    distill: float = 20.0
    anchor: float = 1e-3  # per squared weight change, summed over the tail


def trunk_features(model: MobileNetRegressor, crops_bgr: np.ndarray, batch: int = 64) -> torch.Tensor:
    """The stock trunk's output for crops (S, 120, 120, 3) BGR uint8, float16."""
    out = []
    with torch.no_grad():
        for start in range(0, len(crops_bgr), batch):
            x = normalise_crops(crops_bgr[start : start + batch])
            out.append(model.features(x, 0, TAIL_FROM).half())
    return torch.cat(out)


def tail_outputs(model: MobileNetRegressor, features: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """``(raw, raw_lmk)`` of the model's tail and heads on cached trunk features (no gradient)."""
    raws, lmks = [], []
    with torch.no_grad():
        for start in range(0, len(features), batch):
            x = features[start : start + batch].float()
            for name in model.block_names[TAIL_FROM - 1 :]:
                x = getattr(model, name)(x)
            raw, raw_lmk = model.heads(x)
            raws.append(raw)
            lmks.append(raw_lmk)
    return torch.cat(raws), torch.cat(lmks)


class MetaJointTrainer:
    """Trains ``model``'s tail on a :class:`TrainingSet` (see the module doc)."""

    def __init__(
        self,
        model: MobileNetRegressor,
        face: TorchFace,
        data: TrainingSet,
        lr: float = 2e-4,
        clips_per_batch: int = 12,
        meta_steps: int = 3,
        weights: Weights | None = None,
        seed: int = 0,
        train_blocks: bool = True,
        affine_only: bool = False,
        other: OtherFaces | None = None,
    ):
        self.model = model
        self.face = face
        self.data = data
        self.other = other
        self.clips_per_batch = clips_per_batch
        self.meta_steps = meta_steps
        self.weights = weights or Weights()
        self.rng = np.random.default_rng(seed)
        self.tail = [getattr(model, name) for name in model.block_names[TAIL_FROM - 1 :]] + [model.fc_param, model.fc_lm]
        trained = self.tail if train_blocks else self.tail[-2:]
        if affine_only:
            # Batch-norm scales and shifts of the tail and the heads' biases: a few thousand
            # numbers that move features per channel, not the network's filters.
            self.parameters = [
                p for module in trained for name, p in module.named_parameters()
                if name.endswith("bias") or name.startswith("bn")
            ]
        else:
            self.parameters = [p for module in trained for p in module.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        for p in self.parameters:
            p.requires_grad_(True)
        self.start_weights = [p.detach().clone() for p in self.parameters]
        self.optimiser = torch.optim.Adam(self.parameters, lr=lr)
        self.fwpdc_scale = 1.0
        self.history: list[dict] = []
        self.validation: list[tuple] = []
        self.best_round = None
        self._order = np.zeros(0, dtype=int)
        self._other_order = np.zeros(0, dtype=int)

    # -- batches -----------------------------------------------------------------

    def next_clips(self) -> np.ndarray:
        if len(self._order) < self.clips_per_batch:
            self._order = np.concatenate([self._order, self.rng.permutation(self.data.clips)])
        picked, self._order = self._order[: self.clips_per_batch], self._order[self.clips_per_batch :]
        return picked

    def batch(self, clips: np.ndarray) -> dict:
        """The samples of ``clips`` of the performer, plus an ``"other"`` batch of other faces."""
        index = torch.as_tensor(_clip_rows(clips, self.data.frames))
        out = {
            "features": self.data.features[index].to(self.data.target_raw.dtype),
            "target_raw": self.data.target_raw[index],
            "points": self.data.points[index],
            "label_points": self.data.label_points[index],
            "moves": self.data.moves[index],
        }
        if self.other is not None:
            if len(self._other_order) < self.clips_per_batch:
                self._other_order = np.concatenate([self._other_order, self.rng.permutation(self.other.clips)])
            picked, self._other_order = self._other_order[: self.clips_per_batch], self._other_order[self.clips_per_batch :]
            other = torch.as_tensor(_clip_rows(picked, self.other.frames))
            out["other"] = {
                "features": self.other.features[other].float(),
                "teacher_raw": self.other.teacher_raw[other],
                "teacher_lmk": self.other.teacher_lmk[other],
                "moves": self.other.moves[other],
            }
        return out

    # -- losses ------------------------------------------------------------------

    def forward(self, features):
        x = features
        for block in self.tail[:-2]:
            x = block(x)
        return self.model.heads(x)

    def loss(self, batch: dict, kind: str):
        raw, raw_lmk = self.forward(batch["features"])
        target = batch["target_raw"]
        if kind == "vdc":
            main = losses.vdc(self.face, raw, target)
        else:
            main = self.fwpdc_scale * losses.fwpdc(self.face, raw, target)
        total = losses.lrr_weighted(main, losses.lrr(raw_lmk, batch["label_points"]))
        w = self.weights
        total = total + w.landmark_2d * losses.landmark_2d(self.face, raw, batch["points"])
        total = total + w.cycle * losses.cycle_2d(self.face, raw, raw_lmk)
        total = total + w.prior * losses.prior(raw)
        total = total + w.stability * self._stability(raw, batch["label_points"])
        if w.temporal:
            total = total + w.temporal * losses.temporal_consistency(self.face, raw, batch["moves"], self.data.frames)
        other = batch.get("other")
        if other is not None:
            other_raw, other_lmk = self.forward(other["features"])
            total = total + w.distill * losses.distillation(
                self.face, other_raw, other_lmk, other["teacher_raw"], other["teacher_lmk"]
            )
            if w.temporal:
                total = total + w.temporal * losses.temporal_consistency(
                    self.face, other_raw, other["moves"], self.other.frames
                )
        anchor = sum((p - p0).pow(2).sum() for p, p0 in zip(self.parameters, self.start_weights))
        return total + w.anchor * anchor

    def _stability(self, raw, label_points):
        """Mean squared error (crop px^2) of frame-to-frame landmark motion inside each clip."""
        frames = self.data.frames
        if frames < 2:
            return raw.new_zeros(())
        predicted = self.face.landmarks_crop(self.face.denormalise(raw)).reshape(-1, frames, 68, 2)
        labels = label_points.reshape(-1, frames, 68, 2)
        return (predicted.diff(dim=1) - labels.diff(dim=1)).pow(2).sum(-1).mean()

    def vertex_error(self, batch: dict) -> float:
        with torch.no_grad():
            raw, _ = self.forward(batch["features"])
            return float(losses.vdc(self.face, raw, batch["target_raw"]))

    # -- optimisation ------------------------------------------------------------

    def calibrate(self) -> None:
        """Scale fWPDC once to VDC's magnitude, so both branches weigh the other terms alike."""
        batch = self.batch(self.next_clips())
        with torch.no_grad():
            raw, _ = self.forward(batch["features"])
            vdc = float(losses.vdc(self.face, raw, batch["target_raw"]))
            fwpdc = float(losses.fwpdc(self.face, raw, batch["target_raw"]))
        self.fwpdc_scale = vdc / max(fwpdc, 1e-12)

    def _state(self):
        return [p.detach().clone() for p in self.parameters], copy.deepcopy(self.optimiser.state_dict())

    def _restore(self, state) -> None:
        values, optimiser_state = state
        with torch.no_grad():
            for p, v in zip(self.parameters, values):
                p.copy_(v)
        self.optimiser.load_state_dict(optimiser_state)

    def meta_round(self, train=None, test=None) -> dict:
        """One round of Algorithm 1; returns the chosen branch and both meta-test errors.

        ``train`` (``meta_steps`` batches) and ``test`` (one batch) default to fresh draws.
        """
        train = train or [self.batch(self.next_clips()) for _ in range(self.meta_steps)]
        test = test or self.batch(self.next_clips())
        start = self._state()
        results = {}
        for kind in ("fwpdc", "vdc"):
            self._restore(start)
            for batch in train:
                self.optimiser.zero_grad()
                self.loss(batch, kind).backward()
                self.optimiser.step()
            results[kind] = (self.vertex_error(test), self._state())
        chosen = min(results, key=lambda k: results[k][0])
        self._restore(results[chosen][1])
        record = {"chosen": chosen, "fwpdc": results["fwpdc"][0], "vdc": results["vdc"][0]}
        self.history.append(record)
        return record

    def run(self, seconds: float, max_rounds: int, validate=None, every: int = 10, progress=None, should_stop=None) -> None:
        """Meta-joint rounds until ``max_rounds`` or ``seconds`` of wall time; cosine-decayed rate.

        ``validate()`` (optional) scores the current weights (lower is better, None: unusable);
        it runs before the first round and every ``every`` rounds, and the best-scoring weights
        (possibly the starting ones) are kept at the end (early stopping).
        """
        self.calibrate()
        base = [group["lr"] for group in self.optimiser.param_groups]
        best = None
        started = time.perf_counter()
        for round_index in range(max_rounds + 1):
            elapsed = time.perf_counter() - started
            last = elapsed >= seconds or round_index == max_rounds
            if validate is not None and (round_index % every == 0 or last):
                score = validate()
                self.validation.append((round_index, score))
                if score is not None and (best is None or score < best[0]):
                    best = (score, round_index, [p.detach().clone() for p in self.parameters])
            if last:
                break
            if should_stop is not None and should_stop():
                from ddfa_blender.core.errors import CaptureCancelled

                raise CaptureCancelled()
            fraction = max(round_index / max_rounds, elapsed / seconds)
            for group, lr in zip(self.optimiser.param_groups, base):
                group["lr"] = lr * 0.5 * (1 + np.cos(np.pi * min(fraction, 1.0)))
            self.meta_round()
            if progress is not None:
                progress(fraction)
        if best is not None:
            self.best_round = best[1]
            with torch.no_grad():
                for p, v in zip(self.parameters, best[2]):
                    p.copy_(v)


def _clip_rows(clips: np.ndarray, frames: int) -> np.ndarray:
    """Flat sample rows of clip indices (clip-major storage)."""
    return (np.asarray(clips)[:, None] * frames + np.arange(frames)).reshape(-1)
