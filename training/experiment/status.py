"""`status` and `stop`: the pods of experiments (named exp-NAME) and, where readable, their runs' files
(a local directory, or the network volume through RunPod's S3 API: training.experiment.volume)."""

from __future__ import annotations

from training.errors import EXIT_OK, UserError
from training.experiment.runs import read_run, read_runs
from training.runpod import client as runpod_client
from training.runpod.names import experiment_of_pod, pod_name
from training.table import hours_minutes, text_table

COLUMNS = ("experiment", "pod", "state", "gpu", "uptime", "$/h", "step", "cost", "run")


def status(name: str | None, runs, has_branch, out, api=None) -> int:
    """`runs`: the runs' root, a training.experiment.volume store."""
    api = api or runpod_client.connect()
    pods = runpod_client.experiment_pods(api, name)
    run = read_run(runs.sub(name)) if name else None
    if name and not pods and run is None and not has_branch(name):
        raise UserError(f"unknown experiment {name!r}: no pod {pod_name(name)}, no branch and no run files "
                        f"in {runs.label}")
    if not pods:
        print(f"experiment {name}: no pod" if name else "no experiment pods (pods named exp-NAME)", file=out)
        if run is not None:
            print(f"  run files: {_run_summary(run)}", file=out)
        return EXIT_OK
    table = []
    experiments = {experiment_of_pod(pod.get("name")) for pod in pods} - {None, ""}
    pod_runs = {run.where.name: run for run in read_runs(runs, sorted(experiments))}
    for pod in sorted(pods, key=lambda p: p.get("name") or ""):
        experiment = experiment_of_pod(pod.get("name"))
        pod_run = pod_runs.get(experiment)
        price = runpod_client.pod_rate(pod)
        table.append([
            experiment,
            str(pod.get("id") or "-"),
            str(pod.get("status") or "-"),
            str((pod.get("gpu") or {}).get("id") or "-"),
            hours_minutes((pod.get("runtime") or {}).get("uptime")),
            f"{price:.2f}" if isinstance(price, (int, float)) else "-",
            _steps(pod_run),
            f"${pod_run.cost:.2f}" if pod_run is not None and pod_run.cost is not None else "-",
            (pod_run.state or "-") if pod_run is not None else "not readable here",
        ])
    print(text_table(COLUMNS, table), file=out)
    # The trainer records the W&B run it really logs to (a resumed run keeps its first one).
    url = (run.status or {}).get("wandb_url") if name and run is not None else None
    if url:
        print(f"W&B: {url}", file=out)
    return EXIT_OK


def stop(name: str, terminate: bool, delete_data: bool, out) -> int:
    api = runpod_client.connect()
    pods = runpod_client.experiment_pods(api, name)
    if not pods:
        raise UserError(f"experiment {name}: no pod named {pod_name(name)} in this account")
    if terminate and not delete_data:
        keeping = [p for p in pods if runpod_client.pod_volume_gb(p)]
        if keeping:
            raise UserError(f"pod {keeping[0].get('id')} keeps its checkpoints on its own "
                            f"{runpod_client.pod_volume_gb(keeping[0])} "
                            "GB volume, which terminating deletes: copy them off (or stop it instead), then add "
                            "--delete-data")
    for pod in pods:
        pod_id = pod.get("id")
        if terminate:
            api.terminate(pod_id)
            print(f"terminated pod {pod_id} ({name}): billing has ended", file=out)
        elif pod.get("status") not in runpod_client.ALIVE:
            print(f"pod {pod_id} ({name}) is already stopped ({pod.get('status')}); `stop {name} --terminate` "
                  "removes it", file=out)
        else:
            api.stop(pod_id)
            print(f"stopped pod {pod_id} ({name}): GPU billing stops, its volume is kept", file=out)
    return EXIT_OK


def _steps(run) -> str:
    if run is None or run.step is None:
        return "-"
    return f"{run.step}/{run.max_steps}" if run.max_steps else str(run.step)


def _run_summary(run) -> str:
    cost = f", ${run.cost:.2f}" if run.cost is not None else ""
    return f"{run.state or 'no run_status.json'}, step {_steps(run)}{cost}"
