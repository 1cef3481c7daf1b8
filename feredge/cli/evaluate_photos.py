"""``feredge evaluate-photos``: detectors x framings x models on a class-folder set of whole photos.

    feredge evaluate-photos ../shared/data/jaffe --models a.tflite b.tflite --detectors haar yunet \\
        --margins -0.1 0 0.1 --offsets 0 0.05 --align --peer fer --groups 40 --out photo-results

Each photo goes through a detector; its largest face is cropped and classified; a photo without a
face is a miss. Reports found-rate, accuracy, balanced accuracy, macro-F1, neutral answers against
true neutrals, per-class F1 and predicted-class counts per row; ``--groups N`` adds detector recall,
false boxes and ms per frame on N composed group canvases; ``--peer fer`` and ``--peer facex`` add
those packages' own pipelines. Only argparse is imported here (``feredge`` builds its parser from
every command module).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from feredge.cli.options import add_threads_option, checked_type, non_negative_int, positive_int, run_main

DEFAULT_OUT = "photo-results"
DEFAULT_MARGINS = (-0.2, -0.1, 0.0, 0.1, 0.2, 0.3)


def _framing_value(bounds: tuple[float, float]) -> Callable[[str], float]:
    """An argparse type: a number within ``bounds``, the range model metadata accepts for the same framing."""
    low, high = bounds
    return checked_type(float, f"a number from {low:g} to {high:g}", lambda value: low <= value <= high)


def configure(parser: argparse.ArgumentParser) -> None:
    from feredge.benchmarks.peers import PEERS
    from feredge.edge.detectors import DEFAULT_MAX_SIDE, DEFAULT_MIN_FACE, detector_names
    from feredge.edge.metadata import MARGIN_RANGE, OFFSET_RANGE

    parser.add_argument("data", help="folder of class folders of whole photos (e.g. ../shared/data/jaffe)")
    parser.add_argument("--models", nargs="+", default=[], metavar="MODEL", help="models (default: the shipped one)")
    finders = detector_names(finds_faces=True)
    parser.add_argument(
        "--detectors", nargs="+", choices=finders, default=list(finders), help="detectors (default: all)"
    )
    parser.add_argument(
        "--margins",
        nargs="+",
        type=_framing_value(MARGIN_RANGE),
        default=list(DEFAULT_MARGINS),
        metavar="M",
        help=f"crop margins to try, a share of the face side on each edge, {MARGIN_RANGE[0]:g} to "
        f"{MARGIN_RANGE[1]:g}; negative crops inside the box (default: %(default)s)",
    )
    parser.add_argument(
        "--offsets",
        nargs="+",
        type=_framing_value(OFFSET_RANGE),
        default=[0.0],
        metavar="O",
        help=f"crop moved down by this share of the face side, {OFFSET_RANGE[0]:g} to {OFFSET_RANGE[1]:g} "
        "(default: %(default)s)",
    )
    parser.add_argument("--align", action="store_true", help="also align faces by their landmarks")
    parser.add_argument(
        "--peer",
        action="append",
        default=[],
        choices=PEERS,
        help="add a package's whole pipeline (its own detector, crop and model): fer, facex; one not installed "
        "is skipped with the install line",
    )
    parser.add_argument(
        "--min-face",
        type=non_negative_int,
        default=DEFAULT_MIN_FACE,
        metavar="PX",
        help="smallest face side (default: each detector's own: haar 32, learned ones 0)",
    )
    parser.add_argument(
        "--max-side",
        type=positive_int,
        default=DEFAULT_MAX_SIDE,
        metavar="PX",
        help=f"detectors run on a copy no larger than this (default: {DEFAULT_MAX_SIDE})",
    )
    parser.add_argument(
        "--groups",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="group-proxy canvases for detector recall and false boxes; 0 skips them (default: %(default)s)",
    )
    parser.add_argument(
        "--frames",
        type=positive_int,
        default=50,
        metavar="N",
        help="timed 640x480 one-face frames (default: %(default)s)",
    )
    parser.add_argument("--extra", nargs="*", default=[], metavar="IMAGE", help="more one-face photos for --groups")
    add_threads_option(parser, "interpreter and OpenCV threads (default: 1)")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: ./{DEFAULT_OUT})")


def run(args: argparse.Namespace) -> int:
    from feredge.benchmarks.photo_report import format_text, write_outputs
    from feredge.benchmarks.photo_run import PhotoSettings, run_photos
    from feredge.edge.outputs import check_writable_dir

    check_writable_dir(args.out, "photo evaluation results")
    settings = PhotoSettings(
        data=args.data,
        models=tuple(args.models),
        detectors=tuple(dict.fromkeys(args.detectors)),
        margins=tuple(args.margins),
        offsets=tuple(args.offsets),
        align=args.align,
        peers=tuple(args.peer),
        min_face=args.min_face,
        max_side=args.max_side,
        groups=args.groups,
        frames=args.frames,
        extra=tuple(args.extra),
        threads=args.threads or 1,
    )
    results = run_photos(settings)
    written = write_outputs(results, args.out)
    print(format_text(results))
    print(f"\nwrote {', '.join(str(p) for p in written)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="feredge evaluate-photos", description=__doc__.splitlines()[0])
    configure(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    return run_main("feredge evaluate-photos", run, args)


if __name__ == "__main__":
    sys.exit(main())
