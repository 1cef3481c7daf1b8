"""``feredge info``: every section in the text, the same record as JSON, and never TensorFlow."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from feredge.cli import main as feredge_main
from feredge.cli.info import main
from feredge.edge import detectors
from feredge.edge.cpu import cpu_info, parse_cpuinfo
from feredge.edge.detectors import DEFAULT_DETECTOR, DETECTORS, available_detectors
from feredge.edge.macs import count_macs
from feredge.edge.model import DEFAULT_MODEL, MODELS_DIR, default_threads

pytestmark = pytest.mark.edge  # needs only `pip install .`

SECTIONS = (
    "interpreter", "onnxruntime", "cpu", "models", "detectors", "recommended settings", "cache folder", "model files",
    "latency check",
)  # fmt: skip
KEYS = {
    "feredge", "python", "executable", "platform", "numpy", "opencv", "interpreter", "onnxruntime", "cpu",
    "models", "detectors", "recommended", "cache", "model_files", "latency",
}  # fmt: skip

# The end of a Raspberry Pi 4's /proc/cpuinfo under 64-bit Raspberry Pi OS (one core of four shown).
PI4_CPUINFO = """\
processor	: 0
BogoMIPS	: 108.00
Features	: fp asimd evtstrm crc32 cpuid
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x0
CPU part	: 0xd08
CPU revision	: 3

Revision	: c03114
Model		: Raspberry Pi 4 Model B Rev 1.4
"""


def test_text_names_every_section(capsys):
    assert feredge_main(["info", "--runs", "3"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("feredge ") and "numpy" in out and "OpenCV" in out
    for section in SECTIONS:
        assert any(line.startswith(section) for line in lines), section
    assert f"* {DEFAULT_MODEL.name}" in out and f"* {DEFAULT_DETECTOR}" in out
    assert "feredge uses ai-edge-litert" in out and "3 runs: p50" in out
    for name, entry in DETECTORS.items():  # every registered detector, ready exactly when the registry says so
        state = "ready" if name in available_detectors() else "no model"
        size = "-" if entry.whole_image else entry.detect_size or "full"
        assert re.search(rf"^  [* ] {name} +{state} +{size} +{re.escape(entry.description)}$", out, re.M), name
    size = detectors.default_detect_size(DEFAULT_DETECTOR) or "full"
    assert f"--detector {DEFAULT_DETECTOR} --detect-size {size} --threads" in out
    assert re.search(rf"^  \* {DEFAULT_MODEL.name} .* {count_macs(DEFAULT_MODEL).millions:.1f} M MACs ", out, re.M)
    assert "none: every model ships in the package" in out
    assert f"model files ({MODELS_DIR})" in out and DEFAULT_MODEL.name in out


def test_json_has_every_section(capsys):
    assert main(["--json", "--runs", "4", "--threads", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == KEYS
    chain = report["interpreter"]["chain"]
    assert [entry["package"] for entry in chain] == ["ai-edge-litert", "tflite-runtime", "tensorflow"]
    backend = {"package": "ai-edge-litert", "version": chain[0]["version"], "loads": True}
    assert report["interpreter"]["backend"] == backend
    assert set(report["onnxruntime"]) >= {"version", "providers", "used"}
    assert set(report["cpu"]) >= {"model", "cores", "simd", "arch"} and report["cpu"]["cores"] >= 1
    default = report["models"][0]
    assert default["name"] == DEFAULT_MODEL.name and default["default"] and default["input"] == [48, 48, 1]
    assert len(default["labels"]) == 7 and default["size_bytes"] == DEFAULT_MODEL.stat().st_size
    views = {m["name"]: (m["input"][2], m["photometric"]) for m in report["models"]}
    assert views[DEFAULT_MODEL.name] == (1, "clahe") and views["feredge_accurate_int8.tflite"] == (2, "none+clahe")
    assert [d["name"] for d in report["detectors"]] == list(DETECTORS)
    assert [d["name"] for d in report["detectors"] if d["default"]] == [DEFAULT_DETECTOR]
    assert [d["name"] for d in report["detectors"] if d["ready"]] == list(available_detectors())
    assert [d["about"] for d in report["detectors"]] == [entry.description for entry in DETECTORS.values()]
    assert [d["detect_size"] for d in report["detectors"]] == [entry.detect_size for entry in DETECTORS.values()]
    assert [m["macs"] for m in report["models"]] == [count_macs(MODELS_DIR / m["name"]).total for m in report["models"]]
    recommended = report["recommended"]
    assert recommended["detector"] == DEFAULT_DETECTOR
    assert recommended["detect_size"] == detectors.default_detect_size(DEFAULT_DETECTOR)
    assert recommended["threads"] == default_threads()
    assert report["cache"]["path"] is None and report["cache"]["files"] == {}
    files = report["model_files"]
    assert files["folder"] == str(MODELS_DIR) and files["files"][DEFAULT_MODEL.name] == DEFAULT_MODEL.stat().st_size
    latency = report["latency"]
    assert latency["runs"] == 4 and latency["threads"] == 1 and 0 < latency["min_ms"] <= latency["p50_ms"]


def test_a_pi_4_cpuinfo_names_its_cores_board_and_neon():
    cpu = parse_cpuinfo(PI4_CPUINFO)
    assert cpu["model"] == "1x Cortex-A72" and cpu["board"] == "Raspberry Pi 4 Model B Rev 1.4"
    assert cpu["simd"] == ["asimd"] and cpu["source"] == "/proc/cpuinfo"
    x86 = parse_cpuinfo("model name\t: Intel(R) Core(TM) i5\nflags\t\t: fpu sse4_2 fma avx2\n", board=None)
    assert x86["model"] == "Intel(R) Core(TM) i5" and x86["simd"] == ["sse4_2", "avx2", "fma"] and x86["board"] is None
    assert parse_cpuinfo("")["source"] == "platform"


def test_the_benchmark_record_names_the_cpu_as_info_does():
    pytest.importorskip("psutil")  # feredge[bench]
    from feredge.benchmarks.machine import machine_info

    cpu, machine = cpu_info(), machine_info([])
    assert (machine["cpu"], machine["board"], machine["cores"]) == (cpu["model"], cpu["board"], cpu["cores"])


# Blocking the light interpreters leaves TensorFlow's (in the dev install) or none (edge-only install).
BLOCK_LIGHT_INTERPRETERS = "sys.modules['ai_edge_litert'] = None; sys.modules['tflite_runtime'] = None\n"


@pytest.mark.parametrize("block", ["", BLOCK_LIGHT_INTERPRETERS], ids=["as-installed", "no-light-interpreter"])
def test_info_never_imports_tensorflow_in_a_fresh_process(block):
    code = (
        "import json, sys\n"
        f"{block}"
        "from feredge.cli import main\n"
        "assert main(['info', '--json', '--runs', '2']) == 0\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'tensorflow'], 'tensorflow was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    if not block:
        assert report["interpreter"]["backend"]["package"] == "ai-edge-litert"
        return
    litert = report["interpreter"]["chain"][0]
    assert litert["status"].startswith("installed, but cannot be imported") and litert["loads"] is False
    assert report["latency"]["runs"] == 0 and "pip install ai-edge-litert" in report["latency"]["skipped"]
    assert all(model["macs"] is None for model in report["models"])  # counting them would need an interpreter
