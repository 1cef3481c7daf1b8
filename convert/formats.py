"""The one table of output formats; the CLI, the converter and the benchmarks all read ``FORMATS``.

An artefact's file name is ``<stem><tag><variant><extension>`` (``model_int8.tflite``,
``model_int8_qat.tflite``, ``model.onnx``), so the format is visible without opening the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from feredge.convert.errors import FormatError

QAT_VARIANT = "_qat"
REJECTED = ".REJECTED"

# option name -> the CLI flag that requests it
OPTION_FLAGS = {"qat": "--qat", "edgetpu": "--edgetpu", "opset": "--opset"}


@dataclass(frozen=True)
class Format:
    name: str
    tag: str
    extension: str
    needs_calibration: bool
    options: frozenset[str]
    parity_tolerance: float | None  # max |probability difference| vs Keras before the export counts as broken
    description: str

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


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("int8", "_int8", ".tflite", True, frozenset({"qat", "edgetpu"}), None,
               "full-integer: int8 input/output, per-channel int8 weights, int8 builtin ops only (Edge TPU)"),
        Format("fp16", "_fp16", ".tflite", False, frozenset(), None, "float16 weights, float32 input/output"),
        Format("dynamic", "_dynamic", ".tflite", False, frozenset(), None,
               "dynamic range: int8 weights, float activations and input/output"),
        Format("fp32", "_fp32", ".tflite", False, frozenset(), None, "float32 TFLite"),
        Format("onnx", "", ".onnx", False, frozenset({"opset"}), 1e-3,
               "ONNX (NHWC, float32) for onnxruntime / TensorRT on a Jetson, via tf2onnx"),
    )
}


def parse_formats(spec: str | Sequence[str]) -> tuple[Format, ...]:
    """``"int8,fp16"`` (or a sequence of names) -> formats in the given order, duplicates dropped."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = list(dict.fromkeys(n.strip().lower() for n in names if n.strip()))
    if not names:
        raise FormatError(f"no format given; choose from {', '.join(FORMATS)}")
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise FormatError(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    return tuple(FORMATS[n] for n in names)


def check_options(formats: Iterable[Format], requested: Iterable[str]) -> None:
    """Refuse an option that none of ``formats`` takes (``--qat`` without int8), instead of ignoring it."""
    formats = tuple(formats)
    for option in requested:
        if not any(option in f.options for f in formats):
            takers = [f.name for f in FORMATS.values() if option in f.options]
            raise FormatError(f"{OPTION_FLAGS[option]} applies to {', '.join(takers)} only; "
                              f"add it to --formats (got {', '.join(f.name for f in formats)})")


def variants(fmt: Format, qat: bool) -> tuple[str, ...]:
    """Artefacts one format yields: the plain one, plus the QAT one when asked for and supported."""
    return ("", QAT_VARIANT) if qat and "qat" in fmt.options else ("",)
