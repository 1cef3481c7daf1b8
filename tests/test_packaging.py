"""The wheel carries the runtime, its models, the CLI and py.typed, and none of the repository's benchmark results.

The wheel is built from a copy of the working tree's files (tracked or new, not ignored), so a stale
``build/`` folder or egg-info in the checkout cannot add files to it, and uncommitted changes are what
is checked. About 10 s on 2 cores.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MIN_SETUPTOOLS = 77  # pyproject's build-system (PEP 639 licence fields); the dev extra installs it


def _source_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the files to package cannot be told from build output")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and not name.startswith("tests/")]


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    import setuptools

    major = int(setuptools.__version__.split(".")[0])
    assert major >= MIN_SETUPTOOLS, (
        f"setuptools {setuptools.__version__} is too old to build feredge: pip install '.[dev]'"
    )
    source = tmp_path_factory.mktemp("source")
    for name in _source_files():
        if (ROOT / name).is_file():  # a file deleted in the working tree is still listed until staged
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), "."]
    done = subprocess.run(command, cwd=source, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = out.glob("feredge-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_the_wheel_leaves_out_the_benchmark_results(wheel_files: set[str]) -> None:
    assert (ROOT / "benchmarks" / "results").is_dir()  # they stay in the repository
    assert not [name for name in wheel_files if "/results/" in name or name.startswith("benchmarks/")]
    assert all(name.startswith(("feredge/", "feredge-")) for name in wheel_files), sorted(wheel_files)[:20]
    assert not [name for name in wheel_files if "/tests/" in name or name.startswith("tests/")]


def test_the_wheel_ships_the_models_the_cli_and_the_type_hints(wheel_files: set[str]) -> None:
    models = sorted(
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "edge" / "models").rglob("*")
        if path.is_file() and (path.suffix in (".tflite", ".onnx") or path.name.startswith("LICENSE."))
    )
    assert len(models) >= 6  # four emotion models, two detectors
    assert {f"feredge/{name}" for name in models} <= wheel_files
    commands = {f"feredge/cli/{path.name}" for path in (ROOT / "feredge" / "cli").glob("*.py")}
    assert "feredge/cli/predict.py" in commands and commands <= wheel_files
    assert {"feredge/py.typed", "feredge/edge/models/MODEL_CARD.md", "feredge/train/tune_space.toml"} <= wheel_files
    assert "feredge/demo/examples/two_faces.jpg" in wheel_files
