"""Run an ``.onnx`` emotion model through onnxruntime (the ``jetson`` extra), like ``TFLiteRunner``.

ONNX exports from tf2onnx keep Keras' NHWC layout and float inputs, so that is what this expects.
The feredge metadata travels in the model's ``metadata_props['feredge']``.

Execution providers are taken best first from those this onnxruntime build reports as available:
TensorRT, then CUDA (a Jetson's onnxruntime-gpu), then the CPU. ``runner.provider`` names the one
the session actually runs on (onnxruntime falls back to the next one when a provider cannot start).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from feredge.edge.errors import ModelLoadError
from feredge.edge.metadata import METADATA_KEY
from feredge.edge.tflite_runner import run_in_fixed_batches

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
log = logging.getLogger(__name__)
_FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def choose_providers(available: list[str]) -> list[str]:
    """The preferred execution providers that are available, best first (the CPU at least)."""
    return [p for p in PREFERRED_PROVIDERS if p in available] or ["CPUExecutionProvider"]


class OnnxRunner:
    """One onnxruntime session fed float32 NHWC batches; returns float32 (N, K) outputs.

    onnxruntime sessions are safe to run from several threads, so unlike ``TFLiteRunner`` no lock.
    """

    def __init__(self, path: Path, threads: int) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            hint = "pip install 'feredge[jetson]'"
            raise ModelLoadError(f"{path}: ONNX models need onnxruntime ({hint})") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: its warnings (unused initializers, ...) are not the user's
        providers = choose_providers(ort.get_available_providers())
        try:
            self._session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime's errors share no base class below Exception
            raise ModelLoadError(f"{path}: not a valid ONNX model ({exc})") from exc
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelLoadError(f"{path}: expected one input and one output, found {len(inputs)} and {len(outputs)}")
        self.backend = "onnxruntime"  # the pip package, as for TFLiteRunner
        self.provider: str = self._session.get_providers()[0]
        log.debug("%s: onnxruntime runs it on %s (asked for %s)", path, self.provider, ", ".join(providers))
        self._input_name = inputs[0].name
        self._dtype = _FLOAT_TYPES.get(inputs[0].type)
        shape = inputs[0].shape
        dims = shape[1:]
        if self._dtype is None or len(shape) != 4 or not all(isinstance(d, int) for d in dims):
            raise ModelLoadError(f"{path}: expected a float NHWC input of fixed size, got {inputs[0].type} {shape}")
        self.input_shape: tuple[int, int, int] = (dims[0], dims[1], dims[2])
        self.num_outputs = int(np.prod([d for d in outputs[0].shape[1:] if isinstance(d, int)]))
        self.resizable = not isinstance(shape[0], int)
        self.allocated_batch = shape[0] if isinstance(shape[0], int) else 0
        self.metadata_json: str | None = self._session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N, H, W, C) -> float32 (N, K); a fixed-batch model runs in chunks of its batch."""
        if self.resizable:
            return self._invoke(batch)
        return run_in_fixed_batches(self._invoke, batch, self.allocated_batch)

    def _invoke(self, batch: np.ndarray) -> np.ndarray:
        (out,) = self._session.run(None, {self._input_name: batch.astype(self._dtype, copy=False)})
        return np.asarray(out, np.float32).reshape(len(batch), -1)
