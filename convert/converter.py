"""One float model -> the requested artefacts, each checked by the accuracy gate before it gets its name.

An artefact is first written to a scratch folder and loaded by the real edge runtime
(``feredge.edge.model.load_model``) for the gate; only then is it written atomically under its final
name, or, when rejected, under a ``.REJECTED`` name. A rejection never deletes a passing artefact of an
earlier run in the same folder: it is kept, and the report and summary say it is not from this run.
A failing format is reported and the next one runs.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from feredge.convert.data import ConversionData, calibration_sample, representative_dataset
from feredge.convert.edgetpu import compile_edgetpu
from feredge.convert.embed import embed_metadata, embedded_metadata
from feredge.convert.errors import CalibrationError, ConversionError, GateFailed, ParityError, PartialConversion
from feredge.convert.formats import BuildInput, Format, variants
from feredge.convert.gate import GateResult, compare, report_markdown, write_report
from feredge.convert.onnx_export import DEFAULT_OPSET
from feredge.convert.qat import quantization_aware
from feredge.edge.artifacts import QAT_VARIANT
from feredge.edge.atomic import atomic_write_bytes
from feredge.edge.calibration import cross_fitted_calibration, given_temperature_calibration
from feredge.edge.dataset import Split, score_batches
from feredge.edge.errors import FeredgeError
from feredge.edge.metadata import TEMPERATURE_RANGE, ModelMetadata, is_real
from feredge.train.config import TrainConfig
from feredge.train.keras_io import SIZE_BASIS, SourceModel

log = logging.getLogger(__name__)

OK, REJECTED, FAILED = "ok", "rejected", "failed"


@dataclass(frozen=True)
class ConvertOptions:
    out: str | Path | None = None  # None: beside the source model
    max_f1_drop: float = 0.01
    calibration_size: int = 300
    qat: bool = False
    qat_epochs: int = 2
    edgetpu: bool = False
    opset: int = DEFAULT_OPSET
    threads: int | None = None
    calibrate: bool = True  # fit a temperature on the check set, as the runtime scores the artefact
    temperature: float | None = None  # store this one instead of fitting (still scored on the check set)

    def __post_init__(self) -> None:
        """The API refuses what the CLI refuses, before any conversion work."""
        if self.temperature is None:
            return
        if not self.calibrate:
            raise ConversionError("a given temperature is a calibration: it cannot go with calibrate=False")
        low, high = TEMPERATURE_RANGE
        if not is_real(self.temperature) or not low <= self.temperature <= high:
            raise ConversionError(f"temperature must be a number within [{low}, {high}], got {self.temperature!r}")


@dataclass
class Outcome:
    name: str  # "int8", "int8 (qat)"
    status: str  # ok | rejected | failed
    path: Path | None = None
    reason: str = ""
    report: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


class Converter:
    """Converts one source model to many formats; the float model's scores are computed once."""

    def __init__(self, source: SourceModel, data: ConversionData, options: ConvertOptions) -> None:
        self.source, self.data, self.options = source, data, options
        self.spec = source.metadata.preprocess_spec()
        self.out = Path(options.out) if options.out else source.path.parent
        self.config = source.config or TrainConfig(data="")
        self.float_scores = score_batches(
            source.model.predict_on_batch, data.check, self.spec, source.metadata.test_time_flip
        )
        if not np.isfinite(self.float_scores).all():
            raise ConversionError(
                f"{source.path}: the model's scores on the check faces are not all finite (NaN or infinite "
                "weights?); nothing to convert"
            )
        self._calibration: Split | None = None
        self._qat_model = None

    def run(self, formats: Sequence[Format]) -> list[Outcome]:
        self.out.mkdir(parents=True, exist_ok=True)
        return [self._one(fmt, variant) for fmt in formats for variant in variants(fmt, self.options.qat)]

    def _one(self, fmt: Format, variant: str) -> Outcome:
        name = fmt.artifact.display_name(variant)
        try:
            data, metadata, seconds = self._build(fmt, variant)
            outcome = self._gate_and_write(fmt, variant, data, metadata, seconds)
        except FeredgeError as exc:
            log.error("%s: failed: %s", name, exc)
            return Outcome(name, FAILED, reason=str(exc))
        if outcome.status == OK and self.options.edgetpu and "edgetpu" in fmt.options:
            try:
                outcome.notes.append(f"Edge TPU: {compile_edgetpu(outcome.path, metadata)}")
            except ConversionError as exc:
                outcome.notes.append(f"Edge TPU: not compiled: {exc}")
            log.info("%s: %s", name, outcome.notes[-1])
        return outcome

    def _build(self, fmt: Format, variant: str) -> tuple[bytes, ModelMetadata, float]:
        start = time.perf_counter()
        metadata = self.source.metadata.replace(
            format=fmt.artifact.metadata_format, source_model=str(self.source.path), calibration_size=0, temperature=1.0
        )
        model, representative = self.source.model, None
        if fmt.needs_calibration:
            sample = self._calibration_sample(fmt)
            representative = representative_dataset(sample, self.spec)
            metadata = metadata.replace(calibration_size=len(sample))
        if variant == QAT_VARIANT:
            model = self._qat()
            metadata = metadata.replace(extra={**metadata.extra, "qat_epochs": self.options.qat_epochs})
        data = fmt.build(BuildInput(model, self.spec, metadata, representative, self.options.opset))
        return data, metadata, time.perf_counter() - start

    def _calibration_sample(self, fmt: Format) -> Split:
        if self.data.train is None:
            raise CalibrationError(f"{fmt.name} needs calibration images: {self.data.train_missing}")
        if self._calibration is None:
            self._calibration = calibration_sample(self.data.train, self.options.calibration_size, self.config.seed)
        return self._calibration

    def _qat(self):
        if self._qat_model is None:
            self._qat_model = quantization_aware(
                self.source.model, self.data.train, self.spec, self.options.qat_epochs, self.config
            )
        return self._qat_model

    def _gate_and_write(
        self, fmt: Format, variant: str, data: bytes, metadata: ModelMetadata, convert_seconds: float
    ) -> Outcome:
        from feredge.edge.model import load_model

        name = fmt.artifact.display_name(variant)
        final = self.out / fmt.artifact.artefact_name(self.source.stem, variant)
        rejected = self.out / fmt.artifact.rejected_name(self.source.stem, variant)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=".feredge-check-", dir=self.out) as scratch:
            probe = Path(scratch) / final.name
            probe.write_bytes(data)
            runtime = load_model(probe, threads=self.options.threads)
            # EmotionModel.predict flip-averages by itself when the embedded metadata asks for it. The network
            # is gated and calibrated as it is (tau 0): the float model's scores keep the training prior too,
            # and the temperature belongs to the network, the prior correction to the deployment.
            scores = score_batches(partial(runtime.predict, prior_tau=0.0), self.data.check, self.spec)
        result = compare(self.data.check.targets, self.float_scores, scores, metadata.labels, self.options.max_f1_drop)
        calibration = None  # NaN scores fail the gate; no temperature fits them
        if result.finite and self.options.temperature is not None:
            calibration = given_temperature_calibration(scores, self.data.check.targets, self.options.temperature)
        elif result.finite and self.options.calibrate:
            calibration = cross_fitted_calibration(scores, self.data.check.targets)
        if calibration is not None:
            metadata = metadata.replace(temperature=round(calibration["temperature"], 4))
            data = embed_metadata(data, fmt.artifact.runtime, metadata)
        check_seconds = time.perf_counter() - start
        if fmt.parity_tolerance is not None and result.finite and result.max_abs_prob_diff > fmt.parity_tolerance:
            raise ParityError(
                f"{final.name} disagrees with the Keras model: max |probability difference| "
                f"{result.max_abs_prob_diff:.2e} > {fmt.parity_tolerance:.0e}; not written"
            )
        status = OK if result.passed else REJECTED
        path = final if result.passed else rejected
        atomic_write_bytes(path, data)
        earlier = None
        if result.passed and rejected.exists():  # our own rejected build, superseded
            rejected.unlink()
            log.info("%s: removed %s from an earlier conversion", name, rejected)
        elif not result.passed and final.exists():  # a model the user may rely on: never ours to delete
            earlier = f"{final.name} is from an earlier conversion that passed the gate, not from this run; kept"
            log.warning("%s: %s", name, earlier)
        sealed = embedded_metadata(data, fmt.artifact.runtime) or metadata  # with the checksum the file carries
        report = self._report(fmt, variant, status, path, data, sealed, convert_seconds, check_seconds, result)
        report["calibration"] = calibration
        report["earlier_artefact"] = str(final) if earlier else None
        write_report(report, self.out / fmt.artifact.report_stem(self.source.stem, variant))
        log.info(
            "%s: %s %s, %.1f KiB (%.3fx the float32 weights), converted in %.1f s",
            name,
            status,
            path,
            len(data) / 1024,
            report["size_ratio"],
            convert_seconds,
        )
        reason = ""
        if not result.passed:
            why = f"macro-F1 drop {result.f1_drop:.4f} > {result.max_f1_drop:.4f}" if result.finite else "NaN scores"
            reason = f"{why}; kept as {path.name}"
            reason += f"; {earlier}" if earlier else ""
        return Outcome(name, status, path, reason, report)

    def _report(
        self,
        fmt: Format,
        variant: str,
        status: str,
        path: Path,
        data: bytes,
        metadata: ModelMetadata,
        convert_seconds: float,
        check_seconds: float,
        result: GateResult,
    ) -> dict[str, Any]:
        return {
            "name": fmt.artifact.display_name(variant),
            "format": fmt.name,
            "qat": variant == QAT_VARIANT,
            "status": status,
            "artefact": str(path),
            "source_model": str(self.source.path),
            "size_bytes": len(data),
            "float_weight_bytes": self.source.float_bytes,
            "size_ratio": len(data) / self.source.float_bytes,
            "size_ratio_basis": SIZE_BASIS,
            "convert_seconds": convert_seconds,
            "check_seconds": check_seconds,
            "check_data": self.data.check_source,
            "metadata": metadata.to_dict(),
            **result.to_dict(),
        }


def convert(
    source: SourceModel, data: ConversionData, formats: Sequence[Format], options: ConvertOptions
) -> list[Outcome]:
    """Convert ``source`` to every format (and QAT variant), gating each; never raises for one format."""
    return Converter(source, data, options).run(formats)


def format_summary(outcomes: Sequence[Outcome]) -> str:
    """Each artefact's full report, then one Markdown table with the status of every format."""
    parts = [report_markdown(o.report) for o in outcomes if o.report]
    rows = [
        "| format | status | size | ratio | macro-F1 | drop | agreement | file / reason |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for o in outcomes:
        r = o.report
        if r is None:
            rows.append(f"| {o.name} | {o.status} | | | | | | {o.reason} |")
            continue
        detail = "; ".join([o.reason or o.path.name, *o.notes])
        rows.append(
            f"| {o.name} | {o.status} | {r['size_bytes'] / 1024:.1f} KiB | {r['size_ratio']:.3f} | "
            f"{r['converted']['macro_f1']:.4f} | {r['macro_f1_drop']:+.4f} | {r['top1_agreement']:.4f} | "
            f"{detail} |"
        )
    return "\n".join([*parts, "## summary", "", *rows]) + "\n"


def raise_for_outcomes(outcomes: Sequence[Outcome]) -> None:
    """PartialConversion when some formats passed (exit 1); else GateFailed when the only problems are
    rejections, ConversionError when anything failed (exit 2)."""
    bad = [o for o in outcomes if o.status != OK]
    if not bad:
        return
    message = "; ".join(f"{o.name} {o.status}: {o.reason}" for o in bad)
    if len(bad) < len(outcomes):
        raise PartialConversion(f"{len(bad)} of {len(outcomes)} formats not written: {message}")
    if all(o.status == REJECTED for o in bad):
        raise GateFailed(f"accuracy gate: {message}")
    raise ConversionError(message)
