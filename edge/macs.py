"""Multiply-accumulates per face, counted from a ``.tflite`` graph: compute that does not depend on this CPU.

A millisecond measured on a Xeon with int8 dot-product instructions hides what a Cortex-A72 without
them will pay; the MAC count does not. Only the interpreter's op and tensor details are read (no
TensorFlow), for one invocation at the model's own input batch (1: one face):

- ``CONV_2D``: out_h * out_w * out_c * k_h * k_w * in_c (in_c from the filter, so grouped convolutions count right);
- ``DEPTHWISE_CONV_2D``: out_h * out_w * out_c * k_h * k_w;
- ``FULLY_CONNECTED``: in * out per input row.

Every other op (pooling, means, adds, activations, softmax, reshapes) is left out and listed in
``ignored``: they are memory-bound and small beside the convolutions in these networks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from feredge.edge.decode import check_model_file
from feredge.edge.errors import ModelLoadError
from feredge.edge.tflite_runner import create_interpreter

COUNTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
# The node a delegate (XNNPACK) adds for the ops it takes over; those ops stay listed and are counted.
DELEGATE = "DELEGATE"


@dataclass(frozen=True)
class MacCount:
    """MACs of one invocation, per counted op kind, and how many ops of each other kind were left out."""

    total: int
    by_op: dict[str, int] = field(default_factory=dict)
    ignored: dict[str, int] = field(default_factory=dict)

    @property
    def millions(self) -> float:
        return self.total / 1e6

    def as_dict(self) -> dict[str, object]:
        return {"macs": self.total, "by_op": dict(self.by_op), "ignored_ops": dict(self.ignored)}


def count_macs(model: str | Path | bytes, name: str | None = None) -> MacCount:
    """The MACs of one invocation of a ``.tflite`` model (a path or its bytes); ``ModelLoadError`` for a
    file the interpreter cannot load, or a counted op whose tensors do not have the shapes it must."""
    if not isinstance(model, bytes | bytearray):
        path = Path(model)
        check_model_file(path, "model")
        name, model = name or str(path), path.read_bytes()
    interpreter, _ = create_interpreter(bytes(model), 1, name or "model")
    shapes = {t["index"]: tuple(int(d) for d in t["shape"]) for t in interpreter.get_tensor_details()}
    by_op: Counter[str] = Counter()
    ignored: Counter[str] = Counter()
    for op in interpreter._get_ops_details():  # the only public-enough view of the graph's nodes
        kind = op["op_name"]
        if kind == DELEGATE:
            continue
        if kind not in COUNTED:
            ignored[kind] += 1
            continue
        try:
            by_op[kind] += _op_macs(kind, [shapes[i] for i in op["inputs"][:2]], shapes[op["outputs"][0]])
        except (KeyError, ValueError, IndexError) as exc:
            raise ModelLoadError(f"{name}: cannot count the MACs of its {kind} op {op['index']} ({exc})") from exc
    return MacCount(sum(by_op.values()), dict(by_op), dict(ignored))


def _op_macs(kind: str, inputs: list[tuple[int, ...]], output: tuple[int, ...]) -> int:
    data, weights = inputs
    if kind == "FULLY_CONNECTED":
        units, depth = weights
        rows = int(np.prod(data)) // depth
        return rows * depth * units
    _, out_h, out_w, out_c = output
    if kind == "CONV_2D":
        _, k_h, k_w, in_c = weights
        return out_h * out_w * out_c * k_h * k_w * in_c
    _, k_h, k_w, _ = weights  # DEPTHWISE_CONV_2D: (1, k_h, k_w, out_c)
    return out_h * out_w * out_c * k_h * k_w
