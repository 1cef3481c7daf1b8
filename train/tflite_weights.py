"""Start training from a ``.tflite`` model's weights: a shipped model by name, or any feredge model file.

A converted model has no Keras weights beside it, but its graph holds them all: TFLite folds each
Conv → BatchNormalization block into one CONV_2D with a bias. Loading them back unfolds it: the
kernel goes to the Conv2D, the bias to the BatchNormalization's beta, whose statistics become the
identity (mean 0, variance 1 − ε, scale 1). The trainer keeps BatchNormalization frozen for
pretrained starts, so the start computes what the file computed. float16 and int8 weights are
dequantized; the fp16 twin of the default (``--weights default``) loses nothing that matters.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from feredge.edge.errors import FeredgeError
from feredge.edge.metadata import ModelMetadata
from feredge.edge.model import DEFAULT_MODEL, MODELS_DIR, load_model
from feredge.train.config import TrainConfig

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS = "default"  # --weights default: the default network's float16 twin
_LAYER_OPS = {"CONV_2D": "Conv2D", "DEPTHWISE_CONV_2D": "DepthwiseConv2D", "FULLY_CONNECTED": "Dense"}


def shipped_weights(name: str) -> Path | None:
    """The shipped model file that ``--weights NAME`` means, or None when NAME names no shipped model."""
    if name == DEFAULT_WEIGHTS:
        return DEFAULT_MODEL.with_name(DEFAULT_MODEL.name.replace("_int8", "_fp16"))
    path = MODELS_DIR / f"{name.removesuffix('.tflite')}.tflite"
    return path if "/" not in name and path.is_file() else None


def source_metadata(path: Path) -> ModelMetadata:
    """The contract (labels, input, photometric, backbone) the weights were trained with."""
    return load_model(path, threads=1).metadata


def carry_contract(config: TrainConfig) -> TrainConfig:
    """The config with the input contract of the ``.tflite`` it starts from, as ``yolo train model=…`` does.

    The weights only work on the input they learned (backbone, size, photometric) and frame faces as
    they did, so those come from the model's metadata, not from the options.
    """
    from feredge.train.backbones import get_backbone, resolve_weights

    if config.weights in ("none", "imagenet", "", None):
        return config
    _, path = resolve_weights(config.weights, get_backbone(config.backbone))
    if path is None or path.suffix.lower() != ".tflite":
        return config
    metadata = source_metadata(path)
    match = re.fullmatch(r"(\w+)\(alpha=([0-9.]+)\)", metadata.backbone)
    if match is None:
        raise FeredgeError(f"{path}: its metadata names no feredge backbone ({metadata.backbone!r}); cannot rebuild it")
    carried = {
        "backbone": match.group(1),
        "alpha": float(match.group(2)),
        "input_size": metadata.input_size,
        "photometric": metadata.photometric,
        "crop_margin": metadata.crop_margin,
        "weights": str(path),
    }
    log.info("carried over from %s: %s", path.name, ", ".join(f"{k} {v}" for k, v in carried.items() if k != "weights"))
    return replace(config, **carried)


def layer_weights(path: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(Keras layer type, kernel, bias)`` of each weighted op in execution order, as float32 in Keras layout."""
    from feredge.edge.tflite_runner import create_interpreter

    interpreter, _ = create_interpreter(path.read_bytes(), 1, str(path))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    produced = {out: op for op in ops for out in op["outputs"]}

    def constant(index: int) -> np.ndarray:
        op = produced.get(index)
        if op is not None and op["op_name"] == "DEQUANTIZE":  # float16 weights feed a DEQUANTIZE
            index = op["inputs"][0]
        elif op is not None:
            raise FeredgeError(f"{path}: a weight is computed by {op['op_name']}; cannot read it back")
        value = interpreter.get_tensor(index)
        params = tensors[index]["quantization_parameters"]
        if value.dtype in (np.int8, np.uint8, np.int32) and len(params["scales"]):
            axis = params["quantized_dimension"]
            shape = [1] * value.ndim
            if value.ndim:
                shape[axis] = -1
            scales = params["scales"].reshape(shape if len(params["scales"]) > 1 else [1] * value.ndim)
            zero = params["zero_points"].reshape(scales.shape)
            return ((value.astype(np.float64) - zero) * scales).astype(np.float32)
        return value.astype(np.float32)

    out = []
    for op in ops:
        kind = _LAYER_OPS.get(op["op_name"])
        if kind is None:
            continue
        kernel = constant(op["inputs"][1])
        bias = constant(op["inputs"][2]) if len(op["inputs"]) > 2 and op["inputs"][2] >= 0 else None
        if bias is None:
            bias = np.zeros(kernel.shape[0] if kind != "DepthwiseConv2D" else kernel.shape[-1], np.float32)
        # conv OHWI and depthwise 1HWC -> Keras HWIO and HWC1; dense (out, in) -> (in, out)
        kernel = kernel.transpose(1, 2, 3, 0) if kernel.ndim == 4 else kernel.T
        out.append((kind, kernel, bias))
    return out


def load_tflite_weights(model, path: Path, source_labels: Sequence[str], labels: Sequence[str]) -> None:
    """Copy ``path``'s weights into the same architecture ``model``; a new head when the labels differ.

    Labels that are the same set in another order keep their head rows, reordered; any other label set
    gets a new head (logged with what is kept and what is new), so users fine-tune on their own classes.
    """
    from tf_keras import layers as kl

    weights = layer_weights(path)
    targets = [layer for layer in model.layers if type(layer).__name__ in set(_LAYER_OPS.values())]
    if [type(t).__name__ for t in targets] != [kind for kind, _, _ in weights]:
        raise FeredgeError(
            f"{path}: its layers ({len(weights)} weighted ops) do not match backbone {model.name!r} "
            f"({len(targets)} weighted layers); pass the backbone the model was trained with"
        )
    for layer, (_kind, kernel, bias) in zip(targets, weights, strict=True):
        if layer is targets[-1] and isinstance(layer, kl.Dense):
            _load_head(layer, kernel, bias, list(source_labels), list(labels), path)
            continue
        if tuple(layer.kernel.shape) != kernel.shape:
            raise FeredgeError(
                f"{path}: layer {layer.name} has shape {tuple(layer.kernel.shape)} in the model but {kernel.shape} "
                "in the file; pass the backbone, alpha and input size the model was trained with"
            )
        if layer.use_bias:
            layer.set_weights([kernel, bias])
            continue
        layer.set_weights([kernel])
        norm = _following_batch_norm(layer)
        if norm is None:
            raise FeredgeError(f"{path}: layer {layer.name} has no bias and no BatchNormalization to take it")
        ones = np.ones_like(bias)
        norm.set_weights([ones, bias, np.zeros_like(bias), ones - norm.epsilon])
    log.info("started from the weights of %s", path)


def _following_batch_norm(layer):
    from tf_keras import layers as kl

    consumers = [node.outbound_layer for node in layer._outbound_nodes]
    return next((c for c in consumers if isinstance(c, kl.BatchNormalization)), None)


def _load_head(layer, kernel: np.ndarray, bias: np.ndarray, source: list[str], labels: list[str], path: Path) -> None:
    if source == labels:
        layer.set_weights([kernel, bias])
        return
    if sorted(source) == sorted(labels):
        order = [source.index(label) for label in labels]
        layer.set_weights([kernel[:, order], bias[order]])
        log.info("head of %s reordered to the labels %s", path, ", ".join(labels))
        return
    kept = [label for label in labels if label in source]
    new = [label for label in labels if label not in source]
    log.info(
        "new head: the data's labels (%s) differ from %s's (%s); features kept, head trained anew "
        "(labels in both: %s; new: %s)",
        ", ".join(labels),
        path.name,
        ", ".join(source),
        ", ".join(kept) or "none",
        ", ".join(new) or "none",
    )
