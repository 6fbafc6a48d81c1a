"""Dataset loading from local folders, CSV/JSONL metadata and parquet, with subsets and holdout."""

from __future__ import annotations

import json

import pytest

from configs.base import SYNTHETIC_DATASET, TrainingConfig
from training.data.sources import SyntheticSplit, dataset_kind, load_split, load_splits, take
from training.data.synthetic import render_header, sample_record
from training.errors import UserError


def write_imagefolder(root, split: str, count: int, metadata: str = "jsonl", text_column: str = "text"):
    folder = root / split
    folder.mkdir(parents=True)
    rows = []
    for i in range(count):
        record = sample_record(1, split, i)
        render_header(record, 1, split, i).save(folder / f"h{i}.png")
        rows.append({"file_name": f"h{i}.png", text_column: record.transcription()})
    if metadata == "jsonl":
        (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        import csv

        with open(folder / "metadata.csv", "w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return rows


def config_for(path, **values) -> TrainingConfig:
    return TrainingConfig(dataset_name=str(path), **values)


@pytest.mark.parametrize("name, kind", [
    (SYNTHETIC_DATASET, "synthetic"), ("/data/x", "local"), ("./x", "local"),
    ("wrath/well-log-headers-ocr", "hub"),
])
def test_dataset_kind(name, kind):
    assert dataset_kind(name) == kind


def test_synthetic_subsets():
    splits = load_splits(TrainingConfig(dataset_name=SYNTHETIC_DATASET, train_subset=12, eval_subset=3))
    assert (len(splits.train), len(splits.eval), splits.eval_split) == (12, 3, "validation")
    assert splits.train[11]["text"] and splits.train[0]["image"].mode == "RGB"
    with pytest.raises(IndexError):
        splits.train[12]


@pytest.mark.parametrize("metadata", ["jsonl", "csv"])
def test_local_imagefolder_with_splits(tmp_path, metadata):
    rows = write_imagefolder(tmp_path, "train", 6, metadata)
    write_imagefolder(tmp_path, "validation", 2, metadata)
    splits = load_splits(config_for(tmp_path))
    assert (len(splits.train), len(splits.eval), splits.eval_split) == (6, 2, "validation")
    texts = {splits.train[i]["text"] for i in range(6)}
    assert texts == {r["text"] for r in rows}
    assert splits.train[0]["image"].size == (640, 320)


def test_local_folder_without_eval_split_holds_out_train(tmp_path):
    write_imagefolder(tmp_path, "train", 20, text_column="transcription")
    splits = load_splits(config_for(tmp_path, text_column="transcription", eval_subset=1))
    assert len(splits.train) == 19 and len(splits.eval) == 1
    assert "held out" in splits.eval_split


def test_parquet_file_with_image_bytes(tmp_path):
    import io

    import datasets

    rows = {"image": [], "ground_truth": []}
    for i in range(4):
        record = sample_record(2, "train", i)
        buffer = io.BytesIO()
        render_header(record, 2, "train", i).save(buffer, format="PNG")
        rows["image"].append({"bytes": buffer.getvalue(), "path": None})
        rows["ground_truth"].append(record.transcription())
    path = tmp_path / "headers.parquet"
    datasets.Dataset.from_dict(rows).to_parquet(str(path))
    splits = load_splits(config_for(path, text_column="ground_truth"))
    assert len(splits.train) + len(splits.eval) == 4
    assert splits.train[0]["image"].mode == "RGB"


def test_missing_column_names_the_columns(tmp_path):
    write_imagefolder(tmp_path, "train", 3)
    with pytest.raises(UserError, match=r"text_column='label': not a column .*columns: image, text"):
        load_splits(config_for(tmp_path, text_column="label"))


def test_missing_split_for_evaluation(tmp_path):
    write_imagefolder(tmp_path, "train", 3)
    with pytest.raises(UserError, match="--split test"):
        load_split(config_for(tmp_path), "test")


def test_unreadable_local_dataset(tmp_path):
    (tmp_path / "notes.txt").write_text("not a dataset")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="cannot read it as a dataset"):
        load_splits(config_for(tmp_path / "empty"))



def test_texts_are_read_without_decoding_images(tmp_path):
    synthetic_split = SyntheticSplit("validation", 5)
    assert synthetic_split.texts(3) == [synthetic_split[i]["text"] for i in range(3)]
    assert len(synthetic_split.texts(50)) == 5
    write_imagefolder(tmp_path, "train", 3)
    for image in (tmp_path / "train").glob("*.png"):
        image.write_bytes(b"not a png")  # any decoding would fail
    split = load_split(TrainingConfig(dataset_name=str(tmp_path)), "train")
    assert split.texts(2) == [sample_record(1, "train", i).transcription() for i in range(2)]
    assert take(split, 1).texts(5) == split.texts(1)
