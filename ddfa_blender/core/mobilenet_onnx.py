"""Build the 3DDFA-V2 MobileNet-V1 regressor as an ONNX graph from its state dict.

The network (widen factor w = 0.5 or 1.0): ``conv1`` 3x3 stride 2 (3 -> 32w) +
BN + ReLU, then 13 depthwise-separable blocks (3x3 depthwise conv + BN + ReLU,
1x1 conv + BN + ReLU), global average pooling and two linear heads on the pooled
features: ``fc_param`` (62 raw 3DMM parameters) and ``fc_lm`` (136 raw landmark
values). Batch norm is folded into the preceding convolution, so the graph is
only Conv, Relu, GlobalAveragePool, Flatten and Gemm.

Graph contract: input ``input`` float32 (B, 3, 120, 120), a BGR crop as
``(pixel - 127.5) / 128`` in NCHW, dynamic batch B; outputs ``param`` (B, 62)
before de-normalisation (``param = raw * std + mean``) and ``lmk`` (B, 136),
x row then y row, ``pt = 60 * lmk + 60`` in crop pixels. The metadata props
carry ``param_mean``, ``param_std`` (JSON lists of 62 floats), ``widen_factor``,
``input_size`` and ``source_sha256`` (of the checkpoint).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import CaptureError

OPSET = 13
IR_VERSION = 8  # the oldest IR that opset 13 allows: loads in older onnxruntime builds
INPUT_SIZE = 120
BN_EPS = 1e-5  # PyTorch's BatchNorm2d default, used by the upstream network
N_PARAM = 62
N_LMK = 136
BASE_CONV1_CHANNELS = 32
WIDEN_BY_CONV1 = {16: "0.5", 32: "1.0"}

# (block name, stride, output channels at widen factor 1.0), in network order.
BLOCKS = (
    ("dw2_1", 1, 64),
    ("dw2_2", 2, 128),
    ("dw3_1", 1, 128),
    ("dw3_2", 2, 256),
    ("dw4_1", 1, 256),
    ("dw4_2", 2, 512),
    ("dw5_1", 1, 512),
    ("dw5_2", 1, 512),
    ("dw5_3", 1, 512),
    ("dw5_4", 1, 512),
    ("dw5_5", 1, 512),
    ("dw5_6", 2, 1024),
    ("dw6", 1, 1024),
)


def widen_factor(state_dict: dict) -> str:
    """The widen factor ("0.5" or "1.0") read from ``conv1``'s output channels."""
    weight = state_dict.get("conv1.weight")
    channels = None if weight is None else weight.shape[0]
    if channels not in WIDEN_BY_CONV1:
        raise CaptureError(
            f"the checkpoint is not a 3DDFA-V2 MobileNet (conv1 has {channels} output channels, "
            "expected 16 or 32): use mb05_120x120.pth or mb1_120x120.pth"
        )
    return WIDEN_BY_CONV1[channels]


def fold_batch_norm(state_dict: dict, conv: str, bn: str) -> tuple[np.ndarray, np.ndarray]:
    """Weight and bias of convolution ``conv`` with batch norm ``bn`` folded in (float32).

    ``y = gamma * (conv(x) - mean) / sqrt(var + eps) + beta`` becomes a convolution
    with weight ``w * s`` and bias ``beta - mean * s`` where ``s = gamma / sqrt(var + eps)``.
    """
    weight = _tensor(state_dict, f"{conv}.weight").astype(np.float64)
    for name in ("weight", "bias", "running_mean", "running_var"):
        _check_shape(state_dict, f"{bn}.{name}", weight.shape[:1])
    gamma, beta, mean, var = (
        state_dict[f"{bn}.{name}"].astype(np.float64)
        for name in ("weight", "bias", "running_mean", "running_var")
    )
    scale = gamma / np.sqrt(var + BN_EPS)
    folded_weight = weight * scale[:, None, None, None]
    folded_bias = beta - mean * scale
    return folded_weight.astype(np.float32), folded_bias.astype(np.float32)


def build_model(state_dict: dict, param_mean, param_std, source_sha256: str) -> onnx.ModelProto:
    """The ONNX model of a 3DDFA-V2 MobileNet state dict (names without ``module.``).

    ``param_mean`` and ``param_std`` are the 62 de-normalisation constants;
    ``source_sha256`` identifies the checkpoint. Raises CaptureError when a tensor
    is missing or has the wrong shape for the detected widen factor.
    """
    widen = widen_factor(state_dict)
    scale = float(widen)
    builder = _GraphBuilder(state_dict)
    channels = int(BASE_CONV1_CHANNELS * scale)
    x = builder.conv_bn_relu("input", "conv1", "bn1", (channels, 3, 3, 3), stride=2, groups=1)
    for name, stride, base_out in BLOCKS:
        out = int(base_out * scale)
        x = builder.conv_bn_relu(
            x, f"{name}.conv_dw", f"{name}.bn_dw", (channels, 1, 3, 3), stride, channels
        )
        x = builder.conv_bn_relu(
            x, f"{name}.conv_sep", f"{name}.bn_sep", (out, channels, 1, 1), 1, 1
        )
        channels = out
    builder.node("GlobalAveragePool", [x], "pooled")
    builder.node("Flatten", ["pooled"], "features", axis=1)
    builder.linear("features", "fc_param", "param", (N_PARAM, channels))
    builder.linear("features", "fc_lm", "lmk", (N_LMK, channels))

    graph = helper.make_graph(
        builder.nodes,
        "ddfa_mobilenet_v1",
        inputs=[
            helper.make_tensor_value_info(
                "input", TensorProto.FLOAT, ["batch", 3, INPUT_SIZE, INPUT_SIZE]
            )
        ],
        outputs=[
            helper.make_tensor_value_info("param", TensorProto.FLOAT, ["batch", N_PARAM]),
            helper.make_tensor_value_info("lmk", TensorProto.FLOAT, ["batch", N_LMK]),
        ],
        initializer=builder.initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ddfa-blender"
    )
    model.ir_version = IR_VERSION
    helper.set_model_props(
        model,
        {
            "param_mean": json.dumps(_vector(param_mean, "param_mean")),
            "param_std": json.dumps(_vector(param_std, "param_std")),
            "widen_factor": widen,
            "input_size": str(INPUT_SIZE),
            "source_sha256": source_sha256,
        },
    )
    onnx.checker.check_model(model)
    return model


class _GraphBuilder:
    """Accumulates nodes and initializers while walking the network."""

    def __init__(self, state_dict: dict):
        self.state_dict = state_dict
        self.nodes: list = []
        self.initializers: list = []

    def node(self, op: str, inputs: list, output: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def constant(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(
            numpy_helper.from_array(np.ascontiguousarray(array, np.float32), name)
        )
        return name

    def conv_bn_relu(
        self, x: str, conv: str, bn: str, shape: tuple, stride: int, groups: int
    ) -> str:
        _check_shape(self.state_dict, f"{conv}.weight", shape)
        weight, bias = fold_batch_norm(self.state_dict, conv, bn)
        pad = shape[2] // 2
        conv_out = self.node(
            "Conv",
            [x, self.constant(f"{conv}.weight", weight), self.constant(f"{conv}.bias", bias)],
            conv,
            kernel_shape=list(shape[2:]),
            strides=[stride, stride],
            pads=[pad] * 4,
            group=groups,
        )
        return self.node("Relu", [conv_out], f"{conv}.relu")

    def linear(self, x: str, name: str, output: str, shape: tuple) -> str:
        _check_shape(self.state_dict, f"{name}.weight", shape)
        _check_shape(self.state_dict, f"{name}.bias", shape[:1])
        weight = self.constant(f"{name}.weight", self.state_dict[f"{name}.weight"])
        bias = self.constant(f"{name}.bias", self.state_dict[f"{name}.bias"])
        return self.node("Gemm", [x, weight, bias], output, transB=1)


def _tensor(state_dict: dict, name: str) -> np.ndarray:
    if name not in state_dict:
        raise CaptureError(
            f"the checkpoint lacks {name}: it is not a 3DDFA-V2 MobileNet, "
            "use the upstream weights"
        )
    return np.asarray(state_dict[name])


def _check_shape(state_dict: dict, name: str, shape: tuple) -> None:
    actual = _tensor(state_dict, name).shape
    if tuple(actual) != tuple(shape):
        raise CaptureError(
            f"the checkpoint's {name} has shape {tuple(actual)}, expected {tuple(shape)}: "
            "it is not a 3DDFA-V2 MobileNet, use the upstream weights"
        )


def _vector(values, name: str) -> list[float]:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.shape != (N_PARAM,):
        raise CaptureError(
            f"{name} has {array.size} values, expected {N_PARAM}: "
            "use the upstream param_mean_std file"
        )
    return [float(v) for v in array]
