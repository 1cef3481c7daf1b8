"""``feredge ensemble``: average trained models inside one graph; the result converts like any run."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("members", nargs="+", help="run folders or Keras models (.keras) sharing labels and input")
    parser.add_argument("--out", required=True, help="new run folder for the ensemble (model.keras + metadata.json)")


def run(args: argparse.Namespace) -> int:
    from feredge.train.ensemble import build_ensemble

    print(build_ensemble(args.members, args.out))
    return 0
