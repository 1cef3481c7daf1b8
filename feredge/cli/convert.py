"""``feredge convert MODEL_OR_RUN_DIR --formats int8,fp16,onnx``: gated edge artefacts with metadata inside."""

from __future__ import annotations

import argparse
import logging

from feredge.cli.options import add_labels_option, add_prior_tau_option, add_threads_option, checked_type, positive_int
from feredge.convert.formats import FORMATS, check_options, parse_formats
from feredge.edge.detectors import DETECTORS
from feredge.edge.errors import FeredgeError
from feredge.edge.preprocess import NORMALIZATIONS

log = logging.getLogger(__name__)
temperature_value = checked_type(float, "a temperature from 0.01 to 100", lambda v: 0.01 <= v <= 100)
f1_drop_value = checked_type(float, "a macro-F1 drop from 0 to 1", lambda v: 0 <= v <= 1)


def framing_entry(text: str) -> tuple[str, dict[str, float]]:
    """``DETECTOR=MARGIN[,OFFSET]`` -> (detector, {"margin", "offset"}); ranges are checked by the metadata."""
    detector, sep, values = text.partition("=")
    if not sep or detector not in DETECTORS:
        raise argparse.ArgumentTypeError(
            f"expected DETECTOR=MARGIN[,OFFSET] with a detector of {', '.join(DETECTORS)}, got {text!r}"
        )
    try:
        numbers = [float(v) for v in values.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected DETECTOR=MARGIN[,OFFSET] with numbers, got {text!r}")
    return detector, {"margin": numbers[0], "offset": numbers[1] if len(numbers) == 2 else 0.0}


def check_final_fit(config, args: argparse.Namespace) -> None:
    """A final fit learned its validation faces: fitting a temperature on them would flatter its confidence."""
    if config is None or not config.final_fit:
        return
    log.warning("%s is a final fit: its scores on its validation faces are not held-out scores", args.model)
    if args.calibrate and args.temperature is None and args.check_data is None:
        raise FeredgeError(
            f"{args.model} is a final fit, trained on its validation split, so a temperature fitted there would "
            "flatter it; give --temperature T (its validated twin's), --check-data with held-out faces, "
            "or --no-calibrate"
        )


def configure(parser: argparse.ArgumentParser) -> None:
    formats = "; ".join(f"{f.name} (*{f.artifact.suffix}): {f.description}" for f in FORMATS.values())
    parser.add_argument("model", help="run folder or Keras model (.keras, .h5)")
    parser.add_argument(
        "--formats",
        "--format",
        dest="formats",
        default="int8",
        help=f"comma list of formats (default: %(default)s). {formats}",
    )
    parser.add_argument("--out", help="folder for artefacts and reports (default: the model's folder)")
    parser.add_argument(
        "--check-data",
        help="data for the accuracy gate, any layout `feredge train` reads "
        "(default: the run's validation split, reloaded via config.json)",
    )
    parser.add_argument(
        "--max-f1-drop",
        type=f1_drop_value,
        default=0.01,
        help="largest macro-F1 loss vs the float model that passes the gate (default: %(default)s)",
    )
    parser.add_argument(
        "--calibration-data",
        help="training faces in class folders for int8 calibration and QAT (default: the run's training split)",
    )
    parser.add_argument(
        "--calibration-size",
        type=positive_int,
        default=300,
        help="calibration faces, stratified by class (default: %(default)s)",
    )
    parser.add_argument(
        "--qat", action="store_true", help="int8: also build a quantization-aware fine-tuned model (*_int8_qat.tflite)"
    )
    parser.add_argument(
        "--qat-epochs", type=positive_int, default=2, help="QAT fine-tuning epochs (default: %(default)s)"
    )
    parser.add_argument(
        "--edgetpu",
        action="store_true",
        help="int8: compile for the Coral Edge TPU with edgetpu_compiler (x86-64 Debian/Ubuntu only)",
    )
    parser.add_argument(
        "--opset", type=int, choices=range(13, 18), metavar="{13..17}", help="onnx: ONNX opset (default: 15)"
    )
    add_labels_option(parser, "labels of a Keras model without metadata.json (preset or comma list)")
    parser.add_argument(
        "--normalization",
        choices=list(NORMALIZATIONS),
        help="input normalization of a model without metadata.json (default: unit)",
    )
    add_threads_option(parser, "interpreter threads for the gate")
    parser.add_argument(
        "--test-time-flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve with (or without) mirror averaging: twice the inference per face for a "
        "steadier score (default: as trained)",
    )
    parser.add_argument(
        "--framing",
        type=framing_entry,
        action="append",
        default=[],
        metavar="DETECTOR=MARGIN[,OFFSET]",
        help="crop framing the runtime uses for boxes of DETECTOR, as measured with feredge evaluate-photos; "
        "stored in the metadata (repeat per detector; others keep the model's crop margin)",
    )
    parser.add_argument(
        "--calibrate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fit a softmax temperature on the check set, as the runtime scores the artefact, and store it "
        "in the metadata so confidences mean what they say (default: on)",
    )
    add_prior_tau_option(parser, "the run's, 0 unless set")
    parser.add_argument(
        "--temperature",
        type=temperature_value,
        metavar="T",
        help="store this softmax temperature instead of fitting one: for a model with no held-out faces "
        "left (a --final-fit run), the temperature fitted for its validated twin; ECE is still reported",
    )


def run(args: argparse.Namespace) -> int:
    from feredge.convert.converter import ConvertOptions, convert, format_summary, raise_for_outcomes
    from feredge.convert.data import resolve_data
    from feredge.convert.onnx_export import DEFAULT_OPSET
    from feredge.edge.outputs import check_writable_dir
    from feredge.train.keras_io import load_source

    if args.temperature is not None and not args.calibrate:
        raise FeredgeError("--temperature sets the calibration that --no-calibrate turns off; give one of them")
    formats = parse_formats(args.formats)
    if args.out:  # before the model and data load, which a bad --out would otherwise waste
        check_writable_dir(args.out, "converted models")
    requested = {"qat": args.qat, "edgetpu": args.edgetpu, "opset": args.opset is not None}
    check_options(formats, [name for name, wanted in requested.items() if wanted])
    source = load_source(args.model, args.labels, args.normalization)
    if args.test_time_flip is not None:  # the gate then scores float and converted models the same new way
        source.metadata = source.metadata.replace(test_time_flip=args.test_time_flip)
    if args.prior_tau is not None:  # the artefact's default; the gate still scores the network at tau 0
        source.metadata = source.metadata.replace(prior_tau=args.prior_tau)
    if args.framing:
        source.metadata = source.metadata.replace(framing={**source.metadata.framing, **dict(args.framing)})
    check_final_fit(source.config, args)
    need_train = any(f.needs_calibration for f in formats)
    data = resolve_data(source, args.check_data, args.calibration_data, need_train)
    options = ConvertOptions(
        out=args.out,
        max_f1_drop=args.max_f1_drop,
        calibration_size=args.calibration_size,
        qat=args.qat,
        qat_epochs=args.qat_epochs,
        edgetpu=args.edgetpu,
        opset=args.opset or DEFAULT_OPSET,
        threads=args.threads,
        calibrate=args.calibrate,
        temperature=args.temperature,
    )
    outcomes = convert(source, data, formats, options)
    print(format_summary(outcomes))
    raise_for_outcomes(outcomes)
    return 0
