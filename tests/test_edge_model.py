"""feredge.edge.model / interpreter / onnx_runner: loading, quantization, batching, metadata."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from feredge.edge import tflite_runner
from feredge.edge.errors import LabelError, MetadataError, ModelLoadError
from feredge.edge.labels import FER2013
from feredge.edge.model import DEFAULT_MODEL, load_model, shipped_models
from feredge.edge.preprocess import PreprocessSpec, preprocess_face

pytestmark = pytest.mark.edge  # needs only `pip install .`: .ci/run also runs it in an edge-only venv

S = 48


def halves(n_left: int, n_right: int, size: int = S, channels: int = 1) -> np.ndarray:
    """Preprocessed batches whose left (then right) half is bright: the tiny models' classes 0 and 1."""
    left = np.zeros((n_left, size, size, channels), np.float32)
    left[:, :, : size // 2] = 1.0
    right = np.zeros((n_right, size, size, channels), np.float32)
    right[:, :, size // 2 :] = 1.0
    return np.concatenate([left, right])


@pytest.mark.parametrize("name", ["int8", "uint8", "float16", "int8_logits"])
def test_every_model_type_gives_probabilities_with_known_answers(tiny_models, name):
    model = load_model(tiny_models[name], threads=1)
    assert model.labels == FER2013
    probs = model.predict(halves(2, 3))
    assert probs.shape == (5, 7) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert list(probs.argmax(axis=1)) == [0, 0, 1, 1, 1]
    # logits 6 vs 0: softmax gives e^6 / (e^6 + 6) = 0.985 to the bright half's class
    np.testing.assert_allclose(probs.max(axis=1), np.exp(6) / (np.exp(6) + 6), atol=0.03)


def test_quantized_model_matches_float_reference(tiny_models):
    rng = np.random.default_rng(1)
    batch = rng.random((4, S, S, 1), dtype=np.float32)
    reference = load_model(tiny_models["float16"]).predict(batch)
    for name in ("int8", "uint8", "int8_logits"):
        np.testing.assert_allclose(load_model(tiny_models[name]).predict(batch), reference, atol=0.03)


def test_batch_size_is_resized_once_and_kept(tiny_int8_model):
    model = load_model(tiny_int8_model)
    assert model.runner.resizable
    first = model.predict(halves(2, 1))
    assert model.runner.allocated_batch == 3
    again = model.predict(halves(2, 1))
    np.testing.assert_array_equal(first, again)
    single = np.concatenate([model.predict(b[None]) for b in halves(2, 1)])
    assert model.runner.allocated_batch == 1
    np.testing.assert_allclose(first, single, atol=1e-6)


def test_fixed_batch_model_is_run_in_a_loop_with_the_same_answers(tiny_models):
    fixed = load_model(tiny_models["int8_fixed_batch"])
    assert not fixed.runner.resizable
    batch = halves(3, 2)
    probs = fixed.predict(batch)
    assert fixed.runner.allocated_batch == 1
    np.testing.assert_allclose(probs, load_model(tiny_models["int8"]).predict(batch), atol=1e-6)


def test_empty_batch_and_wrong_shape(tiny_int8_model):
    model = load_model(tiny_int8_model)
    assert model.predict(np.zeros((0, S, S, 1), np.float32)).shape == (0, 7)
    assert model.predict_crops([]).shape == (0, 7)
    with pytest.raises(ValueError, match=r"\(N, 48, 48, 1\)"):
        model.predict(np.zeros((1, 32, 32, 1), np.float32))


def test_test_time_flip_averages_crop_and_mirror_in_one_call(tiny_models):
    flip = load_model(tiny_models["int8_flip"])
    assert flip.metadata.test_time_flip
    calls = []
    run = flip.runner.run
    flip.runner.run = lambda batch: calls.append(len(batch)) or run(batch)
    probs = flip.predict(halves(1, 1))
    assert calls == [4]
    # a left-bright image and its mirror score angry and disgust alike
    np.testing.assert_allclose(probs[:, 0], probs[:, 1], atol=0.02)
    np.testing.assert_allclose(probs[0], probs[1], atol=0.02)
    plain = load_model(tiny_models["int8"]).predict(halves(1, 1))
    np.testing.assert_allclose(probs[0], (plain[0] + plain[1]) / 2, atol=0.02)


def test_predict_crops_uses_contract_preprocessing(tiny_int8_model):
    model = load_model(tiny_int8_model)
    crop = np.zeros((120, 90, 3), np.uint8)
    crop[:, 45:] = 255
    gray = np.zeros((30, 30), np.uint8)
    gray[:, :15] = 255
    probs = model.predict_crops([crop, gray])
    assert list(probs.argmax(axis=1)) == [1, 0]
    assert model.preprocess([crop]).shape == (1, S, S, 1)


def test_plain_model_needs_labels_and_reads_shape_from_the_tensor(tiny_float_model):
    with pytest.raises(MetadataError, match=r"no feredge metadata.*labels"):
        load_model(tiny_float_model)
    model = load_model(tiny_float_model, labels="fer2013")
    meta = model.metadata
    assert (meta.input_size, meta.channels, meta.normalization) == (40, 3, "unit")
    assert model.predict(halves(1, 1, size=40, channels=3)).argmax(axis=1).tolist() == [0, 1]
    assert load_model(tiny_float_model, labels="fer2013", normalization="symmetric").metadata.normalization == (
        "symmetric"
    )


def test_label_count_must_match_outputs(tiny_float_model, tiny_int8_model):
    with pytest.raises(LabelError, match=r"5 labels.*7 outputs"):
        load_model(tiny_float_model, labels="fer5")
    relabelled = load_model(tiny_int8_model, labels="a,b,c,d,e,f,g")
    assert relabelled.labels == ("a", "b", "c", "d", "e", "f", "g")
    assert relabelled.metadata.crop_margin == 0.1


def test_metadata_without_labels(tiny_models):
    with pytest.raises(MetadataError, match=r"no_labels\.tflite: metadata has no labels"):
        load_model(tiny_models["no_labels"])
    assert load_model(tiny_models["no_labels"], labels="fer2013").labels == FER2013


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "model file not found"),
        (b"", "empty"),
        (b"hello, I am text renamed to .tflite", "not a TFLite model"),
    ],
)
def test_unusable_model_files(tmp_path, content, message):
    path = tmp_path / "model.tflite"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message) as info:
        load_model(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_tflite(tiny_int8_model, tmp_path, cut):
    data = tiny_int8_model.read_bytes()
    path = tmp_path / "truncated.tflite"
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ModelLoadError, match=r"truncated.tflite"):
        load_model(path)


def test_corrupt_tflite(tiny_int8_model, tmp_path):
    data = bytearray(tiny_int8_model.read_bytes())
    data[8:] = bytes(len(data) - 8)
    path = tmp_path / "corrupt.tflite"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match=r"corrupt.tflite: not a valid TFLite model"):
        load_model(path)


def test_missing_default_model_says_to_pass_one(tmp_path, monkeypatch):
    monkeypatch.setattr("feredge.edge.model.DEFAULT_MODEL", tmp_path / "feredge_default_int8.tflite")
    with pytest.raises(ModelLoadError, match=r"no default model is installed.*pass a model path"):
        load_model()


def test_shipped_default_model_is_int8_with_metadata_and_small():
    model = load_model()
    assert model.metadata.labels == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert (model.metadata.input_size, model.metadata.channels, model.metadata.format) == (48, 1, "tflite-int8")
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(DEFAULT_MODEL))
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    assert DEFAULT_MODEL.stat().st_size <= 2 * 1024 * 1024
    assert shipped_models()[0] == DEFAULT_MODEL


def test_shipped_accurate_model_feeds_each_member_its_own_view():
    """The accurate ensemble takes raw and CLAHE pixels as two channels; the runtime stacks them itself."""
    path = DEFAULT_MODEL.with_name("feredge_accurate_int8.tflite")
    model = load_model(path)
    meta = model.metadata
    assert (meta.photometric, meta.channels, meta.format) == ("none+clahe", 2, "tflite-int8")
    assert meta.backbone.startswith("ensemble(") and len(meta.extra["members"]) >= 2
    assert path in shipped_models() and shipped_models()[0] == DEFAULT_MODEL
    face = np.random.default_rng(0).integers(90, 140, (64, 64)).astype(np.uint8)
    batch = model.preprocess([face])
    assert batch.shape == (1, 48, 48, 2)
    for channel, view in enumerate(("none", "clahe")):  # the metadata's view order is the channel order
        np.testing.assert_array_equal(
            batch[0, ..., channel], preprocess_face(face, PreprocessSpec(photometric=view))[..., 0]
        )
    scores = model.predict_crops([face])
    assert scores.shape == (1, len(FER2013)) and np.isclose(scores.sum(), 1.0, atol=1e-3)
    assert np.abs(model.predict(batch[..., ::-1]) - scores).max() > 0.01  # the graph tells the views apart


# --- interpreter fallback chain ---


def _block(monkeypatch, *modules: str) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)  # makes `import name` raise ImportError


def test_no_interpreter_names_the_pip_package(monkeypatch, tiny_int8_model):
    _block(monkeypatch, *(module for module, _ in tflite_runner.INTERPRETER_CHAIN))
    with pytest.raises(ModelLoadError, match=r"pip install ai-edge-litert"):
        load_model(tiny_int8_model)


def test_tflite_runtime_with_numpy2_gets_a_clear_message(monkeypatch, tiny_int8_model):
    class BrokenInterpreter:
        def __init__(self, **kwargs):
            raise SystemError(
                "<built-in method CreateWrapperFromBuffer of PyCapsule object> returned a result with an exception set"
            )

    fake = types.ModuleType("tflite_runtime.interpreter")
    fake.Interpreter = BrokenInterpreter
    _block(monkeypatch, "ai_edge_litert.interpreter")
    monkeypatch.setitem(sys.modules, "tflite_runtime", types.ModuleType("tflite_runtime"))
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", fake)
    monkeypatch.setattr(np, "__version__", "2.2.0")
    with pytest.raises(ModelLoadError, match=r"tflite-runtime needs numpy<2; install ai-edge-litert instead"):
        load_model(tiny_int8_model)


def test_chain_prefers_ai_edge_litert_and_passes_threads(monkeypatch, tiny_int8_model):
    cls, package = tflite_runner.interpreter_class()
    assert package == "ai-edge-litert"
    seen = {}

    class Spy(cls):
        def __init__(self, **kwargs):
            seen.update(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(tflite_runner, "interpreter_class", lambda: (Spy, package))
    assert load_model(tiny_int8_model, threads=2).runner.backend == "ai-edge-litert"
    assert seen["num_threads"] == 2


# --- ONNX through onnxruntime ---


def _tiny_onnx(path: Path, with_metadata: bool) -> None:
    """Mean brightness of the left and right halves -> logits of classes 0 and 1 (like the tflite)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from feredge.convert.embed import embed_onnx_metadata
    from feredge.edge.metadata import ModelMetadata

    weights = np.zeros((S * S, 7), np.float32)
    cols = np.tile(np.arange(S), S)
    weights[cols < S // 2, 0] = 6.0 / (S * S / 2)
    weights[cols >= S // 2, 1] = 6.0 / (S * S / 2)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", S, S, 1])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 7])],
        [helper.make_tensor("w", TensorProto.FLOAT, weights.shape, weights.ravel())],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    proto.ir_version = 8
    if with_metadata:
        embed_onnx_metadata(proto, ModelMetadata(labels=FER2013, test_time_flip=True))
    onnx.save(proto, path)


def test_onnx_model_with_metadata(tmp_path):
    pytest.importorskip("onnxruntime")
    path = tmp_path / "tiny.onnx"
    _tiny_onnx(path, with_metadata=True)
    model = load_model(path, threads=1)
    assert model.runner.backend == "onnxruntime"
    assert model.labels == FER2013 and model.metadata.test_time_flip
    probs = model.predict(halves(1, 0))
    np.testing.assert_allclose(probs[0, 0], probs[0, 1], atol=1e-5)
    plain = tmp_path / "plain.onnx"
    _tiny_onnx(plain, with_metadata=False)
    assert load_model(plain, labels="fer2013").predict(halves(1, 1)).argmax(axis=1).tolist() == [0, 1]


def test_corrupt_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"not a protobuf")
    with pytest.raises(ModelLoadError, match=r"bad.onnx: not a valid ONNX model"):
        load_model(path)


def test_onnx_providers_tensorrt_then_cuda_then_cpu_of_those_available(tmp_path, monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "tiny.onnx"
    _tiny_onnx(path, with_metadata=True)
    assert load_model(path, threads=1).runner.provider == "CPUExecutionProvider"
    asked = []

    class Session(ort.InferenceSession):
        """Records the providers asked for, runs on the CPU, reports the first provider asked for."""

        def __init__(self, model, options, providers):
            asked.append(providers)
            super().__init__(model, options, providers=["CPUExecutionProvider"])
            self._first = providers[0]

        def get_providers(self):
            return [self._first, "CPUExecutionProvider"]

    monkeypatch.setattr(ort, "InferenceSession", Session)
    cases = [
        (
            ["CPUExecutionProvider", "CUDAExecutionProvider", "AzureExecutionProvider", "TensorrtExecutionProvider"],
            ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
        ),
        (["CUDAExecutionProvider", "CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]),
        (["AzureExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]),
    ]
    for available, expected in cases:
        monkeypatch.setattr(ort, "get_available_providers", lambda available=available: available)
        runner = load_model(path, threads=1).runner
        assert asked[-1] == expected
        assert runner.provider == expected[0] and runner.backend == "onnxruntime"
