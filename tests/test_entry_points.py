"""The documented commands: each is a console script of the package, and none imports another."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from conftest import REPO

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
ENTRY_MODULES = sorted({target.split(":")[0] for target in SCRIPTS.values()})


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_script_is_the_documented_command(name, capsys):
    module, _, function = SCRIPTS[name].partition(":")
    main = getattr(importlib.import_module(module), function)
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0 and "usage:" in capsys.readouterr().out


# Each command run far enough to do its own imports (a bad path exits 2 after them).
RUNS = {"training.train": ["--config", "/nonexistent.py"],
        "training.evaluate": ["--model", "/nonexistent"],
        "training.experiment.__main__": ["compare", "--outputs", "/nonexistent"]}


def test_every_entry_point_is_exercised():
    assert set(RUNS) == set(ENTRY_MODULES)


@pytest.mark.parametrize("module", ENTRY_MODULES)
def test_entry_points_do_not_import_each_other(module):
    others = [m for m in ENTRY_MODULES if m != module]
    code = (f"import sys, {module} as entry\ncode = entry.main({RUNS[module]!r})\n"
            f"print(code, [m for m in {others!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    code, _, imported = out.stdout.strip().partition(" ")
    assert imported == "[]", f"{module} imports {imported}"
