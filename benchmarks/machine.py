"""What the numbers were measured on: CPU, cores, memory, Python and the runtimes that ran the models.

The load average is recorded at the start and the end of the run, so a result taken while something
else kept the CPU busy says so.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable

import cv2
import numpy as np

from feredge import __version__
from feredge.benchmarks.models import package_version
from feredge.edge.cpu import cpu_info


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def machine_info(backends: Iterable[str]) -> dict:
    """A JSON-ready record of this machine; ``backends`` are the pip packages that ran models."""
    import psutil

    cpu = cpu_info()
    return {
        "cpu": cpu["model"],
        "board": cpu["board"],
        "arch": cpu["arch"],
        "cores": cpu["cores"],
        "memory_mb": round(psutil.virtual_memory().total / 2**20),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "runtimes": [package_version(name) for name in sorted(set(backends))],
        "feredge": __version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
    }
