"""FER+ votes: the paper's target rules, both of Microsoft's layouts, damaged files, and training on the votes."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
from synthetic import FER2013_ORDER, write_ferplus_csv, write_ferplus_folders

from feredge.edge.dataset import load_dataset
from feredge.edge.errors import DataError
from feredge.edge.ferplus import NO_EMOTION, NO_MAJORITY, NOT_IN_FERPLUS, paper_targets, training_distribution
from feredge.edge.metrics import classification_metrics, vote_cross_entropy


def votes(*rows):
    return np.array(rows, np.float64)


@pytest.mark.edge
def test_majority_needs_more_than_half_of_the_votes_left_after_single_votes_are_dropped():
    targets = paper_targets(
        votes(
            (6, 1, 1, 1, 1, 0, 0, 0, 0, 0),  # 6 of 6 once the single votes go: class 0
            (4, 4, 2, 0, 0, 0, 0, 0, 0, 0),  # a tie: nobody above half
            (2, 0, 0, 0, 0, 0, 0, 0, 8, 0),  # unknown wins
            (3, 2, 0, 0, 0, 0, 0, 0, 0, 5),  # not a face: no majority either
        ),
        "majority",
    )
    assert targets[0].tolist() == [1.0] + [0.0] * 9
    assert not targets[1:].any()


@pytest.mark.edge
def test_crossentropy_keeps_the_top_classes_up_to_three_and_drops_faces_led_by_unknown():
    targets = paper_targets(
        votes(
            (5, 3, 2, 0, 0, 0, 0, 0, 0, 0),  # 5+3 = 80% >= 75%: two classes
            (4, 4, 2, 0, 0, 0, 0, 0, 0, 0),  # a tie is kept together, and 80% is enough
            (3, 0, 0, 0, 0, 0, 0, 0, 7, 0),  # unknown leads
        ),
        "crossentropy",
    )
    assert targets[0, :2].tolist() == pytest.approx([5 / 8, 3 / 8]) and targets[0, 2:].sum() == 0
    assert targets[1, :3].tolist() == pytest.approx([0.5, 0.5, 0.0])
    assert not targets[2].any()
    soft = training_distribution(votes((5, 3, 2, 0, 0, 0, 0)), "probability")
    assert soft.sum() == pytest.approx(1.0) and soft[0, 0] > soft[0, 1] > 0


@pytest.mark.edge
def test_folder_layout_loads_majority_targets_votes_and_counts_the_dropped_faces(tmp_path):
    root = write_ferplus_folders(tmp_path / "ferplus", per_class=3)
    dataset = load_dataset(root, make_val=False)
    assert dataset.labels == FER2013_ORDER
    assert set(dataset.splits) == {"train", "val"} and dataset.layout.startswith("ferplus-folders")
    train = dataset.splits["train"]
    assert train.counts(7).tolist() == [3] * 7  # the drawn class is the votes' majority
    assert train.votes.shape == (21, 7) and train.votes.sum(axis=1).min() >= 9  # contempt, unknown, NF gone
    assert dataset.skipped[NO_EMOTION] == 2 and dataset.skipped[NO_MAJORITY] == 2  # per split: one of each


@pytest.mark.edge
def test_eight_classes_keep_contempt_and_seven_drop_its_votes(tmp_path):
    root = write_ferplus_folders(tmp_path / "ferplus", per_class=2)
    train = root / "FER2013Train"
    shutil.copyfile(train / "fer0000000.png", train / "contempt.png")
    with open(train / "label.csv", "a") as fh:
        fh.write('contempt.png,"(0, 0, 48, 48)",2,0,0,0,0,0,0,8,0,0\n')
    eight = load_dataset(root, [*FER2013_ORDER, "contempt"], make_val=False)
    assert eight.labels[-1] == "contempt" and eight.splits["train"].votes.shape[1] == 8
    assert eight.splits["train"].counts(8)[-1] == 1
    seven = load_dataset(root, make_val=False)  # contempt's votes dropped: 2 of 2 left say neutral, 1 face more
    assert seven.splits["train"].counts(7)[-1] == eight.splits["train"].counts(8)[-2] + 1
    with pytest.raises(DataError, match="FER\\+ has no class pain"):
        load_dataset(root, "angry,pain", make_val=False)


@pytest.mark.edge
def test_csv_layout_lines_up_with_fer2013_csv_and_skips_faces_ferplus_left_out(tmp_path):
    fer_csv, votes_csv = write_ferplus_csv(tmp_path / "fer2013.csv", tmp_path / "fer2013new.csv", per_class=2)
    dataset = load_dataset(fer_csv, ferplus_votes=votes_csv, make_val=False)
    assert dataset.layout.startswith("ferplus-csv")
    assert dataset.splits["train"].counts(7).tolist() == [2] * 7
    assert dataset.splits["val"].counts(7).tolist() == [2] * 7
    assert dataset.skipped[NOT_IN_FERPLUS] == 2  # one per usage


@pytest.mark.edge
def test_csv_layout_refuses_files_that_do_not_line_up(tmp_path):
    fer_csv, votes_csv = write_ferplus_csv(tmp_path / "fer2013.csv", tmp_path / "fer2013new.csv", per_class=2)
    lines = votes_csv.read_text().splitlines()
    votes_csv.write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(DataError, match="must line up row by row"):
        load_dataset(fer_csv, ferplus_votes=votes_csv, make_val=False)
    lines[1] = lines[1].replace("Training", "PublicTest", 1)
    votes_csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"line 2: Usage 'training' but .* says 'publictest'"):
        load_dataset(fer_csv, ferplus_votes=votes_csv, make_val=False)


@pytest.mark.edge
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda row: row.rsplit(",", 1)[0] + ",x", "line 3: expected 10 vote counts"),
        (lambda row: row.rsplit(",", 2)[0], "line 3: expected 12 fields"),
        (lambda row: "../evil.png" + row[row.index(",") :], "line 3: '../evil.png' is not an image file name"),
    ],
)
def test_a_damaged_label_csv_names_its_line(tmp_path, damage, message):
    root = write_ferplus_folders(tmp_path / "ferplus", per_class=2)
    label_csv = root / "FER2013Train" / "label.csv"
    lines = label_csv.read_text().splitlines()
    lines[2] = damage(lines[2])
    label_csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message):
        load_dataset(root, make_val=False)


@pytest.mark.edge
def test_reports_show_balanced_accuracy_answers_and_the_vote_cross_entropy():
    metrics = classification_metrics([0, 0, 0, 1], [0, 0, 0, 0], ("neutral", "happy"))
    assert metrics["accuracy"] == 0.75 and metrics["balanced_accuracy"] == 0.5
    assert metrics["per_class"]["neutral"]["answers"] == 4 and metrics["per_class"]["happy"]["answers"] == 0
    sure, unsure = np.array([[1.0, 0.0]]), np.array([[0.5, 0.5]])
    split_votes = np.array([[5.0, 5.0]])
    assert vote_cross_entropy(split_votes, unsure) == pytest.approx(np.log(2))
    assert vote_cross_entropy(split_votes, sure) > vote_cross_entropy(split_votes, unsure)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["folders", "csv"])
def test_both_layouts_train_on_the_votes_and_evaluate_end_to_end(tmp_path, capsys, layout):
    from feredge.cli import main
    from feredge.edge.metadata import ModelMetadata

    if layout == "folders":
        data, extra = [str(write_ferplus_folders(tmp_path / "ferplus", per_class=4))], []
    else:
        fer_csv, votes_csv = write_ferplus_csv(tmp_path / "fer2013.csv", tmp_path / "fer2013new.csv", per_class=4)
        data, extra = [str(fer_csv)], ["--ferplus", str(votes_csv)]
    run = tmp_path / "run"
    argv = ["train", *data, *extra, "--backbone", "tiny", "--epochs", "1", "--label-mode", "crossentropy"]
    assert main([*argv, "--out", str(run), "--batch-size", "8", "--workers", "1", "--augment", "light"]) == 0
    meta = ModelMetadata.load(run / "metadata.json")
    assert meta.class_prior is not None and sum(meta.class_prior) == pytest.approx(1.0)
    assert "ferplus" in meta.training_data
    capsys.readouterr()
    assert main(["evaluate", str(run), *data, *extra, "--split", "val", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 14 and report["vote_cross_entropy"] > 0
    assert 0 <= report["balanced_accuracy"] <= 1 and report["prior_tau"] == 0.0
    assert main(["evaluate", str(run), *data, *extra, "--split", "val", "--json", "--prior-tau", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["prior_tau"] == 1.0
    with pytest.raises(SystemExit):
        main(["evaluate", str(run), *data, *extra, "--prior-tau", "nan"])
    assert "--prior-tau: expected a number from 0 to 3" in capsys.readouterr().err


@pytest.mark.slow
def test_weights_default_rebuilds_the_shipped_network_exactly(tmp_path):
    from feredge.edge.labels import FER2013
    from feredge.edge.model import load_model
    from feredge.train.backbones import build_model
    from feredge.train.tflite_weights import shipped_weights

    shipped = load_model(shipped_weights("default"), threads=1)  # its runner: the scores before the temperature
    faces = np.random.default_rng(0).uniform(0, 1, (16, 48, 48, 1)).astype(np.float32)
    model = build_model("compact_deep", 7, 48, "default", labels=FER2013)
    np.testing.assert_allclose(model.predict_on_batch(faces), shipped.runner.run(faces), atol=2e-3)
    reordered = tuple(reversed(FER2013))
    model = build_model("compact_deep", 7, 48, "default", labels=reordered)
    np.testing.assert_allclose(model.predict_on_batch(faces)[:, ::-1], shipped.runner.run(faces), atol=2e-3)


@pytest.mark.slow
def test_users_fine_tune_the_default_on_their_own_labels_with_its_contract_carried_over(tmp_path, caplog):
    from synthetic import write_split_folders

    from feredge.cli import main
    from feredge.edge.metadata import ModelMetadata

    data = write_split_folders(tmp_path / "mine", ("happy", "sad", "pain"), per_class=4)
    run = tmp_path / "run"
    caplog.set_level(logging.INFO, logger="feredge")
    argv = ["train", str(data), "--weights", "default", "--epochs", "1", "--head-epochs", "0", "--out", str(run)]
    assert main([*argv, "--batch-size", "8", "--workers", "1", "--augment", "light"]) == 0
    meta = ModelMetadata.load(run / "metadata.json")
    assert meta.labels == ("happy", "pain", "sad")
    assert (meta.backbone, meta.photometric, meta.input_size) == ("compact_deep(alpha=1.0)", "clahe", 48)
    assert "new head" in caplog.text and "carried over from feredge_default_fp16.tflite" in caplog.text


@pytest.mark.slow
def test_an_int8_model_is_a_start_too_dequantized_within_its_rounding():
    from feredge.edge.labels import FER2013
    from feredge.edge.model import load_model
    from feredge.train.backbones import build_model
    from feredge.train.tflite_weights import shipped_weights

    shipped = load_model(shipped_weights("feredge_ferplus_int8"), threads=1)
    faces = np.random.default_rng(0).uniform(0, 1, (32, 48, 48, 1)).astype(np.float32)
    rebuilt = build_model("compact_deep", 7, 48, "feredge_ferplus_int8", labels=FER2013).predict_on_batch(faces)
    raw = shipped.runner.run(faces)  # int8 activations too: the float rebuild differs by their rounding only
    assert np.abs(rebuilt - raw).max() < 0.05 and (rebuilt.argmax(1) == raw.argmax(1)).mean() >= 0.9
