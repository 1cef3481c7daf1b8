"""Keras -> TFLite flatbuffer with the metadata inside: the build functions of the TFLite rows of the table."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from feredge.convert.embed import embed_tflite_metadata
from feredge.convert.errors import ConversionError

if TYPE_CHECKING:
    from feredge.convert.formats import BuildInput


def build_int8(job: BuildInput) -> bytes:
    """Full-integer post-training quantization: int8 input and output, per-channel weights (the
    converter's default) and only ``TFLITE_BUILTINS_INT8`` ops, so conversion fails rather than leave
    a float op behind that the Edge TPU or an int8-only accelerator could not run."""
    if job.representative is None:
        raise ConversionError("int8 conversion needs calibration images (a representative data set)")

    def configure(converter: Any, tf: Any) -> None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = job.representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8

    return _build(job, "int8", configure)


def build_fp16(job: BuildInput) -> bytes:
    def configure(converter: Any, tf: Any) -> None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]

    return _build(job, "fp16", configure)


def build_dynamic(job: BuildInput) -> bytes:
    def configure(converter: Any, tf: Any) -> None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]

    return _build(job, "dynamic", configure)


def build_fp32(job: BuildInput) -> bytes:
    return _build(job, "fp32", lambda converter, tf: None)


def _build(job: BuildInput, name: str, configure: Callable[[Any, Any], None]) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(job.model)
    configure(converter, tf)
    try:
        data = bytes(converter.convert())
    except Exception as exc:  # ConverterError, ValueError, RuntimeError... share no useful base
        raise ConversionError(f"the TFLite converter failed for {name}: {exc}") from exc
    return embed_tflite_metadata(data, job.metadata)
