"""``feredge info``: what feredge finds on this device, the first command to run on a new one.

Versions, the interpreter that loads (and why the others in the chain do not), onnxruntime and its
providers, the CPU and its SIMD features, the shipped models (with their multiply-accumulates per
face), the detectors (with their default detect size), the settings recommended here, the cache folder
and the model files on disk, and a short latency check of the default model. ``--json`` prints the
same record as JSON.

It never imports TensorFlow: an install whose only interpreter is TensorFlow's is reported as such,
and the latency check is then skipped rather than loading TensorFlow.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from feredge.cli.options import add_threads_option, positive_int, run_main

DEFAULT_RUNS = 50
TENSORFLOW = "tensorflow"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument(
        "--runs",
        type=positive_int,
        default=DEFAULT_RUNS,
        metavar="N",
        help=f"runs of the default model in the latency check (default: {DEFAULT_RUNS})",
    )
    add_threads_option(parser, help="interpreter threads of the latency check (default: all cores, up to 4)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="feredge info", description=__doc__.splitlines()[0])
    configure(parser)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    report = collect(args.runs, args.threads)
    print(json.dumps(report, indent=2) if args.json else format_text(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m feredge.cli.info``: the same as ``feredge info``."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    return run_main("feredge info", run, args)


def collect(runs: int, threads: int | None = None) -> dict[str, Any]:
    """The whole report as a JSON-ready dict; the text output is made from it."""
    import cv2
    import numpy as np

    from feredge import __version__
    from feredge.edge.cpu import cpu_info
    from feredge.edge.model import DEFAULT_MODEL

    interpreter = interpreter_chain(DEFAULT_MODEL.read_bytes())
    return {
        "feredge": __version__,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "executable": sys.executable,
        "platform": platform.platform(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "interpreter": interpreter,
        "onnxruntime": onnxruntime_info(),
        "cpu": cpu_info(),
        "models": shipped_model_info(interpreter["backend"]),
        "detectors": detector_info(),
        "recommended": recommended_settings(),
        "cache": cache_info(),
        "model_files": model_files(),
        "latency": latency_check(runs, threads, interpreter["backend"]),
    }


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def interpreter_chain(model: bytes) -> dict[str, Any]:
    """Each interpreter of feredge's fallback chain: installed? does it load ``model``? which one is used.

    feredge uses the first one that imports, as ``tflite_runner.interpreter_class`` does. TensorFlow
    is only looked up, never imported, so it is reported as installed but not tried.
    """
    from feredge.edge.tflite_runner import INTERPRETER_CHAIN

    chain: list[dict[str, Any]] = []
    backend: dict[str, Any] | None = None
    for module_name, package in INTERPRETER_CHAIN:
        version = _version(package)
        entry: dict[str, Any] = {
            "package": package,
            "version": version,
            "module": module_name,
            "imports": None,
            "loads": None,
        }
        if package == TENSORFLOW:
            tried = "installed; not tried (feredge info never imports it)"
            entry["status"] = "not installed" if version is None else tried
            entry["imports"] = None if version else False
        else:
            entry.update(_try_interpreter(module_name, version, model))
        if backend is None and entry["imports"] is not False:
            backend = {"package": package, "version": version, "loads": entry["loads"]}
        elif backend is not None and version is not None:
            entry["status"] += f"; not used: {backend['package']} comes first"
        chain.append(entry)
    return {"backend": backend, "chain": chain}


def _try_interpreter(module_name: str, version: str | None, model: bytes) -> dict[str, Any]:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        status = "not installed" if version is None else f"installed, but cannot be imported: {exc}"
        return {"imports": False, "loads": False, "status": status}
    try:
        interpreter = module.Interpreter(model_content=model, num_threads=1)
        interpreter.allocate_tensors()
    except Exception as exc:  # any failure of a third-party interpreter is the answer here, not an error
        status = f"imports, but cannot load the default model: {type(exc).__name__}: {exc}"
        return {"imports": True, "loads": False, "status": status}
    return {"imports": True, "loads": True, "status": "loads the default model"}


def onnxruntime_info() -> dict[str, Any]:
    """onnxruntime's version and execution providers, and the one feredge would run ``.onnx`` models on."""
    missing: dict[str, Any] = {"version": None, "providers": [], "used": None}
    if importlib.util.find_spec("onnxruntime") is None:  # also onnxruntime-gpu, whose package name differs
        return missing | {"status": "not installed (pip install 'feredge[jetson]')"}
    from feredge.edge.onnx_runner import choose_providers

    try:
        import onnxruntime
    except ImportError as exc:
        return missing | {"status": f"installed, but cannot be imported: {exc}"}
    providers = list(onnxruntime.get_available_providers())
    return {"version": onnxruntime.__version__, "providers": providers, "used": choose_providers(providers)[0]}


def shipped_model_info(backend: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The models installed with feredge, read from the metadata inside each file, and their MACs per face,
    counted from the graph when ``backend`` (the interpreter that loads) is a light one, never TensorFlow."""
    from feredge.edge.errors import ModelLoadError
    from feredge.edge.macs import count_macs
    from feredge.edge.metadata import read_tflite_metadata
    from feredge.edge.model import DEFAULT_MODEL, shipped_models

    models = []
    for path in shipped_models():
        data = path.read_bytes()
        metadata = read_tflite_metadata(data)
        entry = {"name": path.name, "default": path == DEFAULT_MODEL, "size_bytes": path.stat().st_size}
        entry["macs"] = None  # MACs per face: the compute a CPU without this one's int8 instructions pays
        if backend is not None and backend["package"] != TENSORFLOW:
            with contextlib.suppress(ModelLoadError):  # the latency check reports a model that does not load
                entry["macs"] = count_macs(data, path.name).total
        if metadata is not None:
            entry |= {
                "format": metadata.format,
                "input": [metadata.input_size, metadata.input_size, metadata.channels],
                "photometric": metadata.photometric,
                "labels": list(metadata.labels),
                "test_time_flip": metadata.test_time_flip,
            }
        models.append(entry)
    return models


def detector_info() -> list[dict[str, Any]]:
    """The registered detectors, read from the registry; ``ready`` means its model file (if any) is here."""
    from feredge.edge.detectors import DEFAULT_DETECTOR, DETECTORS

    return [
        {
            "name": name,
            "default": name == DEFAULT_DETECTOR,
            "ready": entry.ready(None),
            "whole_image": entry.whole_image,
            "detect_size": entry.detect_size,
            "about": entry.description,
        }
        for name, entry in DETECTORS.items()
    ]


def recommended_settings() -> dict[str, Any]:
    """The settings to start from on this device: the default detector at its measured detect size (see
    docs/deploy.md for the rule that chose it) and the interpreter threads the runtime would take here."""
    from feredge.edge.detectors import DEFAULT_DETECTOR, default_detect_size
    from feredge.edge.model import default_threads

    size = default_detect_size(DEFAULT_DETECTOR)
    threads = default_threads()
    shown = "full" if size is None else str(size)
    return {
        "detector": DEFAULT_DETECTOR,
        "detect_size": size,
        "threads": threads,
        "command": f"feredge video 0 --detector {DEFAULT_DETECTOR} --detect-size {shown} --threads {threads}",
        "why": "detection is most of a frame's time; the detect size is the smallest that kept the recall of "
        "full resolution (within 1 point) on the group-photo proxy and JAFFE; --detect-size full for faces "
        "of 30 px and less in a 640x480 frame",
    }


def cache_info() -> dict[str, Any]:
    """Where feredge keeps downloads: nowhere, because every model ships in the package.

    The section stays so a device report says so explicitly instead of leaving users to look for one.
    """
    return {"path": None, "exists": False, "files": {}, "status": "none: every model ships in the package"}


def model_files() -> dict[str, Any]:
    """The model files installed with feredge (emotion and detector models), relative to their folder.

    Every model feredge runs by default ships in the package, so this is all a device needs offline.
    """
    from feredge.edge.model import MODELS_DIR

    files = sorted(p for p in MODELS_DIR.rglob("*") if p.suffix in (".tflite", ".onnx"))
    return {"folder": str(MODELS_DIR), "files": {p.relative_to(MODELS_DIR).as_posix(): p.stat().st_size for p in files}}


def latency_check(runs: int, threads: int | None, backend: dict[str, Any] | None) -> dict[str, Any]:
    """Milliseconds per face of the default model, ``runs`` times after a warm-up, as the runtime calls it."""
    import numpy as np

    from feredge.edge.model import default_threads, load_model

    threads = threads or default_threads()
    if backend is None or backend["package"] == TENSORFLOW:
        reason = "no TFLite interpreter" if backend is None else "only TensorFlow's interpreter is installed"
        return {"runs": 0, "threads": threads, "skipped": f"{reason}: pip install ai-edge-litert"}
    model = load_model(threads=threads)
    spec = model.spec
    face = np.random.default_rng(0).random((1, spec.input_size, spec.input_size, spec.channels), np.float32)
    model.predict(face)  # the first invoke allocates and packs weights: not what a frame costs
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.predict(face)
        times.append((time.perf_counter() - start) * 1000.0)
    p50, p90 = np.percentile(times, [50, 90])
    return {
        "model": Path(model.name).name,
        "backend": model.runner.backend,
        "threads": threads,
        "runs": runs,
        "test_time_flip": model.metadata.test_time_flip,
        "p50_ms": round(float(p50), 3),
        "p90_ms": round(float(p90), 3),
        "min_ms": round(min(times), 3),
    }


def format_text(report: dict[str, Any]) -> str:
    """The report as sections for a terminal."""
    lines = [
        f"feredge {report['feredge']}  {report['python']} ({report['executable']})",
        f"  {report['platform']}",
        f"  numpy {report['numpy']}, OpenCV {report['opencv']}",
        "",
        "interpreter",
    ]
    backend = report["interpreter"]["backend"]
    lines.append(f"  feredge uses {backend['package']}" if backend else "  none installed: pip install ai-edge-litert")
    for entry in report["interpreter"]["chain"]:
        lines.append(f"  {entry['package']:<16} {entry['version'] or '-':<10} {entry['status']}")
    ort = report["onnxruntime"]
    lines += ["", "onnxruntime (.onnx models)"]
    if ort["version"] is None or ort["used"] is None:
        lines.append(f"  {ort['version'] or '-'}  {ort['status']}")
    else:
        lines.append(f"  {ort['version']}  providers {', '.join(ort['providers'])}; feredge would use {ort['used']}")
    cpu = report["cpu"]
    lines += [
        "",
        f"cpu (from {cpu['source']})",
        f"  {cpu['model']}, {cpu['arch']}" + (f", {cpu['board']}" if cpu["board"] else ""),
        f"  {cpu['cores']} cores, {cpu['usable_cores']} usable; SIMD {' '.join(cpu['simd']) or '-'}",
        "",
        "models (shipped; * the default)",
    ]
    for model in report["models"]:
        shape = "x".join(map(str, model.get("input", []))) or "?"
        labels = ", ".join(model.get("labels", [])) or "no metadata"
        mark = "*" if model["default"] else " "
        size = model["size_bytes"] / 2**20
        photometric = model.get("photometric", "?")
        macs = "?" if model.get("macs") is None else f"{model['macs'] / 1e6:.1f} M"
        lines.append(
            f"  {mark} {model['name']:<30} {model.get('format', '?'):<12} {shape:<8} {photometric:<10} {size:.2f} MiB  "
            f"{macs:>7} MACs  {labels}"
        )
    lines += [
        "",
        "detectors (* the default; no model: its model file is missing, pass --detector-model; "
        "detect size: its default --detect-size)",
    ]
    for detector in report["detectors"]:
        mark = "*" if detector["default"] else " "
        state = "ready" if detector["ready"] else "no model"
        size = "-" if detector["whole_image"] else detector["detect_size"] or "full"
        lines.append(f"  {mark} {detector['name']:<10} {state:<9} {size!s:<5} {detector['about']}")
    recommended = report["recommended"]
    lines += ["", "recommended settings", f"  {recommended['command']}", f"  ({recommended['why']})"]
    lines += ["", "cache folder", f"  {report['cache']['status']}"]
    files = report["model_files"]
    lines += ["", f"model files ({files['folder']})"]
    lines += [f"  {name:<44} {size / 2**20:.2f} MiB" for name, size in files["files"].items()]
    latency = report["latency"]
    lines += ["", "latency check"]
    if "skipped" in latency:
        lines.append(f"  skipped: {latency['skipped']}")
    else:
        flip = ", with its mirror" if latency["test_time_flip"] else ""
        lines.append(
            f"  {latency['model']}, one face{flip}, {latency['threads']} threads, {latency['runs']} runs: "
            f"p50 {latency['p50_ms']:.2f} ms, p90 {latency['p90_ms']:.2f} ms, min {latency['min_ms']:.2f} ms"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
