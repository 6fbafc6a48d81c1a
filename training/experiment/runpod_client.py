"""The RunPod API boundary: the runpod SDK, its GraphQL helper for spot pods, and one error policy.

The SDK reads no environment variable for the key: `connect()` sets `runpod.api_key` from
RUNPOD_API_KEY. Its URL is `$RUNPOD_API_BASE_URL/graphql` (default https://api.runpod.io), which
tests point at a local server. Every failure becomes one UserError line (exit code 2); queries and
stop/terminate are retried on network errors, creating a pod never is (a retry could rent two).
"""

from __future__ import annotations

import json
import os

from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from training.errors import UserError
from training.experiment.names import POD_PREFIX

# The SDK has no spot call. Its GraphQL helper sends a query without variables, so the input is
# written inline; json.dumps gives valid GraphQL string literals (same escapes), keys stay bare.
SPOT_MUTATION = """mutation {{
  podRentInterruptable(input: {input}) {{
    id
    costPerHr
    desiredStatus
    machineId
  }}
}}"""
ENUM_FIELDS = {"cloudType"}
_CAPACITY_WORDS = ("no longer any instances", "no instances", "not enough", "out of capacity", "unavailable")


def connect():
    """The runpod module with its key set; a clear error when RUNPOD_API_KEY is missing."""
    key = os.environ.get("RUNPOD_API_KEY", "").strip()
    if not key:
        raise UserError("RUNPOD_API_KEY is not set: export it (RunPod console > Settings > API Keys); "
                        "--dry-run needs none")
    import runpod

    runpod.api_key = key
    return runpod


def graphql_input(value, key: str | None = None) -> str:
    """`value` as a GraphQL input literal (objects with bare keys, enums unquoted)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {graphql_input(v, k)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(graphql_input(v) for v in value) + "]"
    if key in ENUM_FIELDS:
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def spot_mutation(spot_input: dict) -> str:
    # One field a line, so that --dry-run reads well; the server sees the same input either way.
    fields = ",\n    ".join(f"{k}: {graphql_input(v, k)}" for k, v in spot_input.items())
    return SPOT_MUTATION.format(input="{\n    " + fields + "\n  }")


def _retryable(error: BaseException) -> bool:
    import requests

    if isinstance(error, (requests.ConnectionError, requests.Timeout)):
        return True
    # A 5xx page from a proxy is not JSON: the SDK fails decoding it.
    return isinstance(error, requests.exceptions.JSONDecodeError)


_retry = retry(retry=retry_if_exception(_retryable), stop=stop_after_attempt(3),
               wait=wait_exponential(multiplier=1, max=4), reraise=True)


def call(what: str, function, *args, retried: bool = True, **kwargs):
    """function(*args, **kwargs), with every failure as one readable line."""
    import requests
    from runpod import error as runpod_error

    try:
        return (_retry(function) if retried else function)(*args, **kwargs)
    except runpod_error.AuthenticationError:
        raise UserError(f"RunPod API, {what}: unauthorized: check RUNPOD_API_KEY") from None
    except runpod_error.QueryError as problem:
        message = _one_line(str(problem))
        if any(word in message.lower() for word in _CAPACITY_WORDS):
            message += " (try another --gpu, another --cloud, or later)"
        raise UserError(f"RunPod API, {what}: {message}") from None
    except (requests.ConnectionError, requests.Timeout) as problem:
        hint = "" if retried else "; the request may have reached RunPod: check `status` before launching again"
        raise UserError(f"RunPod API, {what}: unreachable ({type(problem).__name__}){hint}") from None
    except requests.exceptions.JSONDecodeError:
        raise UserError(f"RunPod API, {what}: the answer was not JSON (RunPod may be down; try again later)") from None
    except ValueError as problem:  # the SDK's own checks, e.g. "No GPU found with the specified ID"
        raise UserError(f"RunPod API, {what}: {_one_line(str(problem))}") from None
    except (KeyError, TypeError) as problem:
        raise UserError(f"RunPod API, {what}: unexpected answer (missing {problem})") from None


def experiment_pods(runpod, name: str | None = None) -> list[dict]:
    """Our pods (named exp-NAME), or those of experiment `name`."""
    pods = call("list pods", runpod.get_pods) or []
    wanted = f"{POD_PREFIX}{name}" if name else None
    return [p for p in pods if (p.get("name") or "").startswith(POD_PREFIX) and (wanted is None or p["name"] == wanted)]


def volume_data_center(runpod, volume_id: str) -> str:
    user = call("read network volumes", runpod.get_user)
    volumes = user.get("networkVolumes") or []
    for volume in volumes:
        if volume.get("id") == volume_id:
            return volume["dataCenterId"]
    known = ", ".join(f"{v.get('id')} ({v.get('name')}, {v.get('dataCenterId')})" for v in volumes) or "none"
    raise UserError(f"--volume-id {volume_id}: no such network volume in this account (yours: {known})")


def create_on_demand(runpod, kwargs: dict) -> dict:
    pod = call("create pod", runpod.create_pod, retried=False, **kwargs)
    if not pod or not pod.get("id"):
        raise UserError("RunPod API, create pod: no pod in the answer (check `status` before launching again)")
    return pod


def create_spot(spot_input: dict) -> dict:
    from runpod.api.graphql import run_graphql_query

    answer = call("create spot pod", run_graphql_query, spot_mutation(spot_input), retried=False)
    pod = (answer.get("data") or {}).get("podRentInterruptable")
    if not pod or not pod.get("id"):
        raise UserError("RunPod API, create spot pod: no pod in the answer (check `status` before launching again)")
    return pod


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
