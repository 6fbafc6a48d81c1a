"""The secrets and their redaction: one list of the variables that hold them, shared by the laptop
(kept from the config-validation subprocess, refused as a RunPod secret's NAME), the pod and the
model card. scripts/setup_pod.sh keeps its own copy (tests/pod/test_setup_pod.py holds them equal)."""

from __future__ import annotations

import os
from collections.abc import Mapping

SECRET_VARIABLES = ("WANDB_API_KEY", "HF_TOKEN", "GIT_TOKEN", "RUNPOD_API_KEY")


def redact(text: str, *secrets: str) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def redact_secrets(text: str, environ: Mapping[str, str] = os.environ) -> str:
    """`text` without the values of the secret variables set here."""
    # A value too short to be a real secret would only garble the text.
    return redact(text, *(v for v in (environ.get(name, "") for name in SECRET_VARIABLES) if len(v) >= 8))
