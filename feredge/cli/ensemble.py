"""``feredge ensemble``: average trained models inside one graph; the result converts like any run."""

from __future__ import annotations

import argparse

from feredge.cli.options import checked_type

# a finite share >= 0: NaN or inf would give a model of NaN weights, refused by check_mix too
share = checked_type(float, "a share >= 0", lambda v: v >= 0)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "members",
        nargs="+",
        help="run folders or Keras models (.keras) sharing labels, input size and normalization; gray members of "
        "different --photometric (none, clahe) make an ensemble whose input stacks those views as channels",
    )
    parser.add_argument("--out", required=True, help="new run folder for the ensemble (model.keras + metadata.json)")
    parser.add_argument(
        "--weight-average",
        action="store_true",
        help="average the members' weights into one network of one member's cost (members of one architecture, "
        "best one fine-tuned from the other) instead of averaging their outputs",
    )
    parser.add_argument(
        "--test-time-flip",
        action="store_true",
        help="flip-average every member at run time, also members trained to be scored once (default: only those "
        "served flip-averaged, mirrored inside the graph)",
    )
    parser.add_argument(
        "--mix", type=share, nargs="+", metavar="SHARE", help="--weight-average: each member's share (default: equal)"
    )


def run(args: argparse.Namespace) -> int:
    from feredge.edge.outputs import check_writable_dir
    from feredge.train.ensemble import build_ensemble

    check_writable_dir(args.out, "the ensemble")  # before the members load
    print(
        build_ensemble(
            args.members, args.out, weight_average=args.weight_average, mix=args.mix, flip_all=args.test_time_flip
        )
    )
    return 0
