"""Experiment config files: choosing the parent, writing the file, validating it as the branch has it.

A generated file imports its parent's `config` and replaces only the overridden
fields; `experiment_name` is never written (train.py takes it from the git branch at run time).
Validation runs the branch's own configs/ package in a subprocess: the parent module may exist only
on that branch, and the pod will run exactly that code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from configs.layout import EXPERIMENTS_DIR
from training.errors import UserError
from training.experiment.gitops import Git
from training.experiment.names import DEFAULT_PARENT, config_path
from training.redaction import SECRET_VARIABLES

# Runs inside an extracted copy of a branch's configs/: import each file, report problems and values.
_VALIDATE = """
import dataclasses, json, sys
from configs.base import ConfigError
from configs.loader import load_config
result = {}
for path in sys.argv[1:]:
    try:
        result[path] = {"problems": [], "config": dataclasses.asdict(load_config(path))}
    except ConfigError as error:
        result[path] = {"problems": error.problems, "config": None}
print(json.dumps(result))
"""
VALIDATE_TIMEOUT_S = 120


def choose_parent(git: Git, from_commit: str, from_branch: str | None, explicit: str | None) -> str:
    """The parent file: --parent if given, else the --from branch's own experiment file, else the baseline."""
    if explicit:
        path = os.path.normpath(explicit).replace(os.sep, "/")
        stem = os.path.basename(path)[:-3] if path.endswith(".py") else ""
        if os.path.dirname(path) != EXPERIMENTS_DIR or not stem.isidentifier():
            raise UserError(f"--parent {explicit}: must be a file in {EXPERIMENTS_DIR}/ named like a Python module, "
                            f"e.g. {DEFAULT_PARENT}")
    elif from_branch and git.has_file(from_commit, config_path(from_branch)):
        path = config_path(from_branch)
    else:
        path = DEFAULT_PARENT
    if not git.has_file(from_commit, path):
        raise UserError(f"parent config {path}: not in {from_branch or from_commit[:7]} "
                        f"(pass --parent {EXPERIMENTS_DIR}/<file>.py)")
    return path


def render(name: str, parent_path: str, values: dict[str, object], command: str, why: str | None) -> str:
    parent_module = parent_path[:-3].replace("/", ".")
    changes = ", ".join(f"{k}={v!r}" for k, v in values.items()) or "no changes (a rerun under a new name)"
    lines = [
        f'"""Experiment {name}: {parent_path} with {changes}.',
        "",
        f"    python training/train.py --config {config_path(name)}",
        "",
        f"Created by: {command}",
        "experiment_name is not set here: it is the git branch at run time.",
        '"""',
        "",
        "import dataclasses",
        "",
        f"from {parent_module} import config as parent",
        "",
    ]
    if why:
        lines += [f"# {line}" for line in why.splitlines() if line.strip()]
    if values:
        lines.append("config = dataclasses.replace(")
        lines.append("    parent,")
        lines += [f"    {k}={v!r}," for k, v in values.items()]
        lines.append(")")
    else:
        lines.append("config = dataclasses.replace(parent)")
    return "\n".join(lines) + "\n"


def validate(git: Git, commit: str, files: dict[str, str], paths: list[str]) -> dict[str, dict]:
    """{path: {"problems": [...], "config": dict | None}} for `paths`, as they load in `commit` plus `files`."""
    with tempfile.TemporaryDirectory(prefix="experiment-validate-") as tree:
        git.extract(commit, ["configs"], tree)
        for path, text in files.items():
            os.makedirs(os.path.join(tree, os.path.dirname(path)), exist_ok=True)
            with open(os.path.join(tree, path), "w", encoding="utf-8") as out:
                out.write(text)
        # Experiment files are code, from any branch: the one that validates them gets no secret.
        env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
        env.update(PYTHONPATH=tree, PYTHONDONTWRITEBYTECODE="1")
        try:
            out = subprocess.run([sys.executable, "-c", _VALIDATE, *paths], cwd=tree, env=env, capture_output=True,
                                 text=True, timeout=VALIDATE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise UserError(f"validating {', '.join(paths)} took over {VALIDATE_TIMEOUT_S} s") from None
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"cannot load the configs of {commit[:7]}: {last}")
    return json.loads(out.stdout.strip().splitlines()[-1])
