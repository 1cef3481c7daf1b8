"""Shared fixtures: tiny generated TFLite models and images; nothing is downloaded or read from data sets."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from feredge.benchmarks.frames import draw_face
from feredge.edge.labels import FER2013
from feredge.edge.metadata import ModelMetadata

TINY_SIZE = 48


class _RawMetadata:
    """Stands in for ModelMetadata where a test needs metadata the schema would refuse (no labels)."""

    def __init__(self, data: dict) -> None:
        self._data = data

    def to_json(self) -> str:
        return json.dumps(self._data)


def _tiny_keras_model(size: int, channels: int, softmax: bool, batch_size: int | None):
    """Two 3x3 box-filter kernels, then a dense layer scoring brightness: left half -> class 0
    (angry), right half -> class 1 (disgust), every other class 0. Its answers are known in advance,
    so tests can check the runtime end to end, flip averaging included."""
    import tf_keras as keras

    inputs = keras.Input((size, size, channels), batch_size=batch_size)
    conv = keras.layers.Conv2D(2, 3, padding="same", use_bias=False)
    x = keras.layers.Flatten()(conv(inputs))
    dense = keras.layers.Dense(len(FER2013))
    x = dense(x)
    if softmax:
        x = keras.layers.Softmax()(x)
    model = keras.Model(inputs, x)
    conv.set_weights([np.full((3, 3, channels, 2), 1.0 / (9 * channels), np.float32)])
    weights = np.zeros((size, size, 2, len(FER2013)), np.float32)
    half = size // 2
    weights[:, :half, 0, 0] = 6.0 / (size * half)
    weights[:, half:, 1, 1] = 6.0 / (size * half)
    dense.set_weights([weights.reshape(-1, len(FER2013)), np.zeros(len(FER2013), np.float32)])
    return model


def _convert(model, mode: str) -> bytes:
    import warnings

    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode in ("int8", "uint8"):
        shape = (1, *model.input_shape[1:])
        rng = np.random.default_rng(0)

        def representative():
            half = shape[2] // 2
            for i in range(16):
                sample = rng.random(shape, dtype=np.float32)
                if i % 3 == 1:  # half-bright images, like the tests use, set the logits' range
                    sample[:, :, :half] = 1.0
                    sample[:, :, half:] = 0.0
                elif i % 3 == 2:
                    sample[:, :, :half] = 0.0
                    sample[:, :, half:] = 1.0
                yield [sample]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = getattr(tf, mode)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Statistics for quantized inputs", UserWarning)
        return converter.convert()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny models built once per session (about 5 s with the TensorFlow import), by name:

    - ``int8``: int8 in/out, softmax, fer2013 metadata (48x48x1, unit, margin 0.1)
    - ``uint8``: the same with uint8 in/out
    - ``int8_logits``: int8 without the final softmax
    - ``int8_flip``: ``int8`` with ``test_time_flip: true`` in its metadata
    - ``int8_fixed_batch``: ``int8`` with a batch dimension fixed at 1
    - ``float16``: float16 weights, float32 in/out, with metadata
    - ``float32_plain``: float32, 40x40x3 input, no metadata at all
    - ``no_labels``: ``int8`` whose embedded metadata has no labels
    """
    from feredge.convert.embed import embed_tflite_metadata

    out = tmp_path_factory.mktemp("tiny_models")
    meta = ModelMetadata(labels=FER2013, input_size=TINY_SIZE, channels=1, format="tflite-int8")
    plans = {
        "int8": ((TINY_SIZE, 1, True, None), "int8", meta),
        "uint8": ((TINY_SIZE, 1, True, None), "uint8", meta),
        "int8_logits": ((TINY_SIZE, 1, False, None), "int8", meta),
        "int8_flip": ((TINY_SIZE, 1, True, None), "int8", meta.replace(test_time_flip=True)),
        "int8_fixed_batch": ((TINY_SIZE, 1, True, 1), "int8", meta),
        "float16": ((TINY_SIZE, 1, True, None), "float16", meta.replace(format="tflite-fp16")),
        "float32_plain": ((40, 3, True, None), "float32", None),
        "no_labels": ((TINY_SIZE, 1, True, None), "int8", _RawMetadata({"input_size": TINY_SIZE})),
    }
    converted: dict[tuple, bytes] = {}
    paths = {}
    for name, (arch, mode, metadata) in plans.items():
        if (arch, mode) not in converted:
            converted[arch, mode] = _convert(_tiny_keras_model(*arch), mode)
        data = converted[arch, mode]
        if metadata is not None:
            data = embed_tflite_metadata(data, metadata)
        paths[name] = out / f"{name}.tflite"
        paths[name].write_bytes(data)
    return paths


@pytest.fixture(scope="session")
def tiny_int8_model(tiny_models: dict[str, Path]) -> Path:
    """int8 in/out tiny model with fer2013 metadata embedded."""
    return tiny_models["int8"]


@pytest.fixture(scope="session")
def tiny_float_model(tiny_models: dict[str, Path]) -> Path:
    """float32 tiny model (40x40x3) without metadata: needs labels given explicitly."""
    return tiny_models["float32_plain"]


@pytest.fixture(scope="session")
def face_drawer() -> Callable[..., np.ndarray]:
    """``draw_face(size=200, background=40)`` -> BGR uint8 face image."""
    return draw_face


@pytest.fixture(scope="session")
def face_scene() -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A 640x480 BGR frame with two drawn faces, and where they were pasted (x, y, w, h)."""
    scene = np.full((480, 640, 3), 90, np.uint8)
    placed = [(40, 40, 200, 200), (350, 200, 250, 250)]
    for x, y, w, h in placed:
        scene[y : y + h, x : x + w] = draw_face(w)
    return scene, placed


@pytest.fixture(scope="session")
def demo_server(tiny_models: dict[str, Path]):
    """The demo (Gradio UI + REST) serving the tiny ``int8`` and ``float16`` models on a free 127.0.0.1
    port, in a background thread of this process: yields ``(base_url, service)``."""
    from feredge.demo.server import BackgroundServer, create_app
    from feredge.demo.service import DemoService

    service = DemoService({"int8": tiny_models["int8"], "float16": tiny_models["float16"]})
    with BackgroundServer(create_app(service)) as server:
        yield server.url, service
