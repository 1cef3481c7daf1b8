"""One model that averages several trained models inside one graph.

Users who prefer accuracy to speed get a single artefact that converts, gates and ships like any
other model: the members' softmax outputs are averaged by a layer, so the runtime needs no notion of
an ensemble and the int8 converter sees one graph. Members must share the input contract and labels;
mixing contracts would feed at least one member pixels it was never trained on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from feredge.edge.atomic import atomic_path, atomic_write_text
from feredge.edge.errors import FeredgeError
from feredge.train.keras_io import MODEL_FILE, SourceModel, load_source

log = logging.getLogger(__name__)


class EnsembleError(FeredgeError):
    """Members that cannot be averaged: too few, or different labels or input contracts."""


def _contract(source: SourceModel) -> tuple[Any, ...]:
    meta = source.metadata
    return meta.labels, meta.input_size, meta.channels, meta.normalization, meta.photometric


def check_members(sources: Sequence[SourceModel]) -> None:
    if len(sources) < 2:
        raise EnsembleError(f"an ensemble needs at least two members, got {len(sources)}")
    first = _contract(sources[0])
    for source in sources[1:]:
        if _contract(source) != first:
            raise EnsembleError(
                f"{source.path}: labels/input contract {_contract(source)} differ from "
                f"{sources[0].path}'s {first}; members must share labels, size, channels, normalization "
                "and photometric normalization"
            )


def build_ensemble_model(sources: Sequence[SourceModel]):
    """A functional model whose output is the mean of the members' probability outputs."""
    import tf_keras as keras

    check_members(sources)
    inputs = keras.Input(sources[0].model.input_shape[1:], name="face")
    outputs = []
    for index, source in enumerate(sources):
        member = source.model
        member._name = f"member{index}"  # nested models need unique names in one graph
        outputs.append(member(inputs))
    averaged = keras.layers.Average(name="ensemble_mean", dtype="float32")(outputs)
    return keras.Model(inputs, averaged, name="feredge_ensemble")


def build_ensemble(members: Sequence[str | Path], out: str | Path) -> Path:
    """Write a run folder (model.keras + metadata.json) that ``feredge convert`` takes like any run."""
    out = Path(out)
    if (out / MODEL_FILE).exists():
        raise EnsembleError(f"{out} already holds a model; choose another --out")
    sources = [load_source(member) for member in members]
    model = build_ensemble_model(sources)
    first = sources[0].metadata
    metadata = first.replace(
        backbone=f"ensemble({', '.join(s.metadata.backbone for s in sources)})",
        test_time_flip=all(s.metadata.test_time_flip for s in sources),
        extra={**first.extra, "members": [str(s.path) for s in sources]},
    )
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / MODEL_FILE) as tmp:
        model.save(str(tmp))
    metadata.save(out / "metadata.json")
    atomic_write_text(out / "ensemble.json", json.dumps({"members": [str(m) for m in members]}, indent=2) + "\n")
    log.info("ensemble of %d members, %d parameters -> %s", len(sources), model.count_params(), out)
    return out
