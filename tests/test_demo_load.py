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


def test_a_small_hostile_soak_gets_no_server_error(tiny_models: dict[str, Path]) -> None:
    """The soak's mix, 44 requests long: every hostile kind once (paths, a FIFO, /dev/zero, bombs, thin
    images, a cut multipart body), each refused with a 4xx or analysed, none a 5xx, /health answering."""
    from feredge.demo.load_test import HOSTILE_KINDS
    from feredge.demo.server import BackgroundServer, create_app
    from feredge.demo.service import DemoService

    service = DemoService({"int8": tiny_models["int8"]}, workers=1, decode_timeout_s=1.0)
    options = ["--warmup", "1", "--concurrent", "0", "--sequential", "44", "--hostile-every", "4"]
    with BackgroundServer(create_app(service)) as server:
        report = run(parse_args(["--url", server.url, *options, "--time-limit", "120", "--max-health-ms", "5000"]))
    service.decoders.close()
    print(report.format())
    assert len(HOSTILE_KINDS) == 44 // 4
    assert report.server_errors == 0 and report.errors == 0 and not report.stopped_early
    assert report.phases[-1].hostile_answered == len(HOSTILE_KINDS) and len(report.phases[-1].latencies_ms) == 33
    assert report.health_ms and report.health_failures == 0
