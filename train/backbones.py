"""Backbone registry: name -> builder of a flat tf_keras functional model.

Models are flat (no model nested in a model) and use Conv -> BN -> ReLU, because tfmot's
``quantize_model`` refuses anything else. Each entry records the normalization its weights expect,
which training writes into the model metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from feredge.edge.errors import FeredgeError

if TYPE_CHECKING:
    import tensorflow as tf
    import tf_keras as keras

HEAD_NAME = "head"
FEATURES_NAME = "features"


@dataclass(frozen=True)
class Backbone:
    name: str
    build: Callable  # (inputs, weights, alpha) -> feature tensor before pooling
    normalization: str
    channels: int
    default_size: int
    pretrained: bool  # has ImageNet weights in keras.applications
    min_size: int = 32


REGISTRY: dict[str, Backbone] = {}


def register(
    name: str, normalization: str, channels: int, default_size: int, pretrained: bool, min_size: int = 32
) -> Callable:
    def wrap(fn: Callable) -> Callable:
        REGISTRY[name] = Backbone(name, fn, normalization, channels, default_size, pretrained, min_size)
        return fn

    return wrap


def get_backbone(name: str) -> Backbone:
    try:
        return REGISTRY[name]
    except KeyError:
        raise FeredgeError(f"unknown backbone {name!r}; choose from {', '.join(sorted(REGISTRY))}") from None


def _applications(name: str, inputs, weights: str | None, alpha: float):
    from tf_keras import applications as apps

    factories = {
        "mobilenet_v2": lambda w: apps.MobileNetV2(include_top=False, weights=w, input_tensor=inputs, alpha=alpha),
        "mobilenet_v3_small": lambda w: apps.MobileNetV3Small(
            include_top=False, weights=w, input_tensor=inputs, alpha=alpha, include_preprocessing=False
        ),
        "mobilenet_v3_large": lambda w: apps.MobileNetV3Large(
            include_top=False, weights=w, input_tensor=inputs, alpha=alpha, include_preprocessing=False
        ),
        "resnet50": lambda w: apps.ResNet50(include_top=False, weights=w, input_tensor=inputs),
        "vgg16": lambda w: apps.VGG16(include_top=False, weights=w, input_tensor=inputs),
    }
    try:
        return factories[name](weights).output
    except Exception as exc:
        if weights == "imagenet":
            raise FeredgeError(
                f"could not load ImageNet weights for {name}: {exc}. Keras downloads them once to "
                "~/.keras/models/; without network access, download the '_notop' .h5 file on another "
                "machine and pass --weights PATH, or train from scratch with --weights none."
            ) from exc
        raise


for _name, _norm, _size in [
    ("mobilenet_v2", "symmetric", 96),
    ("mobilenet_v3_small", "symmetric", 96),
    ("mobilenet_v3_large", "symmetric", 96),
    ("resnet50", "caffe", 96),
    ("vgg16", "caffe", 96),
]:
    register(_name, _norm, channels=3, default_size=_size, pretrained=True)(
        lambda inputs, weights, alpha, _n=_name: _applications(_n, inputs, weights, alpha)
    )


def _conv_bn_relu(x, filters: int, name: str):
    from tf_keras import layers

    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


@register("cnn", "unit", channels=1, default_size=48, pretrained=False)
def classic_cnn(inputs, weights, alpha):
    """The classic FER baseline: three conv blocks 32/64/128 with BN, max-pool, dropout, dense 256."""
    from tf_keras import layers

    x = inputs
    for i, filters in enumerate((32, 64, 128)):
        x = _conv_bn_relu(x, filters, f"block{i + 1}")
        x = layers.MaxPooling2D(name=f"block{i + 1}_pool")(x)
        x = layers.Dropout(0.25, name=f"block{i + 1}_drop")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(256, use_bias=False, name="fc_dense")(x)
    x = layers.BatchNormalization(name="fc_bn")(x)
    return layers.ReLU(name="fc_relu")(x)


def _compact(inputs, alpha: float, depths: tuple[int, int, int], dropout: float) -> tf.Tensor:
    """VGG-style net sized for 48x48 and a per-face int8 budget under 1 ms on one core.

    One conv at full resolution (the costliest place), ``depths`` convs in the 24, 12 and 6 px
    stages, and a 1x1 widening conv on the 3x3 map (a 3x3 conv there would double the file size).
    Extra depth goes to the 24 and 12 px stages, where it costs few parameters.
    """
    from tf_keras import layers

    widths = [max(8, round(w * alpha)) for w in (32, 64, 128, 256)]
    x = _conv_bn_relu(inputs, widths[0], "stem")
    x = layers.MaxPooling2D(name="stem_pool")(x)
    for i, (filters, depth) in enumerate(zip(widths[1:], depths, strict=True)):
        for j in range(depth):
            x = _conv_bn_relu(x, filters, f"stage{i + 1}{'abcd'[j]}")
        x = layers.MaxPooling2D(name=f"stage{i + 1}_pool")(x)
        x = layers.Dropout(dropout * (i + 1), name=f"stage{i + 1}_drop")(x)
    x = layers.Conv2D(widths[-1] * 2, 1, use_bias=False, name="top_conv")(x)
    x = layers.BatchNormalization(name="top_bn")(x)
    return layers.ReLU(name="top_relu")(x)


@register("compact", "unit", channels=1, default_size=48, pretrained=False)
def compact_cnn(inputs, weights, alpha):
    """The compact net with two convs per stage (1.3 M parameters at alpha 1)."""
    return _compact(inputs, alpha, (2, 2, 2), dropout=0.1)


@register("compact_deep", "unit", channels=1, default_size=48, pretrained=False)
def compact_deep_cnn(inputs, weights, alpha):
    """Three convs in the 24 and 12 px stages and lighter dropout: more fit for the same file size class."""
    return _compact(inputs, alpha, (3, 3, 2), dropout=0.05)


@register("tiny", "unit", channels=1, default_size=48, pretrained=False, min_size=8)
def tiny_cnn(inputs, weights, alpha):
    """A few kernels: for tests and smoke runs, not for accuracy."""
    from tf_keras import layers

    x = _conv_bn_relu(inputs, max(4, int(8 * alpha)), "tiny1")
    x = layers.MaxPooling2D(name="tiny1_pool")(x)
    return _conv_bn_relu(x, max(4, int(16 * alpha)), "tiny2")


def build_model(
    name: str,
    num_classes: int,
    input_size: int,
    weights: str = "none",
    alpha: float = 1.0,
    dropout: float = 0.3,
    labels: Sequence[str] | None = None,
) -> keras.Model:
    """Backbone + head (global pooling, dropout, dense softmax), as one flat functional model.

    ``labels`` (the data's classes) let a ``.tflite`` start keep its head when they are the model's own.
    """
    import tf_keras as keras
    from tf_keras import layers

    backbone = get_backbone(name)
    if input_size < backbone.min_size:
        raise FeredgeError(f"{name} needs input_size >= {backbone.min_size}, got {input_size}")
    keras_weights, weights_file = resolve_weights(weights, backbone)
    inputs = keras.Input((input_size, input_size, backbone.channels), name="image")
    features = backbone.build(inputs, keras_weights, alpha)
    if len(features.shape) == 4:
        features = layers.GlobalAveragePooling2D(name=FEATURES_NAME)(features)
    else:
        features = layers.Activation("linear", name=FEATURES_NAME)(features)
    x = layers.Dropout(dropout, name="head_dropout")(features)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name=HEAD_NAME)(x)
    model = keras.Model(inputs, outputs, name=f"feredge_{name}")
    if weights_file is not None and weights_file.suffix.lower() == ".tflite":
        from feredge.train.tflite_weights import load_tflite_weights, source_metadata

        source_labels = source_metadata(weights_file).labels
        load_tflite_weights(model, weights_file, source_labels, labels or source_labels)
    elif weights_file is not None:
        _load_backbone_weights(model, weights_file)
    return model


def resolve_weights(weights: str, backbone: Backbone) -> tuple[str | None, Path | None]:
    if weights in ("none", "", None):
        return None, None
    if weights == "imagenet":
        if not backbone.pretrained:
            raise FeredgeError(f"{backbone.name} has no ImageNet weights; use --weights none or a file")
        return "imagenet", None
    from feredge.train.tflite_weights import shipped_weights

    path = shipped_weights(weights) or Path(weights)
    if not path.is_file():
        raise FeredgeError(
            f"weights file {path} not found (use imagenet, none, default, a shipped model's name, "
            "or a path to .h5/.keras/.tflite)"
        )
    return None, path


def _load_backbone_weights(model, path: Path) -> None:
    """Load a local weights file by layer name, skipping the head, so class counts may differ."""
    try:
        model.load_weights(str(path), by_name=True, skip_mismatch=True)
    except Exception as exc:
        raise FeredgeError(f"could not load weights from {path}: {exc}") from exc


def base_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers before the pooled features: what stage one freezes and stage two partly unfreezes."""
    names = [layer.name for layer in model.layers]
    return model.layers[1 : names.index(FEATURES_NAME)]
