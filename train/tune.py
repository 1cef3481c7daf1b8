"""``feredge tune``: an Optuna study over ``feredge train`` options, in a database that many workers can share.

Optuna's relational storage is the distributed engine: every process that opens the same study in the same
database (SQLite beside the output by default; PostgreSQL or MySQL for workers on several machines) takes
the next trial from it. Each trial is an ordinary run folder ``OUT/trials/NNN`` trained by ``train()``,
which reports validation macro-F1 after every epoch so the pruner can stop a poor trial early. Workers
send heartbeats: a trial whose worker died is failed by the next worker and queued again with the same
parameters (Optuna's ``RetryHeartbeatStaleTrialCallback``), and the retry continues the same run folder
with ``--resume`` instead of starting over. Ctrl-C queues the interrupted trial the same way at once.

Optuna, SQLAlchemy and TensorFlow are imported where they are used; importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
import socket
import sys
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path
from typing import Any

from feredge.edge.atomic import atomic_write_text
from feredge.edge.errors import FeredgeError
from feredge.train.config import TrainConfig
from feredge.train.space import SearchSpace
from feredge.train.trainer import resolve_spec, train

log = logging.getLogger(__name__)

SPACE_ATTR = "feredge_space"  # study user attributes: what every worker of the study must agree on
FIXED_ATTR = "feredge_fixed"
PER_MACHINE = {"data", "ferplus_votes", "out", "workers", "strategy", "mixed_precision"}  # may differ between workers
ALWAYS_IN_COMMAND = {"epochs", "seed"}
MAX_RETRIES = 3  # a trial that keeps killing its worker is given up after this many retries
OBJECTIVE = "val macro-F1"


class StudyError(FeredgeError):
    """The study's database cannot be used, or the study was created with another space or options."""


@dataclass(frozen=True)
class TuneSettings:
    study: str
    out: Path
    trials: int  # trials this process runs; 0 only creates or reports the study
    storage: str | None = None  # None: sqlite:///OUT/study.db
    timeout: float | None = None
    pruner: str = "median"  # median | hyperband | none
    pruner_startup: int = 3  # median: finished trials before pruning starts
    pruner_warmup: int = 1  # epochs every trial completes before it may be pruned
    heartbeat: int = 60
    top: int = 10

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.out / 'study.db').resolve()}"


def tune(base: TrainConfig, space: SearchSpace, settings: TuneSettings) -> dict[str, Any] | None:
    """Run ``settings.trials`` trials of the study, then print the top trials and write best.json and plots.

    Returns the best.json content, or None while the study has no complete trial.
    """
    _optuna()  # one clear line when the extra is not installed
    base = replace(base, final_fit=False)  # trials are chosen on validation: a --config's final fit does not apply
    if base.strategy == "multiworker":
        raise StudyError(
            "feredge tune runs each trial in one process, and --strategy multiworker would need every machine "
            "to run the same trial; use --strategy mirrored, or start a tune worker on every machine"
        )
    resolve_spec(base)  # a bad backbone or weights file fails here, not in every trial
    out = settings.out
    out.mkdir(parents=True, exist_ok=True)
    url = settings.storage_url
    with storage_errors(url):
        storage = open_storage(url, settings.heartbeat)
        study = open_study(storage, settings, space, fixed_options(base, space))
        log.info(
            "study %s in %s; searching %s", settings.study, redact(url), "; ".join(p.describe() for p in space.params)
        )
        if settings.trials:
            study.optimize(
                Objective(study, storage, base, space, out),
                n_trials=settings.trials,
                timeout=settings.timeout,
                gc_after_trial=True,
            )
        trials = study.get_trials(deepcopy=False)
        print(format_table(settings.study, trials, space, settings.top))
        agreement = rank_agreement(trials)
        print(format_agreement(agreement))
        best = best_summary(study, trials, base, space, settings, agreement)
        if best is None:
            log.warning("study %s has no complete trial yet: no best.json", settings.study)
        else:
            atomic_write_text(out / "best.json", json.dumps(best, indent=2) + "\n")
            print(f"\nbest: trial {best['trial']}, {OBJECTIVE} {best['val_macro_f1']:.4f} -> {out / 'best.json'}")
            print(f"reproduce: {best['command']}")
        for path in save_plots(study, trials, out):
            log.info("wrote %s", path)
    return best


def open_storage(url: str, heartbeat: int):
    """Optuna's RDBStorage with heartbeats: a trial whose worker goes silent is failed and queued again."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(MAX_RETRIES, inherit_intermediate_values=True)
        try:
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=heartbeat, grace_period=2 * heartbeat, heartbeat_stale_trial_callback=retry
            )
        except ImportError as exc:  # no driver for the URL's database (psycopg, pymysql, ...)
            raise StudyError(
                f"study storage {redact(url)}: database driver not installed ({_root_message(exc)}); "
                "e.g. pip install 'psycopg[binary]' for postgresql+psycopg://, pymysql for mysql+pymysql://"
            ) from exc


def open_study(storage, settings: TuneSettings, space: SearchSpace, fixed: dict[str, Any]):
    """Create the study or load it; a loaded study must search the same space with the same fixed options."""
    import optuna

    try:
        study = optuna.create_study(
            storage=storage,
            study_name=settings.study,
            direction="maximize",
            load_if_exists=True,
            sampler=optuna.samplers.TPESampler(),
            pruner=make_pruner(settings),
        )
    except ValueError as exc:  # e.g. an existing study of the same name that minimizes
        raise StudyError(f"study {settings.study!r}: {exc}") from exc
    wanted = {SPACE_ATTR: space.to_json(), FIXED_ATTR: _json(fixed)}
    stored = {key: study.user_attrs.get(key) for key in wanted}
    if stored[SPACE_ATTR] is None:
        for key, value in wanted.items():
            study.set_user_attr(key, value)
        return study
    where = f"study {settings.study!r} in {redact(settings.storage_url)}"
    changed = _changed(stored[SPACE_ATTR], wanted[SPACE_ATTR])
    if changed:
        raise StudyError(
            f"{where} searches another space (differs in {', '.join(changed)}); "
            "give the space it was created with, or another --study"
        )
    changed = _changed(with_new_defaults(stored[FIXED_ATTR] or {}, wanted[FIXED_ATTR]), wanted[FIXED_ATTR])
    if changed:
        detail = ", ".join(
            f"{k}: {stored[FIXED_ATTR].get(k)!r} there, {wanted[FIXED_ATTR].get(k)!r} here" for k in changed
        )
        raise StudyError(
            f"{where} was created with other training options ({detail}); give the same, or another --study"
        )
    return study


def make_pruner(settings: TuneSettings):
    import optuna

    if settings.pruner == "median":
        # Optuna prunes at step >= n_warmup_steps; steps are 1-based epochs.
        return optuna.pruners.MedianPruner(settings.pruner_startup, n_warmup_steps=settings.pruner_warmup + 1)
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, settings.pruner_warmup))
    if settings.pruner == "none":
        return optuna.pruners.NopPruner()
    raise FeredgeError(f"unknown pruner {settings.pruner!r}; choose median, hyperband or none")


class Objective:
    """One trial: suggest the options, train ``OUT/trials/NNN`` (a retry resumes its folder), return val macro-F1."""

    def __init__(self, study, storage, base: TrainConfig, space: SearchSpace, out: Path) -> None:
        self.study, self.storage, self.base, self.space, self.out = study, storage, base, space, out

    def __call__(self, trial) -> float:
        import optuna

        _fresh_keras_session()
        params = self.space.suggest(trial)
        retry = "run" in trial.user_attrs  # a queued retry carries the attributes of the trial it repeats
        run = trial.user_attrs.get("run", f"trials/{trial.number:03d}")
        run_dir = self.out / run
        resume = (run_dir / "state.json").exists()
        if resume and not retry:
            raise StudyError(
                f"{run_dir} holds a run that trial {trial.number} did not start: give each study its own --out"
            )
        config = replace(self.base, **params, out=str(run_dir))
        trial.set_user_attr("run", run)
        trial.set_user_attr("seed", config.seed)
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("config", {k: v for k, v in config.to_dict().items() if k != "out"})
        log.info("trial %d%s -> %s: %s", trial.number, " (retry, resumed)" if resume else "", run_dir, params)

        def report(epoch: int, f1: float) -> None:
            trial.report(f1, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"{OBJECTIVE} {f1:.4f} after epoch {epoch}")

        try:
            train(config, resume=resume, on_epoch=report)
        except KeyboardInterrupt:
            self._queue_retry(trial.number)
            raise
        metrics = json.loads((run_dir / "metrics.json").read_text())
        return float(metrics["val"]["macro_f1"])  # the best epoch, scored as the runtime scores (flip if asked)

    def _queue_retry(self, number: int) -> None:
        """Queue the interrupted trial again with the storage's own retry callback, as a dead worker's is."""
        frozen = next(t for t in self.study.get_trials(deepcopy=False) if t.number == number)
        self.storage.get_heartbeat_stale_trial_callback()(self.study, frozen)
        log.warning("trial %d interrupted: queued to continue from its last epoch when the study runs again", number)


def with_new_defaults(stored: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """A study's stored options, with each option added to feredge since (wanted, not stored) at its
    default: a study created before ``final_fit`` existed still opens."""
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    return {**{k: defaults[k] for k in wanted if k not in stored and k in defaults}, **stored}


def fixed_options(base: TrainConfig, space: SearchSpace) -> dict[str, Any]:
    """The training options every worker of a study must share: all but the searched and per-machine ones."""
    return {k: v for k, v in base.to_dict().items() if k not in PER_MACHINE and k not in space.names}


def best_summary(
    study,
    trials: Sequence[Any],
    base: TrainConfig,
    space: SearchSpace,
    settings: TuneSettings,
    agreement: list[dict[str, Any]],
) -> dict[str, Any] | None:
    """best.json: the best trial, its options as a TrainConfig and as a ``feredge train`` command line,
    and the study's ``rank_agreement``."""
    from optuna.trial import TrialState

    if not any(t.state == TrialState.COMPLETE for t in trials):
        return None
    best = study.best_trial
    config = TrainConfig.from_dict({**best.user_attrs["config"], "data": base.data, "out": str(settings.out / "best")})
    return {
        "study": settings.study,
        "storage": redact(settings.storage_url),
        "trials": state_counts(trials),
        "rank_agreement": agreement,
        "trial": best.number,
        "val_macro_f1": best.value,
        "params": best.params,
        "seed": best.user_attrs["seed"],
        "run": str(settings.out / best.user_attrs["run"]),
        "host": best.user_attrs.get("host"),
        "command": train_command(config, space),
        "config": config.to_dict(),
    }


def train_command(config: TrainConfig, space: SearchSpace) -> str:
    """The ``feredge train`` command line of ``config``: searched options, seed, epochs and non-defaults."""
    options, searched = space.options, set(space.names)
    argv = ["feredge", "train", config.data]
    for name, value in config.to_dict().items():
        action = options.get(name)
        if action is None or value is None:  # data and out are placed by hand
            continue
        if value == action.default and name not in searched and name not in ALWAYS_IN_COMMAND:
            continue
        flag = max(action.option_strings, key=len)
        if action.nargs == 0:  # a switch: present when true
            argv.extend([flag] if value else [])
        elif isinstance(value, list | tuple):
            argv.extend(
                [flag, *map(str, value)] if action.nargs in ("+", "*") else [a for v in value for a in (flag, str(v))]
            )
        else:
            argv.extend([flag, str(value)])  # str(float) is the shortest text that reads back as the same float
    argv.extend(["--out", config.out])
    return shlex.join(argv)


def state_counts(trials: Sequence[Any]) -> dict[str, int]:
    """Trials per state (``complete``, ``pruned``, ``fail``, ...) by state name: best.json's and the table's."""
    return dict(sorted(Counter(t.state.name.lower() for t in trials).items()))


def format_table(name: str, trials, space: SearchSpace, top: int) -> str:
    """The top finished trials by val macro-F1 (a pruned trial shows its last epoch's score), and the counts."""
    from optuna.trial import TrialState

    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.value is not None]
    finished.sort(key=lambda t: t.value, reverse=True)
    headers = ["trial", "state", OBJECTIVE, "epochs", *space.names, "run"]
    rows = [
        [
            str(t.number),
            t.state.name.lower(),
            f"{t.value:.4f}",
            str(t.last_step or 0),
            *(_cell(t.params.get(p)) for p in space.names),
            t.user_attrs.get("run", ""),
        ]
        for t in finished[:top]
    ]
    widths = [max(len(c) for c in column) for column in zip(headers, *rows, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [headers, *rows]]
    summary = ", ".join(f"{n} {state}" for state, n in state_counts(trials).items()) or "none yet"
    return "\n".join([f"study {name}: {len(trials)} trials ({summary}); top {len(rows)} by {OBJECTIVE}:", *lines])


def rank_agreement(trials: Sequence[Any]) -> list[dict[str, Any]]:
    """Would a shorter epoch budget have ranked the complete trials as their full one did?

    For each epoch k before the last that every complete trial reported, each trial's best val
    macro-F1 up to epoch k (what a trial cut at k reports, although its learning-rate schedule would
    have been shorter too) is rank correlated (Spearman, ties averaged) with its final value;
    ``same_best`` says whether the final best trial is among the best at k. Empty with fewer than
    three complete trials, which rank nothing.
    """
    import numpy as np
    from optuna.trial import TrialState

    done = [t for t in trials if t.state == TrialState.COMPLETE and t.intermediate_values]
    if len(done) < 3:
        return []
    final = np.array([t.value for t in done])
    final_ranks = _ranks(final)
    first = max(min(t.intermediate_values) for t in done)
    last = min(max(t.intermediate_values) for t in done)
    rows = []
    for k in range(first, last):
        cut = np.array([max(v for step, v in t.intermediate_values.items() if step <= k) for t in done])
        cut_ranks = _ranks(cut)
        rho = np.corrcoef(cut_ranks, final_ranks)[0, 1] if cut_ranks.std() and final_ranks.std() else None
        rows.append(
            {
                "epochs": k,
                "trials": len(done),
                "spearman": None if rho is None else round(float(rho), 3),
                "same_best": bool(cut[int(final.argmax())] == cut.max()),
            }
        )
    return rows


def format_agreement(rows: list[dict[str, Any]]) -> str:
    """One line per epoch budget, for the report under the table."""
    if not rows:
        return "rank agreement: needs three complete trials of more than one epoch"
    lines = [f"rank agreement with the final {OBJECTIVE} ({rows[0]['trials']} complete trials), cut after k epochs:"]
    for row in rows:
        rho = "-" if row["spearman"] is None else f"{row['spearman']:+.2f}"
        lines.append(f"  k={row['epochs']:<3} Spearman {rho}  same best: {'yes' if row['same_best'] else 'no'}")
    return "\n".join(lines)


def _ranks(values):
    """Ranks from 0, ties sharing their mean rank (Spearman's convention)."""
    import numpy as np

    values = np.asarray(values, float)
    ranks = np.empty(len(values))
    ranks[np.argsort(values, kind="stable")] = np.arange(len(values))
    for value in np.unique(values):
        ranks[values == value] = ranks[values == value].mean()
    return ranks


def save_plots(study, trials, out: Path) -> list[Path]:
    """Optuna's matplotlib figures as PNG: optimization history, per-epoch values, parameter importances."""
    from optuna.trial import TrialState

    from feredge.plots import pyplot, save_figure

    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        return []
    pyplot()  # the Agg backend, before Optuna imports pyplot
    import optuna
    from optuna.visualization import matplotlib as plots

    saved = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        figures = [
            ("optimization_history.png", lambda: plots.plot_optimization_history(study, target_name=OBJECTIVE)),
            ("intermediate_values.png", lambda: plots.plot_intermediate_values(study)),
        ]
        if len(complete) >= 2:
            figures.append(
                ("param_importances.png", lambda: plots.plot_param_importances(study, target_name=OBJECTIVE))
            )
        for name, draw in figures:
            try:
                ax = draw()
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. importances of identical scores
                log.warning("no %s: %s", name, exc)
                continue
            saved.append(save_figure(ax.figure, out / name))
    return saved


@contextlib.contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Database errors (unreachable server, locked SQLite file, bad URL) as one line naming the storage."""
    import optuna
    import sqlalchemy.exc

    try:
        yield
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
        reason = _root_message(exc)
        if "locked" in reason and url.startswith("sqlite"):
            reason += (
                " (another process holds a write lock on the SQLite file; close it, or give workers more time "
                "with ?timeout=SECONDS on the URL)"
            )
        raise StudyError(f"study storage {redact(url)}: {reason}") from exc


def redact(url: str) -> str:
    """The URL without its password, for messages and best.json."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _root_message(exc: BaseException) -> str:
    """The first line of the innermost cause: the driver's own words ("database is locked", "Connection refused")."""
    while getattr(exc, "orig", None) is not None or exc.__cause__ is not None:
        exc = getattr(exc, "orig", None) or exc.__cause__
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _fresh_keras_session() -> None:
    """Drop the previous trial's graph, so a long study does not grow; only if a trial already loaded Keras."""
    keras = sys.modules.get("tf_keras")
    if keras is not None:
        keras.backend.clear_session()


def _optuna() -> None:
    try:
        import optuna  # noqa: F401
    except ModuleNotFoundError as exc:
        raise FeredgeError("feredge tune needs Optuna: pip install 'feredge[tune]'") from exc


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True))


def _changed(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)
