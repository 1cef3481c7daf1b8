"""Encoded images: header sizes, the pixel limit, reduced decoding of large images, truncation."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from feredge.benchmarks.frames import draw_face
from feredge.edge import decode
from feredge.edge.decode import IMAGE_SUFFIXES, MAX_IMAGE_PIXELS, ScaledImage, decode_image, decode_image_scaled
from feredge.edge.errors import ImageError
from feredge.edge.imageinfo import encoded_end, image_info
from feredge.edge.recognizer import EmotionRecognizer

pytestmark = pytest.mark.edge  # needs only `pip install .`: .ci/run also runs it in an edge-only venv


def encode(image: np.ndarray, suffix: str, params: tuple = ()) -> bytes:
    ok, data = cv2.imencode(suffix, image, list(params))
    assert ok
    return data.tobytes()


def png_header(width: int, height: int) -> bytes:
    """A PNG's signature and IHDR chunk claiming ``width`` x ``height`` RGB pixels, and nothing else."""
    body = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + body + struct.pack(">I", zlib.crc32(body))


def jpeg_header(width: int, height: int) -> bytes:
    """SOI, an APP0 segment and a baseline SOF0 frame header claiming ``width`` x ``height``, 3 components."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + app0 + sof


@pytest.fixture(scope="module")
def recognizer(tiny_int8_model):
    return EmotionRecognizer(tiny_int8_model, detector="haar", threads=1)


def overlaps(found, expected, tolerance: float = 0.35) -> bool:
    fx, fy, fw, fh = found
    ex, ey, ew, eh = expected
    centre = abs(fx + fw / 2 - ex - ew / 2) + abs(fy + fh / 2 - ey - eh / 2)
    return centre < tolerance * ew and 0.4 * ew < fw < 1.6 * ew


# --- sizes from headers ---


def writable(suffix: str, height: int, width: int, channels: int = 3) -> np.ndarray:
    """A zero image OpenCV can write as ``suffix``: GIF and PPM take colour only, PGM gray only."""
    channels = {".gif": 3, ".ppm": 3, ".pgm": 1}.get(suffix, channels)
    return np.zeros((height, width, 3) if channels == 3 else (height, width), np.uint8)


@pytest.mark.parametrize("suffix", sorted(IMAGE_SUFFIXES))
@pytest.mark.parametrize("channels", [1, 3])
def test_header_size_of_every_accepted_suffix(suffix, channels):
    image = writable(suffix, 37, 61, channels)
    info = image_info(encode(image, suffix))
    assert info is not None and (info.width, info.height) == (61, 37)
    if suffix in (".png", ".jpg", ".pgm", ".ppm"):
        assert info.channels == image.size // (37 * 61)
    progressive = encode(image, ".jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1))
    assert (image_info(progressive).width, image_info(progressive).height) == (61, 37)


@pytest.mark.parametrize("suffix", [".jp2", ".pam", ".pfm", ".hdr", ".ras"])
def test_formats_without_a_read_header_are_refused_before_decoding(monkeypatch, suffix):
    """OpenCV decodes these by their content whatever the file's name, but their size would be known
    only after decoding: they are refused like text, naming the formats that are read."""
    floats = suffix in (".pfm", ".hdr")
    data = encode(np.full((64, 64, 3), 0.5 if floats else 128, np.float32 if floats else np.uint8), suffix)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is not None
    monkeypatch.setattr(decode.cv2, "imdecode", lambda *args: pytest.fail("decoded a format without a read header"))
    assert image_info(data) is None and image_info(b"just some text") is None
    with pytest.raises(
        ImageError, match=r"^x.jpg: not a readable image \(not a JPEG, PNG, WebP, BMP, GIF, TIFF or PBM"
    ):
        decode_image(data, "x.jpg")


# --- the pixel limit ---


@pytest.mark.parametrize(
    ("header", "size"),
    [(png_header(20000, 20000), "20000x20000"), (jpeg_header(10001, 10000), "10001x10000")],
    ids=["png", "jpeg"],
)
def test_above_the_pixel_limit_is_refused_from_the_header_without_decoding(monkeypatch, tmp_path, header, size):
    def no_decoding(*args):
        raise AssertionError("decoded an image above the pixel limit")

    monkeypatch.setattr(decode.cv2, "imdecode", no_decoding)
    path = tmp_path / "bomb.img"
    path.write_bytes(header)
    for source in (path, header):
        with pytest.raises(ImageError, match=rf"{size} pixels \(\d+ MP\) is above the limit of 100 MP") as info:
            decode_image_scaled(source)
        assert str(path) in str(info.value) or source is header
    assert MAX_IMAGE_PIXELS == 10000 * 10000


@pytest.mark.parametrize("suffix", sorted(IMAGE_SUFFIXES))
def test_every_accepted_suffix_is_held_to_the_pixel_limit_from_its_header(monkeypatch, suffix):
    monkeypatch.setattr(decode, "MAX_IMAGE_PIXELS", 99)
    monkeypatch.setattr(decode.cv2, "imdecode", lambda *args: pytest.fail("decoded an image above the limit"))
    with pytest.raises(ImageError, match=r"small: 16x16 pixels .* above the limit"):
        decode_image(encode(writable(suffix, 16, 16), suffix), "small")


def test_a_10000x10000_jpeg_is_decoded_reduced_and_faces_are_in_original_pixels(recognizer, tmp_path):
    side = 10_000
    image = np.full((side, side), 90, np.uint8)
    image[4000:7000, 5000:8000] = cv2.resize(cv2.cvtColor(draw_face(300), cv2.COLOR_BGR2GRAY), (3000, 3000))
    path = tmp_path / "huge.jpg"
    path.write_bytes(encode(image, ".jpg"))
    del image
    scaled = decode_image_scaled(path)
    assert scaled.image.shape == (2500, 2500) and scaled.original_size == (side, side)
    assert scaled.scale == (4.0, 4.0)
    (face,) = recognizer.predict(path)
    assert overlaps(face.box, (5000, 4000, 3000, 3000))


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_reduced_decoding_maps_boxes_back_for_png_and_jpeg(recognizer, face_scene, suffix):
    scene, placed = face_scene
    big = cv2.resize(scene, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
    for layout in (big, cv2.cvtColor(big, cv2.COLOR_BGR2GRAY)):
        scaled = decode_image_scaled(encode(layout, suffix), max_side=640)
        assert scaled.image.shape[:2] == (480, 640) and scaled.image.ndim == layout.ndim
        assert scaled.original_size == (1280, 960)
        faces = recognizer.predict(scaled)
        assert len(faces) == 2
        for box in placed:
            assert any(overlaps(f.box, tuple(2 * v for v in box)) for f in faces)
        # boxes given in original pixels (video tracking) crop the same faces and come back unchanged
        given = [f.box for f in faces]
        again = recognizer.predict(scaled, boxes=given)
        assert [f.box for f in again] == given
        assert [f.label for f in again] == [f.label for f in faces]


def test_small_images_and_arrays_are_not_reduced(face_scene):
    scene, _ = face_scene
    assert not decode_image_scaled(encode(scene, ".png")).reduced
    scaled = decode_image_scaled(scene)
    assert scaled.image is scene and scaled.original_size == (640, 480)
    assert decode_image_scaled(scaled) is scaled
    assert ScaledImage(np.zeros((10, 20)), (40, 20)).to_original((1, 1, 5, 5)) == (2, 2, 10, 10)


def test_16_bit_arrays_keep_their_high_byte_in_any_memory_layout():
    deep = (np.arange(60, dtype=np.uint16).reshape(5, 12) * 1000).astype(np.uint16)
    np.testing.assert_array_equal(decode_image(deep), (deep >> 8).astype(np.uint8))
    np.testing.assert_array_equal(decode_image(deep[:, ::2]), (deep[:, ::2] >> 8).astype(np.uint8))
    np.testing.assert_array_equal(decode_image(deep.byteswap().view(">u2")), (deep >> 8).astype(np.uint8))


# --- truncated files, and complete files followed by other data ---

MOTION_PHOTO_TAIL = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40 + b"\xff\xd8\xff\xda\x00\x08" + b"\x01" * 500


@pytest.mark.parametrize(
    "params",
    [(), (cv2.IMWRITE_JPEG_PROGRESSIVE, 1), (cv2.IMWRITE_JPEG_RST_INTERVAL, 4)],
    ids=["baseline", "progressive", "restart-markers"],
)
def test_jpeg_with_trailing_data_decodes_and_a_cut_one_is_truncated(face_scene, params):
    jpeg = encode(face_scene[0], ".jpg", params)
    assert encoded_end(jpeg) == len(jpeg)
    motion_photo = jpeg + MOTION_PHOTO_TAIL
    assert encoded_end(motion_photo) == len(jpeg)
    np.testing.assert_array_equal(decode_image(motion_photo), decode_image(jpeg))
    for cut in (len(jpeg) // 10, len(jpeg) // 2, len(jpeg) - 600, len(jpeg) - 2, len(jpeg) - 1):
        with pytest.raises(ImageError, match="truncated"):
            decode_image(jpeg[:cut], f"cut-{cut}.jpg")


def test_png_with_trailing_data_decodes_and_a_cut_one_is_truncated(face_scene):
    data = encode(face_scene[0], ".png")
    np.testing.assert_array_equal(decode_image(data + b"IEND" + bytes(2000)), face_scene[0])
    for cut in (40, len(data) // 2, len(data) - 5):
        with pytest.raises(ImageError, match="truncated"):
            decode_image(data[:cut])


# --- EXIF orientation (#29.12): boxes are in the upright image's pixels ---


def test_a_sideways_stored_photo_with_orientation_6_is_scored_upright(recognizer, face_scene, tmp_path):
    """A phone stores a portrait photo sideways with EXIF Orientation=6 ("turn 90 degrees clockwise");
    faces are found in, and boxes given in, the upright image a viewer shows."""
    scene, placed = face_scene
    stored = cv2.rotate(scene, cv2.ROTATE_90_COUNTERCLOCKWISE)
    jpeg = encode(stored, ".jpg", (cv2.IMWRITE_JPEG_QUALITY, 95))
    # EXIF: a big-endian TIFF header, one IFD with one entry: tag 274 (Orientation), SHORT, 1 value, 6
    payload = b"Exif\x00\x00MM\x00\x2a" + struct.pack(">IHHHIHHI", 8, 1, 274, 3, 1, 6, 0, 0)
    path = tmp_path / "portrait.jpg"
    path.write_bytes(jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:])
    assert decode_image(path).shape == scene.shape
    faces = recognizer.predict(path)
    assert len(faces) == 2
    for box in placed:
        assert any(overlaps(face.box, box) for face in faces)
