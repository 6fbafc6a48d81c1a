"""`new` and `sweep` on real git repositories: the branches, files and commits they make, and every
refusal leaving the repository exactly as it was."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from experiment_repo import experiment, git, make_repo, snapshot, tree_files

FILES = tree_files()


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path, FILES)


def load_from_branch(repo, branch, path):
    """The `config` of `path` as `branch` has it, imported in a fresh interpreter from a checkout."""
    checkout = repo.parent / f"checkout-{branch}"
    git(repo, "worktree", "add", "-q", str(checkout), branch)
    code = (f"from configs.loader import load_config; import dataclasses, json; "
            f"print(json.dumps(dataclasses.asdict(load_config({path!r}))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=checkout, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_new_creates_branch_file_and_commit_without_touching_the_work_tree(repo):
    before = snapshot(repo)
    result = experiment(repo, "new", "lr-1e4", "--set", "learning_rate=1e-4", "--set", "r=32",
                        "--why", "Does a smaller step help long API numbers?")
    assert result.returncode == 0, result.stderr
    assert "created branch lr-1e4" in result.stdout

    after = snapshot(repo)
    assert after["head"] == before["head"] and after["status"] == "" and after["files"] == before["files"]
    assert git(repo, "log", "-1", "--format=%s", "lr-1e4") == "Exp: lr-1e4 learning_rate=1e-4 r=32"
    assert git(repo, "rev-parse", "lr-1e4~1") == git(repo, "rev-parse", "main")
    assert git(repo, "diff", "--name-only", "main", "lr-1e4") == "configs/experiments/lr_1e4.py"

    text = git(repo, "show", "lr-1e4:configs/experiments/lr_1e4.py")
    assert "python training/train.py --config configs/experiments/lr_1e4.py" in text
    assert "from configs.experiments.qwen3_qlora_r16 import config as parent" in text
    assert "# Does a smaller step help long API numbers?" in text
    assert "experiment_name=" not in text and "learning_rate=0.0001," in text and "r=32," in text

    config = load_from_branch(repo, "lr-1e4", "configs/experiments/lr_1e4.py")
    assert config["learning_rate"] == 1e-4 and config["r"] == 32 and config["experiment_name"] == ""
    assert config["max_steps"] == 500  # everything else from the parent


def test_generated_file_is_lint_clean_and_importable_by_module_name(repo):
    assert experiment(repo, "new", "2x-steps", "--set", "max_steps=1000").returncode == 0
    checkout = repo.parent / "checkout"
    git(repo, "worktree", "add", "-q", str(checkout), "2x-steps")
    path = checkout / "configs/experiments/exp_2x_steps.py"
    assert path.is_file()
    lint = subprocess.run(["ruff", "check", "--no-cache", str(path)], cwd=checkout, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    code = "from configs.experiments.exp_2x_steps import config; print(config.max_steps)"
    out = subprocess.run([sys.executable, "-c", code], cwd=checkout, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "1000", out.stderr


def test_parent_is_the_from_branch_own_file_then_parent_option(repo):
    assert experiment(repo, "new", "base-r32", "--set", "r=32").returncode == 0
    assert experiment(repo, "new", "base-r32-lr", "--from", "base-r32", "--set", "learning_rate=1e-4").returncode == 0
    text = git(repo, "show", "base-r32-lr:configs/experiments/base_r32_lr.py")
    assert "from configs.experiments.base_r32 import config as parent" in text
    config = load_from_branch(repo, "base-r32-lr", "configs/experiments/base_r32_lr.py")
    assert (config["r"], config["learning_rate"]) == (32, 1e-4)

    result = experiment(repo, "new", "quick-lr", "--parent", "configs/experiments/quick_val.py",
                        "--set", "learning_rate=1e-3")
    assert result.returncode == 0, result.stderr
    config = load_from_branch(repo, "quick-lr", "configs/experiments/quick_lr.py")
    assert config["model_name"].startswith("standin:") and config["learning_rate"] == 1e-3


@pytest.mark.parametrize("args, message", [
    (["new", "lr 1e4"], "experiment name 'lr 1e4': use letters, digits"),
    (["new", "a..b"], "holding '..'"),
    (["new", "main"], "experiment main: branch already exists"),
    (["new", "x", "--set", "lerning_rate=1e-4"], "unknown field 'lerning_rate' (did you mean 'learning_rate'?)"),
    (["new", "x", "--set", "max_steps=0"], "--set max_steps=0: must be >= 1"),
    (["new", "x", "--set", "r=abc", "--set", "learning_rate=-1"], "--set r=abc: must be an integer"),
    (["new", "x", "--set", "experiment_name=y"], "the experiment's name is its branch"),
    (["new", "x", "--from", "no-such-branch"], "--from no-such-branch: no such branch or commit"),
    (["new", "x", "--parent", "configs/base.py"], "--parent configs/base.py: must be a file in configs/experiments/"),
    (["new", "quick_val"], "configs/experiments/quick_val.py already exists in main"),
    (["sweep", "s", "--grid", "learning_rate"], "expected FIELD=V1,V2"),
    (["sweep", "s", "--grid", "lr=1,2"], "unknown field 'lr'"),
    (["sweep", "s", "--grid", "r=8,x"], "--grid r=x: must be an integer"),
    (["sweep", "s", "--grid", "r=8,8"], "a value is repeated"),
    (["sweep", "s", "--grid", "learning_rate=1e-4,-1"], "--set learning_rate=-1.0: must be > 0"),
    (["sweep", "s", "--grid", "r=1,2,3,4,5,6,7,8,9", "seed=1,2,3,4,5,6,7,8"], "at most 64 per sweep"),
    (["sweep", "bad name", "--grid", "r=8,16"], "experiment name 'bad name'"),
])
def test_refusals_change_nothing(repo, args, message):
    before = snapshot(repo)
    result = experiment(repo, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert all(line.startswith("error: ") for line in result.stderr.splitlines()), result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(repo) == before


def test_every_problem_is_reported_at_once(repo):
    result = experiment(repo, "new", "x", "--set", "lerning_rate=1", "--set", "max_steps=0", "--set", "r=abc")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 3, result.stderr
    result = experiment(repo, "new", "main", "--set", "lerning_rate=1")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 2, result.stderr


def test_refuses_a_dirty_tree(repo):
    (repo / "README.md").write_text("edited\n")
    before = snapshot(repo)
    result = experiment(repo, "new", "x", "--set", "r=8")
    assert result.returncode == 2 and "uncommitted changes (README.md)" in result.stderr
    assert snapshot(repo) == before
    (repo / "notes.txt").write_text("untracked\n")
    assert experiment(repo, "sweep", "s", "--grid", "r=8,16").returncode == 2


def test_refuses_outside_a_git_repository(tmp_path):
    from conftest import REPO

    result = experiment(tmp_path, "new", "x", env={"PYTHONPATH": str(REPO)})
    assert result.returncode == 2 and "not inside a git repository" in result.stderr


def test_sweep_dry_run_lists_and_creates_nothing(repo):
    before = snapshot(repo)
    result = experiment(repo, "sweep", "grid", "--grid", "learning_rate=1e-4,2e-4", "r=16,32", "--dry-run")
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert names == ["grid-lr1e-4-r16", "grid-lr1e-4-r32", "grid-lr2e-4-r16", "grid-lr2e-4-r32"]
    assert "grid-lr2e-4-r32                          learning_rate=2e-4 r=32" in result.stdout
    assert snapshot(repo) == before


def test_sweep_creates_one_branch_per_combination(repo):
    assert experiment(repo, "new", "base-r32", "--set", "r=32").returncode == 0
    before = snapshot(repo)
    result = experiment(repo, "sweep", "s", "--from", "base-r32", "--grid", "learning_rate=1e-4,3e-4",
                        "lora_dropout=0,0.05")
    assert result.returncode == 0, result.stderr
    branches = git(repo, "branch", "--list", "s-*", "--format=%(refname:short)").split()
    assert branches == ["s-lr1e-4-dropout0", "s-lr1e-4-dropout0.05", "s-lr3e-4-dropout0", "s-lr3e-4-dropout0.05"]
    assert git(repo, "log", "-1", "--format=%s", "s-lr3e-4-dropout0.05") == "Exp: s-lr3e-4-dropout0.05 learning_rate=3e-4 lora_dropout=0.05"
    config = load_from_branch(repo, "s-lr3e-4-dropout0.05", "configs/experiments/s_lr3e_4_dropout0_05.py")
    assert (config["r"], config["learning_rate"], config["lora_dropout"]) == (32, 3e-4, 0.05)
    after = snapshot(repo)
    assert after["head"] == before["head"] and after["files"] == before["files"]


def test_sweep_is_all_or_nothing_when_one_name_is_taken(repo):
    assert experiment(repo, "new", "s-r16", "--set", "r=16").returncode == 0
    before = snapshot(repo)
    result = experiment(repo, "sweep", "s", "--grid", "r=8,16,32")
    assert result.returncode == 2 and "experiment s-r16: branch already exists" in result.stderr
    assert snapshot(repo) == before

