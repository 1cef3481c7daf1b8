"""Atomic file writes: a reader sees the old file or the new one, never half of one.

The temporary file lives beside its target as ``.NAME.XXXX.part``, without NAME's suffix unless the
writer needs it to pick the format (``keep_suffix``), so a folder scan for images never takes an
unfinished copy for an input. ``sigterm_as_interrupt`` makes ``kill`` stop a run the way Ctrl-C does,
so the clean-up of those temporary files runs on either.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

PART_SUFFIX = ".part"


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which would race with other threads.
_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    ``keep_suffix`` ends the temporary name in ``path``'s suffix (``.part.mp4``) for writers that pick
    the format from the name (OpenCV's video writer, Keras, matplotlib); without it the name ends in
    ``.part``, which no scan for inputs accepts.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = PART_SUFFIX + path.suffix if keep_suffix else PART_SUFFIX
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    tmp_path = Path(tmp)
    try:
        os.close(fd)
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; a model file should be readable like any other
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path, keep_suffix=False) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (``kill``, ``systemctl stop``, ``docker stop``) raises
    ``KeyboardInterrupt`` like Ctrl-C, so a run stops the same clean way: outputs are finished or
    removed instead of leaving temporary files.

    Further SIGTERMs are ignored until the block is left, so a second ``kill`` cannot cut the clean-up
    short (SIGKILL still can). Only the main thread can install signal handlers; elsewhere this does
    nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
