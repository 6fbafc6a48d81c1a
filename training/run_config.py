"""`training_config.json`: the resolved config a run trained with, beside its outputs and in `final/`.
Light to import (the experiment CLI reads it without torch)."""

from __future__ import annotations

import dataclasses
import json
import os

from configs.base import TrainingConfig
from training.checkpointing.state import HARNESS_STATE_FILE
from training.run_status import write_json_atomic

CONFIG_FILE = "training_config.json"


def write_config(config: TrainingConfig, directory: str) -> None:
    write_json_atomic(os.path.join(directory, CONFIG_FILE), dataclasses.asdict(config))


def saved_config(directory: str) -> TrainingConfig | None:
    """The config a final adapter or a checkpoint was trained with, if it recorded one."""
    candidates = [(os.path.join(directory, CONFIG_FILE), None),
                  (os.path.join(directory, HARNESS_STATE_FILE), "config"),
                  (os.path.join(os.path.dirname(os.path.abspath(directory)), CONFIG_FILE), None)]
    for path, key in candidates:
        if os.path.exists(path):
            with open(path, encoding="utf-8") as source:
                values = json.load(source)
            values = values.get(key, {}) if key else values
            known = set(TrainingConfig.__dataclass_fields__)
            return TrainingConfig(**{k: v for k, v in values.items() if k in known})
    return None
