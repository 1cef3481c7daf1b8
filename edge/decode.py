"""Images in any form (path, encoded bytes, array) -> uint8 gray or BGR pixels, within size limits.

Decoding is kept apart from the face-tensor contract (``edge/preprocess.py``): it is about files,
headers and memory, not about what a model sees. The size is read from the header before any pixel
is decoded, so a decompression bomb is refused cheaply and a huge photo is decoded at reduced scale;
only formats whose header is read here are decoded at all (``checked_info`` lists the limits).

Images come out upright: the EXIF orientation of JPEG, TIFF and WebP files is applied here, the same
way for every format, path or bytes, full or reduced decode (OpenCV applies it for some formats and
flags and not others, so it is asked for the stored pixels and this module turns them). Everything
downstream, and so every box a detector or recognizer reports, is in the upright image's pixels, as a
photo viewer shows it. PNG's rarely used eXIf orientation is not applied.

C libraries' own messages on stderr (libpng, libjpeg, libtiff through OpenCV) are captured during
the decode (``edge/quiet.py``); a failure's reason goes into the one-line ``ImageError`` instead.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from feredge.edge.errors import ImageError, ModelLoadError
from feredge.edge.imageinfo import (
    MAX_WALKED_PARTS,
    MAX_WALKED_SEGMENTS,
    ImageInfo,
    encoded_end,
    image_format,
    image_info,
    tiff_as_stored,
)
from feredge.edge.quiet import library_messages

_FORMAT_NAMES = {
    "jpeg": "JPEG",
    "png": "PNG",
    "webp": "WebP",
    "bmp": "BMP",
    "gif": "GIF",
    "tiff": "TIFF",
    "pnm": "PBM/PGM/PPM",
}
_SUPPORTED = ", ".join(list(_FORMAT_NAMES.values())[:-1]) + " or " + _FORMAT_NAMES["pnm"]
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".pgm", ".ppm"})

# Image files above this many bytes are refused before any byte is read: no photo within the pixel
# limit below needs more in a compressed format, and OpenCV's decoders take at most 2 GiB.
MAX_IMAGE_BYTES = 256 * 2**20

# Images above this many pixels are refused before decoding: 10000 x 10000 is the largest square.
MAX_IMAGE_PIXELS = 100_000_000
# Nor may any side be longer than this: OpenCV's decoders refuse it (CV_IO_MAX_IMAGE_WIDTH/HEIGHT), as
# libpng does above 1,000,000, with an internal assertion or "Invalid IHDR data" for a message.
MAX_IMAGE_SIDE = 1_000_000
# A GIF's frames or a TIFF's pages: each is checked against the pixel limit; more are refused, since
# walking their headers costs time and only the first one is ever decoded.
MAX_IMAGE_FRAMES = MAX_WALKED_PARTS
# JPEG scans (SOS markers). Each progressive scan is a pass over the whole image, and a file of
# thousands of nearly empty scans costs a minute of decoding (libjpeg-turbo's "LJT-01-003"). Encoders
# write far fewer: libjpeg's (and OpenCV's) progressive script has 10 scans for colour and 6 for
# gray, Photoshop 3-5, and the standard script for 4 components 24; libjpeg-turbo's tools and
# NVIDIA DALI offer a scan limit for the same reason (DALI's default is 500).
MAX_JPEG_SCANS = 100
# ``decode_image_scaled`` decodes images whose longest side is above this at 1/2, 1/4 or 1/8 size.
REDUCED_DECODE_SIDE = 4096
_REDUCED_FLAGS = {
    (2, False): cv2.IMREAD_REDUCED_COLOR_2,
    (4, False): cv2.IMREAD_REDUCED_COLOR_4,
    (8, False): cv2.IMREAD_REDUCED_COLOR_8,
    (2, True): cv2.IMREAD_REDUCED_GRAYSCALE_2,
    (4, True): cv2.IMREAD_REDUCED_GRAYSCALE_4,
    (8, True): cv2.IMREAD_REDUCED_GRAYSCALE_8,
}

ImageSource = str | Path | bytes | bytearray | np.ndarray


@dataclass(frozen=True)
class ScaledImage:
    """A decoded image and the (width, height) of the original it was decoded from.

    A large JPEG is decoded at 1/2, 1/4 or 1/8 scale by libjpeg itself, so its full-size pixels never
    exist in memory; ``to_original`` maps a box found in ``image`` back to the original's pixels.
    """

    image: np.ndarray
    original_size: tuple[int, int]

    @classmethod
    def full(cls, image: np.ndarray) -> ScaledImage:
        return cls(image, (image.shape[1], image.shape[0]))

    @property
    def scale(self) -> tuple[float, float]:
        """(x, y) factors from ``image`` pixels to original pixels; (1.0, 1.0) when not reduced."""
        height, width = self.image.shape[:2]
        return self.original_size[0] / width, self.original_size[1] / height

    @property
    def reduced(self) -> bool:
        return self.scale != (1.0, 1.0)

    def to_original(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """A box (x, y, w, h) in ``image`` pixels as a box in original pixels."""
        return _map_box(box, self.scale, self.original_size)

    def to_image(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """A box in original pixels as a box in ``image`` pixels."""
        sx, sy = self.scale
        return _map_box(box, (1.0 / sx, 1.0 / sy), (self.image.shape[1], self.image.shape[0]))


def _map_box(
    box: tuple[int, int, int, int], scale: tuple[float, float], bounds: tuple[int, int]
) -> tuple[int, int, int, int]:
    x, y, w, h = box
    if scale == (1.0, 1.0):
        return int(x), int(y), int(w), int(h)
    sx, sy = scale
    x0, y0 = min(max(0, round(x * sx)), bounds[0] - 1), min(max(0, round(y * sy)), bounds[1] - 1)
    x1, y1 = min(bounds[0], round((x + w) * sx)), min(bounds[1], round((y + h) * sy))
    return x0, y0, max(1, x1 - x0), max(1, y1 - y0)


def decode_image(source: ImageSource | ScaledImage, name: str | None = None) -> np.ndarray:
    """Decode a path, encoded bytes or an array into uint8 gray (H, W) or BGR (H, W, 3), at full size.

    16-bit images are scaled to 8 bits and alpha is dropped, so every later stage sees one of two
    layouts, and the EXIF orientation is applied (the result is upright). Images beyond the limits
    (``checked_info``) are refused from their header, before decoding. Failures raise ``ImageError``
    naming the input and the problem.
    """
    return decode_image_scaled(source, name, max_side=None).image


def decode_image_scaled(
    source: ImageSource | ScaledImage, name: str | None = None, max_side: int | None = REDUCED_DECODE_SIDE
) -> ScaledImage:
    """Like ``decode_image``, but an image whose longest side is above ``max_side`` is decoded at 1/2,
    1/4 or 1/8 scale (the smallest reduction that fits, at most 1/8), with its original size kept.

    JPEG is decoded at the reduced scale directly; other formats are decoded and then shrunk by
    OpenCV. The reduced decode is 8-bit gray or BGR, like ``decode_image``'s result. Arrays and
    ``ScaledImage`` inputs are returned as they are (arrays normalized to uint8 gray or BGR).
    ``original_size`` is the upright image's (width, height): orientations 5-8 swap the stored sides.
    """
    if isinstance(source, ScaledImage):
        return source
    if isinstance(source, np.ndarray):
        return ScaledImage.full(_normalize_array(source, name or "array"))
    if not isinstance(source, str | os.PathLike | bytes | bytearray):
        # an int would be taken for a file descriptor by os.stat, None or a list fail there untyped
        raise ImageError(
            f"{name or 'image'}: unsupported input of type {type(source).__name__}; pass a file path "
            "(str or pathlib.Path), encoded image bytes or a numpy array"
        )
    label, data = _read_encoded(source, name)
    info = checked_info(data, label)
    if info.format == "tiff" and info.orientation != 1:
        data = tiff_as_stored(data)
    buffer = np.frombuffer(data, np.uint8)
    factor = _reduction(info, max_side)
    if factor > 1:
        flags = _REDUCED_FLAGS[factor, info.channels in (1, 2)] | cv2.IMREAD_IGNORE_ORIENTATION
    else:
        flags = cv2.IMREAD_UNCHANGED  # as stored: no EXIF orientation (applied below for every format alike)
    error: cv2.error | None = None
    with library_messages() as messages:
        try:
            image = cv2.imdecode(buffer, flags)
        except cv2.error as exc:  # a decoder's own refusal (a header it cannot allocate for, ...)
            image, error = None, exc
    if image is None:
        reason = messages.reason() or (_cv_reason(error) if error is not None else None)
        problem = f"corrupt {_FORMAT_NAMES[info.format]} data" + (f": {reason}" if reason else "")
        raise ImageError(f"{label}: not a readable image ({problem})") from error
    image = orient(_normalize_array(image, label), info.orientation)
    return ScaledImage(image, info.upright_size)


def checked_info(data: bytes, label: str) -> ImageInfo:
    """The header of encoded ``data`` if it is within every limit, else an ``ImageError`` that says why.

    Only formats whose header is read here are decoded (JPEG, PNG, WebP, BMP, GIF, TIFF, PBM/PGM/PPM):
    OpenCV recognizes more by their content (JPEG 2000, AVIF, OpenEXR, Radiance HDR, PAM, PFM, Sun
    raster), but their size would be known only after decoding, which is what a bomb exploits.
    The limits: ``MAX_IMAGE_PIXELS`` and ``MAX_IMAGE_SIDE`` for the image and for every GIF frame,
    TIFF page and tile; ``MAX_IMAGE_FRAMES`` frames or pages; ``MAX_JPEG_SCANS`` scans and
    ``MAX_WALKED_SEGMENTS`` segments of a JPEG; a complete PNG or JPEG (not truncated).
    """
    kind = image_format(data)
    if kind is None:
        raise ImageError(f"{label}: not a readable image (not a {_SUPPORTED} file)")
    info = image_info(data)
    if info is None and encoded_end(data) is None:  # a PNG or JPEG cut before or inside its header
        raise ImageError(f"{label}: truncated image file")
    if info is None:
        raise ImageError(f"{label}: not a readable image (corrupt {_FORMAT_NAMES[kind]} header)")
    _check_pixels(label, info.width, info.height)
    for what, width, height in info.parts:
        _check_pixels(label, width, height, f"{what} of ")
    many = "pages" if kind == "tiff" else "frames"
    if info.frames > MAX_IMAGE_FRAMES:
        raise ImageError(
            f"{label}: more than {MAX_IMAGE_FRAMES:,} {many}; only the first is read, so split the file or "
            "save that one image on its own"
        )
    if info.segments > MAX_WALKED_SEGMENTS:
        raise ImageError(
            f"{label}: more than {MAX_WALKED_SEGMENTS:,} JPEG segments (markers); encoders write a few dozen, "
            "so re-save the image"
        )
    if info.scans > MAX_JPEG_SCANS:
        raise ImageError(
            f"{label}: {info.scans:,} JPEG scans is above the limit of {MAX_JPEG_SCANS} (encoders write at most "
            "a few dozen; each scan is a pass over the whole image); re-save the image"
        )
    if info.end is None:
        raise ImageError(f"{label}: truncated image file")
    return info


def orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` as stored turned upright by its EXIF ``orientation`` (1-8), the way OpenCV's own EXIF
    handling does it, so every format comes out the same way."""
    if orientation in (5, 6, 7, 8):
        image = cv2.transpose(image)
    flip = {2: 1, 3: -1, 4: 0, 6: 1, 7: -1, 8: 0}.get(orientation)
    return image if flip is None else cv2.flip(image, flip)


def _read_encoded(source: str | Path | bytes | bytearray, name: str | None) -> tuple[str, bytes]:
    """(label for messages, encoded bytes) of a path or bytes; empty input is an ``ImageError``."""
    if isinstance(source, bytes | bytearray):
        label = name or "<bytes>"
        if len(source) > MAX_IMAGE_BYTES:
            raise ImageError(f"{label}: {_size(len(source))} is above the {_size(MAX_IMAGE_BYTES)} limit for an image")
        data = bytes(source)
    else:
        label = name or str(source)
        data = read_image_file(source, label)
    if not data:
        raise ImageError(f"{label}: empty (0-byte) file")
    return label, data


def read_image_file(path: str | Path, label: str | None = None) -> bytes:
    """The bytes of a regular file of at most ``MAX_IMAGE_BYTES``, else an ``ImageError`` that says why.

    A device (``/dev/zero``), a FIFO or a socket is refused from ``stat`` before it is opened, since
    reading one may never end, and the file is opened non-blocking in case it was swapped for one
    since. At most ``MAX_IMAGE_BYTES + 1`` bytes are read, so a file that grows is refused too.
    """
    label, data = label or str(path), b""
    try:
        info = os.stat(path)
        if stat.S_ISREG(info.st_mode) and info.st_size <= MAX_IMAGE_BYTES:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
            with open(fd, "rb") as fh:
                info = os.fstat(fh.fileno())
                if stat.S_ISREG(info.st_mode):
                    data = fh.read(MAX_IMAGE_BYTES + 1)
    except OSError as exc:
        raise ImageError(f"{label}: {_os_problem(exc)}") from exc
    if (problem := _mode_problem(info.st_mode, "an image")) is not None:
        raise ImageError(f"{label}: {problem}")
    if info.st_size > MAX_IMAGE_BYTES or len(data) > MAX_IMAGE_BYTES:
        size = max(info.st_size, len(data))
        raise ImageError(f"{label}: {_size(size)} is above the {_size(MAX_IMAGE_BYTES)} limit for an image")
    return data


def input_file_problem(path: str | Path, what: str) -> str | None:
    """Why ``path`` cannot be read as an input file (``what``: "an image", "a video"), in the words
    ``predict`` uses: "file not found", "is a directory, not ...", "not a regular file (a FIFO) ...";
    None for a regular file."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return _os_problem(exc)
    return _mode_problem(info.st_mode, what)


def check_model_file(path: Path, kind: str = "model", hint: str = "") -> None:
    """``ModelLoadError`` unless ``path`` is a regular file: a folder or a FIFO is named as such, not
    reported "not found" (``hint`` follows a missing file's message). It lives here, not in ``model``,
    so a detector can check its file without loading the emotion-model stack."""
    problem = input_file_problem(path, f"a {kind} file")
    if problem == "file not found":
        raise ModelLoadError(f"{path}: {kind} file not found{hint}")
    if problem is not None:
        raise ModelLoadError(f"{path}: {problem}")


def _mode_problem(mode: int, what: str) -> str | None:
    if stat.S_ISDIR(mode):
        return f"is a directory, not {what}"
    if not stat.S_ISREG(mode):
        return f"not a regular file ({_file_kind(mode)}); {what} must be a file"
    return None


def _os_problem(exc: OSError) -> str:
    """What an ``OSError`` from ``stat``/``open`` means for an input file, in the user's words."""
    if exc.errno == errno.ENOENT:
        return "file not found"
    if exc.errno == errno.ELOOP:
        return "symbolic link loop (too many levels of symbolic links)"
    return exc.strerror or str(exc)


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "an unknown kind of file")


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _check_pixels(label: str, width: int, height: int, what: str = "") -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(
            f"{label}: {what}{width}x{height} pixels ({width * height / 1e6:,.0f} MP) is above the limit of "
            f"{MAX_IMAGE_PIXELS / 1e6:.0f} MP (10000x10000); downscale the image first"
        )
    if max(width, height) > MAX_IMAGE_SIDE:
        raise ImageError(
            f"{label}: {what}{width}x{height} pixels has a side above the limit of {MAX_IMAGE_SIDE:,} pixels "
            "(OpenCV's decoders take no more); crop or downscale the image first"
        )


def _cv_reason(exc: cv2.error) -> str | None:
    """An OpenCV error as a reason in a user's words: its message without OpenCV's file, line and
    function, or None for a failed internal assertion (``!buf.empty()`` says nothing to a user)."""
    text = next((line.strip() for line in str(getattr(exc, "err", "")).splitlines() if line.strip()), "")
    if getattr(exc, "code", None) == cv2.Error.StsAssert or not text or ".cpp" in text:
        return None
    return text


def _reduction(info: ImageInfo, max_side: int | None) -> int:
    """1, 2, 4 or 8: the smallest decode reduction that brings the longest side to ``max_side``.

    It never exceeds the short side: OpenCV shrinks non-JPEG formats to ``side // factor`` pixels and
    fails on 0, so a 5000x1 PNG is decoded at full height (a thin image is small anyway)."""
    if max_side is None:
        return 1
    longest, shortest, factor = max(info.width, info.height), min(info.width, info.height), 1
    while longest > max_side * factor and factor < 8 and factor * 2 <= shortest:
        factor *= 2
    return factor


def _normalize_array(image: np.ndarray, label: str) -> np.ndarray:
    if image.size == 0:
        raise ImageError(f"{label}: image has no pixels")
    if image.dtype.kind == "u" and image.dtype.itemsize == 2:  # uint16 in either byte order
        image = _high_bytes(image)
    elif image.dtype in (np.float32, np.float64):
        if not np.isfinite(image).any():  # all NaN or infinite: no pixel to scale, nothing to recognize
            raise ImageError(f"{label}: float image has no finite pixel value (all NaN or infinite)")
        peak = 1.0 if float(np.nanmax(image)) <= 1.0 else 255.0
        image = np.clip(np.nan_to_num(image) * (255.0 / peak), 0, 255).astype(np.uint8)
    elif image.dtype == np.bool_:
        image = image.astype(np.uint8) * 255
    elif image.dtype != np.uint8:
        raise ImageError(f"{label}: unsupported pixel type {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3):
        return np.ascontiguousarray(image)
    raise ImageError(f"{label}: unsupported image shape {image.shape}")


def _high_bytes(image: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 by ``>> 8``, read as a strided view of the high bytes: no 16-bit temporary."""
    if image.flags.c_contiguous and image.dtype.isnative:
        high = 1 if sys.byteorder == "little" else 0
        return np.ascontiguousarray(image.view(np.uint8)[..., high::2])
    return (image >> 8).astype(np.uint8)
