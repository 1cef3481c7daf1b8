"""Command-line options shared by ``feredge predict`` and ``feredge video``, and argparse value types
every feredge command line uses (``positive_int``, ``non_negative_int``, ``fraction``, ...).

Only argparse at import time: ``feredge.cli`` imports every command module to build its parser. The
detector names come from the registry ``feredge.edge.detectors.DETECTORS`` when the options are added.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any


def _checked(kind: Callable[[str], Any], what: str, accept: Callable[[Any], bool]) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)``, finite and accepted, else a usage error "expected {what}"."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = _checked(int, "a whole number >= 1", lambda v: v >= 1)
non_negative_int = _checked(int, "a whole number >= 0", lambda v: v >= 0)
positive_float = _checked(float, "a number > 0", lambda v: v > 0)
fraction = _checked(float, "a number in (0, 1]", lambda v: 0 < v <= 1)
port_number = _checked(int, "a port number from 0 to 65535", lambda v: 0 <= v <= 65535)


def add_recognizer_options(parser: argparse.ArgumentParser) -> None:
    """Model, labels, threads and detector options, turned into a recognizer by ``build_recognizer``."""
    from feredge.edge.detectors import DEFAULT_DETECTOR, describe_detectors, detector_names

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
        "--detector", choices=detector_names(), default=DEFAULT_DETECTOR,
        help=f"face detector: {describe_detectors()} (default: {DEFAULT_DETECTOR})",
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
