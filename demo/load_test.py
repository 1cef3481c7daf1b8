"""``python -m feredge.demo.load_test``: does the demo's ``POST /predict`` hold up under load?

It sends warm-up requests, then ``--concurrent`` requests at once, then ``--sequential`` requests one
after another, and prints per phase p50/p95 latency, throughput (requests/s over the phase's wall
time) and errors, and the server's RSS. With ``--bad-every N`` every Nth request is a bad upload (a
truncated image, a non-image, an empty file) that must get a 400 with a JSON message: a soak test of
the error paths. Memory is judged over the sequential phase against the RSS after warm-up and the
concurrent burst (caches and thread pools are full by then): its largest growth must stay within
``--max-rss-growth`` percent. Without ``--url`` it starts ``feredge demo`` itself on a free 127.0.0.1
port and stops it afterwards. Every request has a timeout and the whole run a time limit, so it ends.

    python -m feredge.demo.load_test --model model_int8.tflite
    python -m feredge.demo.load_test --workers 1                           # one recognizer per model
    python -m feredge.demo.load_test --sequential 2000 --bad-every 4       # the soak
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

from feredge.cli.options import non_negative_int, positive_float, positive_int, run_main
from feredge.demo import EXAMPLES_DIR
from feredge.edge.detectors import DEFAULT_DETECTOR, detector_names
from feredge.edge.errors import FeredgeError

STARTUP_TIMEOUT_S = 120
# RSS samples taken during the sequential phase, to catch growth that a final reading would hide.
RSS_SAMPLES = 20


class LoadTestError(FeredgeError, RuntimeError):
    """The demo under test did not start or answer, or the server's memory cannot be read."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m feredge.demo.load_test", description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running demo (default: start one on a free 127.0.0.1 port)")
    parser.add_argument("--model", action="append", default=[], metavar="PATH", help="model(s) of the started demo")
    parser.add_argument("--server-pid", type=positive_int, help="process whose RSS to follow when --url is given")
    parser.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="--workers of the started demo (default: its own, one per core); 1 is one recognizer per model",
    )
    parser.add_argument("--image", type=Path, default=EXAMPLES_DIR / "face.png", help="image to send")
    parser.add_argument(
        "--detector",
        choices=detector_names(),
        default=DEFAULT_DETECTOR,
        help=f"detector query parameter (default: {DEFAULT_DETECTOR})",
    )
    parser.add_argument("--warmup", type=non_negative_int, default=10, help="requests before measuring (default: 10)")
    parser.add_argument("--concurrent", type=non_negative_int, default=50, help="requests sent at once (default: 50)")
    parser.add_argument(
        "--sequential", type=non_negative_int, default=500, help="requests one after another (default: 500)"
    )
    parser.add_argument(
        "--bad-every", type=non_negative_int, default=0, metavar="N", help="every Nth request is a bad upload (0: none)"
    )
    parser.add_argument(
        "--max-rss-growth",
        type=positive_float,
        default=5.0,
        metavar="PCT",
        help="largest RSS growth over the sequential phase that counts as flat (default: 5)",
    )
    parser.add_argument(
        "--time-limit", type=positive_float, default=600, metavar="S", help="stop sending after S seconds"
    )
    parser.add_argument(
        "--request-timeout", type=positive_float, default=60, metavar="S", help="per request (default: 60)"
    )
    return parser.parse_args(argv)


# name -> body of a bad upload and the 400 it must get; sent in turn by --bad-every.
BAD_UPLOADS = {
    "truncated.png": None,  # the good image cut in half, made in ``run``
    "notes.jpg": b"not an image at all\n" * 20,
    "empty.png": b"",
}


@dataclass
class Phase:
    """Client-side wall time of each successful request, the failures, and the phase's wall time."""

    name: str
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    bad_answered: int = 0  # bad uploads that got their 400
    seconds: float = 0.0

    @property
    def throughput(self) -> float:
        """Answered requests (good and bad) per second of the phase's wall time."""
        answered = len(self.latencies_ms) + self.bad_answered
        return answered / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        done = len(self.latencies_ms)
        text = f"{self.name:<10} {done:>4} ok {self.bad_answered:>4} bad->400 {len(self.errors):>3} errors"
        if done:
            p50, p95 = np.percentile(self.latencies_ms, [50, 95])
            text += f"   p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   {self.throughput:6.1f} req/s"
        return text


@dataclass
class LoadReport:
    """Phases in order, the server's RSS (MiB) after each, and its samples during the sequential phase."""

    phases: list[Phase]
    rss_mb: dict[str, float]
    stopped_early: bool = False
    rss_samples_mb: list[float] = field(default_factory=list)
    max_rss_growth_pct: float = 5.0

    @property
    def errors(self) -> int:
        return sum(len(phase.errors) for phase in self.phases)

    @property
    def rss_growth_mb(self) -> float | None:
        """Largest RSS rise over the sequential phase, from the RSS after the concurrent burst."""
        if "concurrent" not in self.rss_mb or "sequential" not in self.rss_mb:
            return None
        return max([self.rss_mb["sequential"], *self.rss_samples_mb]) - self.rss_mb["concurrent"]

    @property
    def rss_growth_pct(self) -> float | None:
        growth = self.rss_growth_mb
        return None if growth is None else 100.0 * growth / self.rss_mb["concurrent"]

    @property
    def rss_flat(self) -> bool:
        return self.rss_growth_pct is None or self.rss_growth_pct <= self.max_rss_growth_pct

    def format(self) -> str:
        lines = [phase.line() for phase in self.phases]
        if self.rss_mb:
            steps = " -> ".join(f"{name} {mb:.1f}" for name, mb in self.rss_mb.items())
            lines.append(f"server RSS MiB after: {steps}")
        if self.rss_growth_pct is None:
            lines.append("RSS growth over the sequential phase: not measured")
        else:
            verdict = "flat" if self.rss_flat else f"NOT flat (limit {self.max_rss_growth_pct:g}%)"
            lines.append(
                f"RSS growth over the sequential phase (max of {len(self.rss_samples_mb) + 1} samples): "
                f"{self.rss_growth_mb:+.1f} MiB ({self.rss_growth_pct:+.1f}%): {verdict}"
            )
        lines.append(f"errors: {self.errors}" + (" (stopped at the time limit)" if self.stopped_early else ""))
        first = sorted({error for phase in self.phases for error in phase.errors})[:5]
        lines += [f"  {error}" for error in first]
        return "\n".join(lines)


def run(args: argparse.Namespace) -> LoadReport:
    """Run the phases against ``--url`` or a demo started here; raises ``LoadTestError`` if none answers."""
    import httpx

    data = args.image.read_bytes()
    bad = [(name, body if body is not None else data[: len(data) // 2]) for name, body in BAD_UPLOADS.items()]
    deadline = time.monotonic() + args.time_limit
    with _server(args) as (url, pid), httpx.Client(base_url=url, timeout=args.request_timeout) as client:
        rss = _rss_reader(pid)

        def send(phase: Phase, number: int) -> None:
            is_bad = args.bad_every and number % args.bad_every == args.bad_every - 1
            upload = bad[(number // args.bad_every) % len(bad)] if is_bad else (args.image.name, data)
            start = time.perf_counter()
            try:
                response = client.post("/predict", files={"file": upload}, params={"detector": args.detector})
                answer = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                phase.errors.append(f"{type(exc).__name__}: {exc}")
                return
            if is_bad and response.status_code == 400 and "error" in answer:
                phase.bad_answered += 1
            elif not is_bad and response.status_code == 200 and "faces" in answer:
                phase.latencies_ms.append((time.perf_counter() - start) * 1000.0)
            else:
                phase.errors.append(f"{upload[0]}: HTTP {response.status_code}: {response.text[:200]}")

        report = LoadReport([], {}, max_rss_growth_pct=args.max_rss_growth)
        for name, count in (("warmup", args.warmup), ("concurrent", args.concurrent), ("sequential", args.sequential)):
            phase = Phase(name)
            report.phases.append(phase)
            start = time.perf_counter()
            if name == "concurrent":
                with ThreadPoolExecutor(max(1, count)) as pool:
                    list(pool.map(send, [phase] * count, range(count)))
            else:
                every = max(1, count // RSS_SAMPLES)
                for number in range(count):
                    if time.monotonic() > deadline:
                        report.stopped_early = True
                        break
                    send(phase, number)
                    if name == "sequential" and rss is not None and number % every == every - 1:
                        report.rss_samples_mb.append(rss())
            phase.seconds = time.perf_counter() - start
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
    workers = [] if args.workers is None else ["--workers", str(args.workers)]
    command = [sys.executable, "-m", "feredge", "demo", "--host", "127.0.0.1", "--port", str(port), *models, *workers]
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
    """Print the report; exit 1 when a request failed or memory grew, 2 when the run could not start."""
    return run_main("load_test", _print_report, parse_args(argv))


def _print_report(args: argparse.Namespace) -> int:
    report = run(args)
    print(report.format())
    return 1 if report.errors or not report.rss_flat else 0


if __name__ == "__main__":
    sys.exit(main())
