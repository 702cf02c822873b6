"""The .pth reader, the MAT reader and the MobileNet-to-ONNX conversion, without torch."""

import collections
import json
import pickle
import struct
import sys
import types

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from ddfa_blender.core import mobilenet_onnx
from ddfa_blender.core.errors import CaptureError
from ddfa_blender.core.matfile import read_mat
from ddfa_blender.core.torch_pickle import LEGACY_MAGIC, LEGACY_PROTOCOL, read_state_dict

ASSETS = "assets/3ddfa_v2"


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def mb05(shared_dir):
    """The real half-width state dict and its de-normalisation constants."""
    with open(shared_dir / ASSETS / "param_mean_std_62d_120x120.pkl", "rb") as file:
        mean_std = pickle.load(file)
    return read_state_dict(shared_dir / ASSETS / "mb05_120x120.pth"), mean_std


# --- golden: the converted mb05 reproduces the reference PyTorch outputs ----------------


def test_mb05_conversion_matches_golden_outputs(mb05, shared_dir):
    state_dict, mean_std = mb05
    model = mobilenet_onnx.build_model(state_dict, mean_std["mean"], mean_std["std"], "0" * 64)
    golden = np.load(shared_dir / "data/golden/mb05_params.npz")
    crops = golden["crops_bgr_uint8"].astype(np.float32)
    batch = ((crops - 127.5) / 128.0).transpose(0, 3, 1, 2)
    param, lmk = _session(model).run(["param", "lmk"], {"input": batch})
    assert param.shape == (12, 62) and lmk.shape == (12, 136)
    np.testing.assert_allclose(param, golden["raw_param"], rtol=0, atol=1e-3)
    np.testing.assert_allclose(lmk, golden["raw_lmk"], rtol=0, atol=1e-3)


def test_mb05_metadata_and_graph(mb05):
    state_dict, mean_std = mb05
    model = mobilenet_onnx.build_model(state_dict, mean_std["mean"], mean_std["std"], "ab" * 32)
    props = {prop.key: prop.value for prop in model.metadata_props}
    assert props["widen_factor"] == "0.5" and props["input_size"] == "120"
    assert props["source_sha256"] == "ab" * 32
    np.testing.assert_allclose(
        np.array(json.loads(props["param_std"])), mean_std["std"], rtol=1e-6
    )
    ops = {node.op_type for node in model.graph.node}
    assert "BatchNormalization" not in ops
    assert max(opset.version for opset in model.opset_import) <= 13
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.HasField("dim_value")


def test_reader_strips_module_prefix(mb05):
    state_dict, _ = mb05
    assert len(state_dict) == 166
    assert all(not name.startswith("module.") for name in state_dict)
    assert state_dict["conv1.weight"].shape == (16, 3, 3, 3)
    assert state_dict["bn1.num_batches_tracked"].dtype == np.int64


# --- width 1.0: synthetic checkpoint, folded graph versus an unfolded numpy forward -------


def _synthetic_state_dict(rng, widen: float) -> dict:
    """Random weights with the upstream key names and shapes for ``widen``."""
    sd = {}

    def conv_bn(conv, bn, shape):
        fan_in = shape[1] * shape[2] * shape[3]
        sd[f"{conv}.weight"] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(
            np.float32
        )
        out = shape[0]
        sd[f"{bn}.weight"] = rng.uniform(0.5, 1.5, out).astype(np.float32)
        sd[f"{bn}.bias"] = rng.normal(0, 0.1, out).astype(np.float32)
        sd[f"{bn}.running_mean"] = rng.normal(0, 0.1, out).astype(np.float32)
        sd[f"{bn}.running_var"] = rng.uniform(0.5, 2.0, out).astype(np.float32)
        sd[f"{bn}.num_batches_tracked"] = np.array(1000, dtype=np.int64)

    channels = int(32 * widen)
    conv_bn("conv1", "bn1", (channels, 3, 3, 3))
    for name, _stride, base_out in mobilenet_onnx.BLOCKS:
        out = int(base_out * widen)
        conv_bn(f"{name}.conv_dw", f"{name}.bn_dw", (channels, 1, 3, 3))
        conv_bn(f"{name}.conv_sep", f"{name}.bn_sep", (out, channels, 1, 1))
        channels = out
    for head, n in (("fc_param", 62), ("fc_lm", 136)):
        sd[f"{head}.weight"] = (rng.standard_normal((n, channels)) / np.sqrt(channels)).astype(
            np.float32
        )
        sd[f"{head}.bias"] = rng.normal(0, 0.1, n).astype(np.float32)
    return sd


def _conv3x3(x, weight, stride, depthwise):
    """Plain 3x3 convolution, padding 1, float64: (B, C, H, W) -> (B, O, H', W')."""
    _, _, height, width = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out_h, out_w = (height - 1) // stride + 1, (width - 1) // stride + 1
    out = 0.0
    for i in range(3):
        for j in range(3):
            patch = padded[
                :,
                :,
                i : i + stride * (out_h - 1) + 1 : stride,
                j : j + stride * (out_w - 1) + 1 : stride,
            ]
            if depthwise:
                out = out + patch * weight[:, 0, i, j][None, :, None, None]
            else:
                out = out + np.einsum("bchw,oc->bohw", patch, weight[:, :, i, j])
    return out


def _bn_relu(x, sd, bn):
    shape = (1, -1, 1, 1)
    normed = (x - sd[f"{bn}.running_mean"].reshape(shape)) / np.sqrt(
        sd[f"{bn}.running_var"].reshape(shape) + 1e-5
    )
    return np.maximum(
        normed * sd[f"{bn}.weight"].reshape(shape) + sd[f"{bn}.bias"].reshape(shape), 0.0
    )


def _reference_forward(sd, x):
    """The unfolded network (conv, then batch norm, then ReLU) in float64 numpy."""
    sd = {k: v.astype(np.float64) for k, v in sd.items()}
    x = _bn_relu(_conv3x3(x.astype(np.float64), sd["conv1.weight"], 2, False), sd, "bn1")
    for name, stride, _ in mobilenet_onnx.BLOCKS:
        x = _bn_relu(_conv3x3(x, sd[f"{name}.conv_dw.weight"], stride, True), sd, f"{name}.bn_dw")
        x = _bn_relu(
            np.einsum("bchw,oc->bohw", x, sd[f"{name}.conv_sep.weight"][:, :, 0, 0]),
            sd,
            f"{name}.bn_sep",
        )
    features = x.mean(axis=(2, 3))
    return (
        features @ sd["fc_param.weight"].T + sd["fc_param.bias"],
        features @ sd["fc_lm.weight"].T + sd["fc_lm.bias"],
    )


def _write_legacy_pth(path, state_dict, monkeypatch):
    """Save ``state_dict`` in the legacy torch format (with ``module.`` prefixes), torch-free.

    Stand-in ``torch`` modules are registered only so that pickle can name
    ``torch._utils._rebuild_tensor_v2`` and ``torch.<X>Storage`` as globals.
    """
    fake_torch, fake_utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
    storage_types = {}
    for dtype, name in ((np.float32, "FloatStorage"), (np.int64, "LongStorage")):
        storage_types[np.dtype(dtype)] = type(name, (), {"__module__": "torch"})
        setattr(fake_torch, name, storage_types[np.dtype(dtype)])

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = (
        "torch._utils",
        "_rebuild_tensor_v2",
    )
    fake_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    fake_torch._utils = fake_utils
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    monkeypatch.setitem(sys.modules, "torch._utils", fake_utils)

    class StorageRef:
        def __init__(self, key, array):
            self.key, self.array = key, array

    class TensorRef:
        def __init__(self, storage):
            self.storage = storage

        def __reduce__(self):
            array = self.storage.array
            strides = tuple(s // array.itemsize for s in array.strides)
            return _rebuild_tensor_v2, (
                self.storage,
                0,
                array.shape,
                strides,
                False,
                collections.OrderedDict(),
            )

    class LegacyPickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, StorageRef):
                kind = storage_types[obj.array.dtype]
                return ("storage", kind, obj.key, "cpu", obj.array.size, None)
            return None

    storages = [
        StorageRef(str(1000 + i), np.ascontiguousarray(a))
        for i, a in enumerate(state_dict.values())
    ]
    tensors = collections.OrderedDict(
        (f"module.{name}", TensorRef(s)) for name, s in zip(state_dict, storages)
    )
    with open(path, "wb") as file:
        for header in (
            LEGACY_MAGIC,
            LEGACY_PROTOCOL,
            {"protocol_version": LEGACY_PROTOCOL, "little_endian": True},
        ):
            pickle.dump(header, file, protocol=2)
        LegacyPickler(file, protocol=2).dump({"epoch": 1, "state_dict": tensors})
        pickle.dump([s.key for s in storages], file, protocol=2)
        for storage in storages:
            file.write(struct.pack("<q", storage.array.size))
            file.write(storage.array.astype(storage.array.dtype.newbyteorder("<")).tobytes())


def test_width_one_checkpoint_folds_batch_norm_exactly(tmp_path, monkeypatch):
    rng = np.random.default_rng(7)
    original = _synthetic_state_dict(rng, 1.0)
    path = tmp_path / "mb1_synthetic.pth"
    _write_legacy_pth(path, original, monkeypatch)

    state_dict = read_state_dict(path)
    assert state_dict.keys() == original.keys()
    for name, array in original.items():
        np.testing.assert_array_equal(state_dict[name], array)
    assert mobilenet_onnx.widen_factor(state_dict) == "1.0"

    mean, std = rng.normal(size=62), rng.uniform(0.5, 2, 62)
    model = mobilenet_onnx.build_model(state_dict, mean, std, "cd" * 32)
    x = rng.uniform(-1, 1, (2, 3, 120, 120)).astype(np.float32)
    param, lmk = _session(model).run(["param", "lmk"], {"input": x})
    assert param.shape == (2, 62) and lmk.shape == (2, 136)
    ref_param, ref_lmk = _reference_forward(original, x)
    for got, ref in ((param, ref_param), (lmk, ref_lmk)):
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * np.abs(ref).max())
    props = {prop.key: prop.value for prop in model.metadata_props}
    assert props["widen_factor"] == "1.0"


def test_wrong_shape_is_refused():
    sd = _synthetic_state_dict(np.random.default_rng(1), 0.5)
    sd["dw3_1.conv_sep.weight"] = sd["dw3_1.conv_sep.weight"][:, :32]
    with pytest.raises(CaptureError, match="dw3_1.conv_sep.weight"):
        mobilenet_onnx.build_model(sd, np.zeros(62), np.ones(62), "0" * 64)


# --- corrupt inputs -------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_pth_raises_capture_error(shared_dir, tmp_path, keep):
    blob = (shared_dir / ASSETS / "mb05_120x120.pth").read_bytes()
    path = tmp_path / "mb05_cut.pth"
    path.write_bytes(blob[: int(len(blob) * keep)])
    with pytest.raises(CaptureError, match="mb05_cut.pth"):
        read_state_dict(path)


def test_pth_with_trailing_bytes_raises(shared_dir, tmp_path):
    path = tmp_path / "mb05_long.pth"
    path.write_bytes((shared_dir / ASSETS / "mb05_120x120.pth").read_bytes() + b"\0" * 8)
    with pytest.raises(CaptureError, match="left over"):
        read_state_dict(path)


def test_pth_naming_other_classes_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as file:
        for header in (LEGACY_MAGIC, LEGACY_PROTOCOL, {}):
            pickle.dump(header, file, protocol=2)
        pickle.dump({"state_dict": print}, file, protocol=2)  # names the print builtin
    with pytest.raises(CaptureError, match="print"):
        read_state_dict(path)


def test_mat_reader_reads_bfm_uv(shared_dir, tmp_path):
    uv = read_mat(shared_dir / ASSETS / "BFM_UV.mat")["UV"]
    assert uv.shape == (53215, 2)
    assert uv.min() >= 0 and uv.max() <= 1
    # column-major order: neighbouring vertices have neighbouring UVs
    assert np.median(np.abs(np.diff(uv, axis=0))) < 0.01
    cut = tmp_path / "cut.mat"
    cut.write_bytes((shared_dir / ASSETS / "BFM_UV.mat").read_bytes()[:4000])
    with pytest.raises(CaptureError, match="cut.mat"):
        read_mat(cut)
