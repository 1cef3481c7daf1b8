"""Write feredge metadata inside model files, so the runtime needs no side file.

Every embedding also seals the file: the metadata's ``model_sha256`` is the SHA-256 of the finished file
with the metadata JSON cut out (``feredge.edge.metadata.model_digest``), which the runtime checks at load.
The JSON is first written with a placeholder of a digest's length, the file hashed around it, and the
digest written in the placeholder's place, so no hashed byte moves. Re-embedding (a new temperature, say)
seals the file again.
"""

from __future__ import annotations

from feredge.convert.errors import ConversionError
from feredge.edge.errors import MetadataError
from feredge.edge.metadata import (
    METADATA_KEY,
    SHA256_PLACEHOLDER,
    ModelMetadata,
    model_digest,
    read_tflite_metadata,
    tflite_metadata_spans,
)


def embed_tflite_metadata(model: bytes, metadata: ModelMetadata) -> bytes:
    """Return ``model`` with ``metadata`` stored in the flatbuffer's metadata table (replacing ours), sealed."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    placeholder = metadata.replace(model_sha256=SHA256_PLACEHOLDER)
    buffer = schema.BufferT()
    buffer.data = list(placeholder.to_json().encode("utf-8"))
    ours = [m for m in (obj.metadata or []) if _name(m) == METADATA_KEY]
    if ours:  # our earlier buffer takes the new JSON: appending would leave the old one behind in the file
        obj.buffers[ours[0].buffer] = buffer
        obj.metadata = [m for m in obj.metadata if m is ours[0] or _name(m) != METADATA_KEY]
    else:
        obj.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = METADATA_KEY
        entry.buffer = len(obj.buffers) - 1
        obj.metadata = [*(obj.metadata or []), entry]
    data = bytes(flatbuffer_utils.convert_object_to_bytearray(obj))
    return _sealed(data, tflite_metadata_spans(data)[METADATA_KEY], placeholder)


def embed_metadata(model: bytes, runtime: str, metadata: ModelMetadata) -> bytes:
    """``model`` (a ``tflite`` or ``onnx`` artefact's bytes) with ``metadata`` in place of its own."""
    if runtime == "tflite":
        return embed_tflite_metadata(model, metadata)
    import onnx

    proto = onnx.load_from_string(model)
    embed_onnx_metadata(proto, metadata)
    return proto.SerializeToString()


def embedded_metadata(model: bytes, runtime: str) -> ModelMetadata | None:
    """The metadata an artefact's bytes carry, its sealed checksum included (None without feredge metadata).

    Reports record this, not the metadata handed to ``embed_metadata``, whose checksum is not yet known.
    """
    if runtime == "tflite":
        try:
            return read_tflite_metadata(model)
        except MetadataError:
            return None
    import onnx

    try:
        props = {p.key: p.value for p in onnx.load_from_string(model).metadata_props}
    except Exception:  # onnx raises its own DecodeError for bytes that are no model
        return None
    return ModelMetadata.from_json(props[METADATA_KEY]) if METADATA_KEY in props else None


def _name(entry) -> str:
    name = entry.name
    return name.decode() if isinstance(name, bytes) else str(name)


def embed_onnx_metadata(model_proto, metadata: ModelMetadata) -> None:
    """Store the metadata JSON under ``metadata_props['feredge']`` of an ONNX ModelProto, in place, sealed
    for the bytes ``model_proto.SerializeToString()`` (what ``onnx.save`` writes) gives."""
    for prop in list(model_proto.metadata_props):
        if prop.key == METADATA_KEY:
            model_proto.metadata_props.remove(prop)
    entry = model_proto.metadata_props.add()
    entry.key = METADATA_KEY
    placeholder = metadata.replace(model_sha256=SHA256_PLACEHOLDER)
    entry.value = placeholder.to_json()
    data = model_proto.SerializeToString()
    raw = entry.value.encode("utf-8")
    start = data.find(raw)  # protobuf stores a string's UTF-8 bytes as they are
    sealed = _sealed(data, (start, start + len(raw)), placeholder)
    entry.value = sealed[start : start + len(raw)].decode("utf-8")


def _sealed(data: bytes, span: tuple[int, int], placeholder: ModelMetadata) -> bytes:
    """``data`` with the placeholder JSON at ``span`` replaced by the same JSON carrying the file's digest."""
    start, end = span
    final = placeholder.replace(model_sha256=model_digest(data, span)).to_json().encode("utf-8")
    if data[start:end] != placeholder.to_json().encode("utf-8") or len(final) != end - start:
        raise ConversionError("could not locate the embedded metadata to seal it with the model's checksum")
    return data[:start] + final + data[end:]
