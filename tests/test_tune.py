"""``feredge tune``: the search space, the study in SQLite (resume, pruning, retries, two workers), best.json.

Most tests replace only the Keras fit (``tune_worker.fake_train``) so Optuna, the database, the pruner and the
heartbeats run for real in seconds; the slow test at the end trains real tiny models.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import tune_worker
from synthetic import write_split_folders

from feredge.cli import main, parse_args
from feredge.cli.train import config_from_args, train_options
from feredge.train import tune
from feredge.train.space import SpaceError, load_space, parse_space

optuna = pytest.importorskip("optuna")
TrialState = optuna.trial.TrialState

WORKER = Path(__file__).with_name("tune_worker.py")
SPACE = """
[lr]
low = 1e-3
high = 3e-2
log = true

[dropout]
low = 0.0
high = 0.5

[balance]
choices = ["none", "sqrt"]
"""


@pytest.fixture
def space_file(tmp_path: Path) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(SPACE)
    return path


def tune_args(out: Path, space: Path, *extra: str, data: str = "data-not-read") -> list[str]:
    return [data, "--study", "s", "--out", str(out), "--space", str(space), "--epochs", "2", *extra]


def load_trials(out: Path, study: str = "s"):
    return optuna.load_study(study_name=study, storage=f"sqlite:///{out / 'study.db'}").get_trials()


def states(trials) -> list[str]:
    return sorted(t.state.name for t in trials)


@pytest.fixture
def fake_train(monkeypatch):
    monkeypatch.setattr(tune, "train", tune_worker.fake_train)


@pytest.fixture
def no_plots(monkeypatch):
    monkeypatch.setattr(tune, "save_plots", tune_worker.no_plots)


# --- the search space ---------------------------------------------------------------------------------


def test_default_space_is_checked_against_the_train_options():
    space = load_space(options=train_options())
    assert set(space.names) == {"lr", "weight_decay", "dropout", "label_smoothing", "augment", "balance", "alpha"}
    lr = next(p for p in space.params if p.name == "lr")
    assert lr.log and 0 < lr.low < lr.high


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[learning_rate]\nlow = 0.1\nhigh = 1.0", "unknown option 'learning_rate'.*lr"),
        ("[augment]\nchoices = ['light', 'fancy']", "'fancy' is not one of"),
        ("[batch-size]\nlow = 8.5\nhigh = 64", "not accepted by --batch-size"),
        ("[lr]\nlow = 0\nhigh = 0.1\nlog = true", "0 is not accepted by --lr"),
        ("[weight-decay]\nlow = 0\nhigh = 0.1\nlog = true", "log range needs low > 0"),
        ("[lr]\nlow = 0.1\nhigh = 0.01", "low must be below high"),
        ("[lr]\nlo = 0.1\nhigh = 0.2", "unknown key"),
        ("[test-time-flip]\nchoices = ['yes']", "true and false"),
        ("[backbone]\nlow = 1\nhigh = 2", "takes choices"),
        ("lr = 0.1", "must be a table"),
        ("[lr\nlow = 1", "not valid TOML"),
    ],
)
def test_a_bad_space_is_one_clear_error(text, message):
    with pytest.raises(SpaceError, match=message):
        parse_space(text, "space.toml", options=train_options())


def test_space_values_go_through_the_option_types():
    space = parse_space(
        "[batch-size]\nchoices = [16, 32]\n[test_time_flip]\nchoices = [true, false]\n[alpha]\nlow = 1\nhigh = 2",
        options=train_options(),
    )
    by_name = {p.name: p for p in space.params}
    assert by_name["batch_size"].choices == (16, 32)
    assert by_name["test_time_flip"].choices == (True, False)
    assert by_name["alpha"].low == 1.0 and not by_name["alpha"].integer  # --alpha is a float option


def test_unknown_space_option_is_one_line_on_the_command_line(tmp_path, capsys):
    bad = tmp_path / "space.toml"
    bad.write_text("[momentum]\nlow = 0.8\nhigh = 0.99\n")
    assert main(["tune", *tune_args(tmp_path / "out", bad), "--trials", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown option 'momentum'" in err and "\n" not in err


# --- the study: resume, pruning, retries, workers -----------------------------------------------------


def test_rerun_continues_the_study_and_prunes_trials_that_fall_behind(
    tmp_path, space_file, fake_train, monkeypatch, capsys
):
    out = tmp_path / "out"
    argv = ["tune", *tune_args(out, space_file), "--trials", "3"]
    assert main([*argv, "--pruner", "none"]) == 0  # the sampled lr sets the fake score: no pruning by chance
    assert states(load_trials(out)) == ["COMPLETE"] * 3
    first = json.loads((out / "best.json").read_text())

    monkeypatch.setenv("FAKE_LOW_FROM", "3")  # later trials score far below the median of the first three
    assert main([*argv, "--pruner-startup", "1", "--pruner-warmup", "0"]) == 0
    trials = load_trials(out)
    assert [t.number for t in trials] == list(range(6))
    assert states(trials) == ["COMPLETE"] * 3 + ["PRUNED"] * 3
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert all(t.last_step == 1 for t in pruned)  # stopped after the first epoch of two
    for t in pruned:  # a pruned trial's folder stays a resumable run
        run = out / t.user_attrs["run"]
        assert json.loads((run / "state.json").read_text())["epoch"] == 1 and not (run / "metrics.json").exists()
    table = capsys.readouterr().out
    assert "study s: 6 trials (3 complete, 3 pruned)" in table
    assert " pruned " in table and "trials/005" in table
    assert json.loads((out / "best.json").read_text())["trial"] == first["trial"]
    for name in ("optimization_history.png", "intermediate_values.png", "param_importances.png"):
        assert (out / name).stat().st_size > 0


def test_trial_states_are_counted_by_name_in_name_order():
    from optuna.trial import TrialState

    trials = [SimpleNamespace(state=s) for s in (TrialState.PRUNED, TrialState.COMPLETE, TrialState.FAIL)] * 2
    counts = tune.state_counts(trials)
    assert counts == {"complete": 2, "fail": 2, "pruned": 2} and list(counts) == ["complete", "fail", "pruned"]


def test_every_trial_is_a_run_folder_with_its_seed_recorded(tmp_path, space_file, fake_train, no_plots):
    out = tmp_path / "out"
    assert main(["tune", *tune_args(out, space_file, "--seed", "7"), "--trials", "2", "--pruner", "none"]) == 0
    for t in load_trials(out):
        assert t.user_attrs["run"] == f"trials/{t.number:03d}" and (out / t.user_attrs["run"] / "metrics.json").exists()
        assert t.user_attrs["seed"] == 7 and t.user_attrs["config"]["seed"] == 7
        assert t.user_attrs["config"]["lr"] == t.params["lr"]


def test_best_json_is_a_train_command_and_a_config_that_reproduce_the_best_trial(
    tmp_path, space_file, fake_train, no_plots
):
    out = tmp_path / "out"
    argv = ["tune", *tune_args(out, space_file, "--backbone", "tiny", "--test-time-flip"), "--trials", "3"]
    assert main(argv) == 0
    best = json.loads((out / "best.json").read_text())
    trial = next(t for t in load_trials(out) if t.number == best["trial"])
    assert best["val_macro_f1"] == trial.value == max(t.value for t in load_trials(out))
    assert best["params"] == trial.params and best["seed"] == 42
    expected = {**trial.user_attrs["config"], "out": str(out / "best")}

    command = shlex.split(best["command"])
    assert command[:2] == ["feredge", "train"]
    assert config_from_args(parse_args(command[1:])).to_dict() == expected

    from_config = config_from_args(
        parse_args(["train", "--config", str(out / "best.json"), "--out", str(out / "best")])
    )
    assert from_config.to_dict() == expected
    overridden = config_from_args(parse_args(["train", "--config", str(out / "best.json"), "--epochs", "40"]))
    assert overridden.epochs == 40 and overridden.lr == trial.params["lr"]


def test_a_config_file_value_outside_an_options_choices_is_refused(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"data": "d", "schedule": "cosin", "epochs": 3}))
    with pytest.raises(SystemExit) as exited:  # argparse's usage error, as for any bad option
        parse_args(["train", "--config", str(path)])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "schedule 'cosin' is not one of plateau, cosine" in err and "Traceback" not in err
    path.write_text(json.dumps({"data": "d", "schedule": "cosine", "optimizer": "sgd"}))
    args = parse_args(["train", "--config", str(path)])
    assert (args.schedule, args.optimizer) == ("cosine", "sgd")


def test_train_config_from_a_dict_ignores_keys_that_are_not_fields(tmp_path):
    from feredge.cli.train import read_config_file
    from feredge.train.config import TrainConfig

    config = TrainConfig.from_dict({"data": "d", "epochs": 3, "from_another_version": 1})
    assert config == TrainConfig(data="d", epochs=3)
    (tmp_path / "config.json").write_text(json.dumps({**config.to_dict(), "gone": True}))
    assert TrainConfig.load(tmp_path / "config.json") == config and read_config_file(tmp_path) == config.to_dict()


def test_an_interrupted_trial_is_retried_and_continues_its_run_folder(
    tmp_path, space_file, fake_train, no_plots, monkeypatch
):
    out = tmp_path / "out"
    argv = ["tune", *tune_args(out, space_file, "--epochs", "3"), "--trials", "2"]
    monkeypatch.setenv("FAKE_INTERRUPT_AT", "2")  # Ctrl-C after epoch 1 was saved
    assert main(argv) == 130
    assert states(load_trials(out)) == ["FAIL", "WAITING"]

    monkeypatch.delenv("FAKE_INTERRUPT_AT")
    assert main(argv) == 0
    trials = load_trials(out)
    assert states(trials) == ["COMPLETE", "COMPLETE", "FAIL"]
    retry = trials[1]
    assert retry.user_attrs["run"] == "trials/000" and retry.params == trials[0].params
    assert retry.intermediate_values.keys() == {1, 2, 3}  # epoch 1 inherited, 2 and 3 trained after resuming
    calls = [json.loads(line) for line in (out / "trials/000/calls.jsonl").read_text().splitlines()]
    assert [(c["resume"], c["first_epoch"]) for c in calls] == [(False, 1), (True, 2)]
    assert not (out / "trials/001").exists()


def worker(out: Path, space: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *tune_args(out, space), *extra],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_killed_workers_trial_is_failed_by_its_heartbeat_and_resumed(tmp_path, space_file):
    out = tmp_path / "out"
    hung = worker(out, space_file, "--trials", "1", "--heartbeat", "1", env={"FAKE_HANG_AT": "2"})
    state = out / "trials/000/state.json"
    deadline = time.time() + 60
    while not state.exists() and time.time() < deadline:
        time.sleep(0.2)
    hung.kill()  # SIGKILL: no handler runs; the trial stays RUNNING in the database
    hung.communicate()
    assert states(load_trials(out)) == ["RUNNING"]
    time.sleep(2.5)  # longer than the grace period of two heartbeats

    done = worker(out, space_file, "--trials", "1", "--heartbeat", "1")
    _, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    trials = load_trials(out)
    assert states(trials) == ["COMPLETE", "FAIL"]
    assert trials[1].user_attrs["run"] == "trials/000"
    calls = [json.loads(line) for line in (out / "trials/000/calls.jsonl").read_text().splitlines()]
    assert [(c["resume"], c["first_epoch"]) for c in calls] == [(False, 1), (True, 2)]


def test_two_workers_share_one_sqlite_study_without_losing_trials(tmp_path, space_file):
    out = tmp_path / "out"
    assert main(["tune", *tune_args(out, space_file), "--trials", "0"]) == 0  # create the study once
    env = {"FAKE_EPOCH_SECONDS": "0.3"}
    workers = [worker(out, space_file, "--trials", "3", "--pruner", "hyperband", env=env) for _ in range(2)]
    for w in workers:
        _, err = w.communicate(timeout=180)
        assert w.returncode == 0, err
    trials = load_trials(out)
    assert [t.number for t in trials] == list(range(6))
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    pids = {json.loads((out / t.user_attrs["run"] / "calls.jsonl").read_text())["pid"] for t in trials}
    assert len(pids) == 2  # both workers ran trials
    assert sorted(p.name for p in (out / "trials").iterdir()) == [f"{n:03d}" for n in range(6)]


# --- bad input ---------------------------------------------------------------------------------------


def run_error(argv: list[str], capsys) -> str:
    capsys.readouterr()
    assert main(["tune", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "\n" not in err, err
    return err


def test_a_study_name_with_another_space_or_options_is_refused(tmp_path, space_file, capsys):
    out = tmp_path / "out"
    assert main(["tune", *tune_args(out, space_file), "--trials", "0"]) == 0
    other = tmp_path / "other.toml"
    other.write_text(SPACE.replace("high = 0.5", "high = 0.6"))
    assert "another space (differs in dropout)" in run_error([*tune_args(out, other), "--trials", "0"], capsys)
    err = run_error([*tune_args(out, space_file, "--epochs", "5"), "--trials", "0"], capsys)
    assert "other training options (epochs: 2 there, 5 here)" in err


def test_tune_refuses_the_multiworker_strategy(tmp_path, space_file, capsys):
    err = run_error([*tune_args(tmp_path / "o", space_file), "--trials", "1", "--strategy", "multiworker"], capsys)
    assert "--strategy multiworker would need every machine to run the same trial" in err
    assert not (tmp_path / "o").exists()


def test_a_study_made_before_an_option_existed_still_opens():
    from feredge.train.tune import with_new_defaults

    older = {"epochs": 2, "lr": 0.01}  # a study stored before final_fit was an option
    assert with_new_defaults(older, {**older, "final_fit": False}) == {**older, "final_fit": False}
    assert with_new_defaults(older, {**older, "final_fit": True})["final_fit"] is False  # its default: a change


def test_an_unreachable_storage_is_one_line_without_the_password(tmp_path, space_file, capsys):
    err = run_error(
        [*tune_args(tmp_path / "o", space_file), "--trials", "1", "--storage", "postgresql://u:secret@127.0.0.1:1/db"],
        capsys,
    )
    assert "study storage postgresql://u:***@127.0.0.1:1/db" in err and "secret" not in err
    missing = f"sqlite:///{tmp_path}/no/such/folder/study.db"
    err = run_error([*tune_args(tmp_path / "o", space_file), "--trials", "1", "--storage", missing], capsys)
    assert "unable to open database file" in err


def test_a_locked_sqlite_file_is_one_clear_line(tmp_path, space_file, capsys):
    out = tmp_path / "out"
    assert main(["tune", *tune_args(out, space_file), "--trials", "0"]) == 0
    lock = sqlite3.connect(out / "study.db")
    lock.execute("BEGIN EXCLUSIVE")
    try:
        url = f"sqlite:///{out / 'study.db'}?timeout=0.2"
        err = run_error([*tune_args(out, space_file), "--trials", "1", "--storage", url], capsys)
    finally:
        lock.rollback()
        lock.close()
    assert "database is locked" in err and "write lock" in err


# --- real training -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_trials_prune_through_keras_and_best_json_reproduces_the_run(tmp_path, space_file, capsys):
    """Tiny models on generated data. Pruning is made certain by a reference trial that scored 1.0 at every
    epoch (as if from another worker): a real trial's first epoch can only fall behind it."""
    data = write_split_folders(tmp_path / "data", ["happy", "sad", "angry"], per_class=8)
    out = tmp_path / "out"
    fixed = ["--backbone", "tiny", "--input-size", "16", "--batch-size", "8", "--workers", "1", "--augment", "none"]
    argv = [
        "tune",
        *tune_args(out, space_file, *fixed, data=str(data)),
        "--pruner-startup",
        "1",
        "--pruner-warmup",
        "0",
    ]
    assert main([*argv, "--trials", "1"]) == 0
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{out / 'study.db'}")
    first = study.trials[0]
    study.add_trial(
        optuna.trial.create_trial(
            params=first.params, distributions=first.distributions, value=0.0, intermediate_values={1: 1.0, 2: 1.0}
        )
    )
    assert main([*argv, "--trials", "1"]) == 0
    trials = load_trials(out)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert trials[2].last_step == 1 and json.loads((out / "trials/002/state.json").read_text())["epoch"] == 1

    best = json.loads((out / "best.json").read_text())
    assert best["trial"] == 0 and best["run"] == str(out / "trials/000")
    capsys.readouterr()
    again = out / "again"
    assert main(["train", "--config", str(out / "best.json"), "--out", str(again)]) == 0
    trial_run = out / "trials/000"
    assert json.loads((again / "config.json").read_text()) == {
        **json.loads((trial_run / "config.json").read_text()),
        "out": str(again),
    }
    metrics = json.loads((again / "metrics.json").read_text())
    assert metrics["val"]["macro_f1"] == pytest.approx(best["val_macro_f1"])
    histories = [list(csv.DictReader((run / "history.csv").open())) for run in (again, trial_run)]
    assert [float(row["loss"]) for row in histories[0]] == pytest.approx([float(row["loss"]) for row in histories[1]])


def _complete(value: float, curve: list[float]):
    return optuna.trial.create_trial(
        value=value, intermediate_values=dict(enumerate(curve, start=1)), state=TrialState.COMPLETE
    )


def test_rank_agreement_says_whether_a_shorter_budget_ranks_trials_alike():
    # after one epoch the order is the reverse of the final one; from epoch 2 on it is the same
    trials = [_complete(0.6, [0.1, 0.5, 0.6]), _complete(0.5, [0.2, 0.4, 0.5]), _complete(0.3, [0.3, 0.2, 0.3])]
    rows = tune.rank_agreement(trials)
    assert [(r["epochs"], r["spearman"], r["same_best"]) for r in rows] == [(1, -1.0, False), (2, 1.0, True)]
    assert "k=1   Spearman -1.00  same best: no" in tune.format_agreement(rows)
    assert tune.rank_agreement(trials[:2]) == []


def test_rank_agreement_uses_the_best_epoch_so_far_and_averages_ties():
    # a trial cut at epoch 2 reports its best epoch (0.5), which ties it with the final best trial
    trials = [_complete(0.5, [0.5, 0.1, 0.2]), _complete(0.7, [0.1, 0.5, 0.7]), _complete(0.1, [0.0, 0.0, 0.1])]
    for order in (trials, trials[::-1]):  # ties do not depend on the trials' order
        (_, second) = tune.rank_agreement(order)
        assert second["spearman"] == pytest.approx(0.866, abs=1e-3) and second["same_best"] is True


def test_rank_agreement_without_a_ranking_at_some_epoch_says_so():
    # every trial ties after epoch 1, and the second trial reported nothing before epoch 2
    trials = [_complete(0.6, [0.1, 0.5, 0.6]), _complete(0.4, [0.1, 0.4, 0.4]), _complete(0.2, [0.1, 0.2, 0.2])]
    assert tune.rank_agreement(trials)[0] == {"epochs": 1, "trials": 3, "spearman": None, "same_best": True}
    late = optuna.trial.create_trial(value=0.5, intermediate_values={2: 0.5, 3: 0.5}, state=TrialState.COMPLETE)
    assert [r["epochs"] for r in tune.rank_agreement([*trials, late])] == [2]
    one_epoch = [_complete(v, [v]) for v in (0.1, 0.2, 0.3)]
    assert tune.rank_agreement(one_epoch) == [] and "more than one epoch" in tune.format_agreement([])
