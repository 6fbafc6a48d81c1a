"""Loading an experiment file by path and `--set FIELD=VALUE` overrides (the run-time defaults, which
need git and the pod's environment, are training.run_config.resolve: configs imports nothing of training).

Every function here raises ConfigError with one readable line per problem; none writes to disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from configs import layout
from configs.base import FIELD_TYPES, ConfigError, TrainingConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS_DIR = REPO_ROOT / layout.EXPERIMENTS_DIR
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def load_config(path: str | os.PathLike, overrides: Iterable[str] = ()) -> TrainingConfig:
    """The `config` of the experiment file at `path`, with `overrides` applied and validated."""
    config = _import_config(Path(path))
    return apply_overrides(config, overrides)


def apply_overrides(config: TrainingConfig, overrides: Iterable[str]) -> TrainingConfig:
    values, problems = parse_overrides(overrides)
    try:
        config = dataclasses.replace(config, **values)
    except ConfigError as error:
        problems += [f"--set {p}" if p.split("=")[0] in values else p for p in error.problems]
    if problems:
        raise ConfigError(problems)
    return config


def parse_overrides(overrides: Iterable[str]) -> tuple[dict[str, object], list[str]]:
    """Convert FIELD=VALUE strings to typed values; unknown fields suggest the nearest name."""
    values: dict[str, object] = {}
    problems: list[str] = []
    for item in overrides:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            problems.append(f"--set {item!r}: expected FIELD=VALUE, e.g. --set learning_rate=1e-4")
            continue
        if name not in FIELD_TYPES:
            problems.append(f"--set {item}: {unknown_field_hint(name)}")
            continue
        try:
            values[name] = convert(name, raw)
        except ValueError as error:
            problems.append(f"--set {item}: {error}")
    return values, problems


def convert(name: str, raw: str) -> object:
    """`raw` as the type of field `name`; ValueError says what was expected."""
    kind = FIELD_TYPES[name]
    text = raw.strip()
    if kind is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError("must be true or false")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError("must be an integer") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError("must be a number, e.g. 2e-4") from None
    return raw


def unknown_field_hint(name: str) -> str:
    close = difflib.get_close_matches(name, FIELD_TYPES, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else "see configs/base.py for the fields"
    return f"unknown field '{name}' ({hint})"


def available_experiments() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.py") if not p.stem.startswith("_"))


def _import_config(path: Path) -> TrainingConfig:
    shown = str(path)
    if not path.is_file():
        names = ", ".join(available_experiments()) or "none yet"
        raise ConfigError([f"--config {shown}: no such file (experiments in configs/experiments/: {names})"])
    if path.suffix != ".py":
        raise ConfigError([f"--config {shown}: must be a Python file defining `config`"])
    try:
        with _importable_repository():
            module = _import_file(path.resolve())
    except ConfigError as error:
        raise ConfigError([f"{shown}: {p}" for p in error.problems]) from None
    except SyntaxError as error:
        raise ConfigError([f"{shown}:{error.lineno}: syntax error: {error.msg}"]) from None
    except TypeError as error:
        match = re.search(r"unexpected keyword argument '(\w+)'", str(error))
        if match:
            raise ConfigError([f"{shown}: {unknown_field_hint(match.group(1))}"]) from None
        raise ConfigError([f"{shown}: {type(error).__name__}: {error}"]) from None
    except Exception as error:  # the config file itself is broken: say where, not a traceback
        raise ConfigError([f"{shown}: {type(error).__name__}: {error}"]) from None
    config = getattr(module, "config", None)
    if not isinstance(config, TrainingConfig):
        raise ConfigError([f"{shown}: must define a module-level `config = TrainingConfig(...)`"
                           f" (found {type(config).__name__})"])
    return config


@contextlib.contextmanager
def _importable_repository():
    """While an experiment file loads: `configs.experiments.*` importable, and no bytecode written
    (loading a config leaves nothing behind on disk). Both restored after, whatever happened."""
    added = str(REPO_ROOT) not in sys.path
    if added:
        sys.path.insert(0, str(REPO_ROOT))
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        yield
    finally:
        sys.dont_write_bytecode = writes_bytecode
        if added and str(REPO_ROOT) in sys.path:
            sys.path.remove(str(REPO_ROOT))


def _import_file(path: Path):
    try:
        relative = path.relative_to(REPO_ROOT)
    except ValueError:
        relative = None
    if relative is not None and all(part.isidentifier() for part in relative.with_suffix("").parts):
        return importlib.import_module(".".join(relative.with_suffix("").parts))
    spec = importlib.util.spec_from_file_location(f"_experiment_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
