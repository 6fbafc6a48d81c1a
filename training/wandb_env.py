"""How the environment asks W&B to behave, and what a run will do: the one reading of WANDB_MODE and
of the credentials (WANDB_API_KEY, else `wandb login`'s entry in ~/.netrc), shared by preflight (which
checks the key the run will use) and tracking (which opens the run)."""

from __future__ import annotations

import netrc
from collections.abc import Mapping
from urllib.parse import urlparse

DEFAULT_BASE_URL = "https://api.wandb.ai"

# wandb's own values; "dryrun" is its older name for offline.
OFFLINE_MODES = ("offline", "dryrun")


def requested_mode(environ: Mapping[str, str]) -> str:
    """"online", "offline" or "disabled", as WANDB_MODE asks (unset or empty: online)."""
    mode = environ.get("WANDB_MODE", "").strip().lower()
    if mode in OFFLINE_MODES:
        return "offline"
    return "disabled" if mode == "disabled" else "online"


def api_key(environ: Mapping[str, str]) -> tuple[str, str]:
    """(key, where it came from): WANDB_API_KEY, else the password `wandb login` wrote to ~/.netrc for
    the W&B host; ("", "") when neither is there."""
    key = environ.get("WANDB_API_KEY", "").strip()
    if key:
        return key, "WANDB_API_KEY"
    host = urlparse(environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL).hostname
    try:
        entry = netrc.netrc().authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return "", ""
    return (entry[2], "the `wandb login` key in ~/.netrc") if entry and entry[2] else ("", "")


def wandb_mode(report_to_wandb: bool, environ: Mapping[str, str]) -> tuple[str, str]:
    """("disabled" | "offline" | "online", why): W&B off, local files to sync later, or live."""
    if not report_to_wandb:
        return "disabled", "report_to_wandb=False"
    requested = requested_mode(environ)
    if requested != "online":
        return requested, f"WANDB_MODE={environ.get('WANDB_MODE', '').strip()}"
    if api_key(environ)[0]:
        return "online", "API key found"
    return "offline", "no WANDB_API_KEY"
