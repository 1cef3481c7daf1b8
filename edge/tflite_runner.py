"""Find a TFLite interpreter and run it on float32 batches, hiding quantization and batch sizes.

The fallback chain prefers ai-edge-litert (XNNPACK is its default delegate, and it has wheels for
the Pi and the Jetson), then the legacy tflite-runtime, then TensorFlow's own interpreter, which is
imported only when nothing lighter is installed.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from feredge.edge.errors import ModelLoadError
from feredge.edge.quiet import library_messages

# (module holding ``Interpreter``, pip package that provides it), best first.
INTERPRETER_CHAIN = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
    ("tensorflow.lite.python.interpreter", "tensorflow"),
)


def interpreter_class() -> tuple[type, str]:
    """The first importable ``Interpreter`` class of the chain and the pip package it came from."""
    for module_name, package in INTERPRETER_CHAIN:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        return module.Interpreter, package
    raise ModelLoadError("no TFLite interpreter is installed: pip install ai-edge-litert")


def create_interpreter(model: bytes, threads: int, name: str) -> tuple[Any, str]:
    """An allocated interpreter for ``model`` and its pip package; failures become ModelLoadError.

    What the runtime prints meanwhile ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on
    every run, "ERROR: ..." lines before a failure) is kept off stderr; an error's line joins the message.
    """
    cls, package = interpreter_class()
    try:
        with library_messages() as messages:
            interpreter = cls(model_content=model, num_threads=threads)
            interpreter.allocate_tensors()
    except SystemError as exc:
        # tflite-runtime 2.14 was built against numpy 1.x and fails this way under numpy>=2.
        if package == "tflite-runtime" and int(np.__version__.split(".")[0]) >= 2:
            raise ModelLoadError(
                f"tflite-runtime needs numpy<2; install ai-edge-litert instead "
                f"(pip install ai-edge-litert; numpy {np.__version__} is installed)"
            ) from exc
        raise ModelLoadError(f"{name}: {package} cannot create an interpreter: {exc}") from exc
    except (ValueError, RuntimeError) as exc:
        reason = _first_line(exc)
        printed = messages.reason()
        if printed and printed not in reason:
            reason = f"{reason}: {printed}"
        raise ModelLoadError(f"{name}: not a valid TFLite model ({reason})") from exc
    return interpreter, package


class TFLiteRunner:
    """One TFLite model fed float32 NHWC batches; returns float32 (N, K) outputs.

    Integer inputs are quantized and integer outputs dequantized with the tensors' own scale and zero
    point. A model with a dynamic batch dimension is resized to the batch size, which stays allocated
    until a batch of another size arrives; a model with a fixed batch is run in chunks of that size.
    Calls are serialized with a lock because one interpreter must not be invoked from two threads.
    """

    def __init__(self, model: bytes, threads: int, name: str = "model") -> None:
        self.name = name
        self._interpreter, self.backend = create_interpreter(model, threads, name)
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelLoadError(
                f"{name}: expected one input and one output tensor, found {len(inputs)} and {len(outputs)}"
            )
        self._input, self._output = inputs[0], outputs[0]
        shape = [int(d) for d in self._input["shape"]]
        if len(shape) != 4:
            raise ModelLoadError(f"{name}: expected an NHWC image input, got input shape {shape}")
        self.input_shape: tuple[int, int, int] = (shape[1], shape[2], shape[3])
        self.num_outputs = int(np.prod(self._output["shape"][1:]))
        self.allocated_batch = shape[0]
        self.resizable = int(self._input["shape_signature"][0]) == -1
        self._lock = threading.Lock()

    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N, H, W, C) -> float32 (N, K), in one invoke when the model can be resized."""
        n = len(batch)
        with self._lock:
            if self.resizable and n != self.allocated_batch:
                self._resize(n)
            if self.resizable:
                return self._invoke(batch)
            return run_in_fixed_batches(self._invoke, batch, self.allocated_batch)

    def _resize(self, n: int) -> None:
        index = self._input["index"]
        try:
            self._interpreter.resize_tensor_input(index, [n, *self.input_shape])
            self._interpreter.allocate_tensors()
            self.allocated_batch = n
        except (ValueError, RuntimeError):
            self.resizable = False
            self._interpreter.resize_tensor_input(index, [self.allocated_batch, *self.input_shape])
            self._interpreter.allocate_tensors()

    def _invoke(self, batch: np.ndarray) -> np.ndarray:
        self._interpreter.set_tensor(self._input["index"], _quantize(batch, self._input))
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._output["index"])
        return _dequantize(raw, self._output).reshape(len(batch), -1)


def _first_line(exc: Exception) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def run_in_fixed_batches(invoke: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, size: int) -> np.ndarray:
    """Run a model whose batch dimension is fixed at ``size``, zero-padding the last chunk."""
    outputs = []
    for start in range(0, len(batch), size):
        chunk = batch[start : start + size]
        padded = np.zeros((size, *batch.shape[1:]), np.float32)
        padded[: len(chunk)] = chunk
        outputs.append(invoke(padded)[: len(chunk)])
    return np.concatenate(outputs)


def _quantize(batch: np.ndarray, details: dict) -> np.ndarray:
    dtype = np.dtype(details["dtype"])
    scale, zero_point = details["quantization"]
    if dtype.kind in "iu" and scale:
        info = np.iinfo(dtype)
        return np.clip(np.round(batch / scale + zero_point), info.min, info.max).astype(dtype)
    return batch.astype(dtype, copy=False)


def _dequantize(values: np.ndarray, details: dict) -> np.ndarray:
    scale, zero_point = details["quantization"]
    if values.dtype.kind in "iu" and scale:
        return (values.astype(np.float32) - zero_point) * np.float32(scale)
    return values.astype(np.float32, copy=False)
