"""Pod names: an experiment NAME runs on the pod `exp-NAME`, which is how the laptop's commands and
the fleet find an experiment's pod (and an experiment from a pod) among the account's pods."""

from __future__ import annotations

POD_PREFIX = "exp-"


def pod_name(name: str) -> str:
    return f"{POD_PREFIX}{name}"


def experiment_of_pod(pod: str) -> str | None:
    return pod[len(POD_PREFIX):] if pod and pod.startswith(POD_PREFIX) else None
