"""``python -m feredge.demo.load_test``: does the demo's ``POST /predict`` hold up under load?

It sends warm-up requests, then ``--concurrent`` requests at once, then ``--sequential`` requests one
after another, and prints per phase p50/p95 latency, throughput (requests/s over the phase's wall
time) and errors, and the server's RSS. With ``--bad-every N`` every Nth request is a bad upload (a
truncated image, a non-image, an empty file) that must get a 400 with a JSON message: a soak test of
the error paths. With ``--hostile-every N`` every Nth request is hostile instead (``HOSTILE_KINDS``:
Gradio API calls naming server paths, FIFOs and devices, decompression bombs, thin images, a multipart
body cut short): each must get a 4xx JSON answer (a thin or slow image may also be analysed), never a
5xx. Memory is judged over the sequential phase against the RSS after warm-up and the concurrent burst
(caches and thread pools are full by then): its largest growth must stay within ``--max-rss-growth``
percent. That RSS is the server process's; its child processes (the image decoders, whose memory is a
decode's working memory, capped and given back when the decode ends) are sampled and shown apart. The
soak's warm-up of 44 requests sends each hostile kind once, so the RSS it is judged against includes
the working memory of the largest image the limits let through. A thread asks ``/health`` every
``HEALTH_INTERVAL_S`` after warm-up, and its slowest answer must stay within ``--max-health-ms``.
Without ``--url`` it starts ``feredge demo`` itself on a free 127.0.0.1 port and stops it afterwards.
Every request has a timeout and the whole run a time limit, so it ends.

    python -m feredge.demo.load_test --model model_int8.tflite
    python -m feredge.demo.load_test --workers 1                           # one recognizer per model
    python -m feredge.demo.load_test --warmup 44 --concurrent 0 --sequential 2000 --hostile-every 4 \
        --max-rss-growth 10                                                # the soak
    python -m feredge.demo.load_test --url http://127.0.0.1:7860 --server-pid 1234
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from feredge.cli.options import non_negative_int, positive_float, positive_int, run_main
from feredge.demo import EXAMPLES_DIR
from feredge.edge.detectors import DEFAULT_DETECTOR, detector_names
from feredge.edge.errors import FeredgeError

if TYPE_CHECKING:
    import httpx

STARTUP_TIMEOUT_S = 120
# RSS samples taken during the sequential phase, to catch growth that a final reading would hide.
RSS_SAMPLES = 20
HEALTH_INTERVAL_S = 0.25


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
        "--hostile-every",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="every Nth request is hostile (paths, FIFOs, bombs, thin images, cut multipart; 0: none)",
    )
    parser.add_argument(
        "--max-health-ms",
        type=positive_float,
        default=100.0,
        metavar="MS",
        help="slowest /health answer during the run that counts as answering (default: 100)",
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


def gif_screen_bomb(side: int = 30000) -> bytes:
    """A 35-byte GIF whose logical screen is ``side``² pixels around a 1×1 frame."""
    screen = struct.pack("<6sHHBBB", b"GIF89a", side, side, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"  # LZW: clear, 0, end
    return screen + frame + b"\x3b"


def jpeg_scan_bomb(side: int = 8000, scans: int = 3000) -> bytes:
    """A gray progressive JPEG of ``side``² pixels made of ``scans`` empty scans (about 10 bytes each):
    the decoder fills each empty scan with zero bits, a pass over every block of the image."""

    def segment(marker: int, body: bytes) -> bytes:
        return struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body

    one_code = bytes([1] + [0] * 15) + b"\0"  # one 1-bit Huffman code: symbol 0 (DC: no change, AC: end of block)
    head = (
        b"\xff\xd8"
        + segment(0xDB, b"\0" + b"\x01" * 64)
        + segment(0xC2, struct.pack(">BHHB", 8, side, side, 1) + b"\x01\x11\x00")
        + segment(0xC4, b"\x00" + one_code)
        + segment(0xC4, b"\x10" + one_code)
    )
    dc = segment(0xDA, b"\x01\x01\x00\x00\x00\x00")
    ac = segment(0xDA, b"\x01\x01\x00\x01\x3f\x00")
    return head + dc + ac * (scans - 1) + b"\xff\xd9"


def thin_png(width: int, height: int) -> bytes:
    import cv2

    return cv2.imencode(".png", np.full((height, width), 128, np.uint8))[1].tobytes()


def png_header_bomb(side: int = 20000) -> bytes:
    """A PNG that says ``side``² pixels (its header only: the pixel limit must refuse it unread)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


# Hostile requests, sent in turn by --hostile-every: (kind, what is sent). "api" sends a Gradio API call
# whose file record names the path; "upload" a REST upload; "raw" a REST body as it is.
HOSTILE_KINDS = (
    "api:/etc/passwd",
    "api:../../../../etc/hostname",
    "api:{fifo}",
    "api:/dev/zero",
    "upload:gif_screen_30000.gif",
    "upload:jpeg_3000_scans.jpg",
    "upload:png_header_20000.png",
    "upload:slow_jpeg_99_scans_10000.jpg",
    "upload:thin_1x4000.png",
    "upload:thin_4000x1.png",
    "raw:multipart without its closing boundary",
)


def hostile_uploads() -> dict[str, bytes]:
    return {
        "gif_screen_30000.gif": gif_screen_bomb(),
        "jpeg_3000_scans.jpg": jpeg_scan_bomb(),
        "png_header_20000.png": png_header_bomb(),
        "slow_jpeg_99_scans_10000.jpg": jpeg_scan_bomb(10000, 99),  # within every limit: slow, not refused
        "thin_1x4000.png": thin_png(1, 4000),
        "thin_4000x1.png": thin_png(4000, 1),
    }


@dataclass
class Phase:
    """Client-side wall time of each successful request, the failures, and the phase's wall time."""

    name: str
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    bad_answered: int = 0  # bad uploads that got their 400
    hostile_answered: int = 0  # hostile requests that got a 4xx (or a thin image its analysis)
    server_errors: int = 0  # 5xx answers
    seconds: float = 0.0

    @property
    def throughput(self) -> float:
        """Answered requests (good, bad and hostile) per second of the phase's wall time."""
        answered = len(self.latencies_ms) + self.bad_answered + self.hostile_answered
        return answered / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        done = len(self.latencies_ms)
        text = f"{self.name:<10} {done:>4} ok {self.bad_answered:>4} bad->400 {len(self.errors):>3} errors"
        if self.hostile_answered:
            text += f" {self.hostile_answered:>4} hostile->4xx"
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
    child_rss_samples_mb: list[float] = field(default_factory=list)
    max_rss_growth_pct: float = 5.0
    health_ms: list[float] = field(default_factory=list)
    health_failures: int = 0
    max_health_ms: float = 100.0

    @property
    def errors(self) -> int:
        return sum(len(phase.errors) for phase in self.phases)

    @property
    def server_errors(self) -> int:
        return sum(phase.server_errors for phase in self.phases)

    @property
    def health_ok(self) -> bool:
        return not self.health_failures and (not self.health_ms or max(self.health_ms) <= self.max_health_ms)

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
        if self.child_rss_samples_mb:
            low, high = min(self.child_rss_samples_mb), max(self.child_rss_samples_mb)
            lines.append(f"the server's child processes (decoders), sampled alike: {low:.1f} to {high:.1f} MiB")
        if self.health_ms:
            p50, p99 = np.percentile(self.health_ms, [50, 99])
            verdict = "ok" if self.health_ok else f"NOT ok (limit {self.max_health_ms:g} ms)"
            lines.append(
                f"/health during the run: {len(self.health_ms)} answers, p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
                f"max {max(self.health_ms):.1f} ms, {self.health_failures} unanswered: {verdict}"
            )
        lines.append(f"server errors (5xx): {self.server_errors}")
        lines.append(f"errors: {self.errors}" + (" (stopped at the time limit)" if self.stopped_early else ""))
        first = sorted({error for phase in self.phases for error in phase.errors})[:5]
        lines += [f"  {error}" for error in first]
        return "\n".join(lines)


def run(args: argparse.Namespace) -> LoadReport:
    """Run the phases against ``--url`` or a demo started here; raises ``LoadTestError`` if none answers."""
    import httpx

    data = args.image.read_bytes()
    bad = [(name, body if body is not None else data[: len(data) // 2]) for name, body in BAD_UPLOADS.items()]
    uploads = hostile_uploads() if args.hostile_every else {}
    deadline = time.monotonic() + args.time_limit
    with (
        _server(args) as (url, pid),
        httpx.Client(base_url=url, timeout=args.request_timeout) as client,
        tempfile.TemporaryDirectory(prefix="feredge-soak-") as scratch,
    ):
        rss, child_rss = _rss_readers(pid)
        fifo = os.path.join(scratch, "pipe.png")
        os.mkfifo(fifo)

        def send(phase: Phase, number: int) -> None:
            if args.hostile_every and number % args.hostile_every == args.hostile_every - 1:
                kind = HOSTILE_KINDS[(number // args.hostile_every) % len(HOSTILE_KINDS)]
                _send_hostile(client, phase, kind.format(fifo=fifo), uploads, args.detector)
                return
            is_bad = args.bad_every and number % args.bad_every == args.bad_every - 1
            upload = bad[(number // args.bad_every) % len(bad)] if is_bad else (args.image.name, data)
            start = time.perf_counter()
            try:
                response = client.post("/predict", files={"file": upload}, params={"detector": args.detector})
                answer = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                phase.errors.append(f"{type(exc).__name__}: {exc}")
                return
            phase.server_errors += response.status_code >= 500
            if is_bad and response.status_code == 400 and "error" in answer:
                phase.bad_answered += 1
            elif not is_bad and response.status_code == 200 and "faces" in answer:
                phase.latencies_ms.append((time.perf_counter() - start) * 1000.0)
            else:
                phase.errors.append(f"{upload[0]}: HTTP {response.status_code}: {response.text[:200]}")

        report = LoadReport([], {}, max_rss_growth_pct=args.max_rss_growth, max_health_ms=args.max_health_ms)
        stop_health = threading.Event()
        health = threading.Thread(target=_watch_health, args=(url, report, stop_health), daemon=True)
        for name, count in (("warmup", args.warmup), ("concurrent", args.concurrent), ("sequential", args.sequential)):
            if name != "warmup" and not health.is_alive():
                health.start()  # after warm-up: its first requests load what later ones reuse
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
                        report.child_rss_samples_mb.append(child_rss())
            phase.seconds = time.perf_counter() - start
            if rss is not None:
                report.rss_mb[name] = rss()
        stop_health.set()
        health.join(args.request_timeout)
    return report


def _send_hostile(client: httpx.Client, phase: Phase, kind: str, uploads: dict[str, bytes], detector: str) -> None:
    """One hostile request; a 4xx JSON answer is what it must get (a thin image, or a slow one within the
    limits, may also be analysed)."""
    import httpx

    how, what = kind.split(":", 1)
    try:
        if how == "api":
            record = {"path": what, "orig_name": "photo.png", "meta": {"_type": "gradio.FileData"}}
            response = client.post("/gradio_api/call/predict", json={"data": [record, None, detector, 1]})
        elif how == "upload":
            response = client.post("/predict", files={"file": (what, uploads[what])}, params={"detector": detector})
        else:
            body = b'--cut\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n\x89PNG'
            response = client.post(
                "/predict", content=body, headers={"content-type": "multipart/form-data; boundary=cut"}
            )
        answer = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        phase.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
        return
    phase.server_errors += response.status_code >= 500
    refused = 400 <= response.status_code < 500 and "error" in answer
    analysed = what.startswith(("thin_", "slow_")) and response.status_code == 200 and "faces" in answer
    if refused or analysed:
        phase.hostile_answered += 1
    else:
        phase.errors.append(f"{kind}: HTTP {response.status_code}: {response.text[:200]}")


def _watch_health(url: str, report: LoadReport, stop: threading.Event) -> None:
    """Ask /health every HEALTH_INTERVAL_S until ``stop``; record each answer's wall time."""
    import httpx

    with httpx.Client(base_url=url, timeout=5) as client:
        while not stop.wait(HEALTH_INTERVAL_S):
            start = time.perf_counter()
            try:
                ok = client.get("/health").status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                report.health_ms.append((time.perf_counter() - start) * 1000.0)
            else:
                report.health_failures += 1


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


def _rss_readers(pid: int | None) -> tuple[Callable[[], float], Callable[[], float]] | tuple[None, None]:
    """Functions returning the RSS of ``pid`` and of its child processes in MiB, or Nones when no pid is known."""
    if pid is None:
        return None, None
    try:
        import psutil
    except ImportError as exc:
        raise LoadTestError("reading the server's RSS needs psutil: pip install 'feredge[bench]'") from exc

    process = psutil.Process(pid)

    def children() -> float:
        """The RSS of the server's child processes (the decoders, replaced when one overruns)."""
        total = 0
        for child in process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total / 2**20

    return (lambda: process.memory_info().rss / 2**20), children


def main(argv: Sequence[str] | None = None) -> int:
    """Print the report; exit 1 when a request failed or memory grew, 2 when the run could not start."""
    return run_main("load_test", _print_report, parse_args(argv))


def _print_report(args: argparse.Namespace) -> int:
    report = run(args)
    print(report.format())
    return 1 if report.errors or not report.rss_flat or not report.health_ok else 0


if __name__ == "__main__":
    sys.exit(main())
