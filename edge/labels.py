"""Label sets and folder-name aliases: the one place that decides class order."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from feredge.edge.errors import LabelError

# A classifier's class count: real ones have a handful; a model or file claiming more is corrupt or hostile,
# and checking a million names (each printed in any error) would hang the caller.
MAX_LABELS = 1000

# FER2013's own index order (the CSV ``emotion`` column): changing it breaks every FER2013 model.
FER2013 = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

PRESETS: dict[str, tuple[str, ...]] = {
    "fer2013": FER2013,
    "fer7": FER2013,
    "fer5": ("angry", "happy", "surprise", "fear", "neutral"),
    "pain6": ("angry", "disgust", "fear", "happy", "pain", "sad"),
}

ALIASES = {
    "anger": "angry",
    "happiness": "happy",
    "sadness": "sad",
    "surprised": "surprise",
    "fearful": "fear",
    "disgusted": "disgust",
}


def canonical(name: str) -> str:
    """Map a folder or user label name to its canonical form (``Anger`` -> ``angry``)."""
    key = name.strip().lower()
    if not key:
        raise LabelError("empty label name")
    return ALIASES.get(key, key)


def resolve_labels(spec: str | Iterable[str]) -> tuple[str, ...]:
    """Resolve a preset name (``fer2013``), a comma list or a sequence into canonical labels.

    At most ``MAX_LABELS`` names, counted before any is mapped; the check is linear in their number.
    """
    if isinstance(spec, str):
        preset = PRESETS.get(spec.strip().lower())
        if preset is not None:
            return preset
        items = spec.split(",")
    else:
        items = list(spec)
    if len(items) > MAX_LABELS:
        raise LabelError(f"{len(items)} labels; at most {MAX_LABELS} are supported")
    labels = tuple(canonical(str(item)) for item in items if str(item).strip())
    if not labels:
        raise LabelError(f"no labels in {spec!r:.80}")
    dupes = sorted(label for label, count in Counter(labels).items() if count > 1)
    if dupes:
        shown = ", ".join(dupes[:10]) + (f" and {len(dupes) - 10} more" if len(dupes) > 10 else "")
        raise LabelError(f"duplicate labels after alias mapping: {shown}")
    return labels
