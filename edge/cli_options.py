"""Command-line options shared by ``feredge predict`` and ``feredge video``.

Only argparse at import time: ``feredge.cli`` imports every command module to build its parser.
"""

from __future__ import annotations

import argparse

DETECTOR_CHOICES = ("haar", "yunet", "none")


def add_recognizer_options(parser: argparse.ArgumentParser) -> None:
    """Model, labels, threads and detector options, turned into a recognizer by ``build_recognizer``."""
    group = parser.add_argument_group("model and detector")
    group.add_argument("--model", help="a .tflite or .onnx emotion model (default: the shipped model)")
    group.add_argument(
        "--labels", help="labels of the model's outputs: a preset (fer2013, fer5) or a comma list; "
        "needed only for models without feredge metadata"
    )
    group.add_argument(
        "--normalization", help="input normalization of a model without metadata (default: unit)"
    )
    group.add_argument("--threads", type=int, help="interpreter threads (default: all cores, up to 4)")
    group.add_argument(
        "--detector", choices=DETECTOR_CHOICES, default="haar",
        help="face detector; 'none' when the inputs already are face crops (default: haar)",
    )
    group.add_argument(
        "--detector-model", metavar="PATH",
        help="YuNet .onnx file (default: $FEREDGE_CACHE or ~/.cache/feredge/, downloaded and sha256-checked "
        "on first use)",
    )
    group.add_argument("--min-face", type=int, metavar="PX", help="smallest face side to report, in pixels")


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
