"""The training losses against their definitions (needs PyTorch: `make test-train`)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed: the training tests run in .venv-train (make test-train)")

from ddfa_blender.core.reconstruct import landmarks_crop  # noqa: E402
from ddfa_train import losses, training  # noqa: E402
from ddfa_train.face_torch import TorchFace, landmark_head_raw  # noqa: E402
from ddfa_train.mobilenet import MobileNetRegressor  # noqa: E402
from train_helpers import random_face, random_params  # noqa: E402


@pytest.fixture()
def setup():
    rng = np.random.default_rng(3)
    face = random_face(rng)
    mean = np.r_[np.zeros(12), rng.normal(0, 1e4, 40), rng.normal(0, 1, 10)]
    std = np.r_[np.full(12, 2e-4), np.full(40, 3e4), np.full(10, 1.0)]
    std[[3, 7, 11]] = 5.0  # translations, crop px
    tface = TorchFace(face, mean, std, vertex_step=1)
    for name, value in vars(tface).items():
        if torch.is_tensor(value):
            setattr(tface, name, value.double())
    return rng, face, tface, mean, std


def _raw(tface, param):
    return tface.normalise(torch.as_tensor(param, dtype=torch.float64))


def test_fwpdc_equals_wpdc_on_random_parameters(setup):
    rng, _, tface, mean, std = setup
    truth = _raw(tface, random_params(rng, 6, mean, std))
    predicted = truth + torch.as_tensor(rng.normal(0, 0.5, (6, 62)))
    w = losses.wpdc_weights(tface, predicted, truth)
    fw = losses.fwpdc_weights(tface, predicted, truth)
    np.testing.assert_allclose(fw.numpy(), w.numpy(), rtol=1e-9, atol=1e-12 * float(w.max()))
    np.testing.assert_allclose(
        float(losses.fwpdc(tface, predicted, truth)), float(losses.wpdc(tface, predicted, truth)), rtol=1e-9
    )


def test_wpdc_weight_is_the_vertex_error_of_one_parameter(setup):
    rng, face, tface, mean, std = setup
    truth = random_params(rng, 1, mean, std)
    predicted = truth + rng.normal(size=(1, 62)) * std
    weights = losses.wpdc_weights(tface, _raw(tface, predicted), _raw(tface, truth)).numpy()[0]
    for i in (0, 5, 11, 20, 57):
        mixed = truth.copy()
        mixed[0, i] = predicted[0, i]
        # independent reconstruction: the numpy core, all vertices
        pose = lambda p: p[0, :12].reshape(3, 4)  # noqa: E731
        verts = lambda p: _vertices64(face, p[0])  # noqa: E731
        moved = verts(mixed) @ pose(mixed)[:, :3].T + pose(mixed)[:, 3]
        ref = verts(truth) @ pose(truth)[:, :3].T + pose(truth)[:, 3]
        np.testing.assert_allclose(weights[i], np.linalg.norm(moved - ref), rtol=1e-6)


def _vertices64(face, param):
    """Vertices (K, 3) of one parameter vector in float64 (float32 loses small expression changes)."""
    return (
        face.mean.astype(np.float64)
        + face.shape_basis.astype(np.float64) @ param[12:52]
        + face.expr_basis.astype(np.float64) @ param[52:62]
    )


def test_vdc_zero_at_truth_and_mean_squared_distance_elsewhere(setup):
    rng, face, tface, mean, std = setup
    truth = random_params(rng, 3, mean, std)
    assert float(losses.vdc(tface, _raw(tface, truth), _raw(tface, truth))) == 0.0
    other = truth + rng.normal(size=truth.shape) * std * 0.3
    expected = np.mean(
        [
            np.sum(
                (
                    _vertices64(face, o) @ o[:12].reshape(3, 4)[:, :3].T + o[:12].reshape(3, 4)[:, 3]
                    - _vertices64(face, t) @ t[:12].reshape(3, 4)[:, :3].T - t[:12].reshape(3, 4)[:, 3]
                )
                ** 2,
                axis=1,
            ).mean()
            for o, t in zip(other, truth)
        ]
    )
    np.testing.assert_allclose(float(losses.vdc(tface, _raw(tface, other), _raw(tface, truth))), expected, rtol=1e-5)


def test_torch_landmarks_match_the_numpy_core(setup):
    rng, face, tface, mean, std = setup
    param = random_params(rng, 4, mean, std)
    ours = tface.landmarks_crop(torch.as_tensor(param)).numpy()
    reference = landmarks_crop(face, param)[..., :2]  # float32 bases: relative precision ~1e-7
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-6 * np.abs(reference).max())


def test_lrr_is_weighted_by_the_loss_ratio(setup):
    main = torch.tensor(3.0, requires_grad=True)
    aux = torch.tensor(0.5, requires_grad=True)
    total = losses.lrr_weighted(main, aux)
    assert float(total.detach()) == pytest.approx(6.0)
    total.backward()
    assert float(aux.grad) == pytest.approx(6.0) and float(main.grad) == pytest.approx(1.0)


def test_landmark_losses(setup):
    rng, _, tface, mean, std = setup
    raw = _raw(tface, random_params(rng, 2, mean, std))
    projected = tface.landmarks_crop(tface.denormalise(raw))
    assert float(losses.landmark_2d(tface, raw, projected)) == pytest.approx(0.0, abs=1e-12)
    assert float(losses.cycle_2d(tface, raw, landmark_head_raw(projected))) == pytest.approx(0.0, abs=1e-9)
    assert float(losses.lrr(landmark_head_raw(projected), projected)) == pytest.approx(0.0, abs=1e-9)
    jaw, centre = projected.clone(), projected.clone()
    jaw[:, 3, 0] += 1.0
    centre[:, 40, 0] += 1.0
    jaw_loss = float(losses.landmark_2d(tface, raw, jaw))
    assert float(losses.landmark_2d(tface, raw, centre)) == pytest.approx(losses.CENTRAL_WEIGHT * jaw_loss)


def test_prior_is_zero_inside_three_sigmas():
    inside = torch.zeros(2, 62)
    inside[:, 12:] = 2.9
    assert float(losses.prior(inside)) == 0.0
    inside[0, 20] = 4.0
    assert float(losses.prior(inside)) == pytest.approx(1.0 / (2 * 50))


def test_meta_joint_keeps_the_branch_with_lower_meta_test_error(setup):
    rng, face, _, mean, std = setup
    tface = TorchFace(face, mean, std, vertex_step=1)  # float32, as in training
    torch.manual_seed(0)
    model = MobileNetRegressor(0.5)
    samples = 3 * 8
    channels = model.dw5_6.conv_dw.in_channels
    data = training.TrainingSet(
        features=torch.randn(samples, channels, 8, 8).abs().half(),
        target_raw=torch.randn(samples, 62) * 0.2,
        points=torch.rand(samples, 68, 2) * 120,
        label_points=torch.rand(samples, 68, 2) * 120,
        moves=torch.eye(2, 3).expand(samples, 2, 3).clone(),
        frames=3,
    )
    trainer = training.MetaJointTrainer(model, tface, data, lr=1e-3, clips_per_batch=2, meta_steps=2)
    chosen = set()
    for _ in range(6):
        train = [trainer.batch(trainer.next_clips()) for _ in range(2)]
        test = trainer.batch(trainer.next_clips())
        record = trainer.meta_round(train, test)
        assert record["chosen"] == min(("fwpdc", "vdc"), key=lambda k: record[k])
        assert trainer.vertex_error(test) == pytest.approx(min(record["fwpdc"], record["vdc"]), rel=1e-6)
        chosen.add(record["chosen"])
    assert model.conv1.weight.grad is None  # the trunk never trains


# --- temporal consistency and other faces ------------------------------------------------


def _clip(tface, param, moves):
    """Raw labels (F, 62) of ``param`` seen through each move, and the moves as (F, 2, 3)."""
    from ddfa_train import synthesis

    raws = torch.stack([_raw(tface, synthesis.move_param(param, a, b)) for a, b in moves])
    return raws, torch.as_tensor(np.stack([np.c_[a, b] for a, b in moves]), dtype=torch.float64)


def test_temporal_consistency_is_zero_exactly_when_outputs_move_with_the_crop(setup):
    from ddfa_train import synthesis

    rng, _, tface, mean, std = setup
    params = random_params(rng, 2, mean, std)
    moves = [synthesis.similarity(0, 0, (0, 0)), synthesis.similarity(6, 0.05, (3, -2)),
             synthesis.similarity(-4, -0.03, (-2, 4))]
    clips = [_clip(tface, p, moves) for p in params]
    raw = torch.cat([c[0] for c in clips])
    stacked_moves = torch.cat([c[1] for c in clips])
    points = tface.landmarks_crop(tface.denormalise(raw))
    np.testing.assert_allclose(losses.unmove_points(points[:3], stacked_moves[:3])[1],
                               losses.unmove_points(points[:3], stacked_moves[:3])[0], atol=1e-6)
    moving = float(losses.temporal_consistency(tface, raw, stacked_moves, 3))
    assert moving < 1e-10
    # an output that ignores the move (the first frame's label on every frame) is penalised
    still = torch.cat([c[0][:1].expand(3, 62) for c in clips])
    assert float(losses.temporal_consistency(tface, still, stacked_moves, 3)) > 1.0
    # one frame off by 1 crop px in x, i.e. exp(-0.05) px once mapped back through its move
    # (scale exp(0.05)): spread = mean over the 3 frames of (2/3, 1/3, 1/3)^2 times that squared
    shifted = raw.clone()
    shifted[1] = _raw(tface, synthesis.move_param(params[0], moves[1][0], moves[1][1] + (1.0, 0.0)))
    expected = ((2 / 3) ** 2 + 2 * (1 / 3) ** 2) / 3 / 2 * np.exp(-0.1)  # /2: one of the two clips
    assert float(losses.temporal_consistency(tface, shifted, stacked_moves, 3)) == pytest.approx(expected, rel=1e-3, abs=1e-3)


def test_distillation_is_zero_at_the_teacher_and_grows_away_from_it(setup):
    rng, _, tface, mean, std = setup
    raw = _raw(tface, random_params(rng, 4, mean, std))
    lmk = torch.as_tensor(rng.normal(0, 0.3, (4, 136)))
    assert float(losses.distillation(tface, raw, lmk, raw, lmk)) == 0.0
    moved = lmk.clone()
    moved[:, :68] += 1.0 / 60  # the landmark head 1 crop px to the right
    assert float(losses.distillation(tface, raw, moved, raw, lmk)) == pytest.approx(1.0)
    assert float(losses.distillation(tface, raw * 1.01, lmk, raw, lmk)) == pytest.approx(
        float(losses.vdc(tface, raw * 1.01, raw)))


def _toy_sets(model, rng, performer_clips=8, other_clips=8, frames=3):
    channels = model.dw5_6.conv_dw.in_channels
    eye = torch.eye(2, 3)
    data = training.TrainingSet(
        features=torch.randn(performer_clips * frames, channels, 8, 8).abs().half(),
        target_raw=torch.randn(performer_clips * frames, 62) * 0.5,
        points=torch.rand(performer_clips * frames, 68, 2) * 120,
        label_points=torch.rand(performer_clips * frames, 68, 2) * 120,
        moves=eye.expand(performer_clips * frames, 2, 3).clone(),
        frames=frames,
    )
    features = torch.randn(other_clips * frames, channels, 8, 8).abs().half()
    teacher_raw, teacher_lmk = training.tail_outputs(model, features)
    other = training.OtherFaces(features, teacher_raw, teacher_lmk, eye.expand(other_clips * frames, 2, 3).clone(), frames)
    return data, other


def test_other_faces_keep_the_teachers_outputs(setup):
    """Training on the performer moves the outputs on other faces; the distillation term holds them."""
    _, face, _, mean, std = setup
    tface = TorchFace(face, mean, std, vertex_step=1)
    drift = {}
    for distill in (0.0, 100.0):
        torch.manual_seed(0)
        model = MobileNetRegressor(0.5)
        data, other = _toy_sets(model, np.random.default_rng(0))
        weights = training.Weights(distill=distill, temporal=0.0, anchor=0.0)
        trainer = training.MetaJointTrainer(model, tface, data, lr=1e-3, clips_per_batch=4, meta_steps=2,
                                            weights=weights, other=other)
        for _ in range(4):
            trainer.meta_round()
        raw, lmk = training.tail_outputs(model, other.features)
        drift[distill] = float(losses.distillation(tface, raw, lmk, other.teacher_raw, other.teacher_lmk))
    assert drift[0.0] > 0.0
    assert drift[100.0] < 0.5 * drift[0.0], drift
