"""A ``feredge tune`` worker whose training is a stand-in, so study, storage, pruning and retries run in seconds.

``python tests/tune_worker.py ARGS`` is ``feredge tune ARGS`` with ``feredge.train.tune.train`` replaced by
``fake_train`` (and no plots); in-process tests patch the same names. Everything but the Keras fit is real: Optuna, the
database, the pruner, the heartbeats and the run folders' ``state.json`` / ``metrics.json``.

Environment: ``FAKE_EPOCH_SECONDS`` (time per epoch), ``FAKE_LOW_FROM=N`` (folders ``trials/N`` and up score
0.1, earlier ones 0.5 and more, so a median pruner must stop the late ones), ``FAKE_INTERRUPT_AT=E`` (Ctrl-C
before epoch E is saved) and ``FAKE_HANG_AT=E`` (hang there, to be killed).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def score(run: Path, lr: float, epoch: int) -> float:
    low_from = os.environ.get("FAKE_LOW_FROM")
    if low_from is not None and int(run.name) >= int(low_from):
        return 0.1
    return 0.5 + min(lr, 0.1) + 0.01 * epoch


def fake_train(config, resume: bool = False, on_epoch=None) -> Path:
    """Epochs that save state.json and report like ``train()``; a resumed run continues after its saved epoch."""
    run = Path(config.out)
    run.mkdir(parents=True, exist_ok=True)
    state = run / "state.json"
    done = json.loads(state.read_text())["epoch"] if resume else 0
    with open(run / "calls.jsonl", "a") as fh:
        fh.write(json.dumps({"resume": resume, "first_epoch": done + 1, "pid": os.getpid()}) + "\n")
    f1 = 0.0
    for epoch in range(done + 1, config.epochs + 1):
        time.sleep(float(os.environ.get("FAKE_EPOCH_SECONDS", "0")))
        if os.environ.get("FAKE_INTERRUPT_AT") == str(epoch):
            raise KeyboardInterrupt
        if os.environ.get("FAKE_HANG_AT") == str(epoch):
            time.sleep(600)
        f1 = score(run, config.lr, epoch)
        state.write_text(json.dumps({"epoch": epoch}))
        if on_epoch is not None:
            on_epoch(epoch, f1)
    (run / "metrics.json").write_text(json.dumps({"val": {"macro_f1": f1}}))
    return run


def no_plots(*_args) -> list[Path]:
    """Drawing costs seconds per worker and is tested in-process."""
    return []


def main(argv: list[str]) -> int:
    from feredge.cli import main as feredge_main
    from feredge.train import tune

    tune.train = fake_train
    tune.save_plots = no_plots
    return feredge_main(["tune", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
