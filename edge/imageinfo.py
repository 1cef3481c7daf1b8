"""An encoded image's size and structure, read from its bytes without decoding any pixel.

``image_info`` reads the pixel size from the header of PNG (IHDR), JPEG (the SOFn frame header),
WebP (VP8/VP8L/VP8X) and BMP files, so a decompression bomb (a 1 MB PNG of 20000 x 20000 pixels)
can be refused before a decoder allocates its buffer. ``encoded_end`` walks a PNG's chunks or a
JPEG's segments and scans to find where the image ends, which tells a truncated file from a
complete one followed by other data (phone "motion photos" append a video after the JPEG's EOI).

Pure Python on ``bytes``; no OpenCV, no numpy.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"

# Frame headers: SOF0-3, 5-7, 9-11, 13-15 (C4 is DHT, C8 is reserved, CC is DAC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_SOS, _JPEG_EOI = 0xDA, 0xD9
# Markers without a length field: TEM, RST0-7, SOI, EOI.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xDA)})
# Inside entropy-coded data 0xFF is followed by a stuffed 0x00, a restart marker or a fill byte;
# anything else is the marker that ends the scan.
_JPEG_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


@dataclass(frozen=True)
class ImageInfo:
    """What an encoded image's header says: its format, pixel size and channel count (if known)."""

    format: str
    width: int
    height: int
    channels: int | None = None

    @property
    def pixels(self) -> int:
        return self.width * self.height


def image_info(data: bytes) -> ImageInfo | None:
    """Size of a PNG, JPEG, WebP or BMP from its header; ``None`` for other formats or no usable header."""
    if data.startswith(PNG_SIGNATURE):
        return _png_info(data)
    if data.startswith(JPEG_SOI):
        return _jpeg_info(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_info(data)
    if data[:2] == b"BM":
        return _bmp_info(data)
    return None


def encoded_end(data: bytes) -> int | None:
    """Offset just past the end of a PNG (IEND chunk) or JPEG (EOI marker) in ``data``.

    ``None`` when the data stops before the image does (a truncated file). Other formats, and data
    whose structure cannot be followed, give ``len(data)``: the decoder is left to judge them.
    """
    if data.startswith(PNG_SIGNATURE):
        return _png_end(data)
    if data.startswith(JPEG_SOI):
        return _jpeg_end(data)
    return len(data)


def _positive(info: ImageInfo) -> ImageInfo | None:
    return info if info.width > 0 and info.height > 0 else None


def _png_info(data: bytes) -> ImageInfo | None:
    if len(data) < 26 or data[12:16] != b"IHDR":
        return None
    width, height, _depth, color_type = struct.unpack(">IIBB", data[16:26])
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(color_type)
    return _positive(ImageInfo("png", width, height, channels))


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, payload start, payload end) of each segment from SOI on, entropy-coded scan data
    skipped (progressive JPEGs have many scans). Ends after EOI, where the data ends, or at a byte
    that should be a marker and is not or a segment length below 2, which give marker -1."""
    pos = 2
    while pos + 2 <= len(data):
        if data[pos] != 0xFF:
            yield -1, pos, pos
            return
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            yield marker, pos + 2, pos + 2
            if marker == _JPEG_EOI:
                return
            pos += 2
            continue
        if pos + 4 > len(data):
            return
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if length < 2:  # the length counts its own two bytes: a smaller one is corrupt, not a segment
            yield -1, pos, pos
            return
        end = pos + 2 + length
        yield marker, pos + 4, end
        if end > len(data):
            return
        pos = end
        if marker == _JPEG_SOS:
            found = _JPEG_SCAN_END.search(data, pos)
            if found is None:
                return
            pos = found.start()


def _jpeg_info(data: bytes) -> ImageInfo | None:
    for marker, start, end in _jpeg_segments(data):
        if marker in _JPEG_SOF:
            if end > len(data) or end - start < 6:
                return None
            _precision, height, width, components = struct.unpack(">BHHB", data[start : start + 6])
            # height 0 means "set later by a DNL marker": unknown here.
            return _positive(ImageInfo("jpeg", width, height, components))
        if marker in (_JPEG_SOS, _JPEG_EOI, -1):
            return None
    return None


def _webp_info(data: bytes) -> ImageInfo | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
        return ImageInfo("webp", width, height)
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return ImageInfo("webp", 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF))
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return _positive(ImageInfo("webp", width & 0x3FFF, height & 0x3FFF))
    return None


def _bmp_info(data: bytes) -> ImageInfo | None:
    if len(data) < 26:
        return None
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack("<HH", data[18:22])
    elif header_size >= 40:
        width, height = struct.unpack("<ii", data[18:26])
    else:
        return None
    return _positive(ImageInfo("bmp", width, abs(height)))  # a negative height is a top-down bitmap


def _png_end(data: bytes) -> int | None:
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        pos += 12 + length  # length, type, data, CRC
        if kind == b"IEND":
            return pos if pos <= len(data) else None
    return None


def _jpeg_end(data: bytes) -> int | None:
    for marker, _, end in _jpeg_segments(data):
        if marker == _JPEG_EOI:
            return end
        if marker == -1:
            return len(data)  # not a marker where one must be: leave it to the decoder
    return None
