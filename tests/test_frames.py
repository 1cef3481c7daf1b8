"""The whole-frame comparison of ``feredge bench``: detect-size variants beside fer's own pipeline."""

from __future__ import annotations

import pytest

from feredge.benchmarks.frames import FRAME_VARIANTS, frame_comparison, frames_markdown
from feredge.edge.detectors import default_detect_size


def test_every_variant_finds_the_face_at_the_size_it_names() -> None:
    comparison = frame_comparison(None, threads=1, frames=2, warmup=0)
    rows = {row["pipeline"]: row for row in comparison["rows"]}
    for name, detector, _ in FRAME_VARIANTS:
        assert rows[name]["detector"] == detector
        assert rows[name]["faces"] == 1 and rows[name]["fps"] > 0
    assert rows["yunet full frame"]["detect_size"] is None
    assert rows["yunet 320"]["detect_size"] == 320
    assert rows["yunet default"]["detect_size"] == default_detect_size("yunet")
    fer = rows.get("fer (its own pipeline)")
    if fer is None:  # fer not installed: said so, and no ratio is made up
        assert comparison["fer_skipped"] and all(row["x_fer"] is None for row in rows.values())
    else:
        assert fer["faces"] == 1 and fer["x_fer"] == pytest.approx(1.0)
        assert rows["yunet 320"]["x_fer"] == pytest.approx(rows["yunet 320"]["fps"] / fer["fps"])
    table = frames_markdown(comparison)
    assert sum(line.startswith("| ") for line in table) == 2 + len(comparison["rows"])  # header, rule, pipelines
