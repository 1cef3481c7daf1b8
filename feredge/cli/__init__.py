"""The ``feredge`` command: one table of subcommands, one module per command in this package.

Each command module exposes ``configure(parser)`` and ``run(args) -> int`` and imports its heavy
dependencies (TensorFlow, Gradio) inside ``run``. Only the chosen command's module is imported to
build its parser, so ``feredge predict`` loads neither train, convert, the benchmarks nor the video
modules; ``feredge --help`` lists every command from the table alone. Only ``main`` turns errors
into exit codes (``feredge.cli.options.run_main``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from feredge import __version__
from feredge.cli.options import interrupted, run_main

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("feredge.cli.train", "train or fine-tune an emotion model; writes a run folder"),
    "evaluate": ("feredge.cli.evaluate", "classification report of a Keras or TFLite model on a data set"),
    "tune": ("feredge.cli.tune", "search train options with Optuna; resumable, shareable by many workers"),
    "ensemble": ("feredge.cli.ensemble", "one model that averages several trained models in one graph"),
    "convert": ("feredge.cli.convert", "int8/fp16/dynamic/fp32 TFLite or ONNX with metadata inside, accuracy-gated"),
    "predict": ("feredge.cli.predict", "emotions of the faces in images or folders (table or JSON lines)"),
    "video": ("feredge.cli.video", "emotions in a video file, camera or stream, smoothed per tracked face"),
    "evaluate-photos": (
        "feredge.cli.evaluate_photos",
        "detectors x framings x models on whole photos in class folders: found-rate, accuracy, F1; group recall",
    ),
    "bench": ("feredge.cli.bench", "latency, size, memory and macro-F1 of models (and peers) side by side"),
    "demo": ("feredge.cli.demo", "web demo (Gradio) and REST POST /predict on this device, on the edge runtime"),
    "info": ("feredge.cli.info", "what feredge finds on this device: versions, interpreter, CPU, models, latency"),
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: every command is listed, only the one ``argv`` names is configured.

    Without ``argv`` every command is configured (for tools that walk every option).
    """
    parser = argparse.ArgumentParser(
        prog="feredge",
        description="Facial emotion recognition for the edge: train, convert, predict, benchmark, demo.",
    )
    parser.add_argument("--version", action="version", version=f"feredge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = _command_in(argv)
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if chosen in (None, name):
            module = importlib.import_module(module_name)
            module.configure(command)
            command.set_defaults(_module=module)
    return parser


def _command_in(argv: Sequence[str] | None) -> str | None:
    """The command ``argv`` names: its first word that is no option (the top level's take no value), or None."""
    if argv is None:
        return None
    return next((word for word in argv if not word.startswith("-")), "")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    argv = sys.argv[1:] if argv is None else list(argv)
    return build_parser(argv).parse_args(argv)


def run(args: argparse.Namespace) -> int:
    return int(args._module.run(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter hides our output
    try:
        args = parse_args(argv)  # imports the command's module: Ctrl-C may come here, before run_main
    except KeyboardInterrupt:
        return interrupted("feredge")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s", stream=sys.stderr)
    return run_main(f"feredge {args.command}", run, args)
