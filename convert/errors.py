"""Errors of the convert stage: all FeredgeErrors, so ``feredge convert`` reports them without a traceback."""

from __future__ import annotations

from feredge.edge.errors import DataError, FeredgeError, PartialFailure


class ConversionError(FeredgeError, RuntimeError):
    """A converter (TFLite, tf2onnx, tfmot, edgetpu_compiler) could not produce a usable artefact."""


class GateFailed(ConversionError):
    """A converted model lost more macro-F1 than allowed; it is kept only under a ``.REJECTED`` name."""


class PartialConversion(ConversionError, PartialFailure):
    """Some formats failed or were rejected while others passed: exit code 1, like any partial failure."""


class ParityError(ConversionError):
    """An export's probabilities differ from the Keras model's by more than its format tolerates."""


class FormatError(FeredgeError, ValueError):
    """An unknown format, or an option none of the chosen formats takes."""


class CalibrationError(DataError):
    """Calibration (and QAT training) images are missing, unreadable or of other classes than the model's."""


class CheckDataError(DataError):
    """The accuracy gate has no data, or the data's classes do not match the model's."""
