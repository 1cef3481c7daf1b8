"""Shared fixtures: the committed tiny TFLite models and generated images; nothing is downloaded or read."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from feredge.benchmarks.frames import draw_face

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Test modules that import an extra at their top: an install without it (the edge-only job of
# .ci/run) does not collect them, and the report header names them.
_NEEDS_EXTRA = {"test_demo.py": "httpx", "test_demo_load.py": "psutil"}
collect_ignore = [name for name, module in _NEEDS_EXTRA.items() if importlib.util.find_spec(module) is None]


SCALEOUT_BUDGET_S = 180  # what the scale-out tests may add to .ci/run (issue 26)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "scaleout: starts PostgreSQL or tf.distribute worker processes; their total time is reported"
    )


def pytest_report_header(config: pytest.Config) -> str | None:
    if not collect_ignore:
        return None
    return f"not collected (extra not installed): {', '.join(collect_ignore)}"


def pytest_terminal_summary(terminalreporter) -> None:
    """The scale-out tests' wall time (set-up included: a PostgreSQL start), for the CI log to show the budget."""
    reports = [
        r
        for reports in terminalreporter.stats.values()
        for r in reports
        if isinstance(r, pytest.TestReport) and "scaleout" in r.keywords
    ]
    if reports:
        tests = len({r.nodeid for r in reports})
        seconds = sum(r.duration for r in reports)
        terminalreporter.write_line(
            f"scale-out tests (-m scaleout): {tests} took {seconds:.0f} s (budget {SCALEOUT_BUDGET_S} s)"
        )


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Copies of the committed tiny models (``tests/fixtures/make_fixtures.py`` says what each is), by name."""
    out = tmp_path_factory.mktemp("tiny_models")
    paths = {}
    for source in sorted(FIXTURES.glob("*.tflite")):
        paths[source.stem] = out / source.name
        shutil.copyfile(source, paths[source.stem])
    return paths


@pytest.fixture(scope="session")
def tiny_int8_model(tiny_models: dict[str, Path]) -> Path:
    """int8 in/out tiny model with fer2013 metadata embedded."""
    return tiny_models["int8"]


@pytest.fixture(scope="session")
def tiny_float_model(tiny_models: dict[str, Path]) -> Path:
    """float32 tiny model (40x40x3) without metadata: needs labels given explicitly."""
    return tiny_models["float32_plain"]


@pytest.fixture(scope="session")
def face_drawer() -> Callable[..., np.ndarray]:
    """``draw_face(size=200, background=40)`` -> BGR uint8 face image."""
    return draw_face


@pytest.fixture(scope="session")
def face_scene() -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A 640x480 BGR frame with two drawn faces, and where they were pasted (x, y, w, h)."""
    scene = np.full((480, 640, 3), 90, np.uint8)
    placed = [(40, 40, 200, 200), (350, 200, 250, 250)]
    for x, y, w, h in placed:
        scene[y : y + h, x : x + w] = draw_face(w)
    return scene, placed


@pytest.fixture(scope="session")
def demo_server(tiny_models: dict[str, Path]):
    """The demo (Gradio UI + REST) serving the tiny ``int8`` and ``float16`` models on a free 127.0.0.1
    port, in a background thread of this process: yields ``(base_url, service)``."""
    from feredge.demo.server import BackgroundServer, create_app
    from feredge.demo.service import DemoService

    service = DemoService({"int8": tiny_models["int8"], "float16": tiny_models["float16"]})
    with BackgroundServer(create_app(service)) as server:
        yield server.url, service
