"""Everything that talks to the Hugging Face Hub: dataset downloads and existence checks."""

from __future__ import annotations

import os


def hf_token() -> str | None:
    return os.environ.get("HF_TOKEN") or None


def load_hub_dataset(name: str):
    """All splits of a hub dataset, read with HF_TOKEN when set."""
    import datasets

    return datasets.load_dataset(name, token=hf_token())
