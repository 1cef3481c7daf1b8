"""The top-level API: ``from feredge import ...`` is lazy and TensorFlow-free; ``EmotionRecognizer``
as a context manager with a useful repr; ``Face`` helpers; ``min_confidence`` in the API and CLI."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

import feredge
from feredge.cli import main
from feredge.edge.detectors import DEFAULT_DETECTOR
from feredge.edge.errors import ImageError, OptionError
from feredge.edge.labels import FER2013
from feredge.edge.recognizer import UNCERTAIN, EmotionRecognizer, Face, RecognizerClosedError

pytestmark = pytest.mark.edge  # needs only `pip install .`: .ci/run also runs it in an edge-only venv

ERRORS = [
    "DataError", "FeredgeError", "ImageError", "LabelError", "MetadataError", "ModelLoadError", "OptionError",
    "OutputError", "PartialFailure", "VideoError",
]  # fmt: skip
API = [
    "EmotionRecognizer", "Face", "Prediction", "StageTimings", "RecognizerOptions", "VideoOptions",
    "RecognizerClosedError", "Detector", "analyze_video", "load_model",
]  # fmt: skip
PUBLIC = sorted(API + ERRORS)
ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_PHOTO = ROOT / "demo" / "examples" / "two_faces.jpg"  # shipped with the demo; two drawn faces


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_feredge_is_cheap_and_names_load_on_first_use():
    code = (
        "import sys, feredge\n"
        "heavy = ('numpy', 'cv2', 'feredge.edge', 'tensorflow', 'ai_edge_litert')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "from feredge import EmotionRecognizer, Face, load_model, analyze_video\n"
        "import feredge.edge.recognizer as r, feredge.edge.model as m, feredge.edge.timeline as t\n"
        "assert (EmotionRecognizer, Face, load_model, analyze_video) == (r.EmotionRecognizer, r.Face, m.load_model,"
        " t.analyze_video)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras')))\n"
    )
    assert run_python(code).splitlines() == ["[]", "[]"]


def test_every_error_and_the_detector_protocol_come_from_feredge():
    """A caller catches ``feredge.ImageError`` and writes a ``feredge.Detector`` without knowing the layout."""
    from feredge.edge import errors
    from feredge.edge.detectors import Detector

    defined = sorted(
        name for name, value in vars(errors).items() if isinstance(value, type) and issubclass(value, Exception)
    )
    assert defined == ERRORS  # a new error in edge/errors.py must be exported too
    for name in ERRORS:
        assert getattr(feredge, name) is getattr(errors, name) and issubclass(
            getattr(feredge, name), feredge.FeredgeError
        )
    assert feredge.Detector is Detector and feredge.RecognizerClosedError is RecognizerClosedError
    namespace: dict = {}
    exec(f"from feredge import {', '.join(PUBLIC)}", namespace)  # every public name, as users import it
    assert set(PUBLIC) <= namespace.keys()


def test_catching_a_feredge_error_loads_no_numpy_or_opencv():
    code = (
        "import sys\n"
        "from feredge import FeredgeError, ImageError, OptionError\n"
        "assert issubclass(ImageError, FeredgeError) and issubclass(OptionError, ValueError)\n"
        "print(sorted(m for m in ('numpy', 'cv2', 'ai_edge_litert', 'tensorflow') if m in sys.modules))\n"
    )
    assert run_python(code) == "[]"


def test_recognizing_through_the_top_level_api_never_imports_tensorflow(tiny_int8_model, face_scene, tmp_path):
    import cv2

    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), face_scene[0])
    code = (
        "import sys\n"
        "from feredge import EmotionRecognizer\n"
        f"with EmotionRecognizer({str(tiny_int8_model)!r}, threads=1) as recognizer:\n"
        f"    print(len(recognizer.predict({str(image)!r})))\n"
        "print('tensorflow' in sys.modules)\n"
    )
    assert run_python(code).splitlines() == ["2", "False"]


def test_unknown_top_level_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Recognizer'"):
        feredge.Recognizer  # noqa: B018
    with pytest.raises(ImportError):
        from feredge import predict  # noqa: F401
    assert not hasattr(feredge, "train_model")


def test_public_names_are_listed():
    assert sorted(name for name in feredge.__all__ if name != "__version__") == PUBLIC
    assert set(PUBLIC) <= set(dir(feredge))
    assert feredge.EmotionRecognizer is EmotionRecognizer and feredge.Face is Face


def test_py_typed_is_shipped():
    assert resources.files("feredge").joinpath("py.typed").is_file()


def test_load_model_gives_the_labels_and_input_size(tiny_int8_model):
    model = feredge.load_model(tiny_int8_model, threads=1)
    assert tuple(model.labels) == FER2013


def test_recognizer_is_a_context_manager_that_closes(tiny_int8_model, face_scene):
    with EmotionRecognizer(tiny_int8_model, threads=1) as recognizer:
        assert len(recognizer.predict(face_scene[0])) == 2
        shown = repr(recognizer)
    assert shown == f"EmotionRecognizer(model={tiny_int8_model.name!r}, detector={DEFAULT_DETECTOR!r}, threads=1)"
    assert repr(recognizer).endswith(", closed)")
    with pytest.raises(RecognizerClosedError, match="was closed"):
        recognizer.predict(face_scene[0])
    recognizer.close()  # closing twice is harmless


@pytest.mark.parametrize(("image", "kind"), [(None, "NoneType"), (1, "int"), ([1, 2, 3], "list"), (2.5, "float")])
def test_predict_names_the_accepted_inputs_for_any_other_type(tiny_int8_model, image, kind):
    with EmotionRecognizer(tiny_int8_model, threads=1) as recognizer:
        with pytest.raises(ImageError) as info:
            recognizer.predict(image)  # 1 was taken for file descriptor 1 (stdout)
        assert str(info.value) == (
            f"image: unsupported input of type {kind}; pass a file path (str or pathlib.Path), encoded image "
            "bytes or a numpy array"
        )
        with pytest.raises(ImageError, match="unsupported input of type"):
            recognizer.predict_batch([image])


def test_repr_names_a_custom_detector_and_min_confidence(tiny_int8_model):
    class Fixed:
        def detect(self, image):
            return [(0, 0, 10, 10)]

    recognizer = EmotionRecognizer(tiny_int8_model, detector=Fixed(), threads=2, min_confidence=0.5)
    assert repr(recognizer) == (
        f"EmotionRecognizer(model={tiny_int8_model.name!r}, detector='Fixed', threads=2, min_confidence=0.5)"
    )


def make_face() -> Face:
    scores = dict.fromkeys(FER2013, 0.05)
    scores.update(happy=0.6, surprise=0.15)
    return Face((10, 20, 30, 40), "happy", 0.6, scores)


def test_face_top_to_dict_and_to_fer():
    face = make_face()
    assert face.top() == [("happy", 0.6)]
    assert face.top(2) == [("happy", 0.6), ("surprise", 0.15)]
    assert len(face.top(99)) == len(FER2013)
    record = face.to_dict()
    assert record == {"box": [10, 20, 30, 40], "label": "happy", "confidence": 0.6, "scores": face.scores}
    assert json.loads(json.dumps(record)) == record
    tracked = Face(face.box, face.label, face.confidence, face.scores, track_id=3)
    assert tracked.to_dict()["track_id"] == 3
    assert face.to_fer() == {"box": [10, 20, 30, 40], "emotions": face.scores}


def test_min_confidence_labels_a_low_scoring_face_uncertain(tiny_int8_model, face_scene):
    plain = EmotionRecognizer(tiny_int8_model, threads=1).predict(face_scene[0])
    strict = EmotionRecognizer(tiny_int8_model, threads=1, min_confidence=0.99).predict(face_scene[0])
    assert [f.label for f in strict] == [UNCERTAIN] * 2
    assert [(f.box, f.confidence, f.scores) for f in strict] == [(f.box, f.confidence, f.scores) for f in plain]
    assert all(f.label in FER2013 for f in plain)
    # a threshold under the best score changes nothing
    low = min(f.confidence for f in plain) - 0.01
    assert [f.label for f in EmotionRecognizer(tiny_int8_model, min_confidence=low).predict(face_scene[0])] == [
        f.label for f in plain
    ]


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_min_confidence_out_of_range(tiny_int8_model, value):
    with pytest.raises(OptionError, match="min_confidence must be between 0 and 1"):
        EmotionRecognizer(tiny_int8_model, min_confidence=value)


def test_min_confidence_in_the_cli(tiny_int8_model, face_scene, tmp_path, capsys):
    import cv2

    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), face_scene[0])
    argv = ["predict", str(image), "--model", str(tiny_int8_model), "--json"]
    assert main([*argv, "--min-confidence", "0.99"]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[0])
    assert [face["label"] for face in record["faces"]] == [UNCERTAIN] * 2
    assert all(len(face["scores"]) == len(FER2013) for face in record["faces"])
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--min-confidence", "2"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--min-confidence" in err and "Traceback" not in err


def test_repr_shows_the_threads_a_given_model_was_loaded_with(tiny_int8_model):
    model = feredge.load_model(tiny_int8_model, threads=1)
    assert "threads=1" in repr(EmotionRecognizer(model, threads=3))


def test_the_readmes_first_python_block_runs_as_written(tmp_path):
    """A newcomer's first paste: top-level imports only, every name defined, on the shipped model."""
    if not EXAMPLE_PHOTO.is_file():
        pytest.skip(f"{EXAMPLE_PHOTO} not present")
    block = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    assert "from feredge import EmotionRecognizer" in block and "feredge.edge" not in block
    shutil.copy(EXAMPLE_PHOTO, tmp_path / "photo.jpg")
    done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    faces = [line for line in lines if re.match(r"\(\d+, \d+, \d+, \d+\) \w+ 0\.\d+ \{", line)]
    assert len(faces) == 2, done.stdout
    assert lines[-1].startswith("<bytes>: not a readable image"), done.stdout
