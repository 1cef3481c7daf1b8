"""Bad input to ``feredge train`` and ``feredge ensemble``: one clear error, exit code 2, nothing written.

Options are refused by their argparse types (a usage error naming the option); ``--config`` files and Python
callers meet the same ranges in ``TrainConfig``; a damaged run folder is named, never a traceback.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from synthetic import write_class_folders

from feredge.cli import main, parse_args
from feredge.train.config import LIMITS, ConfigError, TrainConfig
from feredge.train.ensemble import EnsembleError, check_mix

BAD_OPTIONS = [
    ("--epochs", "0"),
    ("--epochs", "-1"),
    ("--epochs", "2.5"),
    ("--head-epochs", "-1"),
    ("--batch-size", "0"),
    ("--lr", "nan"),
    ("--lr", "0"),
    ("--lr", "inf"),
    ("--weight-decay", "-1e-4"),
    ("--finetune-lr-factor", "0"),
    ("--warmup-epochs", "-1"),
    ("--label-smoothing", "5"),
    ("--label-smoothing", "1"),
    ("--dropout", "1.5"),
    ("--dropout", "-0.1"),
    ("--patience", "0"),
    ("--alpha", "0"),
    ("--alpha", "nan"),
    ("--input-size", "0"),
    ("--input-size", "7"),
    ("--distill-alpha", "1.5"),
    ("--distill-temperature", "0"),
    ("--val-fraction", "1"),
    ("--val-fraction", "-0.1"),
    ("--svm-c", "0"),
    ("--workers", "0"),
    ("--unfreeze", "-2"),
    ("--crop-margin", "2"),
    ("--crop-margin", "-0.5"),
    ("--seed", "-1"),
]


def _files(folder: Path) -> set[Path]:
    return set(folder.rglob("*")) if folder.exists() else set()


@pytest.mark.parametrize(("option", "value"), BAD_OPTIONS)
def test_a_bad_train_option_is_a_usage_error_naming_it(tmp_path, capsys, option, value):
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(tmp_path / "data"), "--backbone", "tiny", "--out", str(run), f"{option}={value}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: expected" in err and repr(value) in err and "Traceback" not in err
    assert not run.exists()


def test_boundary_values_are_accepted():
    from feredge.cli.train import config_from_args

    edges = {
        "--input-size": "8",  # the tiny backbone's minimum
        "--head-epochs": "0",
        "--unfreeze": "-1",
        "--label-smoothing": "0",
        "--dropout": "0",
        "--weight-decay": "0",
        "--warmup-epochs": "0",
        "--distill-alpha": "1",
        "--crop-margin": "-0.3",
        "--seed": "0",
        "--epochs": "1",
        "--patience": "1",
    }
    config = config_from_args(parse_args(["train", "d", "--backbone", "tiny", *(f"{k}={v}" for k, v in edges.items())]))
    assert (config.input_size, config.head_epochs, config.unfreeze, config.crop_margin) == (8, 0, -1, -0.3)


def test_every_numeric_option_has_a_range():
    """The table covers every int and float field, so a new option cannot arrive unchecked."""
    numeric = {name for name, value in TrainConfig(data="").to_dict().items() if type(value) in (int, float)}
    assert numeric | {"input_size", "head_epochs"} == set(LIMITS)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"lr": float("nan")}, "lr"),
        ({"epochs": 0}, "epochs"),
        ({"epochs": 2.0}, "epochs"),
        ({"epochs": True}, "epochs"),
        ({"batch_size": "64"}, "batch_size"),
        ({"dropout": 1.0}, "dropout"),
        ({"label_smoothing": float("inf")}, "label_smoothing"),
        ({"crop_margin": 1.5}, "crop_margin"),
        ({"head_epochs": -1}, "head_epochs"),
        ({"input_size": 16}, "input_size"),  # compact needs 32
    ],
)
def test_python_callers_meet_the_same_ranges(changes, field):
    with pytest.raises(ConfigError, match=rf"{field} \(--{field.replace('_', '-')}\) must be"):
        TrainConfig(data="d", **changes)
    with pytest.raises(ConfigError, match=field):
        replace(TrainConfig(data="d"), **changes)  # feredge tune builds its trials this way


def test_the_default_tune_space_gives_valid_configs():
    from feredge.cli.train import train_options
    from feredge.train.space import load_space

    base = TrainConfig(data="d")
    for param in load_space(options=train_options()).params:
        for value in param.choices or (param.low, param.high):
            replace(base, **{param.name: value})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"data": "x", "lr": NaN}', r"lr \(--lr\) must be a number > 0, got nan"),
        ('{"config": {"dropout": 1.5}}', r"dropout \(--dropout\) must be a number in \[0, 1\), got 1.5"),
        ('{"epochs": 2.0}', r"epochs \(--epochs\) must be a whole number >= 1, got 2.0"),
    ],
)
def test_a_config_file_out_of_range_is_a_usage_error(tmp_path, capsys, text, message):
    config, run = tmp_path / "best.json", tmp_path / "run"
    config.write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "d", "--config", str(config), "--out", str(run)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --config" in err and str(config) in err and "Traceback" not in err
    assert re.search(message, err)
    assert not run.exists()


def test_an_input_size_below_the_backbones_minimum_is_refused_before_the_run_folder(tmp_path, capsys):
    data, run = write_class_folders(tmp_path / "data", ["happy", "sad"], per_class=2), tmp_path / "run"
    assert main(["train", str(data), "--backbone", "compact", "--input-size", "16", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "--input-size" in err and ">= 32 for backbone compact" in err and "Traceback" not in err
    assert not run.exists()


@pytest.mark.parametrize("share", ["nan", "inf", "1e999", "-1"])
def test_ensemble_mix_refuses_non_finite_and_negative_shares(tmp_path, capsys, share):
    out = tmp_path / "ens"
    with pytest.raises(SystemExit) as exit_info:
        main(["ensemble", "run1", "run1", "--weight-average", "--mix", share, "1", "--out", str(out)])
    assert exit_info.value.code == 2
    assert f"argument --mix: expected a share >= 0, got '{share}'" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("mix", [[float("nan"), 1.0], [float("inf"), 1.0], [1e308, 1e308], [0.0, 0.0], [1.0]])
def test_check_mix_refuses_shares_that_give_no_finite_average(mix):
    with pytest.raises(EnsembleError, match="finite non-negative shares"):
        check_mix(mix, 2)


def test_check_mix_normalizes_good_shares():
    assert check_mix([1, 3], 2) == (0.25, 0.75)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1]", "expected an object of options, got list"),
        ('"run"', "expected an object of options, got str"),
        ("{trunc", "cannot read run config"),
        ("{}", "names no training data"),
        ('{"data": "d", "batch_size": 0}', "batch_size"),
    ],
)
def test_a_damaged_config_json_names_the_file(tmp_path, text, message):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as error:
        TrainConfig.load(path)
    assert str(path) in str(error.value)


def _run_folder(tmp_path: Path, config: str, state: str) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(config)
    (run / "state.json").write_text(state)
    return run


GOOD_CONFIG = json.dumps(TrainConfig(data="data", backbone="tiny", epochs=1).to_dict())
GOOD_STATE = json.dumps(
    {"stage": "finetune", "epoch": 0, "best_f1": -1.0, "best_epoch": None, "history": [], "done": False}
)


@pytest.mark.slow  # train() imports TensorFlow before it reads the run folder
@pytest.mark.parametrize(
    ("config", "state", "named", "message"),
    [
        ("[1]", GOOD_STATE, "config.json", "expected an object of options"),
        (GOOD_CONFIG, "{trunc", "state.json", "is damaged"),
        (GOOD_CONFIG, "{}", "state.json", "missing or invalid stage, epoch"),
        (GOOD_CONFIG, "[]", "state.json", "is damaged"),
        (GOOD_CONFIG, '{"stage": "finetune", "epoch": "3"}', "state.json", "is damaged"),
    ],
    ids=["config-list", "state-truncated", "state-empty", "state-list", "state-wrong-types"],
)
def test_resuming_a_damaged_run_folder_is_one_clear_error(tmp_path, capsys, config, state, named, message):
    run = _run_folder(tmp_path, config, state)
    before = {path: path.read_bytes() for path in _files(run)}
    assert main(["train", "--resume", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert str(run / named) in err and message in err and "Traceback" not in err
    if named == "state.json":
        assert "start a new run with another --out" in err
    assert {path: path.read_bytes() for path in _files(run)} == before


@pytest.mark.slow  # builds and saves a tiny Keras model
def test_converting_a_run_whose_config_json_is_damaged_is_one_clear_error(tmp_path, capsys):
    from feredge.edge.metadata import ModelMetadata
    from feredge.train.backbones import build_model

    run = tmp_path / "run"
    run.mkdir()
    build_model("tiny", 2, 16).save(str(run / "model.keras"))
    ModelMetadata(labels=("happy", "sad"), input_size=16).save(run / "metadata.json")
    (run / "config.json").write_text("[1]")
    assert main(["convert", str(run)]) == 2
    err = capsys.readouterr().err
    assert str(run / "config.json") in err and "expected an object of options" in err and "Traceback" not in err
