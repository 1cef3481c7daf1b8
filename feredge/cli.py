"""The ``feredge`` command: one table of subcommands, each in a light module of its stage.

Each command module exposes ``configure(parser)`` and ``run(args) -> int`` and imports its heavy
dependencies (TensorFlow, Gradio) inside ``run``, so ``feredge predict`` starts fast and never
loads TensorFlow. Only ``main`` turns errors into exit codes (``run_main``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from feredge import __version__
from feredge.edge.cli_options import run_main

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("feredge.train.cli", "train or fine-tune an emotion model; writes a run folder"),
    "evaluate": ("feredge.train.evaluate_cli", "classification report of a Keras or TFLite model on a data set"),
    "tune": ("feredge.train.tune_cli", "search train options with Optuna; resumable, shareable by many workers"),
    "ensemble": ("feredge.train.ensemble_cli", "one model that averages several trained models in one graph"),
    "convert": ("feredge.convert.cli", "int8/fp16/dynamic/fp32 TFLite or ONNX with metadata inside, accuracy-gated"),
    "predict": ("feredge.edge.predict_cli", "emotions of the faces in images or folders (table or JSON lines)"),
    "video": ("feredge.edge.video_cli", "emotions in a video file, camera or stream, smoothed per tracked face"),
    "evaluate-photos": (
        "feredge.benchmarks.photos_cli",
        "detectors x framings x models on whole photos in class folders: found-rate, accuracy, F1; group recall",
    ),
    "bench": ("feredge.benchmarks.cli", "latency, size, memory and macro-F1 of models (and peers) side by side"),
    "demo": ("feredge.demo.cli", "web demo (Gradio) and REST POST /predict on this device, on the edge runtime"),
    "info": ("feredge.edge.info_cli", "what feredge finds on this device: versions, interpreter, CPU, models, latency"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feredge",
        description="Facial emotion recognition for the edge: train, convert, predict, benchmark, demo.",
    )
    parser.add_argument("--version", action="version", version=f"feredge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.configure(command)
        command.set_defaults(_module=module)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def run(args: argparse.Namespace) -> int:
    return int(args._module.run(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter hides our output
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s", stream=sys.stderr)
    return run_main(f"feredge {args.command}", run, args)


if __name__ == "__main__":
    sys.exit(main())
