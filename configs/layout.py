"""Where things live, for every command: experiment files, run outputs, and what a name may be."""

from __future__ import annotations

import os
import re

EXPERIMENTS_DIR = "configs/experiments"  # relative to the repository root
CHECKPOINTS_DIR = "checkpoints"  # one directory per experiment under the outputs root
LOCAL_OUTPUTS = "outputs"  # the outputs root's parent off a pod (no VOLUME_PATH)

# What experiment_name may be: any git branch the harness trains (so '/' is allowed), which also
# becomes a directory name (with '/' as '-') and a W&B run name.
RUN_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")
# What `experiment new|sweep` creates: no '/', so NAME is the branch, the pod (exp-NAME) and the
# run's directory unchanged; short enough for a RunPod pod name.
EXPERIMENT_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
# A Hugging Face Hub repository id (ORG/NAME), before "{experiment_name}" is filled in.
HUB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/([A-Za-z0-9._-]|\{experiment_name\}){1,96}$")


def outputs_root(volume: str | None = None) -> str:
    """<VOLUME_PATH or ./outputs>/checkpoints: where runs write one directory per experiment."""
    return os.path.join(volume or LOCAL_OUTPUTS, CHECKPOINTS_DIR)


def run_directory(name: str, volume: str | None = None) -> str:
    """The default output_dir of experiment `name`."""
    return os.path.join(outputs_root(volume), name.replace("/", "-"))
