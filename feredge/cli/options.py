"""What every feredge command line shares: checked argparse value types (``positive_int``, ``fraction``,
...), the options several commands take (``--labels``, ``--threads``, the detector and recognizer
options), and ``run_main``, the one policy that turns errors into exit codes:

- 0: everything asked for was done;
- 1: partial failure: some inputs (images, models, formats) failed and the others were done;
- 2: nothing was done: a usage error, a bad option or input, or every input failed;
- 130: interrupted (Ctrl-C); what was already written is complete and kept.

Only argparse at import time: ``feredge.cli`` imports it with the command modules to build a parser. The
detector names come from the registry ``feredge.edge.detectors.DETECTORS`` when the options are added.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from feredge.edge.cpu import MAX_THREADS
from feredge.edge.errors import FeredgeError, PartialFailure

if TYPE_CHECKING:
    from feredge.edge.options import RecognizerOptions
    from feredge.edge.recognizer import EmotionRecognizer

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

# top-level module of an optional dependency -> the extra that installs it
EXTRAS = {
    "tensorflow": "train",
    "tf_keras": "train",
    "tensorflow_model_optimization": "train",
    "sklearn": "train",
    "tf2onnx": "convert",
    "onnx": "convert",
    "onnxruntime": "jetson",
    "gradio": "demo",
    "gradio_client": "demo",
    "fastapi": "demo",
    "uvicorn": "demo",
    "starlette": "demo",
    "multipart": "demo",
    "matplotlib": "bench",
    "psutil": "bench",
    "httpx": "bench",
    "kagglehub": "kaggle",
}

LABELS_HELP = (
    "labels of the model's outputs: a preset (fer2013, fer5) or a comma list; needed only for models "
    "without feredge metadata"
)


def outcome_code(done: int, failed: int) -> int:
    """The exit code of a command over many inputs: 0 none failed, 1 some failed, 2 none was done."""
    if not failed:
        return EXIT_OK
    return EXIT_PARTIAL if done else EXIT_USER_ERROR


def checked_type(kind: Callable[[str], Any], what: str, accept: Callable[[Any], bool]) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)``, finite and accepted, else a usage error "expected {what}"."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        try:
            finite = value is not None and math.isfinite(value)
        except OverflowError:  # an int too large for a float
            finite = False
        if not finite or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = checked_type(int, "a whole number >= 1", lambda v: v >= 1)
non_negative_int = checked_type(int, "a whole number >= 0", lambda v: v >= 0)
positive_float = checked_type(float, "a number > 0", lambda v: v > 0)
fraction = checked_type(float, "a number in (0, 1]", lambda v: 0 < v <= 1)
port_number = checked_type(int, "a port number from 0 to 65535", lambda v: 0 <= v <= 65535)
thread_count = checked_type(
    int, f"a whole number from 1 to {MAX_THREADS} (4 per core, at most 256)", lambda v: 1 <= v <= MAX_THREADS
)

# Characters that would break a printed line or fake another: C0/C1 controls (a newline in a file name),
# bidirectional overrides, and the lone surrogates that stand for a name's undecodable bytes.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` with every character ``_UNPRINTABLE`` names escaped (``\\n``, ``\\x1b``, ``\\xff`` for an
    undecodable byte), so a file name stays on its line and printing it cannot fail."""
    return _UNPRINTABLE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's stand-in for the byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    return match.group().encode("unicode_escape").decode("ascii")


def add_labels_option(parser: argparse.ArgumentParser | Any, help: str = LABELS_HELP) -> None:
    """``--labels``: a preset or a comma list (``feredge.edge.labels.resolve_labels``)."""
    parser.add_argument("--labels", help=help)


def add_threads_option(
    parser: argparse.ArgumentParser | Any,
    help: str = "interpreter threads (default: all cores, up to 4)",
    many: bool = False,
) -> None:
    """``--threads N`` (or ``N ...`` with ``many``), each a whole number from 1 to ``MAX_THREADS``."""
    parser.add_argument("--threads", type=thread_count, nargs="+" if many else None, metavar="N", help=help)


def add_detector_options(parser: argparse.ArgumentParser | Any, finds_faces: bool = False) -> None:
    """``--detector`` (choices from the registry; ``finds_faces`` leaves out ``none``) and ``--detector-model``."""
    from feredge.edge.detectors import DEFAULT_DETECTOR, describe_detectors, detector_names

    parser.add_argument(
        "--detector",
        choices=detector_names(finds_faces=finds_faces),
        default=DEFAULT_DETECTOR,
        help=f"face detector: {describe_detectors(finds_faces=finds_faces)} (default: {DEFAULT_DETECTOR})",
    )
    parser.add_argument(
        "--detector-model",
        metavar="PATH",
        help=f"another model file for the detector ({', '.join(detector_names(model_file=True))}; "
        "default: the shipped one)",
    )


def add_recognizer_options(parser: argparse.ArgumentParser) -> None:
    """Model, labels, threads and detector options, turned into a recognizer by ``build_recognizer``."""
    group = parser.add_argument_group("model and detector")
    group.add_argument("--model", help="a .tflite or .onnx emotion model (default: the shipped model)")
    add_labels_option(group)
    add_normalization_option(group)
    add_threads_option(group)
    add_detector_options(group)
    group.add_argument(
        "--min-face", type=non_negative_int, metavar="PX", help="smallest face side to report, in pixels"
    )
    add_detect_size_option(group)
    group.add_argument(
        "--detector-score",
        type=checked_type(float, "a number between 0 and 1 (exclusive)", lambda v: 0 < v < 1),
        metavar="P",
        help="the score a face needs from yunet or blazeface: lower finds more faces and more false ones "
        "(default: the detector's own: yunet 0.7, blazeface 0.5)",
    )
    group.add_argument(
        "--min-confidence",
        type=checked_type(float, "a number from 0 to 1", lambda v: 0 <= v <= 1),
        metavar="P",
        help="label a face 'uncertain' when its best score is below P; its scores are kept (default: 0, off)",
    )
    add_prior_tau_option(group)


FULL_RESOLUTION = "full"


def add_detect_size_option(parser: argparse.ArgumentParser | Any) -> None:
    """``--detect-size PX|full``: the long side detection runs at (``feredge.edge.detectors``); not given,
    each detector's own default, chosen by the rule in docs/deploy.md."""
    from feredge.edge.detectors import DEFAULT_MAX_SIDE, DETECTORS, MIN_DETECT_SIZE

    defaults = ", ".join(f"{name} {entry.detect_size or FULL_RESOLUTION}" for name, entry in DETECTORS.items())
    parser.add_argument(
        "--detect-size",
        type=detect_size,
        metavar="PX",
        help=f"detect faces on a copy of the frame whose long side is PX (at least {MIN_DETECT_SIZE}; never "
        f"enlarged), or '{FULL_RESOLUTION}' for the frame as it is (up to {DEFAULT_MAX_SIDE} px); smaller is "
        f"faster but loses small faces (default: the detector's own: {defaults})",
    )


def detect_size(text: str) -> int | str:
    """An argparse type: a whole number of at least ``MIN_DETECT_SIZE`` pixels, or ``full``."""
    from feredge.edge.detectors import MIN_DETECT_SIZE

    if text.strip().lower() == FULL_RESOLUTION:
        return FULL_RESOLUTION
    return checked_type(
        int, f"a whole number >= {MIN_DETECT_SIZE} or '{FULL_RESOLUTION}'", lambda v: v >= MIN_DETECT_SIZE
    )(text)


def detect_size_argument(value: int | str | None) -> int | str | None:
    """``--detect-size``'s value as ``make_detector`` and ``EmotionRecognizer`` take it: not given is the
    detector's own default, ``full`` is None."""
    from feredge.edge.detectors import DETECTOR_DEFAULT

    if value is None:
        return DETECTOR_DEFAULT
    return None if value == FULL_RESOLUTION else value


def add_prior_tau_option(parser: argparse.ArgumentParser | Any, default_help: str = "the model's own") -> None:
    """``--prior-tau T``: how much of the training class prior to take from the scores (logit adjustment)."""
    from feredge.edge.metadata import PRIOR_TAU_RANGE

    low, high = PRIOR_TAU_RANGE
    parser.add_argument(
        "--prior-tau",
        type=checked_type(float, f"a number from {low:g} to {high:g}", lambda v: low <= v <= high),
        metavar="T",
        help=f"take T x log(training class prior) from the scores: 1 for faces without the training data's "
        f"class mix (real photos), 0 for the raw network (FER-like crops) (default: {default_help})",
    )


def add_normalization_option(parser: argparse.ArgumentParser | Any, help: str | None = None) -> None:
    """``--normalization``, one of the contract's names, so a typo is a usage error naming the choices."""
    from feredge.edge.preprocess import NORMALIZATIONS

    parser.add_argument(
        "--normalization",
        choices=list(NORMALIZATIONS),
        help=help or "input normalization of a model without metadata (default: unit)",
    )


# add_recognizer_options's flags that RecognizerOptions takes as they are (a flag not given: its default)
RECOGNIZER_FLAGS = (
    "model",
    "detector",
    "threads",
    "labels",
    "normalization",
    "detector_model",
    "min_face",
    "min_confidence",
    "prior_tau",
    "detector_score",
)


def recognizer_options(args: argparse.Namespace) -> RecognizerOptions:
    """The ``RecognizerOptions`` that ``add_recognizer_options``'s flags describe (imported here to keep
    ``--help`` fast); ``RecognizerOptions`` holds the defaults of the flags not given."""
    from feredge.edge.options import RecognizerOptions

    given = {name: getattr(args, name) for name in RECOGNIZER_FLAGS if getattr(args, name) is not None}
    return RecognizerOptions(**given, detect_size=detect_size_argument(args.detect_size))


def build_recognizer(args: argparse.Namespace) -> EmotionRecognizer:
    """The ``EmotionRecognizer`` the options describe."""
    from feredge.edge.recognizer import EmotionRecognizer

    return EmotionRecognizer.create_from_options(recognizer_options(args))


def run_main(prog: str, run: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """``run(args)`` as a command's exit code: the one error policy of every ``main()``.

    Library code raises typed errors and never exits; here a ``FeredgeError``, a missing optional
    package (named with its extra) or an ``OSError`` becomes one line ``{prog}: error: ...`` on stderr
    and exit code 2 (1 for a ``PartialFailure``), Ctrl-C becomes 130, and anything else is a bug and
    keeps its traceback. A command over many inputs returns ``outcome_code(done, failed)``.
    """
    try:
        return int(run(args) or 0)
    except PartialFailure as exc:
        return _fail(prog, str(exc), EXIT_PARTIAL)
    except FeredgeError as exc:
        return _fail(prog, str(exc))
    except ModuleNotFoundError as exc:
        root = (exc.name or "").split(".")[0]
        if root not in EXTRAS:
            raise
        return _fail(prog, f"needs the Python package {root!r}: pip install 'feredge[{EXTRAS[root]}]'")
    except OSError as exc:  # unwritable output folder, full disk, permission denied ...
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(prog, f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        return interrupted(prog)


def interrupted(prog: str) -> int:
    """Ctrl-C's one line and exit code, at start-up as during the work."""
    print(f"{prog}: interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED


def _fail(prog: str, message: str, code: int = EXIT_USER_ERROR) -> int:
    print(f"{prog}: error: {printable(message)}", file=sys.stderr)
    return code
