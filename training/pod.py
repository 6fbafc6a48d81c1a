"""This pod's own calls to RunPod's API: stop it once training has ended (setup_pod.sh, AUTO_STOP=1).

    RUNPOD_POD_ID=... RUNPOD_API_KEY=... python -m training.pod stop

Exit codes: 0 stopped, 1 the API refused or could not be reached (after the retries of
training.retry), 2 RUNPOD_POD_ID or RUNPOD_API_KEY missing. The key is never printed.
"""

from __future__ import annotations

import argparse
import os
import sys

from training.errors import UserError


def stop_pod(pod_id: str, api_key: str) -> dict:
    """Ask RunPod to stop `pod_id` (REST API v2 `action: stop`); returns the pod as RunPod answered it."""
    from training.experiment.runpod_client import Api

    return Api(api_key).stop(pod_id)


def redact(text: str, *secrets: str) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.pod", description="RunPod calls for this pod.")
    parser.add_argument("action", choices=["stop"], help="stop this pod (RUNPOD_POD_ID) with RUNPOD_API_KEY")
    parser.parse_args(argv)
    pod_id = os.environ.get("RUNPOD_POD_ID", "").strip()
    api_key = os.environ.get("RUNPOD_API_KEY", "").strip()
    missing = [name for name, value in (("RUNPOD_POD_ID", pod_id), ("RUNPOD_API_KEY", api_key)) if not value]
    if missing:
        print(f"error: {' and '.join(missing)} not set: RunPod sets them inside a pod; elsewhere there is "
              "no pod to stop", file=sys.stderr)
        return 2
    try:
        answer = stop_pod(pod_id, api_key)
    except UserError as error:  # refused (a bad key, a pod that is gone) or unreachable after the retries
        print(f"error: {redact(str(error), api_key)}; stop the pod from the RunPod console", file=sys.stderr)
        return 1
    print(f"asked RunPod to stop pod {pod_id} (status: {(answer or {}).get('status', '?')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
