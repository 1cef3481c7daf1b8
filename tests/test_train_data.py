"""Data loading in every layout, bad data, class balance and the train/serve preprocessing parity."""

from __future__ import annotations

import logging
import sys

import cv2
import numpy as np
import pytest
from synthetic import write_class_folders, write_fer_csv, write_split_folders

from feredge.edge.dataset import load_dataset, stratified_split
from feredge.edge.decode import decode_image
from feredge.edge.errors import DataError
from feredge.edge.labels import FER2013
from feredge.edge.preprocess import PreprocessSpec, preprocess_face
from feredge.train.pipeline import class_weights, oversample_indices

FIVE = ("angry", "happy", "surprise", "fear", "neutral")


def test_fer_csv_usage_maps_to_splits(tmp_path):
    data = load_dataset(write_fer_csv(tmp_path / "fer.csv", per_class=3), input_size=32)
    assert data.layout == "fer2013-csv" and data.labels == FER2013
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 21, "val": 14, "test": 14}
    assert data.splits["train"].images.shape[1:] == (32, 32)


def test_csv_subset_of_labels_is_remapped(tmp_path):
    data = load_dataset(write_fer_csv(tmp_path / "fer.csv", per_class=2), labels="fer5")
    assert data.labels == FIVE
    assert sorted(set(data.splits["train"].targets)) == [0, 1, 2, 3, 4]


def test_split_folders_with_validation_alias_and_folder_aliases(tmp_path):
    write_split_folders(tmp_path, ["anger", "happiness", "sadness"], per_class=4, val_dir="validation")
    data = load_dataset(tmp_path)
    assert data.layout == "split-folders"
    assert data.labels == ("angry", "happy", "sad")  # FER2013 order, canonical names
    assert len(data.splits["val"]) == 6


def test_flat_class_folders_get_a_stratified_seeded_split(tmp_path):
    write_class_folders(tmp_path, ["angry", "disgust", "fear", "happy", "pain", "sad"], per_class=10)
    labels = "anger,disgust,fear,happiness,pain,sadness"
    a = load_dataset(tmp_path, labels=labels, val_fraction=0.2, seed=3)
    b = load_dataset(tmp_path, labels=labels, val_fraction=0.2, seed=3)
    assert a.labels == ("angry", "disgust", "fear", "happy", "pain", "sad")
    assert list(a.splits["val"].counts(6)) == [2] * 6
    np.testing.assert_array_equal(a.splits["val"].images, b.splits["val"].images)


def test_rare_class_lands_in_both_parts_of_a_split():
    from feredge.edge.dataset import Split

    targets = np.array([0] * 50 + [1] * 2)
    train, val = stratified_split(Split(np.zeros((52, 4, 4), np.uint8), targets), 0.1, 0)
    assert 1 in train.targets and 1 in val.targets


def test_bad_files_are_counted_not_fatal(tmp_path, caplog):
    write_class_folders(tmp_path, ["happy", "sad"], per_class=3)
    (tmp_path / "happy" / "zero.jpg").write_bytes(b"")
    (tmp_path / "happy" / "text.jpg").write_text("not an image")
    _ok, jpg = cv2.imencode(".jpg", np.full((48, 48), 90, np.uint8))
    (tmp_path / "sad" / "cut.jpg").write_bytes(jpg.tobytes()[:100])
    (tmp_path / "sad" / "notes.txt").write_text("stray")
    with caplog.at_level(logging.WARNING):
        data = load_dataset(tmp_path, val_fraction=0.3)
    assert sum(len(s) for s in data.splits.values()) == 6
    assert data.skipped == {"unreadable or corrupt image(s)": 3, "non-image file(s)": 1}
    assert "left out 4 item(s)" in caplog.text


def test_empty_root_and_empty_class_folders_raise_clear_errors(tmp_path):
    with pytest.raises(DataError, match="no class folders"):
        load_dataset(tmp_path)
    (tmp_path / "happy").mkdir()
    with pytest.raises(DataError, match="no readable images"):
        load_dataset(tmp_path)


def test_a_class_without_images_is_named(tmp_path):
    write_class_folders(tmp_path, ["happy", "sad"], per_class=2)
    for f in (tmp_path / "sad").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="no training images: sad"):
        load_dataset(tmp_path)


def test_requested_labels_must_exist(tmp_path):
    write_class_folders(tmp_path, ["happy", "sad"], per_class=2)
    with pytest.raises(DataError, match=r"requested label.*pain.*the data has happy, sad"):
        load_dataset(tmp_path, labels="happy,pain")
    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "nope")


def test_csv_without_pixels_column(tmp_path):
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="'emotion' and 'pixels'"):
        load_dataset(tmp_path / "bad.csv")


def test_class_weights_favour_rare_classes_and_average_one():
    counts = np.array([1000, 100, 900])
    for mode in ("balanced", "sqrt"):
        w = class_weights(counts, mode)
        assert w[1] > w[2] > w[0] * 0.99
        assert (w * counts).sum() / counts.sum() == pytest.approx(1.0)
    assert list(class_weights(counts, "none")) == [1, 1, 1]
    idx = oversample_indices(np.array([0] * 10 + [1] * 2 + [2] * 6), seed=0)
    assert np.bincount(np.array([0] * 10 + [1] * 2 + [2] * 6)[idx]).tolist() == [10, 6, 6]


@pytest.mark.parametrize(
    ("channels", "normalization", "photometric"),
    [(1, "unit", "none"), (3, "symmetric", "none"), (3, "caffe", "none"), (1, "unit", "clahe")],
)
def test_training_pipeline_and_edge_path_give_the_same_tensor(tmp_path, channels, normalization, photometric):
    """The classic train/serve skew check: one odd-sized colour JPEG through both paths."""
    from feredge.train.pipeline import make_dataset

    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (70, 55, 3)).astype(np.uint8)
    (tmp_path / "happy").mkdir()
    cv2.imwrite(str(tmp_path / "happy" / "face.jpg"), photo)
    spec = PreprocessSpec(48, channels, normalization, photometric)
    data = load_dataset(tmp_path, input_size=48, make_val=False, photometric=photometric)
    batch, _ = next(iter(make_dataset(data.splits["train"], spec, 1, 4, training=False)))
    edge_input = preprocess_face(decode_image(tmp_path / "happy" / "face.jpg"), spec)
    np.testing.assert_allclose(batch.numpy()[0], edge_input, rtol=1e-6, atol=1e-6)


def test_cached_teacher_rows_travel_with_their_faces():
    """Shuffled and oversampled, each face still carries its own label, soft-target row and weight."""
    pytest.importorskip("tensorflow")
    from feredge.edge.dataset import Split
    from feredge.train.pipeline import make_dataset

    n = 40
    targets = np.array([0] * 30 + [1] * 10)
    images = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None], 48, 1).repeat(48, 2)  # face i is all i
    soft = np.zeros((n, 3), np.float32)
    soft[:, 2] = np.arange(n) / 100.0
    soft[:, 0] = 1 - soft[:, 2]
    spec = PreprocessSpec(48, 1, "unit", "none")
    ds = make_dataset(Split(images, targets), spec, 2, 8, True, None, np.array([1.0, 3.0]), True, 3, soft_targets=soft)
    seen = []
    for inputs, y, weight in ds:
        index = np.rint(inputs.numpy()[:, 0, 0, 0] * 255).astype(int)
        np.testing.assert_array_equal(y.numpy()[:, :2].argmax(1), targets[index])
        np.testing.assert_allclose(y.numpy()[:, 2:], soft[index], atol=1e-6)
        np.testing.assert_allclose(weight.numpy(), np.where(targets[index] == 1, 3.0, 1.0))
        seen.extend(index)
    assert len(seen) == 50 and set(seen) == set(range(n))  # class 1 repeated up to the median (20)


@pytest.mark.parametrize("preset", ["strong", "domain"])
def test_augmentation_changes_images_but_keeps_range(preset):
    tf = pytest.importorskip("tensorflow")
    from feredge.train.augment import AugmentConfig, augment_batch

    faces = tf.constant(np.random.default_rng(0).uniform(0, 255, (8, 48, 48)).astype(np.float32))
    out = augment_batch(faces, AugmentConfig.preset(preset)).numpy()
    assert out.shape == (8, 48, 48) and out.min() >= 0 and out.max() <= 255
    assert not np.allclose(out, faces.numpy())
    flip_only = AugmentConfig(True, 0, 0, 0, 0, 0, 0, 0)
    flipped = augment_batch(faces, flip_only).numpy()
    for got, src in zip(flipped, faces.numpy(), strict=True):
        assert np.allclose(got, src, atol=1e-3) or np.allclose(got, src[:, ::-1], atol=1e-3)


def test_domain_degradations_smooth_a_sharp_face():
    """Blur and downscaling lower the high-frequency energy, which is what clean real photos lack."""
    tf = pytest.importorskip("tensorflow")
    from feredge.train.augment import AugmentConfig, augment_batch

    checker = np.indices((48, 48)).sum(axis=0) % 2 * 255.0
    faces = tf.constant(np.repeat(checker[None].astype(np.float32), 64, axis=0))
    smooth = AugmentConfig(False, 0, 0, 0, 0, 0, 0, 0, blur=1.0, downscale=1.0)
    out = augment_batch(faces, smooth).numpy()

    def energy(x):
        return np.abs(np.diff(x, axis=-1)).mean()

    assert energy(out) < 0.5 * energy(faces.numpy())


def test_kaggle_handle_downloads_then_loads_like_a_local_folder(tmp_path, monkeypatch):
    import types

    write_split_folders(tmp_path / "download", ["happy", "sad"], per_class=3)
    calls = []

    def dataset_download(handle):
        calls.append(handle)
        return str(tmp_path / "download")

    monkeypatch.setitem(sys.modules, "kagglehub", types.SimpleNamespace(dataset_download=dataset_download))
    data = load_dataset("kaggle:someone/fer-faces")
    assert calls == ["someone/fer-faces"] and data.labels == ("happy", "sad")


def test_kaggle_failure_says_what_to_check(monkeypatch):
    import types

    def offline(handle):
        raise ConnectionError("no route to host")

    monkeypatch.setitem(sys.modules, "kagglehub", types.SimpleNamespace(dataset_download=offline))
    with pytest.raises(DataError, match="Kaggle credentials"):
        load_dataset("kaggle:someone/fer-faces")
    monkeypatch.setitem(sys.modules, "kagglehub", None)
    with pytest.raises(DataError, match=r"pip install 'feredge\[kaggle\]'"):
        load_dataset("kaggle:someone/fer-faces")


def test_too_few_images_for_a_validation_split(tmp_path):
    write_class_folders(tmp_path, ["happy", "sad"], per_class=1)
    with pytest.raises(DataError, match="too few images to split off validation"):
        load_dataset(tmp_path)
