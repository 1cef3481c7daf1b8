"""The ``feredge`` command itself: help, and errors turned into one line and an exit code."""

from __future__ import annotations

import sys

import pytest

from feredge.cli import COMMANDS, main

pytestmark = pytest.mark.edge  # needs only `pip install .`: .ci/run also runs it in an edge-only venv


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ("train", "evaluate", "convert", "predict", "video", "demo", "bench"):
        assert name in COMMANDS and name in out


def test_missing_extra_names_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tf_keras", None)  # as on an edge-only install
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    (tmp_path / "happy").mkdir()
    assert main(["train", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'feredge[train]'" in err and "Traceback" not in err


def test_os_errors_become_one_line_naming_the_file(monkeypatch, capsys):
    from feredge.cli import evaluate as evaluate_cli

    def unwritable(_args):
        raise PermissionError(13, "Permission denied", "/readonly/metrics.json")

    monkeypatch.setattr(evaluate_cli, "run", unwritable)
    assert main(["evaluate", "model.keras", "data"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "feredge evaluate: error: /readonly/metrics.json: Permission denied"


def test_unexpected_missing_module_is_not_disguised(monkeypatch):
    from feredge.cli import evaluate as evaluate_cli

    def broken(_args):
        raise ModuleNotFoundError("No module named 'feredge.nothing'", name="feredge.nothing")

    monkeypatch.setattr(evaluate_cli, "run", broken)
    with pytest.raises(ModuleNotFoundError):
        main(["evaluate", "model.keras", "data"])
