"""The committed tiny models are what ``tests/fixtures/make_fixtures.py`` builds today."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from feredge.edge.model import load_model

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_committed_fixtures_match_a_fresh_build(tmp_path):
    pytest.importorskip("tensorflow")
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    make_fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_fixtures)
    built = make_fixtures.write_fixtures(tmp_path)
    assert sorted(p.name for p in built) == sorted(p.name for p in FIXTURES.glob("*.tflite"))
    rng = np.random.default_rng(0)
    for path in built:
        labels = "fer2013" if path.stem in ("float32_plain", "no_labels") else None
        fresh, committed = load_model(path, labels=labels, threads=1), load_model(FIXTURES / path.name, labels=labels)
        batch = rng.random((3, *committed.runner.input_shape), dtype=np.float32)
        np.testing.assert_allclose(fresh.predict(batch), committed.predict(batch), atol=1e-5, err_msg=path.name)
