"""The one-line details ``check.sh`` prints, read from feredge's JSON output (standard library only).

- ``freeze``: ``name==version`` of every installed distribution but pip, for either Python;
- ``predict``: ``feredge predict --json`` lines on stdin; fails when no face was found;
- ``info``: ``feredge info --json`` on stdin; fails unless ai-edge-litert is the backend that loads;
- ``scores``: two ``scores.py`` lines on stdin, x86-64's then the emulated CPU's; fails unless the
  boxes, labels and raw int8 outputs are equal bit for bit and each final score is within
  ``SCORE_ULPS`` float32 steps (the temperature softmax runs in numpy, whose float32 ``exp`` is
  vectorized differently on AVX-512 and NEON, so its last bit may differ);
- ``detectors``: ``feredge info --json`` on stdin; the ready detectors besides the default that find
  faces (not the whole-image one), one per line, for ``predict --detector``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import struct
import sys
from collections.abc import Sequence

SCORE_ULPS = 4


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("freeze", "predict", "info", "scores", "detectors"))
    return parser.parse_args(argv)


def freeze() -> tuple[str, bool]:
    names = {(d.metadata["Name"], d.version) for d in importlib.metadata.distributions()}
    return "\n".join(f"{name}=={version}" for name, version in sorted(names) if name != "pip"), True


def predict(text: str) -> tuple[str, bool]:
    faces = [face for line in text.splitlines() if line.strip() for face in json.loads(line)["faces"]]
    found = ", ".join(f"{face['label']} {face['confidence']:.3f} at {face['box']}" for face in faces)
    return f"{len(faces)} face(s): {found}", bool(faces)


def info(text: str) -> tuple[str, bool]:
    report = json.loads(text)
    cpu, backend = report["cpu"], report["interpreter"]["backend"]
    detectors = ", ".join(d["name"] + (" (default)" if d["default"] else "") for d in report["detectors"])
    line = (
        f"{backend['package']} {backend['version']} loads; {cpu['model']}, {cpu['cores']} cores, "
        f"SIMD {' '.join(cpu['simd']) or '-'}; {len(report['models'])} models; detectors {detectors}; "
        f"{report['latency']['runs']}-run latency check ran (emulated: its time is not reported)"
    )
    return line, backend["package"] == "ai-edge-litert"


def _floats(hex_arrays: Sequence[str]) -> list[int]:
    """Each little-endian float32 as its int32 bit pattern: for same-signed floats, their order."""
    data = bytes.fromhex("".join(hex_arrays))
    return list(struct.unpack(f"<{len(data) // 4}i", data))


def scores(text: str) -> tuple[str, bool]:
    reference, other = (json.loads(line) for line in text.splitlines() if line.strip())
    faces = len(other["faces"])
    if other["faces"] != reference["faces"]:
        return f"boxes or labels differ: {other['faces']} against x86-64's {reference['faces']}", False
    if other["raw_outputs"] != reference["raw_outputs"]:
        return "the raw int8 outputs differ from x86-64's", False
    mine, theirs = _floats(other["scores"]), _floats(reference["scores"])
    ulps = max((abs(a - b) for a, b in zip(mine, theirs, strict=True)), default=0)
    line = f"{faces} face(s): boxes and raw int8 outputs equal x86-64's bit for bit; scores " + (
        "too" if ulps == 0 else f"within {ulps} float32 step(s)"
    )
    return line, ulps <= SCORE_ULPS


def detectors(text: str) -> tuple[str, bool]:
    report = json.loads(text)
    found = [d["name"] for d in report["detectors"] if d["ready"] and not d["default"] and not d.get("whole_image")]
    return "\n".join(found), True


def run(args: argparse.Namespace) -> tuple[str, bool]:
    if args.what == "freeze":
        return freeze()
    readers = {"predict": predict, "info": info, "scores": scores, "detectors": detectors}
    return readers[args.what](sys.stdin.read())


def main(argv: Sequence[str] | None = None) -> int:
    line, ok = run(parse_args(argv))
    print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
