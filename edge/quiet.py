"""Keep C libraries' own messages off stderr while they work, and hand them to the caller instead.

libpng ("libpng error: IDAT: CRC error"), libjpeg ("Corrupt JPEG data: ..."), OpenCV's logger (libtiff's
complaints, the ONNX importer's three-line ``[ERROR]``) and the TFLite interpreter ("INFO: Created
TensorFlow Lite XNNPACK delegate for CPU.") write to file descriptor 2 themselves, which breaks the
rule of one line per bad input, and none of their Python bindings can turn that off (OpenCV's log
level reaches only its own logger; the interpreter has no severity setting). ``library_messages``
points fd 2 at a temporary file while a decode or an interpreter's creation runs, and gives the caller
what was written, whose meaning goes into its one-line error.

The redirection is shared by concurrent users (a demo decodes on several threads): the first one in
sets it up, the last one out restores fd 2 and copies back whatever was printed meanwhile that is not
such library noise (another thread's log line), so nothing else is lost, only delayed. A block's
messages are what fd 2 received while it ran, so with concurrent blocks they may include another
thread's: good enough for the reason in an error message, which is all they are used for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Lines the libraries print: libpng, libjpeg's warnings (errors are raised through OpenCV), OpenCV's
# logger ("[ WARN:0@1.2] ..."), the TFLite runtime's "INFO:/WARNING:/ERROR:" lines.
_NOISE = re.compile(
    r"^(libpng (error|warning)|Corrupt JPEG data|Premature end of JPEG|Invalid SOS parameters|Inconsistent "
    r"progression|Unknown Adobe|Warning: (unknown JFIF|thumbnail)|Application transferred|\[ ?[A-Z]+:[^\]]*\]|"
    r"(INFO|WARNING|ERROR|VERBOSE): )"
)
# What makes a line an internal detail rather than a reason: "libpng error: " and OpenCV's
# "[ERROR:0@0.03] global grfmt_tiff.cpp:116 TIFF_Error " (its file, line and function).
_PREFIX = re.compile(r"^(libpng (error|warning): |\[[^\]]*\]\s*(global\s+)?\S+:\d+\s+\S+\s+|(ERROR|WARNING): )")
# libpng writes its message and its newline in two writes, so lines of concurrent decodes can run
# together ("libpng error: IDAT: CRC errorlibpng error: ..."): its prefix starts a line too.
_LINES = re.compile(r"[\r\n]+|(?=libpng (?:error|warning): )")
_CAPTURES = hasattr(os, "pread")  # POSIX: the capture is read without moving the offset fd 2 writes at


@dataclass
class Messages:
    """What the libraries printed during one ``library_messages`` block (filled in when it ends)."""

    text: str = ""

    def reason(self) -> str | None:
        """The last message as a reason for a one-line error, without the library's prefixes or any
        source file and line; None if there is none."""
        for line in reversed(_LINES.split(self.text)):
            cleaned = _PREFIX.sub("", line.strip()).strip().rstrip(".")
            if cleaned and ".cpp" not in cleaned and not cleaned.startswith("Created TensorFlow Lite"):
                return cleaned
        return None


class _Redirect:
    """fd 2 pointed at one temporary file for as long as any ``library_messages`` block runs.

    The file is made once and emptied after each use, so a block costs a few system calls."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0
        self.saved = -1
        self.capture = -1

    def enter(self) -> int | None:
        """Start (or join) the redirection; the capture's size now, where this user's messages begin.

        None if it cannot be set up (no temporary space, fd 2 closed): then nothing is captured, since
        a decode must not fail for want of a place to hide a library's warnings."""
        with self.lock:
            if self.users == 0:
                try:
                    if self.capture < 0:
                        handle, path = tempfile.mkstemp(prefix="feredge-stderr-")
                        os.unlink(path)
                        self.capture = handle
                    _flush_stderr()  # Python's own buffered text goes out before the switch
                    self.saved = os.dup(2)
                except OSError:
                    return None
                os.dup2(self.capture, 2)
            self.users += 1
            return os.fstat(self.capture).st_size

    def leave(self, start: int) -> str:
        """What was written since ``start``; the last user out restores fd 2 and replays other output."""
        with self.lock:
            _flush_stderr()
            size = os.fstat(self.capture).st_size
            text = os.pread(self.capture, size - start, start).decode("utf-8", "replace")
            self.users -= 1
            if self.users == 0:
                everything = os.pread(self.capture, size, 0).decode("utf-8", "replace")
                os.dup2(self.saved, 2)
                os.close(self.saved)
                os.ftruncate(self.capture, 0)
                os.lseek(self.capture, 0, os.SEEK_SET)  # the offset fd 2 wrote at
                other = [
                    line for line in everything.splitlines(keepends=True) if line.strip() and not _NOISE.match(line)
                ]
                if other:
                    os.write(2, "".join(other).encode("utf-8", "replace"))
            return text


def _flush_stderr() -> None:
    with contextlib.suppress(OSError, ValueError, AttributeError):  # closed, or replaced by None
        sys.stderr.flush()


_REDIRECT = _Redirect()


@contextmanager
def library_messages() -> Iterator[Messages]:
    """Run the block with C libraries' stderr output captured; the ``Messages`` it yields hold that
    output once the block ends (also when it raises). Without ``os.pread`` (Windows) nothing is captured."""
    messages = Messages()
    if not _CAPTURES:
        yield messages
        return
    start = _REDIRECT.enter()
    if start is None:
        yield messages
        return
    try:
        yield messages
    finally:
        messages.text = _REDIRECT.leave(start)
        if messages.text:
            log.debug("library messages: %s", messages.text.strip())
