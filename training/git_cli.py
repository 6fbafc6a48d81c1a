"""The one way the harness runs git: through its CLI, with a timeout, errors as one readable line.

`run_git` is for commands that must succeed (the experiment commands: a failure is a UserError);
`git_output` for questions whose answer may be "unknown" (a run records its branch and commit when
git can tell, and trains all the same when it can't).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from training.errors import UserError

REPO_ROOT = Path(__file__).resolve().parent.parent
GIT_TIMEOUT_S = 60  # ls-remote goes over the network; nothing else comes close


def run_git(args: list[str], cwd, input=None, env=None, check=True, binary=False) -> subprocess.CompletedProcess:
    data = input.encode() if isinstance(input, str) else input
    try:
        out = subprocess.run(["git", *args], cwd=cwd, input=data, env=env, capture_output=True, timeout=GIT_TIMEOUT_S)
    except FileNotFoundError:
        raise UserError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"git {args[0]} took over {GIT_TIMEOUT_S} s: check the network and the remote") from None
    if not binary:
        out.stdout = out.stdout.decode(errors="replace")
    out.stderr = out.stderr.decode(errors="replace")
    if check and out.returncode != 0:
        raise UserError(f"git {args[0]} failed: {last_line(out.stderr) or f'exit code {out.returncode}'}")
    return out


def last_line(text: str) -> str:
    """The last non-blank line of a command's output: git puts the reason there."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def git_output(args: list[str], cwd: str | os.PathLike = REPO_ROOT) -> str | None:
    """`git ARGS` in `cwd`, stripped stdout, or None when git fails or is missing."""
    # No optional locks: `git status` would otherwise refresh (write) the index.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_branch(cwd: str | os.PathLike = REPO_ROOT) -> str | None:
    branch = git_output(["rev-parse", "--abbrev-ref", "HEAD"], cwd)
    return branch if branch and branch != "HEAD" else None


def git_state(cwd: str | os.PathLike = REPO_ROOT) -> dict[str, object]:
    """Branch, commit and whether tracked files differ from it (None where git can't tell)."""
    status = git_output(["status", "--porcelain", "--untracked-files=no"], cwd)
    return {"git_branch": git_branch(cwd), "git_commit": git_output(["rev-parse", "HEAD"], cwd),
            "git_dirty": None if status is None else bool(status)}
