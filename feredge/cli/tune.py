"""``feredge tune``: arguments -> search space, base TrainConfig and TuneSettings -> ``tune``.

It takes every ``feredge train`` option (``add_train_options``): those the space searches come from the
space, the rest are fixed for all trials. Optuna and TensorFlow are imported in ``run`` only.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from feredge.cli.options import non_negative_int, positive_float, positive_int
from feredge.cli.train import add_train_options, config_from_args, train_options

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="training data, as for feredge train (validation split included)")
    parser.add_argument(
        "--trials",
        type=non_negative_int,
        required=True,
        metavar="N",
        help="trials this process runs (run it again, or on more workers, for more); 0 only creates or reports",
    )
    parser.add_argument("--timeout", type=positive_float, metavar="S", help="start no new trial after S seconds")
    parser.add_argument("--study", required=True, metavar="NAME", help="study name inside the storage")
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="database of the study (default: sqlite:///DIR/study.db); postgresql://... or mysql://... "
        "lets workers on several machines share it",
    )
    parser.add_argument(
        "--space",
        metavar="TOML",
        help="search space file (default: the packaged tune_space.toml: lr, weight decay, dropout, label "
        "smoothing, augment, balance, alpha)",
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="trials/NNN run folders, best.json, plots (and study.db)"
    )
    group = parser.add_argument_group("pruning and workers")
    group.add_argument(
        "--pruner",
        default="median",
        choices=["median", "hyperband", "none"],
        help="stop trials whose per-epoch val macro-F1 falls behind (default: %(default)s)",
    )
    group.add_argument(
        "--pruner-startup",
        type=non_negative_int,
        default=3,
        metavar="N",
        help="median: finished trials before any trial is pruned (default: %(default)s)",
    )
    group.add_argument(
        "--pruner-warmup",
        type=non_negative_int,
        default=1,
        metavar="E",
        help="epochs every trial completes before it may be pruned (default: %(default)s)",
    )
    group.add_argument(
        "--heartbeat",
        type=positive_int,
        default=60,
        metavar="S",
        help="seconds between a worker's heartbeats; a trial silent for twice that is failed and queued "
        "again, to continue from its last epoch (default: %(default)s)",
    )
    group.add_argument("--top", type=positive_int, default=10, metavar="N", help="rows of the result table")
    add_train_options(
        parser.add_argument_group(
            "training options", "as for feredge train: fixed for every trial, except those the space searches"
        )
    )


def run(args: argparse.Namespace) -> int:
    from feredge.train.space import load_space
    from feredge.train.tune import TuneSettings, tune

    space = load_space(args.space, options=train_options())
    for name in space.names:
        if getattr(args, name) != space.options[name].default:
            log.warning("--%s is searched by the space; the value given is not used", name.replace("_", "-"))
    settings = TuneSettings(
        study=args.study,
        out=Path(args.out),
        trials=args.trials,
        storage=args.storage,
        timeout=args.timeout,
        pruner=args.pruner,
        pruner_startup=args.pruner_startup,
        pruner_warmup=args.pruner_warmup,
        heartbeat=args.heartbeat,
        top=args.top,
    )
    tune(config_from_args(args), space, settings)
    return 0
