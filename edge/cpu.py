"""What CPU this is, named one way for ``feredge info`` and the benchmark records alike.

Linux's ``/proc/cpuinfo`` and the device tree give the model, the board of a Pi or a Jetson and the
SIMD features that matter for int8/fp16 inference; elsewhere ``platform`` gives what it knows.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

# Interpreter threads: more than 4 per core only slows a run down, and the interpreter crashes on huge counts.
MAX_THREADS = min(256, 4 * (os.cpu_count() or 1))


def default_threads() -> int:
    """All cores up to four: beyond that a small CNN gains nothing and steals the detector's CPU."""
    return max(1, min(4, os.cpu_count() or 1))


def check_threads(threads: object) -> int:
    """``threads`` as a plain int (LiteRT refuses numpy's) from 1 to ``MAX_THREADS``, else ``OptionError``:
    the one check of an interpreter thread count (``RecognizerOptions``, ``load_model``, ``--threads``)."""
    from feredge.edge.errors import OptionError
    from feredge.edge.metadata import is_integer

    if is_integer(threads) and 1 <= threads <= MAX_THREADS:  # type: ignore[operator]
        return int(threads)  # type: ignore[call-overload]
    raise OptionError(
        f"threads must be >= 1 (an int or None, at most {MAX_THREADS}: 4 per core), "
        f"got {threads!r:.80} ({type(threads).__name__})"
    )


# SIMD features worth knowing for int8/fp16 inference, as /proc/cpuinfo names them (x86 flags, ARM Features).
SIMD_FEATURES = (
    "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx_vnni", "amx_int8",
    "neon", "asimd", "asimdhp", "asimddp", "asimdfhm", "i8mm", "bf16", "sve", "sve2",
)  # fmt: skip

# (implementer, part) of /proc/cpuinfo on ARM -> core name: the Pis, the Jetsons and common servers.
ARM_CORES = {
    ("0x41", "0xd03"): "Cortex-A53",  # Pi 3, Pi Zero 2 W
    ("0x41", "0xd05"): "Cortex-A55",
    ("0x41", "0xd07"): "Cortex-A57",  # Jetson Nano
    ("0x41", "0xd08"): "Cortex-A72",  # Pi 4, Pi 400, CM4
    ("0x41", "0xd0b"): "Cortex-A76",  # Pi 5
    ("0x41", "0xd0c"): "Neoverse-N1",
    ("0x41", "0xd40"): "Neoverse-V1",
    ("0x41", "0xd42"): "Cortex-A78AE",  # Jetson Orin
    ("0x41", "0xd4f"): "Neoverse-V2",
    ("0x4e", "0x004"): "NVIDIA Carmel",  # Jetson Xavier
}

CPUINFO = Path("/proc/cpuinfo")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")  # "Raspberry Pi 5 Model B Rev 1.0", "NVIDIA Jetson ..."


def cpu_info() -> dict[str, Any]:
    """This machine's CPU: ``/proc/cpuinfo`` and the device tree on Linux, ``platform`` elsewhere."""
    try:
        cpuinfo = CPUINFO.read_text(errors="replace")
    except OSError:
        cpuinfo = ""
    try:
        board = DEVICE_TREE_MODEL.read_text(errors="replace").strip("\x00\n ") or None
    except OSError:
        board = None
    return parse_cpuinfo(cpuinfo, board)


def parse_cpuinfo(cpuinfo: str, board: str | None = None) -> dict[str, Any]:
    """CPU model, board, cores and SIMD features from the text of ``/proc/cpuinfo`` (may be empty)."""
    fields: dict[str, list[str]] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), []).append(value.strip())
    flags = set(" ".join(fields.get("flags", []) + fields.get("Features", [])).split())
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "model": _cpu_model(fields) or platform.processor() or platform.machine(),
        "board": board or next(iter(fields.get("Model", [])), None),  # a Pi's cpuinfo ends with its board
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "simd": [name for name in SIMD_FEATURES if name in flags],
        "source": "/proc/cpuinfo" if cpuinfo else "platform",
    }


def _cpu_model(fields: dict[str, list[str]]) -> str | None:
    """x86's ``model name``; on ARM the cores named from implementer and part, e.g. ``4x Cortex-A72``."""
    if fields.get("model name"):
        return fields["model name"][0]
    counts: dict[str, int] = {}
    for implementer, part in zip(fields.get("CPU implementer", []), fields.get("CPU part", []), strict=False):
        name = ARM_CORES.get((implementer, part), f"ARM core {implementer}/{part}")
        counts[name] = counts.get(name, 0) + 1
    return " + ".join(f"{count}x {name}" for name, count in counts.items()) or None
