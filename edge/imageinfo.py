"""An encoded image's size and structure, read from its bytes without decoding any pixel.

``image_info`` reads the pixel size from the header of every format feredge decodes: PNG (IHDR),
JPEG (the SOFn frame header), WebP (VP8/VP8L/VP8X), BMP, GIF (the logical screen and every frame's
descriptor), TIFF and BigTIFF (every page's IFD, and its tiles) and PNM (P1-P6), so a decompression
bomb (a 1 MB PNG of 20000 x 20000 pixels, an 18 KB GIF with a 30000 x 30000 screen) can be refused
before a decoder allocates its buffer. It also counts a JPEG's scans (each progressive scan is a pass
over the whole image) and reads the EXIF orientation of JPEG, TIFF and WebP files.

``encoded_end`` walks a PNG's chunks or a JPEG's segments and scans to find where the image ends,
which tells a truncated file from a complete one followed by other data (phone "motion photos"
append a video after the JPEG's EOI).

Pure Python on ``bytes``; no OpenCV, no numpy. Every walk is bounded: by the data's length, and for
TIFF and GIF by ``MAX_WALKED_PARTS`` pages or frames.
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
_JPEG_SOS, _JPEG_EOI, _JPEG_APP1 = 0xDA, 0xD9, 0xE1
# Markers without a length field: TEM, RST0-7, SOI, EOI.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xDA)})
# Inside entropy-coded data 0xFF is followed by a stuffed 0x00, a restart marker or a fill byte;
# anything else is the marker that ends the scan.
_JPEG_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_FILL = re.compile(rb"\xff+")

# A JPEG walk stops after this many segments (``ImageInfo.segments`` then holds one more): a real file
# has a few dozen outside its scans (restart markers inside scans are not walked), and a file of
# millions of empty 4-byte segments would cost a minute of Python while libjpeg walks it in C.
MAX_WALKED_SEGMENTS = 10_000
# A TIFF or GIF walk stops after this many pages or frames (``ImageInfo.parts`` then holds one more
# than this): the caller refuses such a file rather than letting a chain of tiny IFDs or frames cost
# seconds of parsing.
MAX_WALKED_PARTS = 1000
# libtiff refuses an IFD of more entries ("Sanity check on directory count failed").
_TIFF_MAX_ENTRIES = 4096
_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_ORIENTATION, _TIFF_TILE_WIDTH, _TIFF_TILE_HEIGHT = 256, 257, 274, 322, 323
_TIFF_TAGS = (_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_ORIENTATION, _TIFF_TILE_WIDTH, _TIFF_TILE_HEIGHT)
# TIFF field types that hold one unsigned integer: BYTE, SHORT, LONG, LONG8 -> struct code.
_TIFF_INTEGERS = {1: "B", 3: "H", 4: "I", 16: "Q"}
_GIF_TRAILER, _GIF_EXTENSION, _GIF_IMAGE = 0x3B, 0x21, 0x2C
_PNM_CHANNELS = {b"1": 1, b"2": 1, b"3": 3, b"4": 1, b"5": 1, b"6": 3}
# Whitespace and "#" comments between a PNM header's fields; the header is read from its first 4 KiB.
# A comment runs to its line's end, which it must reach: were it allowed to end anywhere, "P5 # # # ..."
# could be split into comments in exponentially many ways, and a failed match would try them all.
_PNM_HEADER = re.compile(rb"P([1-6])((?:\s|#[^\r\n]*[\r\n])+)(\d{1,9})((?:\s|#[^\r\n]*[\r\n])+)(\d{1,9})\s?")


@dataclass(frozen=True)
class ImageInfo:
    """What an encoded image's header says, without decoding a pixel.

    ``width`` x ``height`` is the stored image (before EXIF orientation); ``parts`` names every other
    area a decoder of this file may allocate for, as (what, width, height): a GIF's frames, a TIFF's
    later pages and its tiles. ``frames`` counts a GIF's frames or a TIFF's pages (the walk stops at
    ``MAX_WALKED_PARTS + 1``). ``orientation`` is the EXIF orientation (1-8, 1 = upright) and
    ``scans`` the number of JPEG scans (SOS markers) before EOI, ``segments`` of all its segments (the walk
    stops at ``MAX_WALKED_SEGMENTS + 1``). ``end`` is where the image ends in
    the data (as ``encoded_end``), None when the data stops before it does.
    """

    format: str
    width: int
    height: int
    channels: int | None = None
    parts: tuple[tuple[str, int, int], ...] = ()
    frames: int = 1
    orientation: int = 1
    scans: int = 0
    segments: int = 0
    end: int | None = None

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def upright_size(self) -> tuple[int, int]:
        """(width, height) after the EXIF orientation: orientations 5-8 turn the image by 90 degrees."""
        return (self.height, self.width) if self.orientation >= 5 else (self.width, self.height)


def image_format(data: bytes) -> str | None:
    """The format named by ``data``'s signature (``"png"``, ``"jpeg"``, ``"webp"``, ``"bmp"``,
    ``"gif"``, ``"tiff"``, ``"pnm"``), whether or not the rest of its header is usable; else None."""
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data.startswith(JPEG_SOI):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] == b"BM":
        return "bmp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if len(data) >= 3 and data[0:1] == b"P" and data[1:2] in _PNM_CHANNELS and data[2:3].isspace():
        return "pnm"
    return None


def image_info(data: bytes) -> ImageInfo | None:
    """Size and structure of an image in a format of ``image_format``; ``None`` for other data or a
    header that cannot be read (or claims 0 pixels)."""
    readers = {
        "png": _png_info,
        "jpeg": _jpeg_info,
        "webp": _webp_info,
        "bmp": _bmp_info,
        "gif": _gif_info,
        "tiff": _tiff_info,
        "pnm": _pnm_info,
    }
    kind = image_format(data)
    return None if kind is None else readers[kind](data)


def encoded_end(data: bytes) -> int | None:
    """Offset just past the end of a PNG (IEND chunk) or JPEG (EOI marker) in ``data``.

    ``None`` when the data stops before the image does (a truncated file). Other formats, and data
    whose structure cannot be followed, give ``len(data)``: the decoder is left to judge them.
    """
    if data.startswith(PNG_SIGNATURE):
        return _png_end(data)
    if data.startswith(JPEG_SOI):
        return _jpeg_walk(data).end
    return len(data)


def _positive(info: ImageInfo) -> ImageInfo | None:
    return info if info.width > 0 and info.height > 0 else None


def _png_info(data: bytes) -> ImageInfo | None:
    if len(data) < 26 or data[12:16] != b"IHDR":
        return None
    width, height, _depth, color_type = struct.unpack(">IIBB", data[16:26])
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(color_type)
    return _positive(ImageInfo("png", width, height, channels, end=_png_end(data)))


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
        if marker == 0xFF:  # fill bytes before a marker: skipped at once, a run may be millions long
            run = _JPEG_FILL.match(data, pos)
            assert run is not None  # data[pos] is 0xFF
            pos = run.end() - 1
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


@dataclass
class _JpegWalk:
    frame: tuple[int, int, int] | None = None  # (width, height, components) of the first SOFn before any scan
    orientation: int = 1
    scans: int = 0
    segments: int = 0
    end: int | None = None  # as ``encoded_end``


def _jpeg_walk(data: bytes) -> _JpegWalk:
    """One pass over a JPEG's segments: its frame header, EXIF orientation, scan count and end; it
    stops after ``MAX_WALKED_SEGMENTS`` (the structure is then not followed: the end is the data's)."""
    walk, seen_exif = _JpegWalk(), False
    for marker, start, end in _jpeg_segments(data):
        walk.segments += 1
        if walk.segments > MAX_WALKED_SEGMENTS:
            walk.end = len(data)
            break
        if marker == _JPEG_EOI:
            walk.end = end
            break
        if marker == -1:
            walk.end = len(data)  # not a marker where one must be: leave it to the decoder
            break
        if end > len(data):
            break
        if marker == _JPEG_SOS:
            walk.scans += 1
        elif marker in _JPEG_SOF and walk.frame is None and walk.scans == 0 and end - start >= 6:
            _precision, height, width, components = struct.unpack(">BHHB", data[start : start + 6])
            walk.frame = (width, height, components)
        elif marker == _JPEG_APP1 and not seen_exif and data[start : start + 4] == b"Exif":
            seen_exif = True  # only the first EXIF segment counts, as for libjpeg-based readers
            walk.orientation = _exif_orientation(data[start + 6 : end])
    return walk


def _jpeg_info(data: bytes) -> ImageInfo | None:
    walk = _jpeg_walk(data)
    if walk.frame is None:
        return None
    width, height, components = walk.frame
    # height 0 means "set later by a DNL marker": unknown here.
    return _positive(
        ImageInfo("jpeg", width, height, components, (), 1, walk.orientation, walk.scans, walk.segments, walk.end)
    )


def _webp_info(data: bytes) -> ImageInfo | None:
    chunk, orientation, end = data[12:16], 1, len(data)
    if chunk == b"VP8X" and len(data) >= 30:
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
        if data[20] & 0x08:  # the EXIF flag
            orientation = _exif_orientation(_riff_chunk(data, b"EXIF"))
        return ImageInfo("webp", width, height, orientation=orientation, end=end)
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return ImageInfo("webp", 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF), end=end)
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return _positive(ImageInfo("webp", width & 0x3FFF, height & 0x3FFF, end=end))
    return None


def _riff_chunk(data: bytes, fourcc: bytes) -> bytes:
    """The payload of a WebP file's first ``fourcc`` chunk; empty if it has none."""
    pos = 12
    while pos + 8 <= len(data):
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        if data[pos : pos + 4] == fourcc:
            return data[pos + 8 : pos + 8 + size]
        pos += 8 + size + (size & 1)  # chunks are padded to an even size
    return b""


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
    # a negative height is a top-down bitmap
    return _positive(ImageInfo("bmp", width, abs(height), end=len(data)))


def _gif_info(data: bytes) -> ImageInfo | None:
    """The logical screen and every frame's size, walking the blocks (and their sub-blocks) to the trailer.

    Decoders allocate the screen as the canvas and each frame for its pixels, so both are reported."""
    if len(data) < 13:
        return None
    width, height, flags = struct.unpack("<HHB", data[6:11])
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # the global colour table
    frames: list[tuple[str, int, int]] = []
    # Encoders write 255-byte sub-blocks; a walk of many more than that is a file made to be slow to walk.
    budget = 10_000 + len(data) // 64
    while pos < len(data) and len(frames) <= MAX_WALKED_PARTS and budget >= 0:
        block = data[pos]
        if block == _GIF_TRAILER:
            break
        if block == _GIF_EXTENSION:
            pos, walked = _gif_skip_sub_blocks(data, pos + 2, budget)
        elif block == _GIF_IMAGE and pos + 10 <= len(data):
            frame_width, frame_height, frame_flags = struct.unpack("<HHB", data[pos + 5 : pos + 10])
            frames.append((f"frame {len(frames) + 1}", frame_width, frame_height))
            pos += 10 + (3 << ((frame_flags & 7) + 1) if frame_flags & 0x80 else 0)
            pos, walked = _gif_skip_sub_blocks(data, pos + 1, budget)  # after the LZW minimum code size
        else:
            break  # truncated or corrupt: the decoder judges the rest
        budget -= walked
    if budget < 0:
        return None
    return _positive(ImageInfo("gif", width, height, None, tuple(frames), len(frames), end=len(data)))


def _gif_skip_sub_blocks(data: bytes, pos: int, most: int) -> tuple[int, int]:
    """The offset after the sub-blocks starting at ``pos`` (each a length byte and as many bytes, 0
    ends), and how many there were; it stops after ``most`` + 1."""
    count = 0
    while pos < len(data) and (size := data[pos]) and count <= most:
        pos += size + 1
        count += 1
    return pos + 1, count


def _tiff_info(data: bytes) -> ImageInfo | None:
    """The first page's size and orientation; every page and tile size in ``parts`` (pages after the
    first as "page N", tiles as "tile of page N"). IFDs are followed until the chain ends, loops, or
    passes ``MAX_WALKED_PARTS`` pages."""
    header = _tiff_header(data)
    if header is None:
        return None
    order, big, offset = header
    pages: list[dict[int, int]] = []
    seen: set[int] = set()
    while offset and offset not in seen and len(pages) <= MAX_WALKED_PARTS:
        seen.add(offset)
        ifd = _tiff_ifd(data, offset, order, big)
        if ifd is None:
            break  # a broken link: libtiff reads the pages before it
        tags, offset = ifd
        pages.append(tags)
    if not pages or _TIFF_WIDTH not in pages[0] or _TIFF_HEIGHT not in pages[0]:
        return None
    parts = []
    for number, tags in enumerate(pages, 1):
        if number > 1:
            parts.append((f"page {number}", tags.get(_TIFF_WIDTH, 0), tags.get(_TIFF_HEIGHT, 0)))
        if _TIFF_TILE_WIDTH in tags or _TIFF_TILE_HEIGHT in tags:
            parts.append((f"tile of page {number}", tags.get(_TIFF_TILE_WIDTH, 0), tags.get(_TIFF_TILE_HEIGHT, 0)))
    first = pages[0]
    orientation = _valid_orientation(first.get(_TIFF_ORIENTATION, 1))
    width, height = first[_TIFF_WIDTH], first[_TIFF_HEIGHT]
    return _positive(ImageInfo("tiff", width, height, None, tuple(parts), len(pages), orientation, end=len(data)))


def _tiff_header(data: bytes) -> tuple[str, bool, int] | None:
    """(struct byte order, BigTIFF or not, offset of the first IFD) of a TIFF structure."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or len(data) < 8:
        return None
    (version,) = struct.unpack(order + "H", data[2:4])
    if version == 42:
        return order, False, struct.unpack(order + "I", data[4:8])[0]
    if version == 43 and len(data) >= 16 and struct.unpack(order + "HH", data[4:8]) == (8, 0):
        return order, True, struct.unpack(order + "Q", data[8:16])[0]
    return None


def _tiff_ifd(data: bytes, offset: int, order: str, big: bool) -> tuple[dict[int, int], int] | None:
    """The integer tags that matter here (first value each) of the IFD at ``offset``, and the next
    IFD's offset (0 for none); None if the IFD runs past the data or has more entries than libtiff reads."""
    found = _tiff_entries(data, offset, order, big)
    if found is None:
        return None
    places, next_offset = found
    return {tag: struct.unpack_from(order + code, data, at)[0] for tag, (code, at) in places.items()}, next_offset


def _tiff_entries(data: bytes, offset: int, order: str, big: bool) -> tuple[dict[int, tuple[str, int]], int] | None:
    """Where the IFD at ``offset`` holds each tag that matters here, as (struct code, offset of the
    value), and the next IFD's offset; None as for ``_tiff_ifd``.

    Tags are found with C-speed searches in the list of entry tags, not a Python loop per entry."""
    count_code, entry_size, field = ("Q", 20, 8) if big else ("H", 12, 4)
    count_size = struct.calcsize(count_code)
    if offset + count_size > len(data):
        return None
    (count,) = struct.unpack_from(order + count_code, data, offset)
    start = offset + count_size
    end = start + count * entry_size
    if count > _TIFF_MAX_ENTRIES or end + field > len(data):
        return None
    native = "<" if struct.pack("=H", 1) == b"\x01\x00" else ">"
    entry_tags = memoryview(data)[start:end].cast("H")[:: entry_size // 2].tolist() if count else []
    places = {}
    for tag in _TIFF_TAGS:
        stored = tag if order == native else struct.unpack(native + "H", struct.pack(order + "H", tag))[0]
        if stored not in entry_tags:
            continue
        entry = start + entry_tags.index(stored) * entry_size
        kind, number = struct.unpack_from(order + "H" + ("Q" if big else "I"), data, entry + 2)
        code = _TIFF_INTEGERS.get(kind)
        if code is not None and number >= 1 and struct.calcsize(code) <= field:  # a value held in the entry
            places[tag] = (code, entry + 4 + field)
    (next_offset,) = struct.unpack_from(order + ("Q" if big else "I"), data, end)
    return places, next_offset


def tiff_as_stored(data: bytes) -> bytes:
    """A TIFF's bytes with its first page's Orientation tag set to 1 (a copy; ``data`` itself if it has none).

    OpenCV's TIFF decoder applies that tag itself on some paths (a full decode) and not on others (a
    reduced one), in no documented way, so the decoder is given the pixels as stored and the caller
    turns them upright once, as for JPEG and WebP."""
    header = _tiff_header(data)
    if header is None:
        return data
    order, big, offset = header
    found = _tiff_entries(data, offset, order, big)
    if found is None or _TIFF_ORIENTATION not in found[0]:
        return data
    code, at = found[0][_TIFF_ORIENTATION]
    patched = bytearray(data)
    struct.pack_into(order + code, patched, at, 1)
    return bytes(patched)


def _exif_orientation(exif: bytes) -> int:
    """The Orientation tag (1-8) of an EXIF block (a TIFF structure, optionally after ``Exif\\0\\0``);
    1 when there is none or it is out of range, as viewers do."""
    if exif.startswith(b"Exif"):
        exif = exif[6:]
    header = _tiff_header(exif)
    if header is None:
        return 1
    ifd = _tiff_ifd(exif, header[2], header[0], header[1])
    return 1 if ifd is None else _valid_orientation(ifd[0].get(_TIFF_ORIENTATION, 1))


def _valid_orientation(value: int) -> int:
    return value if 1 <= value <= 8 else 1


def _pnm_info(data: bytes) -> ImageInfo | None:
    found = _PNM_HEADER.match(data[:4096])
    if found is None:
        return None
    width, height = int(found[3]), int(found[5])
    return _positive(ImageInfo("pnm", width, height, _PNM_CHANNELS[found[1]], end=len(data)))


def _png_end(data: bytes) -> int | None:
    """Past the IEND chunk; None if the data ends first. A file of many more chunks than encoders write
    (their IDAT chunks are 8 KiB and up) is not followed to its end: the decoder judges it."""
    pos, budget = len(PNG_SIGNATURE), 10_000 + len(data) // 1024
    while pos + 8 <= len(data):
        budget -= 1
        if budget < 0:
            return len(data)
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        pos += 12 + length  # length, type, data, CRC
        if kind == b"IEND":
            return pos if pos <= len(data) else None
    return None
