"""Property-based tests of the parsers that read a user's bytes (issue #12, fuzzing).

Each parser gets random bytes and mutations (truncations, bit flips, spliced garbage) of real files:
the TFLite metadata reader, the embedded metadata JSON, the image header reader, the JPEG segment
walker, the image decoder and the CSV loader. Each input must either succeed or raise feredge's own
``FeredgeError``; any other exception is a bug. Runs are bounded so the suite stays fast.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="a dev dependency; the edge-only job does not install it")

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from feredge.edge.dataset import load_dataset
from feredge.edge.decode import decode_image_scaled
from feredge.edge.errors import FeredgeError
from feredge.edge.imageinfo import _jpeg_segments, encoded_end, image_info
from feredge.edge.metadata import METADATA_KEY, ModelMetadata, read_tflite_metadata, tflite_metadata_entries

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TFLITE = (FIXTURES / "int8.tflite").read_bytes()
METADATA_JSON = tflite_metadata_entries(TFLITE)[METADATA_KEY]


def _face(size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return ((xx * 3 + yy * 5) % 256).astype(np.uint8)


JPEG = cv2.imencode(".jpg", cv2.cvtColor(_face(), cv2.COLOR_GRAY2BGR))[1].tobytes()
PROGRESSIVE_JPEG = cv2.imencode(".jpg", _face(), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
PNG = cv2.imencode(".png", _face(40))[1].tobytes()
BMP = cv2.imencode(".bmp", _face(16))[1].tobytes()
WEBP = cv2.imencode(".webp", _face(32))[1].tobytes()
GIF = cv2.imencode(".gif", cv2.cvtColor(_face(16), cv2.COLOR_GRAY2BGR))[1].tobytes()
TIFF = cv2.imencode(".tif", _face(16))[1].tobytes()
PGM = cv2.imencode(".pgm", _face(16))[1].tobytes()
IMAGES = (JPEG, PROGRESSIVE_JPEG, PNG, BMP, WEBP, GIF, TIFF, PGM)

# FEREDGE_FUZZ_EXAMPLES=5000 for a longer hunt; the default keeps the suite fast.
FUZZ = settings(
    max_examples=int(os.environ.get("FEREDGE_FUZZ_EXAMPLES", "150")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` cut short, with a few bits flipped, bytes overwritten, or garbage spliced in."""
    data = bytearray(original)
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["flip", "byte", "cut", "splice"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            data[at] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]))
        elif kind == "cut":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(max_size=16))
    return bytes(data)


def any_bytes(*originals: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, random bytes behind a real file's first bytes, and mutations of real files."""
    heads = [st.builds(lambda tail, head=o[:12]: head + tail, st.binary(max_size=256)) for o in originals]
    return st.one_of(st.binary(max_size=512), *heads, *[mutated(o) for o in originals])


def only_own_errors(call, *args, **kwargs):
    """``call(*args)``'s result, or None when it raised a ``FeredgeError``; anything else propagates."""
    try:
        return call(*args, **kwargs)
    except FeredgeError:
        return None


@FUZZ
@given(any_bytes(TFLITE))
def test_tflite_metadata_reader_succeeds_or_raises_its_own_error(data: bytes) -> None:
    entries = only_own_errors(tflite_metadata_entries, data)
    if entries is not None:
        assert all(isinstance(k, str) and len(v) <= len(data) for k, v in entries.items())
    metadata = only_own_errors(read_tflite_metadata, data)
    assert metadata is None or isinstance(metadata, ModelMetadata)


@FUZZ
@given(any_bytes(METADATA_JSON))
def test_embedded_metadata_json_succeeds_or_raises_its_own_error(data: bytes) -> None:
    metadata = only_own_errors(ModelMetadata.from_json, data)
    assert metadata is None or len(metadata.labels) >= 1


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(json.loads(METADATA_JSON))), JSON_VALUES, min_size=1, max_size=3))
@example({"labels": True})  # found: TypeError from tuple(True), not a MetadataError
def test_metadata_fields_of_any_type_succeed_or_raise_its_own_error(changes: dict) -> None:
    """Valid JSON with the right keys and wrong values: a field of the wrong type is a typed error too."""
    text = json.dumps({**json.loads(METADATA_JSON), **changes})
    metadata = only_own_errors(ModelMetadata.from_json, text)
    assert metadata is None or len(metadata.labels) >= 1


@FUZZ
@given(any_bytes(*IMAGES))
def test_image_header_reader_never_raises(data: bytes) -> None:
    info = image_info(data)
    assert info is None or (info.width > 0 and info.height > 0 and 1 <= info.orientation <= 8)
    assert info is None or info.end is None or 0 <= info.end <= len(data)
    end = encoded_end(data)
    assert end is None or 0 <= end <= len(data)


@FUZZ
@given(any_bytes(JPEG, PROGRESSIVE_JPEG))
@example(JPEG[:4] + b"\x00\x00" + JPEG[6:])  # found: a length of 0 gave a payload ending before it starts
def test_jpeg_segment_walker_moves_forward_and_ends(data: bytes) -> None:
    data = b"\xff\xd8" + data[2:]
    last, segments = 0, list(_jpeg_segments(data))
    for marker, start, end in segments:  # each segment starts where the last left off or later
        assert last <= start <= end and -1 <= marker <= 0xFF
        last = start
    assert len(segments) <= len(data) // 2 + 1  # every segment takes at least its two marker bytes


@FUZZ
@given(any_bytes(*IMAGES))
def test_image_decoder_succeeds_or_raises_its_own_error(data: bytes) -> None:
    try:
        decoded = decode_image_scaled(data, "fuzz")
    except FeredgeError as exc:  # one line in feredge's words: no OpenCV source file or assertion (#29.15)
        message = str(exc)
        assert message.startswith("fuzz: ") and "\n" not in message
        assert not any(internal in message for internal in (".cpp", "OpenCV(", "Assertion failed", "libpng"))
        return
    assert decoded.image.dtype == np.uint8 and decoded.image.ndim in (2, 3)


def _csv(rows: int = 4) -> bytes:
    face = " ".join(str(v) for v in _face(8).ravel())
    lines = ["emotion,pixels,Usage", *[f"{i % 2 + 3},{face},Training" for i in range(rows)], f"3,{face},PublicTest"]
    return ("\n".join(lines) + "\n").encode()


CSV = _csv()


@FUZZ
@given(st.one_of(any_bytes(CSV), st.text(max_size=300).map(str.encode)))
def test_csv_loader_succeeds_or_raises_its_own_error(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("csv") / "faces.csv"
    path.write_bytes(data)
    dataset = only_own_errors(load_dataset, path, "happy,sad", input_size=8, make_val=False)
    if dataset is not None:
        assert all(split.images.shape[1:] == (8, 8) for split in dataset.splits.values())
