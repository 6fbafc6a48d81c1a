"""Git operations of the experiment commands, through the git CLI.

Experiment branches are made with plumbing (a temporary index, commit-tree, one update-ref
transaction), so `new` and `sweep` never touch the working tree, the index or HEAD, and either every
branch of a sweep is created or none is.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from training.errors import UserError
from training.git_cli import last_line, run_git


class Git:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @classmethod
    def here(cls, cwd: str | os.PathLike | None = None) -> Git:
        out = run_git(["rev-parse", "--show-toplevel"], cwd=cwd or os.getcwd(), check=False)
        if out.returncode != 0:
            raise UserError("not inside a git repository: run this from your clone of the harness")
        return cls(out.stdout.strip())

    def run(self, *args: str, input: str | bytes | None = None, env: dict | None = None,
            check: bool = True, binary: bool = False) -> subprocess.CompletedProcess:
        return run_git(list(args), cwd=self.root, input=input, env=env, check=check, binary=binary)

    def out(self, *args: str, **kwargs) -> str:
        return self.run(*args, **kwargs).stdout.strip()

    # --- reading ---------------------------------------------------------------------------------
    def dirty_paths(self) -> list[str]:
        # Not self.out(): stripping would eat the status column of the first line.
        return [line[3:] for line in self.run("status", "--porcelain").stdout.splitlines() if line.strip()]

    def current_branch(self) -> str | None:
        out = self.run("symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        return out.stdout.strip() if out.returncode == 0 else None

    def commit_of(self, rev: str) -> str | None:
        out = self.run("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
        return out.stdout.strip() if out.returncode == 0 else None

    def branch_commit(self, branch: str) -> str | None:
        return self.commit_of(f"refs/heads/{branch}")

    def has_file(self, rev: str, path: str) -> bool:
        return self.run("cat-file", "-e", f"{rev}:{path}", check=False).returncode == 0

    def show(self, rev: str, path: str) -> bytes:
        """The file at `path` as it is in `rev`."""
        return self.run("show", f"{rev}:{path}", binary=True).stdout

    def extract(self, rev: str, paths: list[str], into: str) -> None:
        """Write the files under `paths` as they are in `rev` into the directory `into`."""
        archive = self.run("archive", "--format=tar", rev, "--", *paths, binary=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            # The "data" filter (refuse links out of `into`) exists from Python 3.10.12 / 3.11.4 on.
            tar.extractall(into, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))

    # --- writing ---------------------------------------------------------------------------------
    def commit_files(self, parent: str, files: dict[str, str], message: str) -> str:
        """A new commit on top of `parent` with `files` added; no ref, index or work tree changes."""
        with tempfile.TemporaryDirectory() as scratch:
            env = {**os.environ, "GIT_INDEX_FILE": os.path.join(scratch, "index")}
            self.run("read-tree", parent, env=env)
            for path, text in files.items():
                blob = self.out("hash-object", "-w", "--stdin", input=text)
                self.run("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
            tree = self.out("write-tree", env=env)
        return self.out("commit-tree", tree, "-p", parent, "-F", "-", input=message)

    def create_branches(self, commits: dict[str, str]) -> None:
        """Create every branch or none (one update-ref transaction; an existing branch fails it)."""
        script = "".join(f"create refs/heads/{name} {sha}\n" for name, sha in commits.items())
        self.run("update-ref", "-m", "experiment: create", "--stdin", input=script)

    # --- remotes ---------------------------------------------------------------------------------
    def remote_of(self, branch: str) -> str:
        out = self.run("config", "--get", f"branch.{branch}.remote", check=False)
        return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "origin"

    def remote_url(self, remote: str) -> str | None:
        # The URL as configured, before url.<base>.insteadOf rewrites: the pod has none of this
        # machine's git config, so this is what it will clone.
        out = self.run("config", "--get", f"remote.{remote}.url", check=False)
        return out.stdout.strip() or None

    def remote_head(self, remote: str, branch: str) -> str | None:
        out = self.run("ls-remote", "--heads", remote, f"refs/heads/{branch}", check=False)
        if out.returncode != 0:
            reason = last_line(out.stderr) or f"exit code {out.returncode}"
            raise UserError(f"cannot read remote {remote!r}: {reason}")
        for line in out.stdout.splitlines():
            sha, _, ref = line.partition("\t")
            if ref == f"refs/heads/{branch}":
                return sha
        return None


_SCP_LIKE = re.compile(r"^(?:[\w.-]+@)?([\w.-]+):(?!//)(.+)$")


def clone_url(url: str) -> tuple[str, list[str]]:
    """The HTTPS URL a pod can clone for remote `url`, and notes on what was changed.

    Pods have no SSH keys and must never receive a token inside a URL: SSH remotes become HTTPS,
    credentials are dropped (private repos authenticate with --git-secret). Local paths are refused.
    """
    notes = []
    match = _SCP_LIKE.match(url)
    if match and "/" not in url.split(":", 1)[0]:
        url = f"ssh://{match.group(1)}/{match.group(2)}"
    parts = urlsplit(url)
    if parts.scheme == "ssh":
        notes.append("the remote is SSH; the pod clones it over HTTPS")
        parts = parts._replace(scheme="https")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UserError(f"remote URL {_redact(url)!r}: a pod can only clone an https:// (or SSH) remote, "
                        "not a local path: push the branch to GitHub or another host first")
    if parts.username or parts.password:
        notes.append("credentials in the remote URL were left out; pass --git-secret for a private repo")
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, host, parts.path, "", "")), notes


def _redact(url: str) -> str:
    return re.sub(r"//[^/@]*@", "//", url)
