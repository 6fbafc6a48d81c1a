"""A published repository's files: into a directory (replaced whole) or the Hub cache. The pull
command, evaluate.py --model ORG/NAME and the export of a published adapter read through here."""

from __future__ import annotations

import os
import shutil
import tempfile

from training.errors import UserError
from training.hub.access import explain, hf_token
from training.retry import NetworkCallFailed, call


def download(repo_id: str, into: str | None = None) -> str:
    """The files of a published repository, in `into` (replaced whole: downloaded beside it, then
    renamed into place) or, when None, in the Hub cache. UserError when they cannot be read."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    what = f"hub download {repo_id!r}"
    try:
        if into is None:
            return call(what, snapshot_download, repo_id, token=hf_token())
        return _download_into(what, repo_id, os.path.abspath(into))
    except NetworkCallFailed as error:
        raise UserError(f"{repo_id}: {explain(error, 'model', repo_id)}") from None
    except LocalEntryNotFoundError:  # offline (HF_HUB_OFFLINE=1) and not in the cache
        raise UserError(f"{repo_id}: not in the local Hub cache and HF_HUB_OFFLINE is set; unset it to "
                        "download") from None


def _download_into(what: str, repo_id: str, target: str) -> str:
    from huggingface_hub import snapshot_download

    from training.checkpointing.save import move_into_place

    parent = os.path.dirname(target)
    made = _missing_dirs(parent)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}-download-", dir=parent)
    try:
        call(what, snapshot_download, repo_id, local_dir=staging, token=hf_token())
        shutil.rmtree(os.path.join(staging, ".cache"), ignore_errors=True)  # the download's own bookkeeping
        move_into_place(staging, target, f"{staging}-old")
    except BaseException:
        for directory in made:  # nothing of a failed download is left behind
            shutil.rmtree(directory, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(f"{staging}-old", ignore_errors=True)
    return target


def _missing_dirs(path: str) -> list[str]:
    """The directories os.makedirs(path) would create, outermost first."""
    missing = []
    while path and not os.path.exists(path):
        missing.insert(0, path)
        path = os.path.dirname(path)
    return missing[:1]
