"""One model that averages several trained models inside one graph.

Users who prefer accuracy to speed get a single artefact that converts, gates and ships like any
other model: the members' softmax outputs are averaged by a layer, so the runtime needs no notion of
an ensemble and the int8 converter sees one graph. Members must share labels, input size and
normalization. Gray members may differ in photometric normalization (raw pixels and CLAHE, say): the
ensemble then takes the views stacked as channels (``photometric: none+clahe``) and hands each member
its own channel, so every member still sees exactly the pixels it was trained on.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from feredge.edge.atomic import atomic_path, atomic_write_text
from feredge.edge.errors import FeredgeError
from feredge.train.keras_io import MODEL_FILE, SourceModel, load_source

log = logging.getLogger(__name__)


class EnsembleError(FeredgeError):
    """Members that cannot be averaged: too few, or different labels or input contracts."""


def _contract(source: SourceModel, mixed: bool = False) -> tuple[Any, ...]:
    """What members must share; members of ``mixed`` views share all but channels and photometric."""
    meta = source.metadata
    if mixed:
        return meta.labels, meta.input_size, meta.normalization
    return meta.labels, meta.input_size, meta.channels, meta.normalization, meta.photometric


def ensemble_views(sources: Sequence[SourceModel]) -> tuple[str, ...]:
    """The photometric views the ensemble's input stacks, in first-member order."""
    return tuple(dict.fromkeys(source.metadata.photometric for source in sources))


def check_members(sources: Sequence[SourceModel], *, mixed_views: bool = False) -> None:
    """Raise unless the members can share one input: ``mixed_views`` lets gray members differ in photometric."""
    if len(sources) < 2:
        raise EnsembleError(f"an ensemble needs at least two members, got {len(sources)}")
    mixed = mixed_views and len(ensemble_views(sources)) > 1
    first = _contract(sources[0], mixed)
    for source in sources:
        if mixed and source.metadata.channels != 1:  # colour, or views already stacked (channels = views)
            raise EnsembleError(
                f"{source.path}: members of different photometric normalizations must be gray single-view "
                f"models (channels 1), not channels {source.metadata.channels} / {source.metadata.photometric!r}"
            )
        if _contract(source, mixed) != first:
            shared = (
                "size and normalization" if mixed else "size, channels, normalization and photometric normalization"
            )
            raise EnsembleError(
                f"{source.path}: labels/input contract {_contract(source, mixed)} differ from "
                f"{sources[0].path}'s {first}; members must share labels, {shared}"
            )


def runtime_flip(sources: Sequence[SourceModel], flip_all: bool = False) -> bool:
    """Whether the runtime flip-averages the ensemble: when every member is served that way, or ``flip_all``.

    When members disagree, each flip-averaged member mirrors its own input inside the graph, so every
    member is scored exactly as it is served alone, and the others pay for no mirror image.
    """
    return flip_all or all(source.metadata.test_time_flip for source in sources)


def build_ensemble_model(sources: Sequence[SourceModel], flip_all: bool = False):
    """A functional model whose output is the mean of the members' probability outputs.

    With members of several photometric views the input has one channel per view, and a fixed 1x1
    convolution (a one-hot kernel; in int8 its output is rounded to its own scale) picks each
    member's channel.
    """
    import numpy as np
    import tf_keras as keras

    check_members(sources, mixed_views=True)
    views = ensemble_views(sources)
    size = sources[0].metadata.input_size
    inputs = keras.Input((size, size, len(views)) if len(views) > 1 else sources[0].model.input_shape[1:], name="face")
    selected = {views[0]: inputs}
    if len(views) > 1:
        for index, view in enumerate(views):
            select = keras.layers.Conv2D(1, 1, use_bias=False, trainable=False, name=f"view_{view}")
            selected[view] = select(inputs)
            select.set_weights([np.eye(len(views), dtype=np.float32)[:, index].reshape(1, 1, len(views), 1)])
    mirror_in_graph = not runtime_flip(sources, flip_all)
    mirrored: dict[str, Any] = {}
    outputs = []
    for index, source in enumerate(sources):
        member = source.model
        member._name = f"member{index}"  # nested models need unique names in one graph
        view = source.metadata.photometric
        scores = member(selected[view])
        if mirror_in_graph and source.metadata.test_time_flip:
            if view not in mirrored:
                mirrored[view] = _mirror(selected[view], size, name=f"mirror_{view}")
            scores = keras.layers.Average(name=f"member{index}_flip_mean")([scores, member(mirrored[view])])
        outputs.append(scores)
    averaged = keras.layers.Average(name="ensemble_mean", dtype="float32")(outputs)
    return keras.Model(inputs, averaged, name="feredge_ensemble")


def _mirror(x, size: int, name: str):
    """Left-right mirror of (N, S, S, C) images from built-in layers only (the file loads anywhere):
    width to the last axis, a fixed anti-diagonal matrix, and back."""
    import numpy as np
    import tf_keras as keras

    flip = keras.layers.Dense(size, use_bias=False, trainable=False, name=name)
    x = keras.layers.Permute((1, 3, 2), name=f"{name}_to_width")(x)
    x = flip(x)
    flip.set_weights([np.eye(size, dtype=np.float32)[::-1]])
    return keras.layers.Permute((1, 3, 2), name=f"{name}_back")(x)


def shared_framing(sources: Sequence[SourceModel]) -> tuple[float, dict[str, dict[str, float]]]:
    """The crop margin and per-detector framing the ensemble records: what every member agrees on.

    Where members were framed differently, no one member's measurement describes the ensemble, so the
    margin falls back to the members' mean and a detector's entry is dropped; measure it with
    ``feredge evaluate-photos`` and record it with ``feredge convert --framing``.
    """
    margins = [source.metadata.crop_margin for source in sources]
    margin = margins[0] if len(set(margins)) == 1 else round(sum(margins) / len(margins), 4)
    detectors = dict.fromkeys(d for source in sources for d in source.metadata.framing)
    framing = {}
    for detector in detectors:  # compared as served: an entry equal to another member's default agrees
        frames = {source.metadata.framing_for(detector) for source in sources}
        if len(frames) == 1:
            (frame,) = frames
            framing[detector] = {"margin": frame[0], "offset": frame[1]}
    dropped = [d for d in detectors if d not in framing]
    if len(set(margins)) > 1 or dropped:
        log.warning(
            "members are framed differently (crop margins %s%s); the ensemble records margin %s: measure its "
            "framing with feredge evaluate-photos and set it with feredge convert --framing",
            margins,
            f", framing for {', '.join(dropped)}" if dropped else "",
            margin,
        )
    return margin, framing


def build_weight_average_model(sources: Sequence[SourceModel], mix: Sequence[float]):
    """One network whose weights are the ``mix``-weighted mean of the members' (a "model soup").

    It costs what one member costs. Averaging only makes sense between runs that share an ancestor
    (one fine-tuned from the other, say): there it trades the members' strengths smoothly, as
    WiSE-FT (Wortsman et al., 2022) found between a model and its fine-tuned copy.
    """
    import tf_keras as keras

    check_members(sources)
    members = [source.model.get_weights() for source in sources]
    shapes = [[w.shape for w in weights] for weights in members]
    for source, shape in zip(sources[1:], shapes[1:], strict=True):
        if shape != shapes[0]:
            raise EnsembleError(
                f"{source.path}: its weights differ in shape from {sources[0].path}'s; averaging weights needs "
                "one architecture (same backbone and width); average outputs instead (without --weight-average)"
            )
    model = keras.models.clone_model(sources[0].model)
    model.set_weights([sum(m * w for m, w in zip(mix, tensors, strict=True)) for tensors in zip(*members, strict=True)])
    return model


def check_mix(mix: Sequence[float] | None, members: int) -> tuple[float, ...]:
    """The members' shares of a weight average, summing to 1 (equal shares when None).

    A NaN or infinite share (or shares whose sum overflows) would make every weight NaN or 0, and
    ensemble.json invalid JSON, without any error, so those are refused with the negative ones.
    """
    if mix is None:
        return (1.0 / members,) * members
    finite = all(math.isfinite(m) and m >= 0 for m in mix) and math.isfinite(sum(mix))
    if len(mix) != members or not finite or sum(mix) <= 0:
        raise EnsembleError(
            f"--mix needs {members} finite non-negative shares, one per member, not all 0; got {list(mix)}"
        )
    return tuple(m / sum(mix) for m in mix)


def build_ensemble(
    members: Sequence[str | Path],
    out: str | Path,
    *,
    weight_average: bool = False,
    mix: Sequence[float] | None = None,
    flip_all: bool = False,
) -> Path:
    """Write a run folder (model.keras + metadata.json) that ``feredge convert`` takes like any run.

    By default the members' outputs are averaged in one graph; ``weight_average`` averages their
    weights into one network instead, in the shares ``mix``. ``flip_all`` flip-averages every member at
    run time, members served without the mirror too (twice their cost, for a little accuracy)."""
    out = Path(out)
    if (out / MODEL_FILE).exists():
        raise EnsembleError(f"{out} already holds a model; choose another --out")
    if mix is not None and not weight_average:
        raise EnsembleError("--mix sets the shares of --weight-average; outputs are averaged equally")
    shares = check_mix(mix, len(members))  # before the members load: that takes TensorFlow and seconds
    sources = [load_source(member) for member in members]
    model = build_weight_average_model(sources, shares) if weight_average else build_ensemble_model(sources, flip_all)
    first = sources[0].metadata
    kind = "weight-average" if weight_average else "ensemble"
    mixed = {"mix": list(shares)} if weight_average else {}
    views = ensemble_views(sources)
    margin, framing = shared_framing(sources)
    metadata = first.replace(
        backbone=f"{kind}({', '.join(s.metadata.backbone for s in sources)})",
        photometric="+".join(views),
        channels=len(views) if len(views) > 1 else first.channels,
        test_time_flip=runtime_flip(sources, flip_all),
        crop_margin=margin,
        framing=framing,
        extra={"members": [str(s.path) for s in sources], **mixed},
    )
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / MODEL_FILE) as tmp:
        model.save(str(tmp))
    metadata.save(out / "metadata.json")
    record = {"members": [str(m) for m in members], "mode": kind, **mixed}
    atomic_write_text(out / "ensemble.json", json.dumps(record, indent=2) + "\n")
    log.info("%s of %d members, %d parameters -> %s", kind, len(sources), model.count_params(), out)
    return out
