"""This pod's own commands: `run` (the supervisor of training.supervisor, which setup_pod.sh hands
over to) and `stop` (stop this pod through RunPod's API once training has ended, AUTO_STOP=1).

    CONFIG_PATH=configs/experiments/x.py python -m training.pod run
    RUNPOD_POD_ID=... RUNPOD_API_KEY=... python -m training.pod stop

Exit codes of `run`: the run's own (training.errors). Of `stop`: 0 stopped, 1 the API refused or
could not be reached (after the retries of training.retry), 2 RUNPOD_POD_ID or RUNPOD_API_KEY
missing. The key is never printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

from training.errors import EXIT_USER_ERROR, UserError


def stop_pod(pod_id: str, api_key: str) -> dict:
    """Ask RunPod to stop `pod_id` (REST API v2 `action: stop`); returns the pod as RunPod answered it."""
    from training.experiment.runpod_client import Api

    return Api(api_key).stop(pod_id)


def redact(text: str, *secrets: str) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def stop_this_pod(environ: Mapping[str, str] = os.environ) -> int:
    """Stop the pod RUNPOD_POD_ID with RUNPOD_API_KEY, saying what happened; the exit code of `stop`."""
    pod_id = environ.get("RUNPOD_POD_ID", "").strip()
    api_key = environ.get("RUNPOD_API_KEY", "").strip()
    missing = [name for name, value in (("RUNPOD_POD_ID", pod_id), ("RUNPOD_API_KEY", api_key)) if not value]
    if missing:
        print(f"error: {' and '.join(missing)} not set: RunPod sets them inside a pod; elsewhere there is "
              "no pod to stop", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    try:
        answer = stop_pod(pod_id, api_key)
    except UserError as error:  # refused (a bad key, a pod that is gone) or unreachable after the retries
        print(f"error: {redact(str(error), api_key)}; stop the pod from the RunPod console", file=sys.stderr,
              flush=True)
        return 1
    print(f"asked RunPod to stop pod {pod_id} (status: {(answer or {}).get('status', '?')})", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.pod", description="The commands of this pod.")
    parser.add_argument("action", choices=["run", "stop"],
                        help="run: preflight, train, then stop the pod (AUTO_STOP=1) or keep it up; "
                             "stop: stop this pod (RUNPOD_POD_ID) with RUNPOD_API_KEY")
    args = parser.parse_args(argv)
    if args.action == "run":
        from training.supervisor import Supervisor

        return Supervisor().main()
    return stop_this_pod()


if __name__ == "__main__":
    sys.exit(main())
