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
