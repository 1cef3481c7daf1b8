"""Keras -> TFLite flatbuffer for each TFLite format of the table."""

from __future__ import annotations

from collections.abc import Callable

from feredge.convert.errors import ConversionError, FormatError


def convert_tflite(model, name: str, representative: Callable | None = None) -> bytes:
    """Convert a tf_keras model to the TFLite format ``name`` (int8 needs ``representative``).

    int8 is full-integer post-training quantization: int8 input and output, per-channel weights
    (the converter's default) and only ``TFLITE_BUILTINS_INT8`` ops, so conversion fails rather than
    leave a float op behind that the Edge TPU or an int8-only accelerator could not run.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if name == "int8":
        if representative is None:
            raise ConversionError("int8 conversion needs calibration images (a representative data set)")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif name == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif name == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif name != "fp32":
        raise FormatError(f"{name!r} is not a TFLite format")
    try:
        return bytes(converter.convert())
    except Exception as exc:  # ConverterError, ValueError, RuntimeError... share no useful base
        raise ConversionError(f"the TFLite converter failed for {name}: {exc}") from exc
