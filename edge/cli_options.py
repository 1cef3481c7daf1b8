"""Command-line options shared by ``feredge predict`` and ``feredge video``, and argparse value types
every feredge command line uses (``positive_int``, ``non_negative_int``, ``fraction``, ...).

Only argparse at import time: ``feredge.cli`` imports every command module to build its parser. The
detector names come from ``feredge.edge.detect.DETECTORS`` when the options are added.
"""

from __future__ import annotations

import argparse
import math


def _number(text: str, kind: type, what: str) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    value = int(_number(text, int, "a whole number >= 1"))
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0."""
    value = int(_number(text, int, "a whole number >= 0"))
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = float(_number(text, float, "a number > 0"))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    value = float(_number(text, float, "a number in (0, 1]"))
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 to 65535 (0: any free port)."""
    value = int(_number(text, int, "a port number from 0 to 65535"))
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}")
    return value


def add_recognizer_options(parser: argparse.ArgumentParser) -> None:
    """Model, labels, threads and detector options, turned into a recognizer by ``build_recognizer``."""
    from feredge.edge.detect import DETECTORS

    group = parser.add_argument_group("model and detector")
    group.add_argument("--model", help="a .tflite or .onnx emotion model (default: the shipped model)")
    group.add_argument(
        "--labels", help="labels of the model's outputs: a preset (fer2013, fer5) or a comma list; "
        "needed only for models without feredge metadata"
    )
    group.add_argument(
        "--normalization", help="input normalization of a model without metadata (default: unit)"
    )
    group.add_argument(
        "--threads", type=positive_int, metavar="N", help="interpreter threads (default: all cores, up to 4)"
    )
    group.add_argument(
        "--detector", choices=tuple(DETECTORS), default="haar",
        help="face detector: " + "; ".join(f"{name}: {text}" for name, text in DETECTORS.items())
        + " (default: haar)",
    )
    group.add_argument(
        "--detector-model", metavar="PATH",
        help="YuNet .onnx file (default: $FEREDGE_CACHE or ~/.cache/feredge/, downloaded and sha256-checked "
        "on first use)",
    )
    group.add_argument(
        "--min-face", type=non_negative_int, metavar="PX", help="smallest face side to report, in pixels"
    )


def build_recognizer(args: argparse.Namespace):
    """The ``EmotionRecognizer`` the options describe (imported here to keep ``--help`` fast)."""
    from feredge.edge.recognizer import EmotionRecognizer

    sizes = {} if args.min_face is None else {"min_face": args.min_face}
    return EmotionRecognizer(
        args.model,
        detector=args.detector,
        threads=args.threads,
        labels=args.labels,
        normalization=args.normalization,
        detector_model=args.detector_model,
        **sizes,
    )
