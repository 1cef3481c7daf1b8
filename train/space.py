"""The search space of ``feredge tune``: a TOML table per ``feredge train`` option, checked against that option.

Each table names a train option (``weight_decay`` or ``weight-decay``) and gives either ``choices = [...]`` or
``low``/``high`` with optional ``log = true`` or ``step``. Every value goes through the option's own argparse
type and choices, so the train CLI stays the one source of truth for what a value may be: the caller hands
those options in (``feredge.cli.train.train_options``; the library imports no CLI). Optuna is only touched in
``Param.suggest``, with the trial it is handed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from feredge.edge.errors import FeredgeError

DEFAULT_SPACE = "tune_space.toml"  # package data of feredge.train
RANGE_KEYS = {"low", "high", "log", "step"}


class SpaceError(FeredgeError, ValueError):
    """A search-space file is unreadable, names an unknown option or gives a value the option refuses."""


@dataclass(frozen=True)
class Param:
    """One searched option: categorical ``choices``, or a float/int range (``log`` or ``step`` spaced)."""

    name: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False

    def suggest(self, trial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def to_json(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "log": self.log, "step": self.step, "int": self.integer}

    def describe(self) -> str:
        if self.choices is not None:
            return f"{self.name} in {{{', '.join(map(str, self.choices))}}}"
        spacing = " log" if self.log else f" step {self.step:g}" if self.step else ""
        return f"{self.name} in [{self.low:g}, {self.high:g}]{spacing}"


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[Param, ...]
    source: str
    # ``feredge train``'s options by destination, which the space was checked against
    options: Mapping[str, argparse.Action] = field(default_factory=dict, compare=False, repr=False)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def suggest(self, trial) -> dict[str, Any]:
        return {p.name: p.suggest(trial) for p in self.params}

    def to_json(self) -> dict[str, Any]:
        """A canonical, JSON-round-tripped form: what the study stores and compares."""
        return json.loads(json.dumps({p.name: p.to_json() for p in self.params}, sort_keys=True))


def load_space(path: str | Path | None = None, *, options: Mapping[str, argparse.Action]) -> SearchSpace:
    """The space in ``path``, or the packaged default; every entry checked against the train option it names."""
    if path is None:
        text, source = resources.files("feredge.train").joinpath(DEFAULT_SPACE).read_text(), DEFAULT_SPACE
    else:
        try:
            text, source = Path(path).read_text(), str(path)
        except OSError as exc:
            raise SpaceError(f"cannot read search space {path}: {exc.strerror or exc}") from exc
    return parse_space(text, source, options=options)


def parse_space(text: str, source: str = "space", *, options: Mapping[str, argparse.Action]) -> SearchSpace:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    try:
        tables = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpaceError(f"{source}: not valid TOML: {exc}") from exc
    params = []
    for key, table in tables.items():
        name = key.replace("-", "_")
        if name not in options:
            raise SpaceError(
                f"{source}: unknown option {key!r}; a space may search these `feredge train` options: "
                f"{', '.join(sorted(options))}"
            )
        if not isinstance(table, dict):
            raise SpaceError(f"{source}: {key} must be a table: [{key}] with choices = [...] or low/high")
        params.append(_param(name, table, options[name], f"{source}: [{key}]"))
    if not params:
        raise SpaceError(f"{source}: the space searches no option")
    return SearchSpace(tuple(params), source, options)


def _param(name: str, table: dict[str, Any], action: argparse.Action, where: str) -> Param:
    unknown = sorted(set(table) - RANGE_KEYS - {"choices"})
    if unknown:
        raise SpaceError(f"{where}: unknown key(s) {', '.join(unknown)}; use choices, or low, high, log, step")
    flag = action.nargs == 0  # store_true: a choice between true and false
    if "choices" in table:
        if set(table) != {"choices"}:
            raise SpaceError(f"{where}: give either choices or low/high, not both")
        values = table["choices"]
        if not isinstance(values, list) or not values:
            raise SpaceError(f"{where}: choices must be a non-empty list")
        checked = tuple(_check_choice(v, action, flag, where) for v in values)
        if len(set(checked)) != len(checked):
            raise SpaceError(f"{where}: choices repeat a value")
        return Param(name, choices=checked)
    if flag or action.choices is not None or action.type is None:
        allowed = "true, false" if flag else ", ".join(map(str, action.choices or [])) or "any text"
        raise SpaceError(f"{where}: this option takes choices = [...] (allowed: {allowed}), not a range")
    if not {"low", "high"} <= set(table):
        raise SpaceError(f"{where}: a range needs low and high")
    low, high = (_convert(table[k], action, where) for k in ("low", "high"))
    integer = isinstance(low, int)
    log, step = table.get("log", False), table.get("step")
    if not isinstance(log, bool):
        raise SpaceError(f"{where}: log must be true or false")
    if not low < high:
        raise SpaceError(f"{where}: low must be below high (got {low} and {high})")
    if log and low <= 0:
        raise SpaceError(f"{where}: a log range needs low > 0")
    if step is not None:
        if log:
            raise SpaceError(f"{where}: give log or step, not both")
        if isinstance(step, bool) or not isinstance(step, int | float) or step <= 0 or (integer and step != int(step)):
            raise SpaceError(f"{where}: step must be a positive {'whole ' if integer else ''}number")
    return Param(name, low=low, high=high, log=log, step=step, integer=integer)


def _check_choice(value: Any, action: argparse.Action, flag: bool, where: str) -> Any:
    if flag:
        if not isinstance(value, bool):
            raise SpaceError(f"{where}: a switch takes choices of true and false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise SpaceError(f"{where}: choice {value!r} is not a text or a number")
    value = _convert(value, action, where) if action.type is not None else str(value)
    if action.choices is not None and value not in action.choices:
        raise SpaceError(f"{where}: {value!r} is not one of {', '.join(map(str, action.choices))}")
    return value


def _convert(value: Any, action: argparse.Action, where: str) -> Any:
    """``value`` through the option's argparse type, exactly as the command line would parse it."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise SpaceError(f"{where}: {value!r} is not a number")
    try:
        return action.type(str(value))
    except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
        raise SpaceError(f"{where}: {value!r} is not accepted by --{action.dest.replace('_', '-')}: {exc}") from exc
