"""Errors of the benchmark stage: FeredgeErrors, so ``feredge bench`` reports them without a traceback."""

from __future__ import annotations

from feredge.edge.errors import FeredgeError


class BenchError(FeredgeError, RuntimeError):
    """A benchmark cannot start (bad options, no models) or a measurement process failed."""


class PeerError(BenchError):
    """A requested peer is unknown or not installed."""
