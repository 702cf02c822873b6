"""The trainable network, its synthetic clips and its ONNX export (needs PyTorch: `make test-train`)."""


import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed: the training tests run in .venv-train (make test-train)")

from ddfa_blender.core.errors import CaptureError  # noqa: E402
from ddfa_blender.core.face_model import FaceModel  # noqa: E402
from ddfa_blender.core.reconstruct import crop_affine, landmarks_crop  # noqa: E402
from ddfa_blender.core.regressor import Regressor  # noqa: E402
from ddfa_blender.core.torch_pickle import read_state_dict  # noqa: E402
from ddfa_train import export, synthesis  # noqa: E402
from ddfa_train.footage import CONTEXT_SIZE, context_affine  # noqa: E402
from ddfa_train.mobilenet import from_state_dict, normalise_crops, state_dict_from_onnx, to_state_dict  # noqa: E402
from train_helpers import random_face, random_params  # noqa: E402

ASSETS = "assets/3ddfa_v2"
GOLDEN_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def golden(shared_dir):
    return np.load(shared_dir / "data/golden/mb05_params.npz")


def _forward(model, crops):
    with torch.no_grad():
        raw, lmk = model(normalise_crops(crops))
    return raw.numpy(), lmk.numpy()


def test_network_from_the_checkpoint_matches_golden_outputs(shared_dir, golden):
    model = from_state_dict(read_state_dict(shared_dir / ASSETS / "mb05_120x120.pth"))
    raw, lmk = _forward(model, golden["crops_bgr_uint8"])
    np.testing.assert_allclose(raw, golden["raw_param"], rtol=0, atol=GOLDEN_TOLERANCE)
    np.testing.assert_allclose(lmk, golden["raw_lmk"], rtol=0, atol=GOLDEN_TOLERANCE)


def test_network_from_the_prepared_onnx_matches_golden_and_onnx(models_dir, golden):
    path = models_dir / "mb05_120x120.onnx"
    model = from_state_dict(state_dict_from_onnx(path))
    crops = golden["crops_bgr_uint8"]
    raw, lmk = _forward(model, crops)
    np.testing.assert_allclose(raw, golden["raw_param"], rtol=0, atol=GOLDEN_TOLERANCE)
    stock = Regressor(str(path)).predict(crops)
    np.testing.assert_allclose(raw, stock.raw_param, rtol=0, atol=1e-4)
    np.testing.assert_allclose(lmk, stock.raw_lmk, rtol=0, atol=1e-4)


def test_state_dict_round_trip_keeps_the_checkpoint_layout(shared_dir):
    original = read_state_dict(shared_dir / ASSETS / "mb05_120x120.pth")
    back = to_state_dict(from_state_dict(original))
    assert back.keys() == original.keys()
    for name, value in original.items():
        assert back[name].dtype == value.dtype
        np.testing.assert_array_equal(back[name], value)


def test_batch_norm_keeps_stock_statistics_in_train_mode(shared_dir, golden):
    model = from_state_dict(read_state_dict(shared_dir / ASSETS / "mb05_120x120.pth")).train()
    before = model.bn1.running_mean.clone()
    with torch.no_grad():
        raw, _ = model(normalise_crops(golden["crops_bgr_uint8"]))
    assert torch.equal(model.bn1.running_mean, before)
    np.testing.assert_allclose(raw.numpy(), golden["raw_param"], rtol=0, atol=GOLDEN_TOLERANCE)


def _face_and_stats(models_dir):
    props = export.base_metadata(models_dir / "mb05_120x120.onnx")
    return FaceModel.load(models_dir / "bfm_face.npz"), props


def test_export_has_the_stock_layout_and_passes_its_checks(models_dir, golden, tmp_path):
    face, props = _face_and_stats(models_dir)
    model = from_state_dict(state_dict_from_onnx(models_dir / "mb05_120x120.onnx"))
    with torch.no_grad():
        model.fc_param.bias += 0.01  # a changed network, as after training
    onnx_model = export.build(model, props, {"clips": ["x.mp4"]})
    out = tmp_path / "actor.onnx"
    figures = export.write_checked(out, onnx_model, model, golden["crops_bgr_uint8"], face)
    assert figures["max_abs_vs_torch"] <= GOLDEN_TOLERANCE
    written = onnx.load(str(out))
    stock = onnx.load(str(models_dir / "mb05_120x120.onnx"))
    assert [i.name for i in written.graph.input] == [i.name for i in stock.graph.input] == ["input"]
    assert [o.name for o in written.graph.output] == [o.name for o in stock.graph.output] == ["param", "lmk"]
    assert [n.op_type for n in written.graph.node] == [n.op_type for n in stock.graph.node]
    stock_props = {p.key: p.value for p in stock.metadata_props}
    written_props = {p.key: p.value for p in written.metadata_props}
    assert set(written_props) == set(stock_props) | {"adaptation"}
    for key in ("param_mean", "param_std", "widen_factor", "input_size", "source_sha256"):
        assert written_props[key] == stock_props[key]
    regressor = Regressor(str(out))
    assert regressor.predict(golden["crops_bgr_uint8"][:2]).raw_param.shape == (2, 62)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["actor.onnx"]


def test_export_refuses_a_model_whose_heads_disagree(models_dir, golden, tmp_path):
    face, props = _face_and_stats(models_dir)
    model = from_state_dict(state_dict_from_onnx(models_dir / "mb05_120x120.onnx"))
    with torch.no_grad():
        model.fc_lm.bias += 0.1  # landmark head moved by 6 crop px
    out = tmp_path / "actor.onnx"
    out.write_bytes(b"previous")
    with pytest.raises(CaptureError, match="heads disagree"):
        export.write_checked(out, export.build(model, props, {}), model, golden["crops_bgr_uint8"], face)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["actor.onnx"]


# --- synthetic clips -------------------------------------------------------------------


def test_moved_labels_project_to_the_moved_landmarks():
    rng = np.random.default_rng(5)
    face = random_face(rng)
    mean = np.r_[np.zeros(12), np.zeros(50)]
    std = np.r_[np.zeros(12), np.full(40, 1e3), np.full(10, 1.0)]
    param = random_params(rng, 3, mean, std)
    for angle, log_scale, shift in ((0, 0, (0, 0)), (7, 0.05, (3, -2)), (-12, -0.1, (-5, 8))):
        linear, offset = synthesis.similarity(angle, log_scale, shift)
        for p in param:
            moved = synthesis.move_param(p, linear, offset)
            expected = synthesis.move_points(landmarks_crop(face, p[None])[0, :, :2], linear, offset)
            np.testing.assert_allclose(landmarks_crop(face, moved[None])[0, :, :2], expected, atol=1e-6 * np.abs(expected).max())
            # still a scaled rotation: the rows stay orthogonal with equal norms
            block = moved[:12].reshape(3, 4)[:, :3]
            gram = block @ block.T
            np.testing.assert_allclose(gram, np.eye(3) * gram[0, 0], atol=1e-9 * gram[0, 0])


def test_unmoved_render_is_the_tracker_crop():
    import cv2

    rng = np.random.default_rng(2)
    image = cv2.GaussianBlur(rng.integers(0, 255, (360, 640, 3), dtype=np.uint8), (0, 0), 3)
    roi = np.array([210.3, 80.7, 390.3, 260.7])
    crop = cv2.warpAffine(image, crop_affine(roi), (120, 120), flags=cv2.INTER_LINEAR)
    context = cv2.warpAffine(image, context_affine(roi), (CONTEXT_SIZE, CONTEXT_SIZE), flags=cv2.INTER_LINEAR)
    rendered = synthesis.render_move(context, np.eye(2), np.zeros(2))
    assert np.abs(rendered.astype(int) - crop.astype(int)).mean() < 1.0
    moved = synthesis.render_move(context, *synthesis.similarity(0, 0, (10, 0)))
    assert np.abs(moved[:, 20:].astype(int) - crop[:, 10:-10].astype(int)).mean() < 1.0


def test_stock_network_follows_moved_crops(models_dir, shared_dir):
    """The stock regressor on a moved crop predicts (nearly) the moved label: the moves are right."""
    import cv2

    from ddfa_blender.core.engine import CaptureOptions, build_tracker
    from ddfa_blender.core.sources import Frame

    image = cv2.imread(str(shared_dir / "data/images/JianzhuGuo.jpg"))
    observation = build_tracker(CaptureOptions(models_dir=str(models_dir))).step(Frame(0, 0.0, image))[0]
    context = cv2.warpAffine(image, context_affine(observation.roi), (CONTEXT_SIZE, CONTEXT_SIZE), flags=cv2.INTER_LINEAR)
    face, _ = _face_and_stats(models_dir)
    regressor = Regressor(str(models_dir / "mb05_120x120.onnx"))
    errors = []
    for angle, shift in ((0, (0, 0)), (8, (0, 0)), (0, (8, -6)), (-8, (-5, 5))):
        linear, offset = synthesis.similarity(angle, 0.0, shift)
        crop = synthesis.render_move(context, linear, offset)
        predicted = landmarks_crop(face, regressor.predict(crop[None]).param)[0, :, :2]
        moved = landmarks_crop(face, synthesis.move_param(observation.param, linear, offset)[None])[0, :, :2]
        errors.append(np.linalg.norm(predicted - moved, axis=-1).mean())
    assert max(errors) < 2.0, errors  # crop px; a wrong move direction gives 10+


def test_turned_label_keeps_the_centroid_and_a_scaled_rotation():
    from ddfa_train import rerender

    rng = np.random.default_rng(8)
    face = random_face(rng)
    param = random_params(rng, 1, np.zeros(62), np.r_[np.zeros(12), np.full(50, 1.0)])[0]
    turned = rerender.turn_param(param, face, 12.0, -6.0)

    def centroid(p):
        return p[:12].reshape(3, 4)[:, :3] @ face.vertices(p[12:52], p[52:62]).mean(axis=0) + p[:12].reshape(3, 4)[:, 3]
    np.testing.assert_allclose(centroid(turned), centroid(param), atol=1e-6 * np.abs(centroid(param)).max())
    block, original = turned[:12].reshape(3, 4)[:, :3], param[:12].reshape(3, 4)[:, :3]
    np.testing.assert_allclose(block @ block.T, original @ original.T, rtol=1e-9, atol=1e-15)
    angle = np.degrees(np.arccos((np.trace(block @ np.linalg.inv(original)) - 1) / 2))
    a, b = np.cos(np.radians(12.0)), np.cos(np.radians(6.0))
    assert angle == pytest.approx(np.degrees(np.arccos((a + b + a * b - 1) / 2)), abs=1e-6)  # Rx(6) Ry(12)


def test_rerender_without_a_turn_keeps_the_image_and_a_turn_moves_the_face(models_dir, shared_dir):
    """Re-rendering at 0 degrees changes (almost) nothing; at 15 degrees the stock regressor
    reads the turned label from the re-rendered crop within a few pixels."""
    import cv2

    from ddfa_blender.core.engine import CaptureOptions, build_tracker
    from ddfa_blender.core.sources import Frame
    from ddfa_train import rerender

    image = cv2.imread(str(shared_dir / "data/images/JianzhuGuo.jpg"))
    observation = build_tracker(CaptureOptions(models_dir=str(models_dir))).step(Frame(0, 0.0, image))[0]
    context = cv2.warpAffine(image, context_affine(observation.roi), (CONTEXT_SIZE, CONTEXT_SIZE), flags=cv2.INTER_LINEAR)
    face, _ = _face_and_stats(models_dir)
    same, param = rerender.rerender(context, observation.param, face, 0.0, 0.0)
    np.testing.assert_allclose(param, observation.param, atol=1e-9)
    assert np.abs(same.astype(int) - context.astype(int)).mean() < 3.0
    regressor = Regressor(str(models_dir / "mb05_120x120.onnx"))
    errors = {}
    for yaw in (-15.0, 15.0):
        turned_image, turned = rerender.rerender(context, observation.param, face, yaw, 0.0)
        crop = synthesis.render_move(turned_image, np.eye(2), np.zeros(2))
        predicted = landmarks_crop(face, regressor.predict(crop[None]).param)[0, :, :2]
        errors[yaw] = (
            np.linalg.norm(predicted - landmarks_crop(face, turned[None])[0, :, :2], axis=-1).mean(),
            np.linalg.norm(predicted - landmarks_crop(face, observation.param[None])[0, :, :2], axis=-1).mean(),
        )
    for to_turned, to_original in errors.values():
        assert to_turned < 3.0 and to_turned < to_original, errors
