"""The deployment files: the arm64 check's command line and JSON summaries, the systemd unit, the guide's example.

The arm64 check itself needs root, apt and minutes of emulation, so it is run by hand and its output
is committed (benchmarks/results/arm64/); here only what is cheap is tested.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from feredge.cli.info import collect
from feredge.edge.detectors import DEFAULT_DETECTOR, available_detectors, detector_names

pytestmark = pytest.mark.edge  # needs only `pip install .`

REPO = Path(__file__).resolve().parents[1]
CHECK = REPO / "benchmarks" / "arm64" / "check.sh"
INSTALL_SIZE = REPO / "benchmarks" / "arm64" / "install_size.sh"
SUMMARY = REPO / "benchmarks" / "arm64" / "summary.py"
UNIT = REPO / "docs" / "feredge-demo.service"
GUIDE = REPO / "docs" / "deploy.md"
VENV_FEREDGE = "/home/pi/feredge-venv/bin/feredge"


def _run(*command: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], input=stdin, capture_output=True, text=True, timeout=60)


def test_check_script_parses_and_shows_its_usage():
    assert _run("bash", "-n", CHECK).returncode == 0
    usage = _run("bash", CHECK, "--help")
    assert usage.returncode == 0 and "--cache DIR" in usage.stdout and "cortex-a76" in usage.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--cpu", "cortex-a53"], "--cpu: expected cortex-a72 or cortex-a76"),
        (["--image", "/no/such/photo.png"], "no photo at /no/such/photo.png"),
        (["--cache"], "--cache needs a value"),
        (["--fast"], "unknown argument: --fast"),
    ],
)
def test_check_script_refuses_bad_arguments_before_doing_anything(arguments, message):
    result = _run("bash", CHECK, *arguments)
    assert result.returncode == 2 and message in result.stderr and result.stdout == ""


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
@pytest.mark.parametrize("script", [CHECK, INSTALL_SIZE], ids=lambda path: path.name)
def test_the_scripts_are_shellcheck_clean(script):
    result = _run("shellcheck", script)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [(["--ref", "no-such-commit"], "--ref: no commit 'no-such-commit'"), (["--big"], "unknown argument: --big")],
)
def test_install_size_refuses_bad_arguments(arguments, message):
    result = _run("bash", INSTALL_SIZE, *arguments)
    assert result.returncode == 2 and message in result.stderr and result.stdout == ""


def test_the_check_reads_what_feredge_info_writes():
    report = json.dumps(collect(runs=2))
    result = _run(sys.executable, SUMMARY, "info", stdin=report)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ai-edge-litert ") and "2-run latency check ran" in result.stdout
    assert f"{DEFAULT_DETECTOR} (default)" in result.stdout


def test_the_check_tries_each_other_ready_detector_that_finds_faces():
    report = collect(runs=1)
    result = _run(sys.executable, SUMMARY, "detectors", stdin=json.dumps(report))
    assert result.returncode == 0, result.stderr
    others = [name for name in detector_names(finds_faces=True) if name != DEFAULT_DETECTOR]
    assert result.stdout.split() == [name for name in others if name in available_detectors()]
    report["detectors"] = [dict(d, ready=False) for d in report["detectors"]]
    assert _run(sys.executable, SUMMARY, "detectors", stdin=json.dumps(report)).stdout.split() == []


def test_the_check_fails_a_predict_without_faces():
    lines = '{"file": "a.png", "faces": [{"label": "happy", "confidence": 0.9, "box": [1, 2, 3, 4]}]}\n'
    assert _run(sys.executable, SUMMARY, "predict", stdin=lines).stdout.startswith("1 face(s): happy 0.900")
    assert _run(sys.executable, SUMMARY, "predict", stdin='{"file": "b.png", "faces": []}\n').returncode == 1


def test_the_check_wants_int8_outputs_bit_equal_and_scores_within_a_few_float32_steps():
    # x86-64's line and an emulated Cortex-A72's for the same photo (2026-12-01): equal int8 outputs,
    # two scores one float32 step apart after numpy's temperature softmax.
    raw = ["0000803c0000803c0000403c00005d3f0000403c0000203d0000403d"]
    scores = ["6ddb013c6ddb013c17afb83b13966b3f17afb83bbc53c03cfeb6ee3c"]
    x86 = {"faces": [[[178, 63, 90, 113], "happy"]], "raw_outputs": raw, "scores": scores}
    arm = dict(x86, scores=["6ddb013c6ddb013c16afb83b13966b3f16afb83bbd53c03cfeb6ee3c"])

    def check(other: dict) -> subprocess.CompletedProcess:
        return _run(sys.executable, SUMMARY, "scores", stdin=f"{json.dumps(x86)}\n{json.dumps(other)}\n")

    result = check(arm)
    assert result.returncode == 0 and "within 1 float32 step" in result.stdout, result.stdout
    assert "scores too" in check(x86).stdout
    assert check(dict(arm, scores=["00000000" * 7])).returncode == 1
    assert check(dict(arm, raw_outputs=["0000803c" * 7])).returncode == 1
    assert check(dict(arm, faces=[[[178, 63, 90, 113], "sad"]])).returncode == 1


def test_the_unit_restarts_the_demo_on_failure():
    text = UNIT.read_text()
    assert f"ExecStart={VENV_FEREDGE} demo --host 0.0.0.0 --port 7860\n" in text
    assert "Restart=on-failure\n" in text and "WantedBy=multi-user.target\n" in text


def test_the_units_command_line_is_one_feredge_demo_accepts():
    """The unit's arguments go through ``feredge demo``'s own parser: a renamed option fails here."""
    from feredge.cli.demo import configure

    exec_start = next(line for line in UNIT.read_text().splitlines() if line.startswith("ExecStart="))
    program, command, *arguments = exec_start.removeprefix("ExecStart=").split()
    parser = argparse.ArgumentParser()
    configure(parser)
    args = parser.parse_args(arguments)
    assert (program, command, args.host, args.port) == (VENV_FEREDGE, "demo", "0.0.0.0", 7860)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    """verify also checks that ExecStart exists, so a stand-in takes the Pi venv's place."""
    stand_in = tmp_path / "feredge"
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(VENV_FEREDGE, str(stand_in)))
    result = _run("systemd-analyze", "verify", unit)
    assert result.returncode == 0 and result.stderr == "", result.stderr


class _CameraStopped(Exception):
    """Ends the guide's endless capture loop after the frames given."""


def _fake_picamera2(frames: list[np.ndarray]) -> types.ModuleType:
    """A stand-in for Raspberry Pi's picamera2 module that yields ``frames``, then stops."""

    class Picamera2:
        def create_video_configuration(self, main: dict) -> dict:
            assert main["format"] == "RGB888"  # B, G, R in memory: what feredge expects
            return {"main": main}

        def configure(self, config: dict) -> None:
            self.config = config

        def start(self) -> None:
            self.started = True

        def capture_array(self) -> np.ndarray:
            if not frames:
                raise _CameraStopped
            return frames.pop(0)

    module = types.ModuleType("picamera2")
    module.Picamera2 = Picamera2
    return module


def test_the_guides_picamera2_example_runs_on_frames(monkeypatch, capsys):
    """The guide's Python block, run as written on one BGR frame from a stand-in camera."""
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
    example = next(block for block in blocks if "Picamera2()" in block)
    photo = cv2.imread(str(REPO / "demo" / "examples" / "astronaut.png"))
    monkeypatch.setitem(sys.modules, "picamera2", _fake_picamera2([photo]))
    with pytest.raises(_CameraStopped):
        exec(compile(example, str(GUIDE), "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 and " happy " in printed[0], printed
