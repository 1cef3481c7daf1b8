"""Peak memory of a fresh process that loads one model and runs it.

The benchmark's own process holds every model, the data set and matplotlib, so its RSS says nothing
about one model. A child process imports what ``feredge predict`` would, loads the model, runs it at
every benchmarked batch size and reports its own peak RSS (``ru_maxrss``) as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np

from feredge.benchmarks.errors import BenchError
from feredge.benchmarks.frames import draw_face
from feredge.benchmarks.latency import BATCH_SIZES
from feredge.benchmarks.models import Subject, open_model
from feredge.cli.options import run_main

TIMEOUT_S = 600


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB.

    On Linux this is ``VmHWM``: there ``ru_maxrss`` also counts the parent's RSS at the fork that
    started this process (the kernel carries the old memory map's peak across ``exec``), which would
    charge the benchmark's own memory to the model. Elsewhere ``ru_maxrss`` (bytes on macOS).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def probe(subject: Subject, threads: int) -> dict:
    """Load ``subject``, run it, and report peak RSS before loading and after running."""
    before = peak_rss_mb()
    model = open_model(subject, threads)
    face = model.preprocess([draw_face(160)])
    for size in BATCH_SIZES:
        model.predict(np.repeat(face, size, axis=0))
    return {
        "peak_rss_mb": peak_rss_mb(),
        "before_load_mb": before,
        "tensorflow_imported": "tensorflow" in sys.modules,
    }


def measure(subject: Subject, threads: int) -> dict:
    """Run ``probe`` in a fresh interpreter process; a failure there raises ``BenchError``."""
    command = [sys.executable, "-m", __name__, json.dumps(asdict(subject)), str(threads)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"memory probe of {subject.name} timed out after {TIMEOUT_S} s") from exc
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"memory probe of {subject.name} failed: {detail}")
    return json.loads(lines[-1])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m feredge.benchmarks.memory", description=__doc__.splitlines()[0])
    parser.add_argument("subject", help="the Subject to load, as JSON")
    parser.add_argument("threads", type=int, help="interpreter threads")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    """Print ``probe``'s result as one JSON line."""
    print(json.dumps(probe(Subject(**json.loads(args.subject)), args.threads)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("memory probe", run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
