"""Edge TPU compilation of an int8 artefact with Coral's ``edgetpu_compiler``, where it is installed."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from feredge.convert.embed import embed_tflite_metadata
from feredge.convert.errors import ConversionError
from feredge.edge.atomic import atomic_write_bytes
from feredge.edge.metadata import ModelMetadata

COMPILER = "edgetpu_compiler"
COMPILER_DOCS = "https://coral.ai/docs/edgetpu/compiler/"


def compile_edgetpu(artefact: Path, metadata: ModelMetadata, timeout: float = 600.0) -> Path:
    """Write ``<stem>_edgetpu.tflite`` beside ``artefact``, with the metadata re-embedded."""
    exe = shutil.which(COMPILER)
    if exe is None:
        raise ConversionError(
            f"{COMPILER} is not on PATH; it runs on x86-64 Debian/Ubuntu only ({COMPILER_DOCS}): "
            f"copy {artefact.name} there and run `{COMPILER} -s {artefact.name}`"
        )
    with tempfile.TemporaryDirectory(prefix=".edgetpu-", dir=artefact.parent) as tmp:
        try:
            proc = subprocess.run(
                [exe, "-s", "-o", tmp, str(artefact)], capture_output=True, text=True, timeout=timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ConversionError(f"{COMPILER} could not run: {exc}") from exc
        produced = Path(tmp) / f"{artefact.stem}_edgetpu.tflite"
        if proc.returncode != 0 or not produced.is_file():
            output = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            raise ConversionError(f"{COMPILER} failed (exit {proc.returncode}): {' / '.join(output)}")
        data = embed_tflite_metadata(produced.read_bytes(), metadata.replace(format="tflite-int8-edgetpu"))
    return atomic_write_bytes(artefact.with_name(produced.name), data)
