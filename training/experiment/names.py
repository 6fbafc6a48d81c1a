"""What an experiment name maps to: its branch, its config module, its pod and its outputs directory.

The rule, used by every command: the branch is NAME itself; the config file is
configs/experiments/<module>.py where <module> is NAME with every character that is not a letter, a
digit or '_' replaced by '_' (and `exp_` in front when it would start with a digit), so that other
files can `from configs.experiments.<module> import config`; the pod is named `exp-NAME`
(training.runpod.names); the run
writes to <outputs>/checkpoints/NAME (train.py's default, since experiment_name is the branch).
"""

from __future__ import annotations

import keyword
import os
import re

from configs import layout
from configs.layout import EXPERIMENT_NAME_PATTERN, EXPERIMENTS_DIR

DEFAULT_PARENT = f"{EXPERIMENTS_DIR}/qwen3_qlora_r16.py"


def name_problems(name: str) -> list[str]:
    if not EXPERIMENT_NAME_PATTERN.match(name):
        return [f"experiment name {name!r}: use letters, digits, '.', '_' and '-' (at most 80, "
                "starting with a letter or digit), e.g. lr-1e-4"]
    if name.endswith((".", ".lock")) or ".." in name:
        return [f"experiment name {name!r}: git refuses branch names ending in '.' or '.lock' or holding '..'"]
    if name == "HEAD":
        return ["experiment name 'HEAD': git reserves it; pick another"]
    return []


def module_name(name: str) -> str:
    module = re.sub(r"[^0-9A-Za-z_]", "_", name)
    if module[0].isdigit():
        module = f"exp_{module}"
    return f"{module}_" if keyword.iskeyword(module) else module


def config_path(name: str) -> str:
    return f"{EXPERIMENTS_DIR}/{module_name(name)}.py"


def outputs_root(explicit: str | None = None) -> str:
    """Where runs write one directory per experiment: --outputs, else <VOLUME_PATH or ./outputs>/checkpoints."""
    return explicit or layout.outputs_root(os.environ.get("VOLUME_PATH"))
