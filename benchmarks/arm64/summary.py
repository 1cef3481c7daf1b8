"""The one-line details ``check.sh`` prints, read from feredge's JSON output (standard library only).

- ``freeze``: ``name==version`` of every installed distribution but pip, for either Python;
- ``predict``: ``feredge predict --json`` lines on stdin; fails when no face was found;
- ``info``: ``feredge info --json`` on stdin; fails unless ai-edge-litert is the backend that loads;
- ``scores``: a ``scores.py`` line on stdin; says how many faces were compared;
- ``detectors``: ``feredge info --json`` on stdin; the ready detectors besides the default that find
  faces (not the whole-image one), one per line, for ``predict --detector``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
from collections.abc import Sequence


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


def scores(text: str) -> tuple[str, bool]:
    return f"{len(json.loads(text)['faces'])} face(s)", True


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
