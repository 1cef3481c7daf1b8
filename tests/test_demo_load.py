"""The load script, bounded: 20 concurrent and 50 sequential ``POST /predict`` on loopback, no errors."""

from __future__ import annotations

import os
from pathlib import Path

import psutil

from feredge.demo.load_test import parse_args, run


def test_load_burst_and_sequence_against_the_running_demo(demo_server) -> None:
    url, _ = demo_server
    args = parse_args(
        [
            "--url",
            url,
            "--server-pid",
            str(os.getpid()),
            "--warmup",
            "2",
            "--concurrent",
            "20",
            "--sequential",
            "50",
            "--time-limit",
            "120",
        ]
    )
    report = run(args)
    print(report.format())
    assert report.errors == 0 and not report.stopped_early
    assert [len(phase.latencies_ms) for phase in report.phases] == [2, 20, 50]
    assert report.rss_growth_mb is not None


def test_load_test_starts_and_stops_its_own_demo(tiny_int8_model: Path) -> None:
    children_before = {p.pid for p in psutil.Process().children()}
    report = run(
        parse_args(
            [
                "--model",
                str(tiny_int8_model),
                "--warmup",
                "1",
                "--concurrent",
                "3",
                "--sequential",
                "3",
                "--time-limit",
                "120",
            ]
        )
    )
    assert report.errors == 0 and list(report.rss_mb) == ["warmup", "concurrent", "sequential"]
    assert {p.pid for p in psutil.Process().children()} == children_before
