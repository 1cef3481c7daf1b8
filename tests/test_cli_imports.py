"""``feredge predict`` builds only its own parser: it imports no train, convert, benchmark or video module."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.edge

HEAVY = (
    "feredge.train",
    "feredge.convert",
    "feredge.benchmarks",
    "feredge.demo",
    "feredge.edge.video",
    "feredge.edge.timeline",
    "feredge.cli.train",
    "feredge.cli.video",
    "feredge.cli.bench",
)
# `feredge predict --help` today: the CLI's dispatcher, options and predict module, and the edge modules
# the detector and normalization choices come from: 17 modules at this writing, 45 when every parser was built.
MAX_MODULES = 25


def _loaded_by(argv: list[str]) -> list[str]:
    """The feredge modules a fresh interpreter holds after parsing ``argv`` (help exits are caught)."""
    code = (
        "import json, sys\n"
        "from feredge.cli import parse_args\n"
        "try:\n"
        "    parse_args(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('feredge'))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("argv", [["predict", "--help"], ["predict", "x.jpg", "--json"], ["--help"]])
def test_predict_and_help_import_only_what_they_use(argv):
    loaded = _loaded_by(argv)
    heavy = [m for m in loaded if m.startswith(HEAVY)]
    assert not heavy, f"{argv} imported {heavy}"
    assert "feredge.cli.predict" in loaded or argv == ["--help"]
    assert len(loaded) <= MAX_MODULES, loaded


def test_top_level_help_lists_every_command_without_importing_them(capsys):
    from feredge.cli import COMMANDS

    loaded = _loaded_by(["--help"])
    assert not [m for m in loaded if m.startswith("feredge.cli.") and m != "feredge.cli.options"], loaded
    proc = subprocess.run(
        [sys.executable, "-m", "feredge", "--help"], capture_output=True, text=True, timeout=120, check=True
    )
    out = " ".join(proc.stdout.split())
    for name, (_, help_text) in COMMANDS.items():
        assert f"{name} {help_text}" in out


def test_a_command_builds_its_own_parser_only():
    loaded = _loaded_by(["video", "--help"])
    assert "feredge.cli.video" in loaded and "feredge.cli.predict" not in loaded
    assert not [m for m in loaded if m.startswith(("feredge.train", "feredge.convert", "feredge.benchmarks"))]
