"""A run's config: `resolve` (the run-time defaults: experiment_name from the git branch, output_dir
on the volume) and `training_config.json`, the resolved config a run trained with, beside its outputs
and in `final/`. Light to import (the experiment CLI reads it without torch)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping

from configs import layout
from configs.base import ConfigError, TrainingConfig
from configs.loader import REPO_ROOT
from training.checkpointing.save import write_json_atomic
from training.checkpointing.state import HARNESS_STATE_FILE
from training.git_cli import git_branch

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


def resolve(config: TrainingConfig, environ: Mapping[str, str] = os.environ) -> TrainingConfig:
    """Fill the run-time defaults: experiment_name from the git branch, output_dir from it.

    With VOLUME_PATH set (a pod), a relative output_dir is taken on the volume: the working
    directory there is the clone, which setup_pod.sh resets at every restart. An output_dir inside
    a clone that lives on the volume is refused for the same reason."""
    name = config.experiment_name or git_branch() or "local"
    volume = environ.get("VOLUME_PATH") or ""
    output_dir = os.path.expanduser(config.output_dir)
    if not output_dir:
        output_dir = layout.run_directory(name, volume)
    elif volume and not os.path.isabs(output_dir):
        output_dir = os.path.join(volume, output_dir)
    output_dir = os.path.abspath(output_dir)
    if volume and _inside(str(REPO_ROOT), volume) and _inside(output_dir, str(REPO_ROOT)):
        raise ConfigError([f"output_dir={config.output_dir!r}: inside the code checkout {REPO_ROOT}, which a "
                           "restart resets; use a relative path (taken on the volume) or one under "
                           f"{os.path.abspath(volume)} outside the checkout"])
    return dataclasses.replace(config, experiment_name=name, output_dir=output_dir)


def _inside(path: str, directory: str) -> bool:
    path, directory = os.path.realpath(path), os.path.realpath(directory)
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)

