"""This pod's own commands: `run` (the supervisor of training.pod.supervisor, which setup_pod.sh hands
over to) and `stop` (stop this pod once training has ended, AUTO_STOP=1).

    CONFIG_PATH=configs/experiments/x.py python -m training.pod run
    RUNPOD_POD_ID=... RUNPOD_API_KEY=... python -m training.pod stop

The pod's self-stop is the documented `runpodctl pod stop $RUNPOD_POD_ID` (RunPod's images ship
runpodctl; `runpodctl stop pod` is a deprecated alias over GraphQL, which RunPod retires), then REST
API v2 with the pod's own key; each failure is said with what the user must do. scripts/setup_pod.sh
does the same in shell (stop_this_pod), for the dead-man switch and for a setup that failed before
this Python existed.

Exit codes of `run`: the run's own (training.errors). Of `stop`: 0 stopped, 1 neither way stopped it
(the REST API after the retries of training.retry), 2 RUNPOD_POD_ID missing, or RUNPOD_API_KEY when
runpodctl did not stop it. The key is never printed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Mapping

from training.errors import EXIT_FAILED, EXIT_OK, EXIT_USER_ERROR, UserError
from training.redaction import redact

RUNPODCTL_TIMEOUT_S = 60
TRAINING_STARTED_ENV = "TRAINING_STARTED_FILE"  # set by setup_pod.sh: the dead-man switch's idle clock
CONSOLE = "stop it in the RunPod console (Pods > the pod > Stop); it bills until then"


def stop_pod(pod_id: str, api_key: str) -> dict:
    """Ask RunPod to stop `pod_id` (REST API v2 `action: stop`); returns the pod as RunPod answered it."""
    from training.runpod.client import Api

    return Api(api_key).stop(pod_id)


def runpodctl_stop(pod_id: str) -> str | None:
    """`runpodctl pod stop POD_ID`: None when it stopped the pod, else why not, in a few words."""
    try:
        done = subprocess.run(["runpodctl", "pod", "stop", pod_id], capture_output=True, text=True,
                              timeout=RUNPODCTL_TIMEOUT_S)
    except FileNotFoundError:
        return "runpodctl is not on PATH (RunPod's images ship it)"
    except subprocess.TimeoutExpired:
        return f"runpodctl pod stop {pod_id} gave no answer in {RUNPODCTL_TIMEOUT_S}s"
    if done.returncode == 0:
        return None
    last = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
    return f"runpodctl pod stop {pod_id} failed (exit {done.returncode}: {last[0]})"


def stop_this_pod(environ: Mapping[str, str] = os.environ) -> int:
    """Stop the pod RUNPOD_POD_ID, saying what happened; the exit code of `stop`."""
    pod_id = environ.get("RUNPOD_POD_ID", "").strip()
    api_key = environ.get("RUNPOD_API_KEY", "").strip()
    if not pod_id:
        print("error: RUNPOD_POD_ID not set: RunPod sets it inside a pod; elsewhere there is no pod to stop",
              file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    why_not = runpodctl_stop(pod_id)
    if why_not is None:
        print(f"stopped pod {pod_id} (runpodctl pod stop)", flush=True)
        return EXIT_OK
    print(f"{redact(why_not, api_key)}; trying RunPod's REST API", flush=True)
    if not api_key:
        print(f"error: RUNPOD_API_KEY not set, so the REST API cannot stop pod {pod_id} either: {CONSOLE}",
              file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    try:
        answer = stop_pod(pod_id, api_key)
    except UserError as error:  # refused (a bad key, a pod that is gone) or unreachable after the retries
        print(f"error: {redact(str(error), api_key)}; {CONSOLE}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    print(f"asked RunPod to stop pod {pod_id} (status: {(answer or {}).get('status', '?')})", flush=True)
    return EXIT_OK


def mark_training_started(environ: Mapping[str, str] = os.environ) -> None:
    """Start the dead-man switch's idle clock (setup_pod.sh's idle watcher waits for this file):
    from here on an idle GPU means a stuck run, not an install or a download."""
    path = environ.get(TRAINING_STARTED_ENV)
    if path:
        try:
            with open(path, "a", encoding="utf-8"):
                pass
        except OSError:  # the switch then keeps waiting: MAX_LIFETIME_S still bounds the pod
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.pod", description="The commands of this pod.")
    parser.add_argument("action", choices=["run", "stop"],
                        help="run: preflight, train, then stop the pod (AUTO_STOP=1) or keep it up; "
                             "stop: stop this pod (RUNPOD_POD_ID) with RUNPOD_API_KEY")
    args = parser.parse_args(argv)
    if args.action == "run":
        from training.pod.supervisor import Supervisor

        return Supervisor().main()
    return stop_this_pod()


if __name__ == "__main__":
    sys.exit(main())
