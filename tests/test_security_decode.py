"""Issue #29, decoding half: bombs past the header checks, scan bombs, EXIF orientation, library noise.

The adversarial files are generated here, each a few bytes to a few KB (``ADVERSARIAL`` is the corpus):
a bomb only has to claim its size, since it must be refused from its header before any decoder runs.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from feredge.edge import decode
from feredge.edge.decode import MAX_IMAGE_FRAMES, MAX_JPEG_SCANS, decode_image, decode_image_scaled, orient
from feredge.edge.errors import ImageError
from feredge.edge.imageinfo import image_info
from feredge.edge.quiet import library_messages

pytestmark = pytest.mark.edge  # needs only `pip install .`

ROOT = Path(__file__).resolve().parent.parent


def pattern(height: int = 48, width: int = 64) -> np.ndarray:
    """A BGR image in which every turn and flip is visible (no symmetry)."""
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([xx * 255 // width, yy * 255 // height, (xx * 7 + yy * 3) % 256], axis=-1).astype(np.uint8)


# --- generated files ---


def gif(screen: tuple[int, int], frames: list[tuple[int, int]], padding: int = 0) -> bytes:
    """A GIF with a logical ``screen`` and one 2-colour frame of each size (1 pixel of LZW data each),
    ``padding`` bytes of comment extension before the first frame."""
    out = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    comment = b"x" * padding
    if comment:
        out += b"\x21\xfe" + b"".join(
            bytes([len(c)]) + c for c in (comment[i : i + 255] for i in range(0, padding, 255))
        )
        out += b"\x00"
    for width, height in frames:
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return out + b"\x3b"


def tiff(pages: list[np.ndarray | tuple[np.ndarray, dict[int, int]] | dict[int, int]], **layout) -> bytes:
    """A TIFF with one uncompressed page per array (extra tags in an ``(array, tags)`` pair), or per
    dict of tags that only claims a size (no pixel data). ``big``: BigTIFF; ``order``: ">" for
    big-endian; ``loop``: every IFD links to itself."""
    big, order, loop = layout.get("big", False), layout.get("order", "<"), layout.get("loop", False)
    entries_of: list[list[tuple[int, int, int]]] = []  # (tag, type, value) per page; type 3 SHORT, 4 LONG
    data = b""
    header = 16 if big else 8
    items = [
        (page, {}) if isinstance(page, np.ndarray) else (None, page) if isinstance(page, dict) else page
        for page in pages
    ]
    offsets_at = []
    for image, extra in items:
        tags: dict[int, tuple[int, int]] = {}
        if image is not None:
            height, width = image.shape[:2]
            channels = 1 if image.ndim == 2 else 3
            pixels = image if channels == 1 else image[:, :, ::-1]  # TIFF stores RGB
            offsets_at.append((len(data), len(pixels.tobytes())))
            data += pixels.tobytes()
            tags.update(
                {256: (4, width), 257: (4, height), 258: (3, 8), 259: (3, 1), 262: (3, 1 if channels == 1 else 2)}
            )
            tags.update({273: (4, -1), 277: (3, channels), 278: (4, height), 279: (4, len(pixels.tobytes()))})
        else:
            offsets_at.append(None)
        tags.update({tag: (4 if value > 0xFFFF else 3, value) for tag, value in extra.items()})
        entries_of.append([(tag, kind, value) for tag, (kind, value) in sorted(tags.items())])
    count_code, entry_size, next_code = ("Q", 20, "Q") if big else ("H", 12, "I")
    ifd_sizes = [struct.calcsize(count_code) + len(e) * entry_size + struct.calcsize(next_code) for e in entries_of]
    ifd_offsets = [header + sum(ifd_sizes[:i]) for i in range(len(ifd_sizes))]
    data_start = header + sum(ifd_sizes)
    out = b"II" if order == "<" else b"MM"
    out += (
        struct.pack(order + "HHHQ", 43, 8, 0, ifd_offsets[0]) if big else struct.pack(order + "HI", 42, ifd_offsets[0])
    )
    for i, entries in enumerate(entries_of):
        out += struct.pack(order + count_code, len(entries))
        for tag, kind, value in entries:
            if tag == 273:
                value = data_start + offsets_at[i][0]
            field = struct.pack(order + ("H" if kind == 3 else "I"), value).ljust(8 if big else 4, b"\x00")
            out += struct.pack(order + "HH" + ("Q" if big else "I"), tag, kind, 1) + field
        following = ifd_offsets[i] if loop else (ifd_offsets[i + 1] if i + 1 < len(entries_of) else 0)
        out += struct.pack(order + next_code, following)
    return out + data


def webp_vp8x(width: int, height: int, image_chunk: bytes = b"", exif: bytes = b"") -> bytes:
    """A WebP with an extended header (canvas ``width`` x ``height``), ``image_chunk`` and an EXIF chunk."""
    flags = 0x08 if exif else 0
    body = b"VP8X" + struct.pack("<I", 10) + struct.pack("<I", flags)
    body += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little") + image_chunk
    if exif:
        body += b"EXIF" + struct.pack("<I", len(exif)) + exif + b"\x00" * (len(exif) & 1)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def webp_vp8l(width: int, height: int) -> bytes:
    bits = (width - 1) | (height - 1) << 14
    chunk = b"VP8L" + struct.pack("<I", 5) + b"\x2f" + struct.pack("<I", bits) + b"\x00"
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def webp_vp8(width: int, height: int) -> bytes:
    payload = b"\x00\x00\x00\x9d\x01\x2a" + struct.pack("<HH", width, height)
    chunk = b"VP8 " + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def exif_orientation(value: int, order: str = "<") -> bytes:
    """A TIFF structure (the payload of an EXIF block) holding only the Orientation tag."""
    mark = b"II" if order == "<" else b"MM"
    return mark + struct.pack(order + "HIHHHIHHI", 42, 8, 1, 274, 3, 1, value, 0, 0)


def with_exif(jpeg: bytes, orientation: int) -> bytes:
    """``jpeg`` with an APP1 EXIF segment carrying ``orientation`` right after its SOI."""
    payload = b"Exif\x00\x00" + exif_orientation(orientation, ">")
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def many_scans(scans: int) -> bytes:
    """A real progressive gray JPEG whose last (refinement) scan is repeated until it has ``scans`` scans."""
    data = cv2.imencode(".jpg", pattern()[:, :, 0], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    last = data.rindex(b"\xff\xda")
    extra = data[last:-2] * (scans - data.count(b"\xff\xda"))
    return data[:-2] + extra + data[-2:]


def pnm(magic: str, width: int, height: int) -> bytes:
    return f"P{magic}\n# a comment\n{width} {height}\n255\n".encode() + b"\x00" * 64


# name -> (file, what the refusal says). Every one claims more than the limits allow.
ADVERSARIAL = {
    "gif-screen": (gif((30000, 30000), [(1, 1)], padding=18_000), r"30000x30000 pixels \(900 MP\) is above"),
    "gif-frame": (gif((16, 16), [(8, 8), (30000, 30000)]), r"frame 2 of 30000x30000 pixels"),
    "gif-frames": (gif((16, 16), [(1, 1)] * (MAX_IMAGE_FRAMES + 1)), r"more than 1,000 frames"),
    "tiff-page-1": (tiff([{256: 20000, 257: 20000}]), r"20000x20000 pixels"),
    "tiff-page-2": (tiff([pattern(), {256: 20000, 257: 20000}]), r"page 2 of 20000x20000 pixels"),
    "tiff-tile": (tiff([(pattern(), {322: 16384, 323: 16384})]), r"tile of page 1 of 16384x16384 pixels"),
    "tiff-big-endian": (tiff([{256: 20000, 257: 20000}], order=">"), r"20000x20000 pixels"),
    "bigtiff": (tiff([{256: 20000, 257: 20000}], big=True), r"20000x20000 pixels"),
    "bigtiff-page-2": (tiff([pattern(), {256: 70000, 257: 70000}], big=True), r"page 2 of 70000x70000 pixels"),
    "tiff-pages": (tiff([{256: 1, 257: 1}] * (MAX_IMAGE_FRAMES + 1)), r"more than 1,000 pages"),
    "webp-vp8x": (webp_vp8x(16000, 16000), r"16000x16000 pixels"),
    "webp-vp8l": (webp_vp8l(16000, 16000), r"16000x16000 pixels"),
    "webp-vp8": (webp_vp8(16000, 16000), r"16000x16000 pixels"),
    "pgm": (pnm("5", 30000, 30000), r"30000x30000 pixels"),
    "ppm": (pnm("6", 30000, 30000), r"30000x30000 pixels"),
    "pbm": (pnm("4", 30000, 30000), r"30000x30000 pixels"),
    "thin-bmp": (
        b"BM" + struct.pack("<IHHIIiiHHIIiiII", 0, 0, 0, 54, 40, 2_000_000, 1, 1, 24, 0, 0, 0, 0, 0, 0),
        r"2000000x1 pixels has a side above the limit of 1,000,000 pixels",
    ),
    "jpeg-scans": (many_scans(MAX_JPEG_SCANS + 1), r"101 JPEG scans is above the limit of 100"),
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_files_are_refused_from_their_header_without_decoding(name, monkeypatch, tmp_path):
    data, refusal = ADVERSARIAL[name]
    assert len(data) < 40_000  # a bomb is small: the corpus commits nothing, and costs nothing to make
    monkeypatch.setattr(decode.cv2, "imdecode", lambda *args: pytest.fail(f"{name} reached the decoder"))
    path = tmp_path / f"{name}.img"
    path.write_bytes(data)
    for source in (data, path):
        with pytest.raises(ImageError, match=refusal) as raised:
            decode_image_scaled(source, name)
        assert str(raised.value).startswith(f"{name}: ") and "\n" not in str(raised.value)


def test_the_same_structures_within_the_limits_decode():
    """The generators make real files: within the limits the same GIF, TIFF, BigTIFF and WebP decode."""
    image = pattern()
    gray = image[:, :, 0]
    for data, expected in (
        (tiff([image]), image),
        (tiff([gray], order=">"), gray),
        (tiff([image], big=True), image),
        (tiff([image, gray, gray]), image),  # the first of three pages
    ):
        np.testing.assert_array_equal(decode_image(data), expected)
    assert image_info(tiff([image, gray, gray])).frames == 3
    assert decode_image(gif((8, 8), [(1, 1), (8, 8)])).shape[:2] == (8, 8)
    assert image_info(gif((16, 16), [(1, 1)] * MAX_IMAGE_FRAMES)).frames == MAX_IMAGE_FRAMES
    assert image_info(many_scans(MAX_JPEG_SCANS)).scans == MAX_JPEG_SCANS
    assert decode_image(many_scans(MAX_JPEG_SCANS)).shape == (48, 64)


def test_pnm_comments_cannot_make_the_header_reader_backtrack():
    """A comment that could end anywhere let "P5 # # # ...x" take exponential time (40 pairs: hours)."""
    assert image_info(b"P5" + b" #" * 2000 + b"x") is None
    assert image_info(b"P5 #" + b" #" * 40 + b"\n8 8 255\n" + bytes(64)).width == 8
    with pytest.raises(ImageError, match="corrupt PBM/PGM/PPM header"):
        decode_image(b"P5" + b" #" * 40 + b"x", "comments.pgm")


def test_structures_made_to_be_slow_to_walk_are_refused_or_skipped_fast():
    """Each walk in Python is bounded: JPEG segments (libjpeg walks 4-byte COM segments in C, the
    header reader would take a minute for 50 MB of them), runs of JPEG fill bytes, GIF sub-blocks."""
    jpeg = cv2.imencode(".jpg", pattern())[1].tobytes()
    sof = jpeg.index(b"\xff\xc0")
    comments = jpeg[:sof] + b"\xff\xfe\x00\x02" * 10_001 + jpeg[sof:]
    with pytest.raises(ImageError, match=r"more than 10,000 JPEG segments"):
        decode_image(jpeg[: sof + 19] + b"\xff\xfe\x00\x02" * 10_001 + jpeg[sof + 19 :], "comments.jpg")
    assert image_info(comments) is None  # before the frame header: no usable header
    filled = jpeg[:sof] + b"\xff" * 1_000_000 + jpeg[sof:]  # fill bytes before a marker are legal
    assert image_info(filled).scans == 1 and decode_image(filled).shape == (48, 64, 3)
    one_byte_blocks = gif((8, 8), [(8, 8)])[:-5] + b"\x01\x00" * 20_000 + b"\x00\x3b"
    with pytest.raises(ImageError, match=r"corrupt GIF header"):
        decode_image(one_byte_blocks, "slow.gif")


def test_a_tiff_whose_ifd_points_to_itself_ends():
    data = tiff([pattern()], loop=True)
    assert image_info(data).frames == 1
    np.testing.assert_array_equal(decode_image(data), pattern())


@pytest.mark.parametrize(("gray", "scans"), [(False, 10), (True, 6)])
def test_encoders_progressive_scripts_stay_far_below_the_scan_limit(gray, scans):
    """The limit's reason: libjpeg-turbo's own progressive script (OpenCV's) has 10 scans, 6 for gray."""
    image = pattern()[:, :, 0] if gray else pattern()
    for quality in (50, 95, 100):
        params = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1, cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_OPTIMIZE, 1]
        assert image_info(cv2.imencode(".jpg", image, params)[1].tobytes()).scans == scans < MAX_JPEG_SCANS
    assert image_info(cv2.imencode(".jpg", image)[1].tobytes()).scans == 1


# --- EXIF orientation ---


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_exif_orientation_is_applied_as_opencv_applies_it(orientation, tmp_path):
    plain = cv2.imencode(".jpg", pattern(), [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
    data = with_exif(plain, orientation)
    assert image_info(data).orientation == orientation
    opencv = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # OpenCV's EXIF handling, JPEG only
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    for source in (data, path):
        np.testing.assert_array_equal(decode_image(source), opencv)
    np.testing.assert_array_equal(orient(decode_image(plain), orientation), opencv)


def test_orientation_6_turns_jpeg_tiff_and_webp_alike():
    image = pattern()
    upright = cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    lossless = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
    vp8l = lossless[12:]  # the VP8L chunk of a simple lossless WebP
    assert vp8l[:4] == b"VP8L"
    files = {
        "jpeg": with_exif(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes(), 6),
        "tiff": tiff([(image, {274: 6})]),
        "tiff-big-endian": tiff([(image, {274: 6})], order=">"),
        "webp": webp_vp8x(64, 48, vp8l, exif_orientation(6)),
        "webp-exif-header": webp_vp8x(64, 48, vp8l, b"Exif\x00\x00" + exif_orientation(6)),
    }
    for name, data in files.items():
        decoded = decode_image(data, name)
        assert decoded.shape == (64, 48, 3), name
        if name == "jpeg":
            assert np.abs(decoded.astype(int) - upright).mean() < 4  # lossy; turned the wrong way it is ~100
        else:
            np.testing.assert_array_equal(decoded, upright, err_msg=name)
        # a reduced decode takes other paths through OpenCV (its TIFF decoder turns full decodes only)
        reduced = decode_image_scaled(data, name, max_side=40)
        assert reduced.image.shape == (32, 24, 3) and reduced.original_size == (48, 64), name
        half = cv2.resize(upright, (24, 32), interpolation=cv2.INTER_AREA)
        assert np.abs(reduced.image.astype(int) - half).mean() < 8, name


def test_a_reduced_decode_is_upright_and_reports_the_upright_size():
    big = cv2.resize(pattern(), (1280, 960), interpolation=cv2.INTER_NEAREST)
    data = with_exif(cv2.imencode(".jpg", big)[1].tobytes(), 6)
    scaled = decode_image_scaled(data, max_side=640)
    assert scaled.original_size == (960, 1280) and scaled.image.shape == (640, 480, 3)
    assert scaled.scale == (2.0, 2.0)


def test_out_of_range_or_broken_exif_is_ignored():
    plain = cv2.imencode(".jpg", pattern())[1].tobytes()
    for broken in (with_exif(plain, 0), with_exif(plain, 9), plain[:2] + b"\xff\xe1\x00\x08Exif\x00\x00" + plain[2:]):
        assert image_info(broken).orientation == 1
        assert decode_image(broken).shape == (48, 64, 3)


# --- library messages on stderr, and the one-line error ---


def corrupt_png_crc() -> bytes:
    data = bytearray(cv2.imencode(".png", pattern())[1].tobytes())
    at = data.find(b"IDAT")
    (length,) = struct.unpack(">I", data[at - 4 : at])
    data[at + 4 + length] ^= 0xFF  # the chunk's CRC
    return bytes(data)


def test_a_corrupt_png_is_one_line_in_our_words_and_nothing_on_stderr(capfd):
    with pytest.raises(ImageError, match=r"^bad.png: not a readable image \(corrupt PNG data: IDAT: CRC error\)$"):
        decode_image(corrupt_png_crc(), "bad.png")
    assert capfd.readouterr().err == ""


def test_a_corrupt_jpeg_or_tiff_prints_nothing(capfd):
    jpeg = bytearray(cv2.imencode(".jpg", pattern())[1].tobytes())
    jpeg[len(jpeg) // 2 : len(jpeg) // 2 + 40] = b"\x13" * 40  # libjpeg: "Corrupt JPEG data: ..." and goes on
    decode_image(bytes(jpeg), "bad.jpg")
    compressed = cv2.imencode(".tif", pattern())[1].tobytes()
    broken = compressed[:8] + bytes(22) + compressed[30:]  # libtiff: "Using code not yet in table"
    try:
        decode_image(broken, "bad.tif")
    except ImageError as exc:
        assert "bad.tif: not a readable image" in str(exc)
    assert capfd.readouterr().err == ""


def test_decoder_errors_do_not_leak_opencv_internals():
    with pytest.raises(ImageError) as raised:
        decode_image(ADVERSARIAL["thin-bmp"][0], "wide.bmp")
    for internal in ("loadsave", ".cpp", "OpenCV(", "Assertion", "validateInputImageSize"):
        assert internal not in str(raised.value)
    cut = cv2.imencode(".webp", pattern())[1].tobytes()[:60]
    with pytest.raises(ImageError, match=r"^cut.webp: not a readable image \(corrupt WebP data\)$"):
        decode_image(cut, "cut.webp")


def test_what_other_code_prints_meanwhile_still_reaches_stderr(capfd):
    """Both lines are written to file descriptor 2 itself, as a C library or a logging handler does."""
    with library_messages() as messages:
        os.write(2, b"a log line of another thread\n")
        with library_messages():
            os.write(2, b"libpng warning: iCCP: known incorrect sRGB profile\n")
    err = capfd.readouterr().err
    assert err == "a log line of another thread\n"
    assert "libpng warning: iCCP" in messages.text and messages.reason() == "iCCP: known incorrect sRGB profile"


def test_creating_interpreters_and_detectors_prints_nothing():
    """A fresh process, as the runtime prints its XNNPACK line once per process."""
    script = (
        "from feredge.edge.tflite_runner import create_interpreter\n"
        "from feredge.edge.detectors import make_detector\n"
        "create_interpreter(open('tests/fixtures/int8.tflite', 'rb').read(), 1, 'tiny')\n"
        "for name in ('yunet', 'blazeface'): make_detector(name)\n"
        "print('done')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "done\n"
    assert done.stderr == ""


def test_a_corrupt_tflite_is_one_line_naming_the_file(capfd):
    from feredge.edge.errors import ModelLoadError
    from feredge.edge.tflite_runner import create_interpreter

    good = (ROOT / "tests" / "fixtures" / "int8.tflite").read_bytes()
    with pytest.raises(ModelLoadError, match=r"^broken.tflite: not a valid TFLite model \(.+\)$"):
        create_interpreter(good[:100] + bytes(500) + good[600:], 1, "broken.tflite")
    assert capfd.readouterr().err == ""


def test_concurrent_decodes_share_the_capture_and_restore_stderr(capfd):
    """The demo decodes on several threads: each failure keeps its own reason, and fd 2 comes back."""
    from concurrent.futures import ThreadPoolExecutor

    good, bad = cv2.imencode(".png", pattern())[1].tobytes(), corrupt_png_crc()

    def one(i: int) -> str:
        try:
            decode_image(bad if i % 2 else good, f"{i}.png")
        except ImageError as exc:
            return str(exc)
        return "ok"

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(200)))
    assert results[::2] == ["ok"] * 100
    assert all(
        r == f"{i}.png: not a readable image (corrupt PNG data: IDAT: CRC error)"
        for i, r in enumerate(results)
        if i % 2
    )
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
