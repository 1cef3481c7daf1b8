"""The artefact contract: which formats an edge model file comes in, and how such a file is named.

``feredge convert`` writes these files and ``feredge bench`` reads their format back from the name,
so both take the rules from this one table; the functions that build each format stay in
``convert/formats.py``, whose rows point at these. A file name is ``<stem><tag><variant><extension>``
(``model_int8.tflite``, ``model_int8_qat.tflite``, ``model.onnx``): the format shows without opening it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

QAT_VARIANT = "_qat"
REJECTED = ".REJECTED"


@dataclass(frozen=True)
class Artifact:
    """One artefact format: its name, file-name tag and extension, and the variants it comes in."""

    name: str
    tag: str
    extension: str
    variants: tuple[str, ...] = ("",)

    @property
    def runtime(self) -> str:
        return self.extension.lstrip(".")

    @property
    def suffix(self) -> str:
        """What every artefact of this format ends with (``_int8.tflite``); QAT adds ``_qat`` before the dot."""
        return self.tag + self.extension

    @property
    def metadata_format(self) -> str:
        """The ``format`` written into the embedded metadata."""
        return self.runtime if not self.tag else f"{self.runtime}-{self.name}"

    def display_name(self, variant: str = "") -> str:
        return self.name + (" (qat)" if variant == QAT_VARIANT else "")

    def artefact_name(self, stem: str, variant: str = "") -> str:
        return f"{stem}{self.tag}{variant}{self.extension}"

    def rejected_name(self, stem: str, variant: str = "") -> str:
        return f"{stem}{self.tag}{variant}{REJECTED}{self.extension}"

    def report_stem(self, stem: str, variant: str = "") -> str:
        """``<stem><tag><variant>.report``: the report's name without ``.json`` / ``.md``."""
        return f"{stem}{self.tag}{variant}.report"


ARTIFACTS: dict[str, Artifact] = {
    a.name: a
    for a in (
        Artifact("int8", "_int8", ".tflite", ("", QAT_VARIANT)),
        Artifact("fp16", "_fp16", ".tflite"),
        Artifact("dynamic", "_dynamic", ".tflite"),
        Artifact("fp32", "_fp32", ".tflite"),
        Artifact("onnx", "", ".onnx"),
    )
}


def format_label(path: str | Path, metadata_format: str) -> str:
    """The format of a model file: from its name (``_int8.tflite``), else from its metadata's ``format``.

    A format the table does not know is shown as written.
    """
    name = Path(path).name.lower()
    for artifact in ARTIFACTS.values():
        for variant in artifact.variants:
            if name.endswith(artifact.tag + variant + artifact.extension):
                return artifact.display_name(variant)
    by_metadata = {a.metadata_format: a.name for a in ARTIFACTS.values()}
    return by_metadata.get(metadata_format, metadata_format)


def display_names(paths: Sequence[str | Path]) -> list[str]:
    """Short, distinct names for model files: the stem, ``parent/stem`` where stems clash, else the path."""
    files = [Path(p) for p in paths]
    names = [p.stem for p in files]
    names = [f"{p.parent.name}/{p.stem}" if names.count(n) > 1 else n for p, n in zip(files, names, strict=True)]
    return [str(p) if names.count(n) > 1 else n for p, n in zip(files, names, strict=True)]
