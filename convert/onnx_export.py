"""Keras -> ONNX with tf2onnx, for onnxruntime and TensorRT on a Jetson: the build of the ``onnx`` row."""

from __future__ import annotations

from typing import TYPE_CHECKING

from feredge.convert.embed import embed_onnx_metadata
from feredge.convert.errors import ConversionError
from feredge.edge.preprocess import PreprocessSpec

if TYPE_CHECKING:
    from feredge.convert.formats import BuildInput

DEFAULT_OPSET = 15  # TensorRT 8.5+ (JetPack 5 and 6) parses opsets 13-17


def build_onnx(job: BuildInput) -> bytes:
    """The serialized ONNX model with the metadata in ``metadata_props``."""
    proto = export_onnx(job.model, job.spec, job.opset)
    embed_onnx_metadata(proto, job.metadata)
    return proto.SerializeToString()


def export_onnx(model, spec: PreprocessSpec, opset: int = DEFAULT_OPSET):
    """The ONNX ModelProto of a tf_keras model: NHWC float32 input ``image`` with a dynamic batch.

    tf2onnx trails TensorFlow releases; when it cannot import or convert under the installed
    TensorFlow the error says so, and nothing is written.
    """
    import tensorflow as tf

    try:
        import tf2onnx
    except Exception as exc:  # an ImportError, or anything its import-time TensorFlow probing raises
        raise ConversionError(f"tf2onnx cannot be imported with TensorFlow {tf.__version__}: {exc}") from exc
    signature = [tf.TensorSpec((None, spec.input_size, spec.input_size, spec.channels), tf.float32, name="image")]
    try:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset)
    except Exception as exc:  # tf2onnx surfaces graph-rewrite failures as arbitrary exception types
        raise ConversionError(
            f"tf2onnx {tf2onnx.__version__} cannot convert this model under TensorFlow "
            f"{tf.__version__}: {type(exc).__name__}: {exc}"
        ) from exc
    return proto
