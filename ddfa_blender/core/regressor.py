"""The 3DDFA-V2 regressor: an ONNX MobileNet run with onnxruntime."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from .errors import CaptureError

MODEL_FILES = {"mb05": "mb05_120x120.onnx", "mb1": "mb1_120x120.onnx"}
FIX_COMMAND = "python scripts/fetch_models.py"


def resolve_model(model: str, models_dir) -> str:
    """Path of a regressor given by name (``mb05``, ``mb1``) or as a path to an ``.onnx``."""
    if model in MODEL_FILES:
        path = os.path.join(str(models_dir), MODEL_FILES[model])
        if not os.path.isfile(path):
            raise CaptureError(
                f"Model {model} is not prepared in {models_dir}: run `{FIX_COMMAND}`"
                + (" (mb1 needs upstream's weights/mb1_120x120.pth, see --from)." if model == "mb1" else ".")
            )
        return path
    if model.endswith(".onnx"):
        if not os.path.isfile(model):
            raise CaptureError(f"Model file not found: {model}.")
        return model
    raise CaptureError(f"Unknown model '{model}': use mb05, mb1 or a path to an .onnx file.")


@dataclasses.dataclass
class Regression:
    """Regressor outputs for a batch of B crops.

    ``param``: (B, 62) de-normalised parameters (crop frame, see :mod:`.take`).
    ``raw_param``: (B, 62) network output before de-normalisation.
    ``raw_lmk``: (B, 136) the landmark head (x row then y row, crop px = 60 * v + 60).
    """

    param: np.ndarray
    raw_param: np.ndarray
    raw_lmk: np.ndarray


class Regressor:
    """Runs the 3DDFA-V2 network on face crops.

    ``session`` may be any object with onnxruntime's ``InferenceSession``
    interface (injectable for tests); otherwise one is created on the CPU with
    ``threads`` intra-op threads (None: onnxruntime's default).
    """

    def __init__(self, model_path: str, threads: int | None = None, session=None):
        self.model_path = str(model_path)
        if session is None:
            session = _create_session(self.model_path, threads)
        self.session = session
        metadata = session.get_modelmeta().custom_metadata_map
        try:
            self.param_mean = np.asarray(json.loads(metadata["param_mean"]), dtype=np.float32)
            self.param_std = np.asarray(json.loads(metadata["param_std"]), dtype=np.float32)
        except (KeyError, ValueError) as err:
            raise CaptureError(
                f"{self.model_path} lacks the parameter statistics of a prepared model; "
                f"run `{FIX_COMMAND}` to convert it again."
            ) from err
        model_input = session.get_inputs()[0]
        self.input_name = model_input.name
        self.input_size = int(model_input.shape[2])
        self.output_names = [output.name for output in session.get_outputs()]
        self.name = os.path.splitext(os.path.basename(self.model_path))[0]

    def predict(self, crops_bgr: np.ndarray) -> Regression:
        """Regress parameters for crops: BGR, uint8, 0-255, (B, size, size, 3)."""
        crops = np.asarray(crops_bgr)
        if crops.ndim != 4 or crops.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"expected (B, {self.input_size}, {self.input_size}, 3) crops, got {crops.shape}")
        batch = (crops.transpose(0, 3, 1, 2).astype(np.float32) - 127.5) * (1.0 / 128.0)
        outputs = dict(zip(self.output_names, self.session.run(None, {self.input_name: batch})))
        raw_param = outputs["param"]
        return Regression(raw_param * self.param_std + self.param_mean, raw_param, outputs["lmk"])


def _create_session(model_path: str, threads: int | None):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        return onnxruntime.InferenceSession(
            model_path, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as err:  # onnxruntime raises its own exception types for bad files
        raise CaptureError(
            f"Model {model_path} cannot be loaded ({str(err).splitlines()[0][:200]}); "
            f"it may be corrupt: run `{FIX_COMMAND} --force`."
        ) from err
