"""``feredge bench``: latency, size, memory and accuracy of several models, side by side.

    feredge bench --models a_int8.tflite b_fp16.tflite c.onnx --threads 1 2 4 --peer fer --out results/
    feredge bench --data ../shared/data/ferplus --photos ../shared/data/jaffe --peer fer --peer facex

Laid out like LiteRT's benchmark tool: ``parse_args`` / ``run`` / ``main`` apart. Only argparse is
imported here, because ``feredge`` imports every command module to build its parser.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from feredge.cli.options import (
    EXIT_PARTIAL,
    add_detector_options,
    add_labels_option,
    add_threads_option,
    non_negative_int,
    outcome_code,
    positive_int,
    run_main,
)

log = logging.getLogger(__name__)

DEFAULT_OUT = "bench-results"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        nargs="+",
        default=[],
        metavar="MODEL",
        help=".tflite and .onnx models to compare (default: the models shipped with feredge, the default first)",
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="face images for accuracy and F1: class folders (e.g. FER2013's val split), a fer2013.csv, or FER+ "
        "folders (FER2013Train|FER2013Valid/label.csv, scored on the annotators' majority and votes); the val "
        "split when there is one (default: none, accuracy is skipped)",
    )
    parser.add_argument(
        "--ferplus",
        metavar="FER2013NEW_CSV",
        help="FER+ votes for a fer2013.csv --data: score their majority and cross-entropy, and the CSV's own "
        "FER2013 labels beside them",
    )
    parser.add_argument(
        "--photos",
        metavar="DIR",
        help="folder-per-class whole photos (e.g. ../shared/data/jaffe): each model's whole pipeline "
        "(detector, crop, model; fer's own) on every photo, the largest face scored, no face a miss",
    )
    add_threads_option(parser, "interpreter thread counts (default: 1 and all cores up to 4)", many=True)
    parser.add_argument("--runs", type=positive_int, default=100, help="timed runs per measurement (default: 100)")
    parser.add_argument("--warmup", type=non_negative_int, default=10, help="untimed runs before timing (default: 10)")
    parser.add_argument("--frames", type=positive_int, default=30, help="timed 640x480 frames per scene (default: 30)")
    parser.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="NAME",
        help="add another package's model to the comparison, each through its own pipeline: fer (pip install "
        "fer) or facex (pip install --no-deps facex); a peer not installed is skipped with the install line; "
        "without --models, the shipped models are its company",
    )
    add_labels_option(parser)
    add_detector_options(parser, finds_faces=True)
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: ./{DEFAULT_OUT})")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="feredge bench", description=__doc__.splitlines()[0])
    configure(parser)
    return parser.parse_args(argv)


def bench_subjects(args: argparse.Namespace) -> list:
    """The models to compare: ``--models``, else the shipped ones (so ``feredge bench`` alone, or with
    ``--peer fer``, sets every model a user gets with the package beside the default), then the
    ``--peer`` packages' models."""
    from feredge.benchmarks.errors import BenchError
    from feredge.benchmarks.models import subjects_from_paths
    from feredge.benchmarks.peers import peer_subjects
    from feredge.edge.model import shipped_models

    paths = args.models or [str(path) for path in shipped_models()]
    subjects = subjects_from_paths(paths, args.labels) + peer_subjects(args.peer)
    if not subjects:
        raise BenchError("nothing to benchmark: pass --models MODEL ... and/or --peer fer|facex")
    return subjects


def run(args: argparse.Namespace) -> int:
    """Benchmark, print the tables, write the outputs; exit code by ``outcome_code`` over the models."""
    from feredge.benchmarks.accuracy import load_accuracy_data
    from feredge.benchmarks.bench import PhotoSet, Settings, run_benchmark
    from feredge.benchmarks.errors import BenchError
    from feredge.benchmarks.photos import load_photos
    from feredge.benchmarks.report import format_text, write_outputs
    from feredge.edge.model import default_threads
    from feredge.edge.outputs import check_writable_dir

    missing = [name for name in ("matplotlib", "psutil") if importlib.util.find_spec(name) is None]
    if missing:
        raise BenchError(f"feredge bench needs {' and '.join(missing)}: pip install 'feredge[bench]'")
    if min(args.runs, args.frames) < 1 or args.warmup < 0 or min(args.threads or [1]) < 1:
        raise BenchError("--runs, --frames and --threads must be at least 1, --warmup at least 0")
    subjects = bench_subjects(args)
    check_writable_dir(args.out, "benchmark results")
    data_dir = None if args.data in (None, "none") else Path(args.data)
    if args.ferplus and data_dir is None:
        raise BenchError("--ferplus FER2013NEW_CSV goes with --data fer2013.csv, the file its rows line up with")
    data = load_accuracy_data(data_dir, args.ferplus) if data_dir is not None else None
    if data is None:
        log.info("accuracy and F1 are skipped: pass --data DIR, a folder per class of face images")
    photos = PhotoSet(args.photos, load_photos(args.photos)) if args.photos else None
    threads = tuple(dict.fromkeys(args.threads or (1, default_threads())))
    settings = Settings(threads, args.runs, args.warmup, args.frames, args.detector, args.detector_model)
    results = run_benchmark(subjects, settings, data, photos)
    written = write_outputs(results, args.out)
    print(format_text(results))
    print(f"\nwrote {', '.join(str(p) for p in written)}")
    failed = sum(m["status"] != "ok" for m in results["models"])
    if failed:
        skipped = sum(m["status"] == "skipped" for m in results["models"])
        how = f"failed ({skipped} skipped)" if skipped else "failed"
        print(f"feredge bench: {failed} of {len(results['models'])} model(s) {how}", file=sys.stderr)
    code = outcome_code(len(results["models"]) - failed, failed)
    measured = [m for m in results["models"] if m["status"] == "ok"]
    for what, asked in (("accuracy", args.data not in (None, "none")), ("photos", photos is not None)):
        if asked and measured and all(m[f"{what}_skipped"] for m in measured):
            print(f"feredge bench: {what} was asked for and measured for no model (reasons above)", file=sys.stderr)
            code = max(code, EXIT_PARTIAL)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m feredge.cli.bench``: the same as ``feredge bench``."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    return run_main("feredge bench", run, args)


if __name__ == "__main__":
    sys.exit(main())
