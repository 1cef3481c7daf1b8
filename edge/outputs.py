"""Output folders are checked before a command starts its work, so a bad ``--out`` fails at once."""

from __future__ import annotations

import tempfile
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
