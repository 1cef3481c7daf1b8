"""Scale-out on real engines: Optuna studies shared on PostgreSQL, tf.distribute multi-worker and mirrored.

Each slow test starts real ``feredge`` processes with the README's "Scale out" commands (``README``, checked
against the README by the fast test below), on generated data, with the tiny model's options appended (given
later, they win over the README's). PostgreSQL is a throw-away cluster: the one ``.ci/run`` starts (its URL in
``FEREDGE_TEST_POSTGRES_URL``), else one this module starts with the same ``.ci/postgres`` script; without
PostgreSQL installed the tests skip and say so, except under ``CI=true``, where that is a failure.

What a dead tune worker leaves, as Optuna's heartbeat allows: its trial stays RUNNING until it has been silent
for the grace period (two ``--heartbeat`` intervals); the next worker to start a trial then marks it FAIL, and
``RetryHeartbeatStaleTrialCallback`` queues a copy with the same parameters, which that worker (or another)
runs by resuming the dead trial's run folder from its last saved epoch. The trial is never retried in place.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from synthetic import write_split_folders

from feredge.train.distribute import DistributeError, is_chief, make_strategy, split_cpus

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_SCRIPT = ROOT / ".ci" / "postgres"
WORKER = Path(__file__).with_name("tune_worker.py")

# The README's "Scale out" commands, as written there (DATA, $DB and runs/... are replaced here)
README = {
    "tune_create": "feredge tune DATA --trials 0 --study fer --storage $DB --epochs 8 --out runs/tune",
    "tune_worker": "feredge tune DATA --trials 10 --study fer --storage $DB --epochs 8 --out runs/tune",
    "multiworker": "feredge train DATA --strategy multiworker --batch-size 256 --lr 4e-3 --schedule cosine "
    "--warmup-epochs 3 \\\n  --out runs/multiworker",
    "mirrored_cpu": "FEREDGE_LOGICAL_CPUS=2 feredge train DATA --strategy mirrored --out runs/mirrored",
    "single": "feredge train DATA --out runs/single",
    "mixed": "feredge train DATA --mixed-precision --out runs/mixed",
}
TINY = ["--backbone", "tiny", "--input-size", "16", "--batch-size", "8", "--workers", "1", "--augment", "none"]
MIRRORED_LOSS_TOLERANCE = 0.02  # relative; README: each replica's BatchNorm sees only its share of the batch
MIXED_LOSS_TOLERANCE = 0.05  # relative; float16 activations


def test_the_readme_shows_the_commands_these_tests_run():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Scale out") :]
    section = section[: section.index("\n## ", 1)]
    for name, command in README.items():
        assert command in section, f"README's Scale out section lacks the {name} command: {command}"


# --- PostgreSQL -----------------------------------------------------------------------------------------------


def unavailable(reason: str):
    """Skip with the reason; under CI=true a skip would hide a missing install step, so fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: .ci/run must install and start it)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url():
    """The URL of a throw-away PostgreSQL cluster: .ci/run's, else one started here and stopped at the end."""
    import importlib.util

    if importlib.util.find_spec("psycopg") is None:
        unavailable("no PostgreSQL driver: pip install 'psycopg[binary]' (in feredge[dev])")
    url = os.environ.get("FEREDGE_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    folder = Path(tempfile.gettempdir()) / f"feredge-pg-{uuid.uuid4().hex[:12]}"  # reachable by its owner, nobody
    started = subprocess.run(["bash", str(POSTGRES_SCRIPT), "start", str(folder)], capture_output=True, text=True)
    if started.returncode == 3:
        unavailable(f"PostgreSQL is not installed: {started.stderr.strip()}")
    if started.returncode != 0:
        subprocess.run(["bash", str(POSTGRES_SCRIPT), "stop", str(folder)], check=False)
        pytest.fail(f"could not start PostgreSQL: {started.stderr.strip()}")
    try:
        yield started.stdout.strip()
    finally:
        subprocess.run(["bash", str(POSTGRES_SCRIPT), "stop", str(folder)], check=False)


# --- processes ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_split_folders(tmp_path_factory.mktemp("scaleout") / "data", ["happy", "sad", "angry"], per_class=8)


def command(name: str, *extra: str, **values: str) -> tuple[dict[str, str], list[str]]:
    """The README's command ``name`` as (environment, argv): its words replaced by ``values`` (``DATA``,
    ``$DB``, ``runs/tune``, ...), ``feredge`` by this Python, and ``extra`` appended."""
    words = shlex.split(README[name].replace("\\\n", " "))  # a shell line continuation
    env = {}
    while "=" in words[0]:
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    assert words[0] == "feredge"
    argv = [sys.executable, "-m", "feredge", *(values.get(w, w) for w in words[1:]), *extra]
    return env, argv


def start(argv: list[str], log: Path, **env: str) -> subprocess.Popen:
    """A process whose stdout and stderr go to ``log`` (a pipe could fill up with TensorFlow's chatter)."""
    with open(log, "w") as fh:
        return subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **env}, text=True)


def finish(process: subprocess.Popen, log: Path, timeout: float = 300) -> str:
    try:
        process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
    return log.read_text()


def run(argv: list[str], log: Path, **env: str) -> str:
    """Run to the end; its output, which must end with exit code 0."""
    process = start(argv, log, **env)
    text = finish(process, log)
    assert process.returncode == 0, text
    return text


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- Optuna on PostgreSQL ---------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.scaleout
def test_tune_workers_share_one_postgresql_study(postgres_url, data, tmp_path):
    """Two workers train real trials of one study at once while a third fails its trial; ``--trials 0`` reports."""
    import optuna

    study = f"fer-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "tune"
    fixed = ["--epochs", "2", *TINY]
    values = {"DATA": str(data), "$DB": postgres_url, "fer": study, "runs/tune": str(out)}
    env, create = command("tune_create", *fixed, **values)
    run(create, tmp_path / "create.log", **env)
    _, good = command("tune_worker", *fixed, "--trials", "2", **values)
    _, bad = command("tune_worker", *fixed, "--trials", "1", **{**values, "DATA": str(tmp_path / "no-data")})
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b", "failing")}
    workers = {
        "a": start(good, logs["a"]),
        "b": start(good, logs["b"]),
        "failing": start(bad, logs["failing"]),
    }
    text = {name: finish(process, logs[name]) for name, process in workers.items()}
    assert workers["a"].returncode == 0, text["a"]
    assert workers["b"].returncode == 0, text["b"]
    assert workers["failing"].returncode == 2, text["failing"]  # its data error ends that worker only

    trials = optuna.load_study(study_name=study, storage=postgres_url).get_trials()
    numbers = {name: [int(n) for n in re.findall(r"trial (\d+) -> ", log)] for name, log in text.items()}
    assert sorted(t.number for t in trials) == list(range(5))  # no number given twice
    assert [len(numbers[name]) for name in ("a", "b", "failing")] == [2, 2, 1]
    assert sorted(numbers["a"] + numbers["b"] + numbers["failing"]) == list(range(5))  # each trial ran once
    by_number = {t.number: t for t in trials}
    failed = by_number[numbers["failing"][0]]
    assert failed.state.name == "FAIL"
    for n in numbers["a"] + numbers["b"]:
        assert by_number[n].state.name in ("COMPLETE", "PRUNED")
        assert (out / by_number[n].user_attrs["run"] / "state.json").exists()
    assert failed.datetime_complete < max(by_number[n].datetime_complete for n in numbers["a"] + numbers["b"])

    (out / "best.json").unlink()  # written by each worker as it ended; the report below writes it again
    report = run(create, tmp_path / "report.log", **env)
    summary = ", ".join(f"{n} {state}" for state, n in _counts(trials).items())
    assert f"study {study}: 5 trials ({summary})" in report
    best = json.loads((out / "best.json").read_text())
    shared = optuna.load_study(study_name=study, storage=postgres_url)
    assert best["trials"] == _counts(trials) and best["trial"] == shared.best_trial.number
    assert best["val_macro_f1"] == shared.best_value and best["storage"] == postgres_url  # no password to hide
    assert best["trial"] in numbers["a"] + numbers["b"]


def _counts(trials) -> dict[str, int]:
    from feredge.train.tune import state_counts

    return state_counts(trials)


@pytest.mark.slow
@pytest.mark.scaleout
def test_a_third_worker_resumes_the_study_after_both_workers_are_killed(postgres_url, tmp_path):
    """Killed mid-trial, two workers leave RUNNING trials; once their heartbeats are stale, a third worker fails
    them and runs their retries, which resume the dead trials' run folders. Training is ``tune_worker``'s
    stand-in (``FAKE_HANG_AT``), so the kill lands mid-trial for certain; the study and its database are real."""
    import optuna

    study = f"killed-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "tune"
    base = [sys.executable, str(WORKER), "data-not-read", "--study", study, "--storage", postgres_url]
    base += ["--out", str(out), "--epochs", "2", "--heartbeat", "1"]
    run([*base, "--trials", "0"], tmp_path / "create.log")
    hung = [start([*base, "--trials", "1"], tmp_path / f"hung{i}.log", FAKE_HANG_AT="2") for i in range(2)]
    deadline = time.time() + 120
    saved = [out / "trials/000/state.json", out / "trials/001/state.json"]
    while not all(p.exists() for p in saved) and time.time() < deadline:
        time.sleep(0.2)
    for process in hung:
        process.send_signal(signal.SIGKILL)  # no handler runs: the trials stay RUNNING
        process.wait()
    assert all(p.exists() for p in saved), "the workers did not save their first epoch in time"
    assert sorted(t.state.name for t in optuna.load_study(study_name=study, storage=postgres_url).trials) == [
        "RUNNING",
        "RUNNING",
    ]
    time.sleep(2.5)  # longer than the grace period of two heartbeats

    run([*base, "--trials", "2"], tmp_path / "third.log")
    trials = optuna.load_study(study_name=study, storage=postgres_url).trials
    assert [t.state.name for t in trials] == ["FAIL", "FAIL", "COMPLETE", "COMPLETE"]
    assert sorted(t.user_attrs["run"] for t in trials[2:]) == ["trials/000", "trials/001"]
    for t in trials[2:]:
        assert t.params == next(d.params for d in trials[:2] if d.user_attrs["run"] == t.user_attrs["run"])
        calls = [json.loads(line) for line in (out / t.user_attrs["run"] / "calls.jsonl").read_text().splitlines()]
        assert [(c["resume"], c["first_epoch"]) for c in calls] == [(False, 1), (True, 2)]


# --- tf.distribute ----------------------------------------------------------------------------------------------


def test_the_chief_is_the_chief_task_or_worker_zero():
    def strategy(task_type, task_id, jobs=("worker",)):
        spec = SimpleNamespace(jobs=list(jobs))
        return SimpleNamespace(
            cluster_resolver=SimpleNamespace(task_type=task_type, task_id=task_id, cluster_spec=lambda: spec)
        )

    assert is_chief(SimpleNamespace(cluster_resolver=None))  # default and mirrored strategies
    assert is_chief(strategy(None, None))
    assert is_chief(strategy("worker", 0)) and not is_chief(strategy("worker", 1))
    assert is_chief(strategy("chief", 0, ("chief", "worker")))
    assert not is_chief(strategy("worker", 0, ("chief", "worker")))
    assert not is_chief(strategy("evaluator", 0, ("worker", "evaluator")))


@pytest.mark.parametrize(
    ("tf_config", "message"),
    [
        (None, "needs TF_CONFIG on every worker"),
        ("{not json", "TF_CONFIG is not a cluster and a task"),
        ('{"cluster": {"worker": ["a:1"]}}', "TF_CONFIG is not a cluster and a task"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', "not one of the 1 worker"),
    ],
)
def test_multiworker_without_a_usable_tf_config_is_one_clear_error(monkeypatch, tf_config, message):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(DistributeError, match=message):
        make_strategy("multiworker")  # refused before TensorFlow is imported


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_logical_cpu_count_is_refused(monkeypatch, value):
    monkeypatch.setenv("FEREDGE_LOGICAL_CPUS", value)
    with pytest.raises(DistributeError, match="FEREDGE_LOGICAL_CPUS must be a whole number >= 1"):
        split_cpus()


def test_a_dead_peer_of_a_multiworker_run_is_one_line():
    """What the other workers see when one is killed (seen here by hand: the chief stopped about 20 s later)."""
    tf = pytest.importorskip("tensorflow")
    from feredge.train.distribute import lost_workers

    message = (
        "{{function_node CollectiveReduceV2}} Collective ops is aborted by: Error reported from /job:worker/task:1: "
        "The following tasks are unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:1\n"
        "The tasks have crashed."
    )
    multiworker = SimpleNamespace(cluster_resolver=SimpleNamespace(task_type="worker", task_id=0))
    expected = r"^worker 1 of the multi-worker cluster stopped; .* with a new --out$"
    with pytest.raises(DistributeError, match=expected), lost_workers(multiworker):
        raise tf.errors.UnavailableError(None, None, message)
    with pytest.raises(tf.errors.UnavailableError), lost_workers(SimpleNamespace(cluster_resolver=None)):
        raise tf.errors.UnavailableError(None, None, message)  # not a multi-worker run: not ours to explain


def _digests(log: str) -> list[str]:
    return re.findall(r"weights sha256 ([0-9a-f]{64})", log)


def _losses(run: Path) -> list[float]:
    return [float(row["loss"]) for row in csv.DictReader((run / "history.csv").open())]


@pytest.mark.slow
@pytest.mark.scaleout
def test_two_multiworker_processes_train_one_model_written_by_the_chief(data, tmp_path, capsys):
    """Two workers on 127.0.0.1. Each is given its own --out, as on two machines without a shared disk: the
    chief's holds the run, the other's is never made, and the worker's temporary folder is gone at its end."""
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes, logs, outs, tmps = [], [], [], []
    for index in range(2):
        outs.append(tmp_path / f"machine{index}" / "run")
        tmps.append(tmp_path / f"tmp{index}")
        tmps[-1].mkdir()
        logs.append(tmp_path / f"worker{index}.log")
        env, argv = command(
            "multiworker", *TINY, "--epochs", "2", DATA=str(data), **{"runs/multiworker": str(outs[-1])}
        )
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        processes.append(start(argv, logs[-1], TF_CONFIG=tf_config, TMPDIR=str(tmps[-1]), **env))
    text = [finish(p, log) for p, log in zip(processes, logs, strict=True)]
    for process, log in zip(processes, text, strict=True):
        assert process.returncode == 0, log
        assert "strategy multiworker: 2 replicas" in log

    chief, other = outs
    assert json.loads((chief / "state.json").read_text())["done"] is True
    assert {"model.keras", "metadata.json", "config.json", "metrics.json", "history.csv"} <= {
        p.name for p in chief.iterdir()
    }
    assert not other.parent.exists()  # the other worker wrote nothing under its --out
    assert not any(tmps[1].iterdir())  # and its temporary copy of the run was removed
    assert "writes a temporary folder only" in text[1]
    assert len(_digests(text[0])) == 1 and _digests(text[0]) == _digests(text[1])  # the same weights, bit for bit
    assert len(_losses(chief)) == 2

    from feredge.cli import main

    capsys.readouterr()
    assert main(["train", "--out", str(chief), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "multiworker run cannot be resumed" in err and "\n" not in err


@pytest.mark.slow
@pytest.mark.scaleout
def test_mirrored_on_two_logical_cpus_matches_one_device(data, tmp_path):
    """One epoch at the same global batch of 8: mirrored over two logical CPUs (4 faces each) against one device;
    and --mixed-precision, which trains on a CPU too (emulated float16, slower; Keras warns)."""
    fixed = [*TINY, "--epochs", "1", "--dropout", "0", "--balance", "none"]
    runs = {name: tmp_path / name for name in ("mirrored", "single", "mixed")}
    processes = {}
    for name, run in runs.items():
        key = "mirrored_cpu" if name == "mirrored" else name
        env, argv = command(key, *fixed, DATA=str(data), **{f"runs/{name}": str(run)})
        processes[name] = start(argv, tmp_path / f"{name}.log", **env)
    for name, process in processes.items():
        assert process.wait(timeout=300) == 0, (tmp_path / f"{name}.log").read_text()
    assert "strategy mirrored: 2 replicas" in (tmp_path / "mirrored.log").read_text()
    (mirrored,), (single,), (mixed,) = (_losses(runs[name]) for name in ("mirrored", "single", "mixed"))
    assert mirrored == pytest.approx(single, rel=MIRRORED_LOSS_TOLERANCE)
    assert math.isfinite(mixed) and mixed == pytest.approx(single, rel=MIXED_LOSS_TOLERANCE)
