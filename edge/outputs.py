"""Output folders are checked before a command starts its work, so a bad ``--out`` fails at once."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from feredge.edge.errors import OutputError


def check_writable_dir(folder: str | Path, what: str = "output files") -> Path:
    """Create ``folder`` if needed and create (and delete) a file in it; ``OutputError`` if that fails."""
    folder = Path(folder)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise OutputError(f"cannot write {what} to {folder}: {existing} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write {what} to {folder}: {exc.strerror or exc}") from exc
    return folder


@contextlib.contextmanager
def naming_write_errors(path: str | Path, what: str) -> Iterator[None]:
    """Turn an ``OSError`` of the block into an ``OutputError`` that names ``path``: a write to a full
    disk raises "No space left on device" without saying which file it was writing."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f"{path}: cannot write {what}: {exc.strerror or exc}") from exc
