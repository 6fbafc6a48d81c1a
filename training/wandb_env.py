"""How the environment asks W&B to behave: the one reading of WANDB_MODE (preflight and tracking)."""

from __future__ import annotations

from collections.abc import Mapping

# wandb's own values; "dryrun" is its older name for offline.
OFFLINE_MODES = ("offline", "dryrun")


def requested_mode(environ: Mapping[str, str]) -> str:
    """"online", "offline" or "disabled", as WANDB_MODE asks (unset or empty: online)."""
    mode = environ.get("WANDB_MODE", "").strip().lower()
    if mode in OFFLINE_MODES:
        return "offline"
    return "disabled" if mode == "disabled" else "online"
