"""Where samples come from: the hub, a local folder or parquet files, or the synthetic set.

Each split is a map-style sequence of {"image": PIL.Image, "text": str, "key": str}. Images are
decoded (or rendered) only when an index is read, so skipping samples on resume costs nothing.
"""

from __future__ import annotations

import dataclasses
import io
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from configs.base import SYNTHETIC_DATASET, TrainingConfig
from training.data import synthetic
from training.data.batch_reading import BatchReads
from training.errors import UserError
from training.hub.access import is_local_path

EVAL_SPLIT_PREFERENCE = ("validation", "valid", "val", "test")
HOLDOUT_FRACTION = 0.05
SYNTHETIC_SEED = 0  # the data stays the same whatever the training seed


def dataset_kind(name: str) -> str:
    """"synthetic", "local" (an existing or explicitly relative/absolute path) or "hub"."""
    if name.startswith("synthetic:"):
        return "synthetic"
    if is_local_path(name):
        return "local"
    return "hub"


class SyntheticSplit(BatchReads):
    def __init__(self, split: str, size: int):
        self.split, self.size = split, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.size:
            raise IndexError(index)
        image, text = _render(self.split, index)
        return {"image": image, "text": text, "key": f"{self.split}/{index}"}

    def texts(self, count: int) -> list[str]:
        """The first `count` transcriptions, without rendering an image."""
        return [synthetic.sample_record(SYNTHETIC_SEED, self.split, i).transcription()
                for i in range(min(count, self.size))]


@lru_cache(maxsize=512)  # ~0.6 MB an image: epochs over a small set render each header once
def _render(split: str, index: int):
    record = synthetic.sample_record(SYNTHETIC_SEED, split, index)
    return synthetic.render_header(record, SYNTHETIC_SEED, split, index), record.transcription()


class TableSplit(BatchReads):
    """Rows of a `datasets.Dataset`; the image column may hold images, paths or bytes."""

    def __init__(self, table, image_column: str, text_column: str, name: str, root: Path | None = None):
        self.table, self.image_column, self.text_column = table, image_column, text_column
        self.name, self.root = name, root

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> dict:
        row = self.table[int(index)]
        text = row[self.text_column]  # None stays None (screening skips it), never the text "None"
        return {"image": _as_image(row[self.image_column], self.root), "text": text if text is None else str(text),
                "key": f"{self.name}/{index}"}

    def texts(self, count: int) -> list[str]:
        """The first `count` transcriptions, reading the text column only (no image is decoded)."""
        return [str(t) for t in self.table.select(range(min(count, len(self.table))))[self.text_column]]

    def describe(self, index: int) -> str:
        """The sample as a user finds it: its file where there is one, else split/row."""
        # The arrow view reads the row without decoding its image, through the table's index mapping
        # (a held-out split is a shuffled selection: its .data is the whole table, unshuffled).
        row = self.table.select_columns([self.image_column]).with_format("arrow")[int(index)]
        value = row.column(self.image_column)[0].as_py()
        if isinstance(value, dict):
            value = value.get("path")
        return f"{value} (row {index})" if isinstance(value, str) and value else f"{self.name}/{index}"


class Screened(BatchReads):
    """The usable samples of a split, in their order (training.data.screening)."""

    def __init__(self, base, rows: list[int]):
        self.base, self.rows = base, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return self.base[self.rows[index]]


def _as_image(value, root: Path | None):
    from PIL import Image

    if isinstance(value, dict):  # parquet written by `datasets`: {"bytes": ..., "path": ...}
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray)):
        value = Image.open(io.BytesIO(value))
    elif isinstance(value, str):
        value = Image.open(root / value if root and not os.path.isabs(value) else value)
    return value.convert("RGB")


class Subset(BatchReads):
    def __init__(self, base, size: int):
        self.base, self.size = base, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.size:
            raise IndexError(index)
        return self.base[index]

    def texts(self, count: int) -> list[str]:
        return self.base.texts(min(count, self.size))


def take(split, subset: int):
    return split if subset == -1 or subset >= len(split) else Subset(split, subset)


def whole_steps(split, samples_per_step: int):
    """The split cut to a multiple of one optimizer step's samples (all ranks together).

    The Trainer resumes by counting full steps per epoch; an epoch that ends mid-step would put a
    resumed run on other samples than the uninterrupted one. Dropping the tail (fewer samples than
    one step) keeps every epoch whole and every resume exact."""
    whole = len(split) - len(split) % samples_per_step
    return split if whole in (0, len(split)) else Subset(split, whole)


@dataclass
class Splits:
    train: object
    eval: object
    eval_split: str  # the split evaluated on, or "train (5% held out)"
    skipped: dict = None  # {"train": n, "eval": m} bad samples left out, once screened


def screen_splits(config: TrainingConfig, splits: Splits, count_tokens) -> Splits:
    """The splits without their bad samples (training.data.screening); UserError when too many are bad."""
    from training.data.screening import check_share, screen

    if dataset_kind(config.dataset_name) == "synthetic":
        return dataclasses.replace(splits, skipped={"train": 0, "eval": 0})
    cleaned, skipped = {}, {}
    for name in ("train", "eval"):
        split = getattr(splits, name)
        kept, bad = screen(split, name, count_tokens, config.max_target_tokens)
        check_share(name, len(split), bad, config.max_bad_sample_fraction)
        cleaned[name], skipped[name] = (split if not bad else Screened(split, kept)), len(bad)
    return Splits(cleaned["train"], cleaned["eval"], splits.eval_split, skipped)


def load_splits(config: TrainingConfig) -> Splits:
    """The train and eval splits of the configured dataset, cut to train_subset/eval_subset."""
    kind = dataset_kind(config.dataset_name)
    if kind == "synthetic":
        _check_synthetic(config.dataset_name)
        eval_name = "validation" if config.eval_split == "auto" else config.eval_split
        train = SyntheticSplit(config.train_split, _synthetic_size(config.train_split))
        evaluation = SyntheticSplit(eval_name, _synthetic_size(eval_name))
        return Splits(take(train, config.train_subset), take(evaluation, config.eval_subset), eval_name)
    tables = _load_tables(config)
    if config.train_split not in tables:
        raise UserError(f"dataset_name={config.dataset_name!r} has no split {config.train_split!r} "
                        f"(it has {', '.join(tables)}); set train_split")
    train = tables[config.train_split]
    eval_name = config.eval_split
    if eval_name == "auto":
        eval_name = next((s for s in EVAL_SPLIT_PREFERENCE if s in tables), None)
    if eval_name is None:
        parts = train.train_test_split(test_size=max(1, int(len(train) * HOLDOUT_FRACTION)), seed=0)
        train, evaluation, eval_name = parts["train"], parts["test"], f"{config.train_split} (5% held out)"
    elif eval_name not in tables:
        raise UserError(f"eval_split={config.eval_split!r}: dataset has no such split "
                        f"(it has {', '.join(tables)})")
    else:
        evaluation = tables[eval_name]
    _check_columns(config, train)
    root = _local_root(config)
    return Splits(take(TableSplit(train, config.image_column, config.text_column, "train", root), config.train_subset),
                  take(TableSplit(evaluation, config.image_column, config.text_column, "eval", root), config.eval_subset),
                  eval_name)


def load_split(config: TrainingConfig, split: str):
    """One named split of the configured dataset, whole (for evaluation)."""
    if dataset_kind(config.dataset_name) == "synthetic":
        _check_synthetic(config.dataset_name)
        return SyntheticSplit(split, _synthetic_size(split))
    tables = _load_tables(config)
    if split not in tables:
        raise UserError(f"--split {split}: dataset {config.dataset_name!r} has {', '.join(tables)}")
    _check_columns(config, tables[split])
    return TableSplit(tables[split], config.image_column, config.text_column, split, _local_root(config))


def _check_synthetic(name: str) -> None:
    if name != SYNTHETIC_DATASET:
        raise UserError(f"dataset_name={name!r}: the only synthetic set is {SYNTHETIC_DATASET!r}")


def _synthetic_size(split: str) -> int:
    try:
        return synthetic.split_size(split)
    except KeyError as error:
        raise UserError(f"split {split!r}: {error.args[0]}") from None


def _local_root(config: TrainingConfig) -> Path | None:
    path = Path(os.path.expanduser(config.dataset_name))
    return path if dataset_kind(config.dataset_name) == "local" and path.is_dir() else None


def _load_tables(config: TrainingConfig) -> dict:
    """All splits as `datasets.Dataset`s; hub datasets are downloaded with HF_TOKEN."""
    import datasets

    name = config.dataset_name
    if dataset_kind(name) == "local":
        path = Path(os.path.expanduser(name))
        if not path.exists():
            raise UserError(f"dataset_name={name!r}: no such file or directory; "
                            "give an existing folder or parquet file")
        try:
            if path.is_file():
                loaded = datasets.load_dataset(path.suffix.lstrip("."), data_files=str(path))
            else:
                loaded = datasets.load_dataset(str(path))
        except Exception as error:  # the files are there but not a readable dataset
            raise UserError(f"dataset_name={name!r}: cannot read it as a dataset ({type(error).__name__}: "
                            f"{error}); see README 'Your own data'") from None
        return dict(loaded)
    from training.hub.access import load_hub_dataset

    return dict(load_hub_dataset(name))


def _check_columns(config: TrainingConfig, table) -> None:
    columns = list(table.column_names)
    missing = [f"{field}={getattr(config, field)!r}" for field in ("image_column", "text_column")
               if getattr(config, field) not in columns]
    if missing:
        raise UserError(f"{' and '.join(missing)}: not a column of {config.dataset_name!r} "
                        f"(columns: {', '.join(columns)})")
