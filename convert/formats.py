"""The one table of output formats; ``feredge convert`` and the converter read it (the benchmarks read
the artefact table in ``feredge.edge.artifacts``, which needs no TensorFlow).

Each row is an edge artefact (``feredge.edge.artifacts``: name, file-name rules) plus the function
that builds it and what that build needs, as ultralytics' ``export_formats()`` carries its exporters:
adding a format is one row here and one in the artefact table, with no dispatch elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from feredge.convert.errors import FormatError
from feredge.convert.onnx_export import DEFAULT_OPSET, build_onnx
from feredge.convert.tflite import build_dynamic, build_fp16, build_fp32, build_int8
from feredge.edge.artifacts import ARTIFACTS, Artifact
from feredge.edge.metadata import ModelMetadata
from feredge.edge.preprocess import PreprocessSpec

# option name -> the CLI flag that requests it
OPTION_FLAGS = {"qat": "--qat", "edgetpu": "--edgetpu", "opset": "--opset"}


@dataclass(frozen=True)
class BuildInput:
    """What a build function gets: the Keras model and everything to write into the artefact."""

    model: Any  # a tf_keras Model (the float model, or its QAT copy)
    spec: PreprocessSpec
    metadata: ModelMetadata  # embedded in the artefact
    representative: Callable | None = None  # calibration generator, for formats that need calibration
    opset: int = DEFAULT_OPSET


@dataclass(frozen=True)
class Format:
    artifact: Artifact
    build: Callable[[BuildInput], bytes]  # the artefact's bytes, metadata inside
    needs_calibration: bool
    options: frozenset[str]
    parity_tolerance: float | None  # max |probability difference| vs Keras before the export counts as broken
    description: str

    @property
    def name(self) -> str:
        return self.artifact.name


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            ARTIFACTS["int8"],
            build_int8,
            True,
            frozenset({"qat", "edgetpu"}),
            None,
            "full-integer: int8 input/output, per-channel int8 weights, int8 builtin ops only (Edge TPU)",
        ),
        Format(ARTIFACTS["fp16"], build_fp16, False, frozenset(), None, "float16 weights, float32 input/output"),
        Format(
            ARTIFACTS["dynamic"],
            build_dynamic,
            False,
            frozenset(),
            None,
            "dynamic range: int8 weights, float activations and input/output",
        ),
        Format(ARTIFACTS["fp32"], build_fp32, False, frozenset(), None, "float32 TFLite"),
        Format(
            ARTIFACTS["onnx"],
            build_onnx,
            False,
            frozenset({"opset"}),
            1e-3,
            "ONNX (NHWC, float32) for onnxruntime / TensorRT on a Jetson, via tf2onnx",
        ),
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
            raise FormatError(
                f"{OPTION_FLAGS[option]} applies to {', '.join(takers)} only; "
                f"add it to --formats (got {', '.join(f.name for f in formats)})"
            )


def variants(fmt: Format, qat: bool) -> tuple[str, ...]:
    """Artefacts one format yields: the plain one, plus its QAT variant when asked for and supported."""
    return fmt.artifact.variants if qat and "qat" in fmt.options else ("",)
