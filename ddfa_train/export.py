"""Export an adapted regressor to ONNX in the stock layout, checked like the stock model.

The graph is built by the project's own converter
(:func:`ddfa_blender.core.mobilenet_onnx.build_model`) from the trained state
dict, so the adapted model has the stock model's input, outputs, metadata and
operators; adaptation adds the metadata key ``adaptation`` (JSON: what it was
adapted on). :func:`check_model` repeats the checks the stock conversion is
held to, plus numerical agreement with the trained PyTorch module and the
agreement of the two heads on the performer's own crops. The file is written
to a temporary name beside the output, checked there, and renamed only when
it passes.
"""

from __future__ import annotations

import json
import os
import secrets

import numpy as np
import onnx
import torch

from ddfa_blender.core import mobilenet_onnx
from ddfa_blender.core.errors import CaptureError
from ddfa_blender.core.reconstruct import landmarks_crop, network_landmarks_crop
from ddfa_blender.core.regressor import Regressor

from .mobilenet import MobileNetRegressor, normalise_crops, to_state_dict

ALLOWED_OPS = {"Conv", "Relu", "GlobalAveragePool", "Flatten", "Gemm"}
TORCH_TOLERANCE = 1e-3  # as the golden outputs of the stock conversion
MAX_MEDIAN_HEADS_PX = 1.0  # the tracker starts a face only below this agreement


def base_metadata(model_path) -> dict[str, str]:
    """The metadata props of a prepared regressor ``.onnx``."""
    return {p.key: p.value for p in onnx.load(str(model_path)).metadata_props}


def build(model: MobileNetRegressor, base_props: dict, adaptation: dict) -> onnx.ModelProto:
    """The ONNX graph of ``model`` with the base model's statistics and an ``adaptation`` note."""
    onnx_model = mobilenet_onnx.build_model(
        to_state_dict(model),
        json.loads(base_props["param_mean"]),
        json.loads(base_props["param_std"]),
        base_props.get("source_sha256", ""),
    )
    entry = onnx_model.metadata_props.add()
    entry.key, entry.value = "adaptation", json.dumps(adaptation, sort_keys=True)
    return onnx_model


def check_model(path, model: MobileNetRegressor, crops_bgr: np.ndarray, face) -> dict:
    """Check an exported file; returns figures, raises CaptureError naming the failed check.

    ``crops_bgr``: (B, 120, 120, 3) BGR uint8 crops of the performer; ``face``: the FaceModel.
    """
    onnx_model = onnx.load(str(path))
    onnx.checker.check_model(onnx_model)
    ops = {node.op_type for node in onnx_model.graph.node}
    props = {p.key: p.value for p in onnx_model.metadata_props}
    problems = []
    if not ops <= ALLOWED_OPS:
        problems.append(f"unexpected operators {sorted(ops - ALLOWED_OPS)}")
    if max(o.version for o in onnx_model.opset_import) > mobilenet_onnx.OPSET:
        problems.append("opset newer than the stock model's")
    dim = onnx_model.graph.input[0].type.tensor_type.shape.dim[0]
    if not dim.dim_param:
        problems.append("batch dimension is not dynamic")
    for key in ("param_mean", "param_std", "widen_factor", "input_size"):
        if key not in props:
            problems.append(f"metadata {key} missing")
    regressor = Regressor(str(path), threads=1)
    out = regressor.predict(crops_bgr)
    if out.raw_param.shape != (len(crops_bgr), 62) or out.raw_lmk.shape != (len(crops_bgr), 136):
        problems.append("outputs have the wrong shape")
    with torch.no_grad():
        raw, raw_lmk = model(normalise_crops(crops_bgr))
    difference = max(np.abs(out.raw_param - raw.numpy()).max(), np.abs(out.raw_lmk - raw_lmk.numpy()).max())
    if not difference <= TORCH_TOLERANCE:
        problems.append(f"ONNX differs from the trained network by {difference:.2g}")
    heads = np.linalg.norm(
        landmarks_crop(face, out.param)[..., :2] - network_landmarks_crop(out.raw_lmk), axis=-1
    ).mean(axis=-1)
    if not np.median(heads) <= MAX_MEDIAN_HEADS_PX:
        problems.append(f"its two heads disagree by {np.median(heads):.2f} px (median)")
    if problems:
        raise CaptureError(f"The adapted model failed its checks ({'; '.join(problems)}): nothing was written.")
    return {"max_abs_vs_torch": float(difference), "heads_px_median": float(np.median(heads))}


def write_checked(output, onnx_model: onnx.ModelProto, model, crops_bgr, face) -> dict:
    """Write ``onnx_model`` to ``output`` atomically, only if :func:`check_model` passes."""
    output = os.fspath(output)
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise CaptureError(f"Cannot write {output}: folder {folder} does not exist.")
    temporary = os.path.join(folder, f".{os.path.basename(output)}.{secrets.token_hex(4)}.part")
    try:
        with open(temporary, "xb") as file:
            file.write(onnx_model.SerializeToString())
        figures = check_model(temporary, model, crops_bgr, face)
        os.replace(temporary, output)
    except OSError as err:
        raise CaptureError(f"Cannot write {output}: {err.strerror}.") from err
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return figures
