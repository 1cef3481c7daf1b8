"""What the numbers were measured on: CPU, cores, memory, Python and the runtimes that ran the models.

The load average is recorded at the start and the end of the run, so a result taken while something
else kept the CPU busy says so.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from feredge import __version__
from feredge.benchmarks.models import package_version

_DEVICE_TREE_MODEL = Path("/proc/device-tree/model")  # "Raspberry Pi 5 Model B", "NVIDIA Jetson Orin Nano"


def cpu_model() -> str:
    """The CPU's marketing name (``model name`` in /proc/cpuinfo), else what ``platform`` knows."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        cpuinfo = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine()


def board_model() -> str | None:
    """The board of a Pi or a Jetson, from the device tree; None on a PC."""
    try:
        return _DEVICE_TREE_MODEL.read_text(errors="replace").strip("\x00\n ") or None
    except OSError:
        return None


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def machine_info(backends: Iterable[str]) -> dict:
    """A JSON-ready record of this machine; ``backends`` are the pip packages that ran models."""
    import psutil

    return {
        "cpu": cpu_model(),
        "board": board_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "memory_mb": round(psutil.virtual_memory().total / 2**20),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "runtimes": [package_version(name) for name in sorted(set(backends))],
        "feredge": __version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
    }
