"""``python -m feredge.demo.load_test``: does the demo's ``POST /predict`` hold up under load?

It sends warm-up requests, then ``--concurrent`` requests at once, then ``--sequential`` requests one
after another, and prints p50/p95 latency per phase, the error count and the server's RSS at each step.
Memory is judged over the sequential phase, after warm-up and the concurrent burst have filled caches
and thread pools. Without ``--url`` it starts ``feredge demo`` itself on a free 127.0.0.1 port and stops
it afterwards. Every request has a timeout and the whole run a time limit, so it always ends.

    python -m feredge.demo.load_test --model model_int8.tflite
    python -m feredge.demo.load_test --url http://127.0.0.1:7860 --server-pid 1234
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from feredge.demo import EXAMPLES_DIR
from feredge.edge.cli_options import non_negative_int, positive_float, positive_int, run_main
from feredge.edge.detectors import DEFAULT_DETECTOR, detector_names
from feredge.edge.errors import FeredgeError

STARTUP_TIMEOUT_S = 120


class LoadTestError(FeredgeError, RuntimeError):
    """The demo under test did not start or answer, or the server's memory cannot be read."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m feredge.demo.load_test", description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running demo (default: start one on a free 127.0.0.1 port)")
    parser.add_argument("--model", action="append", default=[], metavar="PATH", help="model(s) of the started demo")
    parser.add_argument("--server-pid", type=positive_int, help="process whose RSS to follow when --url is given")
    parser.add_argument("--image", type=Path, default=EXAMPLES_DIR / "face.png", help="image to send")
    parser.add_argument(
        "--detector",
        choices=detector_names(),
        default=DEFAULT_DETECTOR,
        help=f"detector query parameter (default: {DEFAULT_DETECTOR})",
    )
    parser.add_argument("--warmup", type=non_negative_int, default=10, help="requests before measuring (default: 10)")
    parser.add_argument("--concurrent", type=non_negative_int, default=20, help="requests sent at once (default: 20)")
    parser.add_argument(
        "--sequential", type=non_negative_int, default=500, help="requests one after another (default: 500)"
    )
    parser.add_argument(
        "--time-limit", type=positive_float, default=600, metavar="S", help="stop sending after S seconds"
    )
    parser.add_argument(
        "--request-timeout", type=positive_float, default=60, metavar="S", help="per request (default: 60)"
    )
    return parser.parse_args(argv)


@dataclass
class Phase:
    """Client-side wall time of each successful request, and the failures, of one phase."""

    name: str
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        done = len(self.latencies_ms)
        text = f"{self.name:<10} {done:>4} ok {len(self.errors):>3} errors"
        if done:
            p50, p95 = np.percentile(self.latencies_ms, [50, 95])
            text += f"   p50 {p50:7.1f} ms   p95 {p95:7.1f} ms"
        return text


@dataclass
class LoadReport:
    """Phases in order and the server's RSS (MiB) after each, when it could be read."""

    phases: list[Phase]
    rss_mb: dict[str, float]
    stopped_early: bool = False

    @property
    def errors(self) -> int:
        return sum(len(phase.errors) for phase in self.phases)

    @property
    def rss_growth_mb(self) -> float | None:
        """RSS change over the sequential phase: the number that says whether memory is flat."""
        if "concurrent" not in self.rss_mb or "sequential" not in self.rss_mb:
            return None
        return self.rss_mb["sequential"] - self.rss_mb["concurrent"]

    def format(self) -> str:
        lines = [phase.line() for phase in self.phases]
        if self.rss_mb:
            steps = " -> ".join(f"{name} {mb:.1f}" for name, mb in self.rss_mb.items())
            lines.append(f"server RSS MiB after: {steps}")
        growth = "not measured" if self.rss_growth_mb is None else f"{self.rss_growth_mb:+.1f} MiB"
        lines.append(f"RSS growth over the sequential phase: {growth}")
        lines.append(f"errors: {self.errors}" + (" (stopped at the time limit)" if self.stopped_early else ""))
        first = sorted({error for phase in self.phases for error in phase.errors})[:5]
        lines += [f"  {error}" for error in first]
        return "\n".join(lines)


def run(args: argparse.Namespace) -> LoadReport:
    """Run the phases against ``--url`` or a demo started here; raises ``LoadTestError`` if none answers."""
    import httpx

    data = args.image.read_bytes()
    deadline = time.monotonic() + args.time_limit
    with _server(args) as (url, pid), httpx.Client(base_url=url, timeout=args.request_timeout) as client:
        rss = _rss_reader(pid)

        def send(phase: Phase) -> None:
            start = time.perf_counter()
            try:
                response = client.post(
                    "/predict", files={"file": (args.image.name, data)}, params={"detector": args.detector}
                )
                ok = response.status_code == 200 and "faces" in response.json()
            except (httpx.HTTPError, ValueError) as exc:
                phase.errors.append(f"{type(exc).__name__}: {exc}")
                return
            if ok:
                phase.latencies_ms.append((time.perf_counter() - start) * 1000.0)
            else:
                phase.errors.append(f"HTTP {response.status_code}: {response.text[:200]}")

        report = LoadReport([], {})
        for name, count in (("warmup", args.warmup), ("concurrent", args.concurrent), ("sequential", args.sequential)):
            phase = Phase(name)
            report.phases.append(phase)
            if name == "concurrent":
                with ThreadPoolExecutor(max(1, count)) as pool:
                    list(pool.map(send, [phase] * count))
            else:
                for _ in range(count):
                    if time.monotonic() > deadline:
                        report.stopped_early = True
                        break
                    send(phase)
            if rss is not None:
                report.rss_mb[name] = rss()
    return report


@contextlib.contextmanager
def _server(args: argparse.Namespace) -> Iterator[tuple[str, int | None]]:
    """(base URL, server pid or None): ``--url`` as given, or a ``feredge demo`` child process."""
    if args.url:
        yield args.url.rstrip("/"), args.server_pid
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    models = [arg for path in args.model for arg in ("--model", str(path))]
    command = [sys.executable, "-m", "feredge", "demo", "--host", "127.0.0.1", "--port", str(port), *models]
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, text=True)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url, process, log)
            yield url, process.pid
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(url: str, process: subprocess.Popen, log: IO[str]) -> None:
    import httpx

    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            tail = (log.read().strip().splitlines() or ["no output"])[-1]
            raise LoadTestError(f"feredge demo exited with code {process.returncode}: {tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise LoadTestError(f"feredge demo did not answer on {url} within {STARTUP_TIMEOUT_S} s")


def _rss_reader(pid: int | None) -> Callable[[], float] | None:
    """A function returning the RSS of ``pid`` in MiB, or None when no pid is known."""
    if pid is None:
        return None
    try:
        import psutil
    except ImportError as exc:
        raise LoadTestError("reading the server's RSS needs psutil: pip install 'feredge[bench]'") from exc

    process = psutil.Process(pid)
    return lambda: process.memory_info().rss / 2**20


def main(argv: Sequence[str] | None = None) -> int:
    """Print the report; exit 1 when any request failed, 2 when the run could not start."""
    return run_main("load_test", _print_report, parse_args(argv))


def _print_report(args: argparse.Namespace) -> int:
    report = run(args)
    print(report.format())
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
