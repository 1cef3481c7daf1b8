"""``feredge evaluate MODEL DATA``: the classification report of any model on any data layout."""

from __future__ import annotations

import argparse
import json

from feredge.cli.options import add_labels_option, add_prior_tau_option, add_threads_option


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run folder, .keras, .tflite or .onnx")
    parser.add_argument("data", help="any layout feredge train accepts (FER+ folders score the annotators' majority)")
    parser.add_argument(
        "--ferplus", metavar="FER2013NEW_CSV", help="FER+ votes for a fer2013.csv DATA: score their majority"
    )
    parser.add_argument(
        "--split",
        default="auto",
        choices=["auto", "train", "val", "test", "all"],
        help="auto: val if present, else test, else all images",
    )
    add_labels_option(parser)
    add_prior_tau_option(parser)
    add_threads_option(parser, "interpreter threads (TFLite, ONNX)")
    parser.add_argument("--out", help="folder for metrics.json and confusion_matrix.png")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")


def run(args: argparse.Namespace) -> int:
    from feredge.edge.metrics import format_report
    from feredge.edge.outputs import check_writable_dir
    from feredge.train.evaluate import evaluate, write_evaluation

    if args.out:  # before the evaluation, which a bad --out would otherwise waste
        check_writable_dir(args.out, "the evaluation")
    metrics = evaluate(args.model, args.data, args.split, args.labels, args.threads, args.ferplus, args.prior_tau)
    print(
        json.dumps(metrics, indent=2)
        if args.json
        else f"{metrics['model']} on {metrics['data']} [{metrics['split']}]\n{format_report(metrics)}"
    )
    if args.out:
        write_evaluation(metrics, args.out)
    return 0
