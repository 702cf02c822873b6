"""The 3DDFA-V2 MobileNet-V1 regressor as a trainable PyTorch module.

Same network as :mod:`ddfa_blender.core.mobilenet_onnx` describes (widen
factor 0.5 or 1.0; conv1, 13 depthwise-separable blocks, global average pool,
heads ``fc_param`` (62) and ``fc_lm`` (136)), with batch norm kept as separate
layers so the module loads and returns the checkpoint's own state dict (names
without ``module.``). Input: BGR crops as ``(pixel - 127.5) / 128``, float32
(B, 3, 120, 120); outputs the raw (normalised) parameters (B, 62) and the
landmark head (B, 136), x row then y row, crop px = 60 * v + 60.

Fine-tuning keeps the stock batch-norm statistics (the layers stay in eval
mode: a few hundred frames of one performer must not redefine them), so the
trained weights fold into the same ONNX graph as the stock model.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ddfa_blender.core.mobilenet_onnx import BASE_CONV1_CHANNELS, BLOCKS, BN_EPS, N_LMK, N_PARAM, widen_factor


class _SeparableBlock(nn.Module):
    """3x3 depthwise conv + BN + ReLU, then 1x1 conv + BN + ReLU."""

    def __init__(self, channels: int, out: int, stride: int):
        super().__init__()
        self.conv_dw = nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False)
        self.bn_dw = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.conv_sep = nn.Conv2d(channels, out, 1, 1, 0, bias=False)
        self.bn_sep = nn.BatchNorm2d(out, eps=BN_EPS)

    def forward(self, x):
        x = torch.relu(self.bn_dw(self.conv_dw(x)))
        return torch.relu(self.bn_sep(self.conv_sep(x)))


class MobileNetRegressor(nn.Module):
    """The regressor at widen factor ``widen`` (0.5 or 1.0); see the module doc."""

    def __init__(self, widen: float = 0.5):
        super().__init__()
        channels = int(BASE_CONV1_CHANNELS * widen)
        self.widen = widen
        self.conv1 = nn.Conv2d(3, channels, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.block_names = []
        for name, stride, base_out in BLOCKS:
            out = int(base_out * widen)
            self.add_module(name, _SeparableBlock(channels, out, stride))
            self.block_names.append(name)
            channels = out
        self.fc_param = nn.Linear(channels, N_PARAM)
        self.fc_lm = nn.Linear(channels, N_LMK)

    def features(self, x, start: int = 0, stop: int | None = None):
        """Run stages ``start``..``stop`` (0 is conv1, 1..13 the blocks); (B, C, H, W) out."""
        stages = [lambda t: torch.relu(self.bn1(self.conv1(t)))]
        stages += [getattr(self, name) for name in self.block_names]
        for stage in stages[start:stop]:
            x = stage(x)
        return x

    def heads(self, feature_map):
        """Pool a final feature map and apply both heads: (raw param (B, 62), lmk (B, 136))."""
        pooled = feature_map.mean(dim=(2, 3))
        return self.fc_param(pooled), self.fc_lm(pooled)

    def forward(self, x):
        return self.heads(self.features(x))

    def train(self, mode: bool = True):
        """Train mode for dropout-free layers, but batch norm always uses stored statistics."""
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self


def from_state_dict(state_dict: dict) -> MobileNetRegressor:
    """A module holding a checkpoint's weights (``{name: array}``, names without ``module.``)."""
    model = MobileNetRegressor(float(widen_factor(state_dict)))
    tensors = {name: torch.from_numpy(np.array(value)) for name, value in state_dict.items()}
    model.load_state_dict(tensors, strict=True)
    return model.eval()


def to_state_dict(model: MobileNetRegressor) -> dict[str, np.ndarray]:
    """The module's weights as ``{name: array}`` in the checkpoint's layout and dtypes."""
    return {name: value.detach().cpu().numpy().copy() for name, value in model.state_dict().items()}


def normalise_crops(crops_bgr) -> torch.Tensor:
    """BGR uint8 crops (B, 120, 120, 3) as the network's input tensor (B, 3, 120, 120)."""
    crops = torch.as_tensor(np.ascontiguousarray(crops_bgr))
    return (crops.permute(0, 3, 1, 2).float() - 127.5) / 128.0


def state_dict_from_onnx(model_path) -> dict[str, np.ndarray]:
    """A checkpoint-layout state dict equivalent to a prepared regressor ``.onnx``.

    The project's graphs hold convolutions with batch norm folded in (weight and
    bias); each becomes the convolution plus an identity batch norm carrying the
    bias (``gamma = 1``, ``beta = bias``, mean 0, variance ``1 - eps``), which
    folds back to the same graph.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(model_path)).graph
    tensors = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    state = {}

    def conv(conv_name: str, bn_name: str) -> None:
        bias = tensors[f"{conv_name}.bias"].astype(np.float32)
        state[f"{conv_name}.weight"] = tensors[f"{conv_name}.weight"].astype(np.float32)
        state[f"{bn_name}.weight"] = np.ones_like(bias)
        state[f"{bn_name}.bias"] = bias
        state[f"{bn_name}.running_mean"] = np.zeros_like(bias)
        state[f"{bn_name}.running_var"] = np.full_like(bias, 1.0 - BN_EPS)
        state[f"{bn_name}.num_batches_tracked"] = np.array(0, dtype=np.int64)

    conv("conv1", "bn1")
    for name, _stride, _out in BLOCKS:
        conv(f"{name}.conv_dw", f"{name}.bn_dw")
        conv(f"{name}.conv_sep", f"{name}.bn_sep")
    for head in ("fc_param", "fc_lm"):
        state[f"{head}.weight"] = tensors[f"{head}.weight"].astype(np.float32)
        state[f"{head}.bias"] = tensors[f"{head}.bias"].astype(np.float32)
    return state
