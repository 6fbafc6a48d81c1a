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


def write_bad_rows(root, count: int = 20) -> None:
    """An imagefolder train split of `count` headers, 4 of them bad in each way a real set can be."""
    write_imagefolder(root, "train", count)
    write_imagefolder(root, "validation", 2)
    folder = root / "train"
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    (folder / "h1.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")   # corrupt
    (folder / "h2.png").unlink()                                         # missing
    rows[3]["text"] = ""                                                  # empty transcription
    rows[4]["text"] = None                                                # null transcription
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_bad_samples_are_skipped_named_and_counted(tmp_path):
    from conftest import train_here
    from training.metrics_log import read_events

    write_bad_rows(tmp_path / "data")
    out = tmp_path / "run"
    result = train_here(out, f"dataset_name={tmp_path / 'data'}", "max_steps=1", "eval_steps=100",
                        "save_steps=100", "max_bad_sample_fraction=0.25", "per_device_train_batch_size=1",
                        "gradient_accumulation_steps=2", "train_subset=-1")
    assert result.returncode == 0, result.stdout + result.stderr
    for name, why in (("h1.png", "unreadable image"), ("h2.png", "missing image"), ("h3.png", "empty transcription"),
                      ("h4.png", "empty transcription")):
        assert any(name in line and why in line for line in result.stdout.splitlines()), (name, result.stdout)
    assert "skipped 4 of 20 train samples" in result.stdout
    [counts] = [e for e in read_events(str(out / "metrics.jsonl")) if "data_skipped_train" in e]
    assert counts["data_skipped_train"] == 4 and counts["data_skipped_eval"] == 0


def test_too_many_bad_samples_exit_2_before_training(tmp_path):
    from conftest import train_here

    write_bad_rows(tmp_path / "data")
    out = tmp_path / "run"
    result = train_here(out, f"dataset_name={tmp_path / 'data'}", "max_steps=1", "max_bad_sample_fraction=0.1",
                        "train_subset=-1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "4 of 20 train samples (20%) are bad, more than max_bad_sample_fraction=0.1" in result.stderr
    assert "checkpoint" not in result.stdout


def test_a_transcription_over_max_target_tokens_is_skipped(tmp_path):
    from training.data.screening import screen

    write_imagefolder(tmp_path, "train", 3)
    split = load_split(config_for(tmp_path), "train")
    lengths = {len(split[i]["text"]) for i in range(3)}
    kept, bad = screen(split, "train", lambda text: len(text), max_target_tokens=min(lengths))
    assert len(kept) == 1 and len(bad) == 2 and all("longer than max_target_tokens" in why for _, why in bad)


def test_preflight_checks_every_local_image_not_only_the_first_rows(tmp_path):
    from training.preflight import check_dataset

    write_imagefolder(tmp_path, "train", 30)
    for i in range(20, 30):
        (tmp_path / "train" / f"h{i}.png").unlink()
    check = check_dataset(config_for(tmp_path))
    assert not check.ok and "10 of 30 images listed in" in check.detail


def test_a_bad_sample_of_a_held_out_split_is_named_by_its_own_file(tmp_path):
    # The hold-out shuffles the rows (an index mapping over the table): the warning must name the
    # file of the row that is bad, not the file at that position of the unshuffled table.
    from training.data.screening import screen

    write_imagefolder(tmp_path, "train", 20)
    (tmp_path / "train" / "h7.png").unlink()
    splits = load_splits(config_for(tmp_path, train_subset=-1, eval_subset=-1))
    bad = [label for name in ("train", "eval")
           for label, _ in screen(getattr(splits, name), name, len, max_target_tokens=0)[1]]
    assert len(bad) == 1 and "h7.png" in bad[0], bad
