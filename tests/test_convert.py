"""feredge convert end to end on a tiny trained run: every format, metadata inside, sizes, the gate, QAT."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from feredge.cli import main
from feredge.convert.edgetpu import compile_edgetpu
from feredge.convert.errors import ConversionError
from feredge.convert.formats import FORMATS
from feredge.convert.gate import compare
from feredge.edge.metadata import METADATA_KEY, ModelMetadata, read_tflite_metadata
from feredge.edge.model import load_model

pytestmark = pytest.mark.slow

LABELS = ("happy", "sad", "surprise")


def write_stripes(root: Path, per_class: int = 16, seed: int = 0) -> Path:
    """Noisy 48x48 stripes, horizontal / vertical / diagonal by class: a tiny CNN learns them in seconds
    and with confident scores, so a correct int8 conversion keeps every prediction."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:48, 0:48].astype(np.float32)
    for label, coord in zip(LABELS, (yy, xx, (xx + yy) / np.sqrt(2)), strict=True):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            wave = np.sin(2 * np.pi * coord / rng.uniform(6, 10) + rng.uniform(0, 2 * np.pi))
            image = 127 + 100 * wave + rng.normal(0, 10, wave.shape)
            cv2.imwrite(str(root / label / f"{i}.png"), np.clip(image, 0, 255).astype(np.uint8))
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run folder (model.keras, metadata.json, config.json) trained by feredge's trainer (~8 s)."""
    from feredge.train.config import TrainConfig
    from feredge.train.trainer import train

    root = tmp_path_factory.mktemp("convert")
    data = write_stripes(root / "data")
    return train(
        TrainConfig(
            data=str(data),
            out=str(root / "run"),
            backbone="tiny",
            alpha=4,
            epochs=12,
            batch_size=16,
            lr=1e-2,
            augment="none",
            dropout=0.0,
            label_smoothing=0.0,
            weight_decay=0.0,
            val_fraction=0.25,
            workers=1,
            patience=20,
        )
    )


def convert_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["convert", *args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def int8_run(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("int8")
    code, stdout, stderr = convert_cli(
        str(run_dir), "--format", "int8", "--calibration-size", "16", "--edgetpu", "--out", str(out)
    )
    assert code == 0, stderr
    return out, stdout


@pytest.fixture(scope="module")
def float_run(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("float")
    code, _, stderr = convert_cli(str(run_dir), "--formats", "fp16,dynamic,fp32,onnx", "--out", str(out))
    assert code == 0, stderr
    return out


def report(path: Path) -> dict:
    return json.loads(path.read_text())


def test_int8_is_full_integer_with_per_channel_weights(int8_run):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(int8_run[0] / "model_int8.tflite"))
    interpreter.allocate_tensors()
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    tensors = interpreter.get_tensor_details()
    assert {np.dtype(t["dtype"]).name for t in tensors} <= {"int8", "int32"}  # no float tensor left
    conv_weights = [t for t in tensors if t["dtype"] == np.int8 and len(t["shape"]) == 4 and t["shape"][0] > 1]
    assert conv_weights and all(len(t["quantization_parameters"]["scales"]) == t["shape"][0] for t in conv_weights)


def test_int8_metadata_round_trips_into_the_runtime(int8_run, run_dir):
    path = int8_run[0] / "model_int8.tflite"
    metadata = read_tflite_metadata(path.read_bytes())
    trained = ModelMetadata.load(run_dir / "metadata.json")
    assert metadata.labels == trained.labels == LABELS
    assert (metadata.input_size, metadata.channels, metadata.normalization) == (48, 1, "unit")
    assert metadata.format == "tflite-int8"
    assert metadata.source_model == str(run_dir / "model.keras")
    assert 0 < metadata.calibration_size <= 16
    assert report(int8_run[0] / "model_int8.report.json")["metadata"] == metadata.to_dict()
    assert load_model(path).labels == LABELS


def test_int8_gate_passes_and_reports(int8_run):
    out, stdout = int8_run
    data = report(out / "model_int8.report.json")
    assert data["status"] == "ok" and data["passed"]
    assert data["converted"]["macro_f1"] == data["float"]["macro_f1"] == 1.0
    assert data["top1_agreement"] == 1.0
    assert data["macro_f1_drop"] <= data["max_f1_drop"] == 0.01
    assert data["size_bytes"] == (out / "model_int8.tflite").stat().st_size
    assert data["size_ratio"] < 0.5 and "count_params" in data["size_ratio_basis"]
    assert data["convert_seconds"] > 0 and data["converted"]["samples"] == 12
    assert set(data["converted"]["per_class"]) == set(LABELS)
    markdown = (out / "model_int8.report.md").read_text()
    for text in ("| accuracy |", "| macro-F1 |", "| F1 surprise |", "top-1 agreement", "float model's"):
        assert text in markdown and text in stdout
    assert "| int8 | ok |" in stdout
    if shutil.which("edgetpu_compiler") is None:
        assert "https://coral.ai/docs/edgetpu/compiler/" in stdout


def test_edgetpu_compiler_runs_when_on_path(int8_run, tmp_path, monkeypatch):
    artefact = int8_run[0] / "model_int8.tflite"
    metadata = read_tflite_metadata(artefact.read_bytes())
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConversionError, match="x86-64 Debian/Ubuntu"):
        compile_edgetpu(artefact, metadata)
    fake = tmp_path / "edgetpu_compiler"  # "-s -o OUT model.tflite" -> OUT/model_edgetpu.tflite, like Coral's
    fake.write_text(
        f"#!{sys.executable}\nimport shutil, sys\nfrom pathlib import Path\n"
        "src = Path(sys.argv[-1])\nshutil.copy(src, Path(sys.argv[3]) / f'{src.stem}_edgetpu.tflite')\n"
    )
    fake.chmod(0o755)
    compiled = compile_edgetpu(artefact, metadata)
    assert compiled == artefact.with_name("model_int8_edgetpu.tflite")
    assert read_tflite_metadata(compiled.read_bytes()).format == "tflite-int8-edgetpu"
    compiled.unlink()


def test_every_other_format_converts_with_metadata_and_shrinks(int8_run, float_run):
    import onnx
    from ai_edge_litert.interpreter import Interpreter

    sizes = {}
    for fmt in FORMATS.values():
        folder = int8_run[0] if fmt.name == "int8" else float_run
        path = folder / fmt.artifact.artefact_name("model")
        data = report(folder / f"{fmt.artifact.report_stem('model')}.json")
        assert data["status"] == "ok" and data["format"] == fmt.name
        sizes[fmt.name] = path.stat().st_size
        assert load_model(path).labels == LABELS
        if fmt.artifact.runtime == "tflite":
            assert read_tflite_metadata(path.read_bytes()).format == f"tflite-{fmt.name}"
            if fmt.name != "int8":
                interpreter = Interpreter(model_path=str(path))
                assert interpreter.get_input_details()[0]["dtype"] == np.float32
    proto = onnx.load(str(float_run / "model.onnx"))
    props = {p.key: p.value for p in proto.metadata_props}
    assert ModelMetadata.from_json(props[METADATA_KEY]).format == "onnx"
    assert report(float_run / "model.report.json")["max_abs_prob_diff"] <= 1e-3
    assert sizes["int8"] < 0.4 * sizes["fp32"]
    assert sizes["dynamic"] < sizes["fp16"] < 0.6 * sizes["fp32"]
    assert 0.9 < sizes["onnx"] / sizes["fp32"] < 1.1


def test_gate_rejection_exits_nonzero_and_keeps_an_earlier_passing_artefact(run_dir, tmp_path, monkeypatch):
    from feredge.convert import converter

    def demanding(*args):  # a gate no conversion passes: it asks for a gain of a whole macro-F1
        return dataclasses.replace(compare(*args), max_f1_drop=-1.0)

    monkeypatch.setattr(converter, "compare", demanding)
    earlier = tmp_path / "model_fp32.tflite"
    earlier.write_bytes(b"from an earlier conversion")
    code, stdout, stderr = convert_cli(str(run_dir), "--format", "fp32", "--out", str(tmp_path))
    assert code == 2
    assert "accuracy gate" in stderr and "model_fp32.REJECTED.tflite" in stderr
    assert "model_fp32.tflite is from an earlier conversion that passed the gate, not from this run" in stderr
    assert earlier.read_bytes() == b"from an earlier conversion"
    rejected = tmp_path / "model_fp32.REJECTED.tflite"
    assert read_tflite_metadata(rejected.read_bytes()).format == "tflite-fp32"
    data = report(tmp_path / "model_fp32.report.json")
    assert data["status"] == "rejected" and not data["passed"] and data["artefact"] == str(rejected)
    assert "| fp32 | rejected |" in stdout
    assert data["earlier_artefact"] == str(earlier)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model_fp32.REJECTED.tflite",
        "model_fp32.report.json",
        "model_fp32.report.md",
        "model_fp32.tflite",
    ]


def test_one_failing_format_does_not_stop_the_others(run_dir, tmp_path):
    bare = tmp_path / "bare" / "emotions.keras"  # no metadata.json, no run config: no calibration data
    bare.parent.mkdir()
    shutil.copy(run_dir / "model.keras", bare)
    data = Path(json.loads((run_dir / "config.json").read_text())["data"])
    code, stdout, stderr = convert_cli(
        str(bare),
        "--formats",
        "int8,fp32",
        "--labels",
        ",".join(LABELS),
        "--check-data",
        str(data),
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 1  # a partial failure: fp32 was written
    assert "1 of 2 formats not written: int8 failed: int8 needs calibration images" in stderr
    assert "--calibration-data" in stderr
    assert "| int8 | failed |" in stdout and "| fp32 | ok |" in stdout
    assert not (tmp_path / "out" / "emotions_int8.tflite").exists()
    converted = load_model(tmp_path / "out" / "emotions_fp32.tflite")
    assert converted.labels == LABELS and converted.metadata.normalization == "unit"
    assert report(tmp_path / "out" / "emotions_fp32.report.json")["converted"]["samples"] == 48


def test_tf2onnx_failures_say_so_and_write_nothing(run_dir, tmp_path, monkeypatch):
    import tf2onnx

    def incompatible(*args, **kwargs):
        raise AttributeError("module 'tensorflow' has no attribute 'contrib'")

    monkeypatch.setattr(tf2onnx.convert, "from_keras", incompatible)
    code, stdout, stderr = convert_cli(str(run_dir), "--format", "onnx", "--out", str(tmp_path))
    assert code == 2 and "| onnx | failed |" in stdout
    assert "tf2onnx 1.17.0 cannot convert this model under TensorFlow 2." in stderr and "contrib" in stderr
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # an import that fails
    code, _, stderr = convert_cli(str(run_dir), "--format", "onnx", "--out", str(tmp_path))
    assert code == 2 and "tf2onnx cannot be imported with TensorFlow 2." in stderr
    assert list(tmp_path.iterdir()) == []


def test_parity_failure_writes_nothing(run_dir, tmp_path, monkeypatch):
    strict = dataclasses.replace(FORMATS["fp16"], parity_tolerance=1e-9)  # float16 weights move probabilities
    monkeypatch.setitem(FORMATS, "fp16", strict)
    code, stdout, stderr = convert_cli(str(run_dir), "--format", "fp16", "--out", str(tmp_path))
    assert code == 2 and "| fp16 | failed |" in stdout
    assert "disagrees with the Keras model" in stderr and "not written" in stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "option", [("--max-f1-drop", "nan"), ("--max-f1-drop", "-1"), ("--calibration-size", "0"), ("--qat-epochs", "0")]
)
def test_out_of_range_gate_and_calibration_options_are_usage_errors(run_dir, option):
    with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stderr(io.StringIO()) as err:
        main(["convert", str(run_dir), *option])
    assert exit_info.value.code == 2 and option[0] in err.getvalue()


def test_a_model_with_nan_scores_is_not_converted(run_dir, tmp_path, monkeypatch):
    from feredge.convert import converter

    monkeypatch.setattr(converter, "score_batches", lambda *args, **kwargs: np.full((4, 7), np.nan))
    code, _, stderr = convert_cli(str(run_dir), "--format", "fp32", "--out", str(tmp_path))
    assert code == 2 and "not all finite" in stderr and not list(tmp_path.glob("*.tflite"))


def test_nan_converted_scores_fail_the_gate():
    targets = np.array([0, 1, 1, 0])
    good = np.eye(2)[targets]
    result = compare(targets, good, np.full_like(good, np.nan), ("a", "b"), max_f1_drop=1.0)
    assert not result.passed and not result.to_dict()["finite_scores"]
    assert result.to_dict()["max_abs_prob_diff"] is None  # JSON has no NaN or Infinity


@pytest.mark.parametrize(
    ("options", "message"),
    [({"temperature": 0.0}, "within"), ({"calibrate": False, "temperature": 1.0}, "calibrate=False")],
)
def test_the_convert_api_refuses_what_the_cli_refuses(options, message):
    from feredge.convert.converter import ConvertOptions

    with pytest.raises(ConversionError, match=message):
        ConvertOptions(**options)


def test_qat_runs_one_epoch_and_reports_beside_ptq(run_dir, tmp_path):
    code, stdout, stderr = convert_cli(
        str(run_dir),
        "--format",
        "int8",
        "--qat",
        "--qat-epochs",
        "1",
        "--calibration-size",
        "16",
        "--out",
        str(tmp_path),
    )
    assert code == 0, stderr
    assert "| int8 | ok |" in stdout and "| int8 (qat) | ok |" in stdout
    qat = tmp_path / "model_int8_qat.tflite"
    metadata = read_tflite_metadata(qat.read_bytes())
    assert metadata.extra["qat_epochs"] == 1 and metadata.format == "tflite-int8"
    assert load_model(qat).metadata == metadata
    assert report(tmp_path / "model_int8_qat.report.json")["qat"]
    assert not report(tmp_path / "model_int8.report.json")["qat"]


def test_test_time_flip_can_be_switched_at_conversion(run_dir, tmp_path):
    for flag, expected in (("--test-time-flip", True), ("--no-test-time-flip", False)):
        out = tmp_path / flag
        code, _, stderr = convert_cli(str(run_dir), "--format", "fp32", "--out", str(out), flag)
        assert code == 0, stderr
        assert read_tflite_metadata((out / "model_fp32.tflite").read_bytes()).test_time_flip is expected


def test_measured_framing_is_stored_per_detector(run_dir, tmp_path):
    framing = ["--framing", "yunet=-0.05,0.02", "--framing", "haar=0.1"]
    code, _, stderr = convert_cli(str(run_dir), "--format", "fp32", "--out", str(tmp_path), *framing)
    assert code == 0, stderr
    metadata = read_tflite_metadata((tmp_path / "model_fp32.tflite").read_bytes())
    assert metadata.framing_for("yunet") == (-0.05, 0.02)
    assert metadata.framing_for("haar") == (0.1, 0.0)
    assert metadata.framing_for("blazeface") == (metadata.crop_margin, 0.0)


@pytest.mark.parametrize(
    ("framing", "message"), [("retina=0.1", "detector"), ("yunet=wide", "numbers"), ("yunet=0.1,0,3", "numbers")]
)
def test_bad_framing_is_a_usage_error(tmp_path, capsys, framing, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", str(tmp_path), "--framing", framing])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_out_of_range_framing_is_one_line(run_dir, tmp_path):
    code, _, stderr = convert_cli(str(run_dir), "--format", "fp32", "--out", str(tmp_path), "--framing", "yunet=2")
    assert code != 0 and "margin" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "model_fp32.tflite").exists()
