"""Write feredge metadata inside model files, so the runtime needs no side file."""

from __future__ import annotations

from feredge.edge.metadata import METADATA_KEY, ModelMetadata


def embed_tflite_metadata(model: bytes, metadata: ModelMetadata) -> bytes:
    """Return ``model`` with ``metadata`` stored in the flatbuffer's metadata table (replacing ours)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    obj.metadata = [m for m in (obj.metadata or []) if _name(m) != METADATA_KEY]
    buffer = schema.BufferT()
    buffer.data = list(metadata.to_json().encode("utf-8"))
    obj.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_KEY
    entry.buffer = len(obj.buffers) - 1
    obj.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj))


def embed_metadata(model: bytes, runtime: str, metadata: ModelMetadata) -> bytes:
    """``model`` (a ``tflite`` or ``onnx`` artefact's bytes) with ``metadata`` in place of its own."""
    if runtime == "tflite":
        return embed_tflite_metadata(model, metadata)
    import onnx

    proto = onnx.load_from_string(model)
    embed_onnx_metadata(proto, metadata)
    return proto.SerializeToString()


def _name(entry) -> str:
    name = entry.name
    return name.decode() if isinstance(name, bytes) else str(name)


def embed_onnx_metadata(model_proto, metadata: ModelMetadata) -> None:
    """Store the metadata JSON under ``metadata_props['feredge']`` of an ONNX ModelProto, in place."""
    for prop in list(model_proto.metadata_props):
        if prop.key == METADATA_KEY:
            model_proto.metadata_props.remove(prop)
    entry = model_proto.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = metadata.to_json()
