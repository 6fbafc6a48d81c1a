"""Everything that talks to the Hugging Face Hub: dataset downloads and access checks.

Both go through the retry policy of `training.retry`, and both honour HF_ENDPOINT and HF_TOKEN.
"""

from __future__ import annotations

import os

from training.errors import UserError
from training.retry import NetworkCallFailed, call

CHECK_TIMEOUT_SECONDS = 15


class HubAccessError(Exception):
    """A hub repository that cannot be read; `offline` when HF_HUB_OFFLINE forbids asking."""

    def __init__(self, message: str, offline: bool = False):
        self.offline = offline
        super().__init__(message)


def hf_token() -> str | None:
    return os.environ.get("HF_TOKEN") or None


def is_local_path(name: str) -> bool:
    """Whether a model or dataset name means a path on disk rather than a hub id."""
    return name.startswith(("/", "./", "../", "~")) or os.path.exists(name)


def offline() -> bool:
    from huggingface_hub import constants

    return constants.is_offline_mode()


def load_hub_dataset(name: str):
    """All splits of a hub dataset, read with HF_TOKEN when set."""
    import datasets

    if offline():  # from the cache only: nothing to retry
        return datasets.load_dataset(name, token=hf_token())
    try:
        return call(f"hub dataset {name!r}", datasets.load_dataset, name, token=hf_token())
    except NetworkCallFailed as error:
        raise UserError(f"dataset_name={name!r}: {explain(error, 'dataset', name)}") from None
    except datasets.exceptions.DatasetNotFoundError as error:  # datasets' own word for 401/403/404
        raise UserError(f"dataset_name={name!r}: {error} Check the name, and set HF_TOKEN for a private "
                        "or gated dataset.") from None


def check_hub_repo(kind: str, name: str) -> None:
    """Raise HubAccessError unless the hub `kind` ("model" or "dataset") `name` exists and can be read."""
    if offline():
        raise HubAccessError("offline mode", offline=True)
    try:
        call(f"hub {kind} {name!r}", _auth_check, kind, name)
    except NetworkCallFailed as error:
        raise HubAccessError(explain(error, kind, name)) from None


def _auth_check(kind: str, name: str) -> None:
    # HfApi.auth_check's request (exists, and readable with this token: gated access included),
    # made here because HfApi.auth_check takes no timeout and the hub's default client has none.
    from huggingface_hub import constants
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    url = f"{constants.ENDPOINT}/api/{kind}s/{name}/auth-check"
    response = get_session().get(url, headers=build_hf_headers(token=hf_token()), timeout=CHECK_TIMEOUT_SECONDS)
    hf_raise_for_status(response)


def explain(error: NetworkCallFailed, kind: str, name: str) -> str:
    """What went wrong reading a hub repository, and what to do about it."""
    from huggingface_hub.errors import GatedRepoError

    page = f"https://huggingface.co/{'datasets/' if kind == 'dataset' else ''}{name}"
    if isinstance(error.error, GatedRepoError):
        return f"gated on the hub ({error.status}); accept its terms at {page} with the account of HF_TOKEN"
    if error.status in (401, 403, 404):
        token = "HF_TOKEN has no access to it" if hf_token() else "HF_TOKEN is not set"
        return (f"not found on the hub (HTTP {error.status}): check the name; if it is private, {token}; "
                f"set HF_TOKEN to a token that can read it")
    return f"{error}; check the network and HF_ENDPOINT, then run again"
