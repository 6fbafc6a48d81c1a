"""Real git repositories for the experiment CLI tests: a working clone of this tree and a bare remote.

The working repo holds the CURRENT working tree (`git ls-files -co --exclude-standard`), so
uncommitted work is what gets tested. Its remote has an https URL, as a pod needs, that a local
`url.<bare>.insteadOf` rewrites to the bare repository: git on this machine reaches the bare repo,
while the URL the CLI reads (and would hand to a pod) stays the https one. No traffic leaves.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from conftest import REPO

REMOTE_URL = "https://git.example.invalid/team/harness.git"


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {out.stderr}")
    return out.stdout.strip()


def tree_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    return [f for f in listed if (REPO / f).is_file()]


def make_repo(root: Path, files: list[str]) -> Path:
    """root/work (branch main, pushed) and root/remote.git; returns the working repo."""
    work, bare = root / "work", root / "remote.git"
    for name in files:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, work / name)
    git(root, "init", "-q", "--bare", str(bare))
    git(work, "init", "-q", "-b", "main")
    for key, value in (("user.name", "Test"), ("user.email", "test@example.invalid"), ("commit.gpgsign", "false"),
                       (f"url.{bare}.insteadOf", REMOTE_URL)):
        git(work, "config", key, value)
    git(work, "remote", "add", "origin", REMOTE_URL)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "harness")
    git(work, "push", "-q", "-u", "origin", "main")
    return work


def push_branch(repo: Path, branch: str, files: dict[str, str]) -> str:
    """A branch off main adding `files`, committed and pushed; the work tree returns to main."""
    git(repo, "checkout", "-q", "-b", branch, "main")
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"{branch}: hand-written")
    git(repo, "push", "-q", "origin", branch)
    git(repo, "checkout", "-q", "main")
    return git(repo, "rev-parse", branch)


def snapshot(repo: Path) -> dict:
    """Everything a refused command must leave as it was."""
    files = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if ".git" not in p.parts and p.is_file())
    return {"refs": git(repo, "for-each-ref", "--format=%(refname) %(objectname)"),
            "head": git(repo, "rev-parse", "--symbolic-full-name", "HEAD") + " " + git(repo, "rev-parse", "HEAD"),
            "status": git(repo, "status", "--porcelain"), "files": files}


class Out:
    """A fleet controller's output stream, kept as its non-empty lines."""

    def __init__(self):
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        self.lines += [line for line in text.splitlines() if line]

    def flush(self) -> None:
        pass


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def in_process(monkeypatch, capsys):
    """`experiment(repo, *args, env=...)` run through the CLI's main() in this interpreter: the same
    code path without a new interpreter importing the runpod SDK each time (seconds per call)."""
    from training.experiment.__main__ import main

    def run(repo: Path, *args: str, env: dict | None = None) -> Result:
        capsys.readouterr()
        with monkeypatch.context() as patch:
            patch.chdir(repo)
            for key, value in (env or {}).items():
                if value:
                    patch.setenv(key, value)
                else:
                    patch.delenv(key, raising=False)
            try:
                code = main(list(args))
            except SystemExit as exit:  # argparse
                code = exit.code
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return run


def experiment(repo: Path, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m training.experiment ARGS` in `repo`, as a user runs it there."""
    full_env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "training.experiment", *args], cwd=repo, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
