"""A local stand-in for the RunPod API the harness uses: REST API v2 (pods, pod actions, pod logs,
network volumes, the GPU catalog) and the one GraphQL mutation left, `podRentInterruptable`.

It binds 127.0.0.1 only, answers at most `max_requests` requests and shuts itself down after
`lifetime_s` seconds. It validates create requests as strictly as RunPod's v2 contract says (an
unknown field is a 422), records every request, and keeps pods in memory like a tiny account.
Pods live on `clock` (seconds; a test's own clock makes hours pass in milliseconds): a pod given a
fate is PROVISIONING for PROVISION_S, then RUNNING, then ends as its fate says (finished, preempted,
failed, budget-stopped, stopped by its dead-man switch, silent) with the lines the supervisor and
setup_pod.sh print in its log (the outcome line among them), and is billed while alive.

It misbehaves as RunPod's documentation allows, on demand (the fault injector):
- the log (`GET /v2/pods/{id}/logs`) is Server-Sent Events on a stream kept open after the backfill,
  quiet (`log_mode="open"`, the default) or with keep-alive comments (`"keepalive"`); `"close"` ends it;
- `fail(route, status, ...)`: the next requests of a route (fnmatch pattern) answer an RFC 9457
  problem, e.g. 409 for an action the pod's state forbids, 5xx, or 429 with `Retry-After`;
- `late(route, seconds)`: the request is carried out (the pod really created) and its answer sent
  only after `seconds`, past the client's timeout, or never (`seconds=None`: the connection drops);
- `hide(pod_id)`: the next listing leaves the pod out.
"""

from __future__ import annotations

import copy
import fnmatch
import itertools
import json
import re
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from graphql import parse
from graphql.language import FieldNode, OperationDefinitionNode
from graphql.utilities import value_from_ast_untyped

from training.timestamps import UTC_FORMAT

API_KEY = "rp-test-key-not-real"
PROVISION_S = 30.0
ALIVE = ("PROVISIONING", "STARTING", "RUNNING")
# The catalog: list prices per GPU per hour, and pod stock per data center (NONE: offered, none free).
GPUS = {
    "NVIDIA GeForce RTX 4090": {"name": "RTX 4090", "memory": 24, "price": {"secure": 0.69, "community": 0.34},
                                "dataCenters": {"EU-RO-1": "HIGH", "US-KS-2": "MEDIUM"}},
    "NVIDIA A100 80GB PCIe": {"name": "A100 PCIe", "memory": 80, "price": {"secure": 1.64, "community": 1.19},
                              "dataCenters": {"EU-RO-1": "LOW", "US-TX-3": "HIGH"}},
    "NVIDIA H100 80GB HBM3": {"name": "H100 SXM", "memory": 80, "price": {"secure": 2.69, "community": 2.39},
                              "dataCenters": {"US-TX-3": "HIGH", "EU-RO-1": "NONE"}},
}
# The CUDA version the hosts' drivers run, per data center (a real one mixes hosts; one version each is
# enough to tell a create's gpu.minCudaVersion apart).
HOST_CUDA = {"EU-RO-1": "13.0", "US-KS-2": "12.8", "US-TX-3": "13.1"}
VOLUMES = {"vol-eu1": {"id": "vol-eu1", "name": "checkpoints", "size": 100, "dataCenter": "EU-RO-1",
                       "type": "STANDARD"},
           # US-TX-3 is not among the data centers whose volumes have RunPod's S3 API.
           "vol-tx3": {"id": "vol-tx3", "name": "texas", "size": 50, "dataCenter": "US-TX-3", "type": "STANDARD"}}
BILLING_BUCKETS = ("hour", "day", "week", "month", "year")
# CreatePodRequest's fields (ContainerConfig + the pod's own): anything else is refused with 422.
CREATE_FIELDS = {"name", "image", "args", "disk", "env", "ports", "registry", "cloud", "cpu", "dataCenterIds",
                 "globalNetworking", "gpu", "mounts", "startJupyter", "startSsh", "templateId"}
GPU_FIELDS = {"id", "count", "allowedCudaVersions", "minCudaVersion"}
NO_CAPACITY = "There are no instances available with the requested specifications. Please try again later."
# The lines a pod's run prints as it ends, per fate (the supervisor's and setup_pod.sh's, outcome line last).
_OUTCOME = "run-outcome: outcome={outcome} exit={code} step={step} phase={phase}"
LAST_LINES = {
    "finished": ["training ended with exit code 0: finished",
                 _OUTCOME.format(outcome="finished", code=0, step=500, phase="training"),
                 "AUTO_STOP=1: stopping pod {id} through the RunPod API"],
    "early_stopped": ["early stopping at step 350: eval_loss has not improved for 3 evaluations",
                      "training ended with exit code 0: finished",
                      _OUTCOME.format(outcome="early_stopped", code=0, step=350, phase="training")],
    "budget_stopped": ["budget: cost reached budget_cap: saving a checkpoint and stopping",
                       "training ended with exit code 3: budget cap reached",
                       _OUTCOME.format(outcome="budget_stopped", code=3, step=200, phase="training")],
    "failed": ["RuntimeError: CUDA error: an illegal memory access was encountered",
               "training ended with exit code 1: failed",
               _OUTCOME.format(outcome="failed", code=1, step=40, phase="training")],
    "preempted": ["got SIGTERM: forwarding SIGTERM to pid 41 so the trainer saves a checkpoint and stops",
                  "stopped during training (exit 143): a restart of this script carries on from the last checkpoint",
                  _OUTCOME.format(outcome="preempted", code=143, step=120, phase="training")],
    # The start command's dead-man switch, then the SIGTERM its stop sends reaching the run.
    "deadman": ["dead-man switch: lifetime_43200s_reached: stopping pod {id}",
                "got SIGTERM: forwarding SIGTERM to pid 41 so the trainer saves a checkpoint and stops",
                "stopped during training (exit 143): a restart of this script carries on from the last checkpoint",
                _OUTCOME.format(outcome="preempted", code=143, step=90, phase="training")],
    "silent": ["step 70/500 loss 1.93"],  # killed without a word (the host died): no outcome line
}
STOPPED_LINES = LAST_LINES["preempted"][1:]  # what a run prints when the API's stop reaches it
# Fates whose run ends with an outcome line of its own (the others leave the fleet to judge).
WHAT_ENDED = {"finished": "finished", "early_stopped": "early_stopped", "budget_stopped": "budget_stopped",
              "failed": "failed", "preempted": "preempted", "deadman": "deadman", "silent": "unknown",
              "error": "failed"}


@dataclass
class Fate:
    """How a pod's run ends, `after` seconds of RUNNING. `parked`: the run ends but the pod cannot
    stop itself and stays RUNNING, billed. Outcomes: those of LAST_LINES, and "error" (RunPod puts
    the pod in ERROR, its log empty)."""
    outcome: str = "finished"
    after: float = 600.0
    parked: bool = False


@dataclass
class Fault:
    route: str  # "GET /v2/pods", "DELETE /v2/pods/*", "graphql podRentInterruptable": fnmatch patterns
    status: int = 500
    body: object = None
    headers: dict = field(default_factory=dict)
    times: int = 1
    late_s: float | None = None  # a late answer: the work is done, the answer comes after this (None: never)
    late: bool = False


class FakeRunPod:
    def __init__(self, max_requests: int = 60, lifetime_s: float = 120.0, clock=time.monotonic):
        self.max_requests = max_requests
        self.clock = clock
        self.requests: list[dict] = []
        self.pods: dict[str, dict] = {}
        self.catalog = copy.deepcopy(GPUS)
        self.volumes = copy.deepcopy(VOLUMES)
        self.spot_removed = False  # RunPod has dropped podRentInterruptable
        self.spot_capacity: int | None = None  # spot pods that can still be rented; None: any number
        self.fate = None  # fate(pod) -> Fate | None, decided when a pod is created (None: runs forever)
        self.unpriced_creates = False  # a created pod's answer carries no rate (cost, costPerHr) yet
        self.failures: list[Fault] = []  # the fault injector's queue, each used `times` times
        self.log_mode = "open"  # "open": quiet after the backfill; "keepalive": comments; "close": ends it
        self.keepalive_s = 0.05
        self.hold_s = 30.0  # how long a log stream is held open at most (the client hangs up first)
        self.hidden: dict[str, int] = {}  # pod id -> listings that leave it out
        self.server_errors: list[str] = []  # bugs of the fake or requests it cannot read
        self.created = 0
        self.duplicates: list[str] = []
        self.outcomes: dict[str, int] = {}  # how the fated runs really ended, for the controller's tally
        self.truth: dict[str, str] = {}  # pod id -> how its run really ended (WHAT_ENDED, or "stopped")
        self.volumes_deleted: list[str] = []  # pods terminated with their own volume (checkpoints lost)
        self.most_alive = 0  # the most pods alive at once, as the simulation went
        self.most_alive_per_name = 0
        self._gone_by_pod: dict[str, float] = {}  # what terminated pods were billed
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        # A client that hangs up on a kept-alive connection (a log reader past its deadline) is no error.
        self._server.handle_error = lambda request, address: None
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._deadline = threading.Timer(lifetime_s, self._server.shutdown)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeRunPod:
        self._thread.start()
        self._deadline.start()
        return self

    def __exit__(self, *exc) -> None:
        self._closing.set()  # log streams held open end now
        self._deadline.cancel()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- what tests set up and read ------------------------------------------------------------
    def fail(self, route: str, status: int, body: object = None, message: str | None = None, times: int = 1,
             retry_after: float | None = None) -> None:
        """The next `times` requests for `route` (an fnmatch pattern: "POST /v2/pods", "DELETE /v2/pods/*",
        "graphql podRentInterruptable") answer `status` with `body`, or with an RFC 9457 problem (REST) /
        GraphQL error (graphql) `message`; `retry_after` adds the header RunPod sends with 429."""
        if message is not None:
            if route.startswith("graphql "):
                body = {"errors": [{"message": message, "path": [route.split()[1]]}], "data": None}
            else:
                body = {"title": "Bad Request", "status": status, "detail": message}
        if body is None and not route.startswith("graphql "):
            body = {"title": {409: "Conflict", 429: "Too Many Requests"}.get(status, "Error"), "status": status,
                    "detail": "injected fault"}
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        self.failures.append(Fault(route, status, body, headers, times))

    def late(self, route: str, seconds: float | None, times: int = 1) -> None:
        """The next `times` requests for `route` are carried out, and answered only after `seconds`
        (past the client's timeout), or never: `seconds=None` drops the connection."""
        self.failures.append(Fault(route, times=times, late_s=seconds, late=True))

    def hide(self, pod_id: str, listings: int = 1) -> None:
        """The next `listings` GET /v2/pods leave the pod out (it still runs, and bills)."""
        self.hidden[pod_id] = self.hidden.get(pod_id, 0) + listings

    def add_pod(self, name: str, status: str = "RUNNING", volume_gb: int = 0, cost: float = 0.69,
                uptime: int = 3725, gpu: str = "NVIDIA GeForce RTX 4090", spot: bool = False) -> str:
        pod_id = f"pod{next(self._ids)}"
        mounts = {"persistent": {"size": volume_gb, "path": "/runpod_volume"}} if volume_gb else {}
        self.pods[pod_id] = {
            "id": pod_id, "name": name, "status": status, "actions": [], "image": "runpod/pytorch", "args": "",
            "disk": 40, "ports": [], "env": {}, "registry": None, "mounts": mounts, "gpu": {"id": gpu, "count": 1},
            "cloud": "SECURE", "dataCenterId": "EU-RO-1", "cudaVersion": "12.8", "ssh": {}, "template": None,
            "cost": cost if status in ALIVE else 0.0, "locked": False, "globalNetworking": {"enabled": False},
            "runtime": {"uptime": uptime} if status == "RUNNING" else None,
            "createdAt": _iso(self.clock() - uptime - PROVISION_S), "startedAt": _iso(self.clock() - uptime),
            "_rate": cost, "_spot": spot, "_fate": None, "_created": self.clock() - uptime - PROVISION_S,
            # A pod found alive has billed since its creation.
            "_billed": uptime + PROVISION_S if status in ALIVE else 0.0, "_seen": self.clock(), "_log": [],
        }
        return pod_id

    def calls(self, method: str, route_prefix: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and r["route"].startswith(route_prefix)]

    def routes(self) -> list[str]:
        return [f"{r['method']} {r['route']}" for r in self.requests]

    def alive(self) -> list[dict]:
        with self._lock:
            self._advance()
            return [p for p in self.pods.values() if p["status"] in ALIVE]

    def billed_usd(self) -> float:
        """What RunPod would bill for every pod so far (including terminated ones)."""
        with self._lock:
            self._advance()
            return sum(self._billed_by_pod().values())

    def billed_by_pod(self) -> dict[str, float]:
        """USD billed per pod id so far, terminated pods included (what GET /v2/billing/pods adds up)."""
        with self._lock:
            self._advance()
            return self._billed_by_pod()

    def _billed_by_pod(self) -> dict[str, float]:
        return {**self._gone_by_pod, **{i: p["_billed"] * p["_rate"] / 3600 for i, p in self.pods.items()}}

    # --- the simulation --------------------------------------------------------------------------
    def _advance(self) -> None:
        now = self.clock()
        for pod in self.pods.values():
            if pod["status"] in ALIVE:
                pod["_billed"] += max(0.0, now - pod["_seen"])
            pod["_seen"] = now
            fate, age = pod["_fate"], now - pod["_created"]
            if pod["status"] == "PROVISIONING" and age >= PROVISION_S:
                pod.update(status="RUNNING", runtime={"uptime": 0}, startedAt=_iso(pod["_created"] + PROVISION_S))
                pod["_log"].append("[setup_pod] preflight: python training/train.py --preflight-only")
            if pod["status"] == "RUNNING":
                pod["runtime"] = {"uptime": int(max(0.0, age - PROVISION_S)), "gpus": [{"util": 97, "memoryUtil": 60}]}
                if fate is not None and pod["id"] not in self.truth and age >= PROVISION_S + fate.after:
                    self._end_run(pod, fate, ended_at=pod["_created"] + PROVISION_S + fate.after, now=now)
        alive = [p["name"] for p in self.pods.values() if p["status"] in ALIVE]
        self.most_alive = max(self.most_alive, len(alive))
        self.most_alive_per_name = max([self.most_alive_per_name, *(alive.count(n) for n in alive)])
        for pod in self.pods.values():
            pod["actions"] = {"RUNNING": ["stop", "restart", "terminate"], "EXITED": ["start", "terminate"],
                              "ERROR": ["start", "terminate"]}.get(pod["status"], ["stop", "terminate"])

    def _end_run(self, pod: dict, fate: Fate, ended_at: float, now: float) -> None:
        self.truth[pod["id"]] = WHAT_ENDED[fate.outcome]
        self.outcomes[fate.outcome] = self.outcomes.get(fate.outcome, 0) + 1
        pod["_log"] += [f"[setup_pod] {line.format(id=pod['id'])}" for line in LAST_LINES.get(fate.outcome, [])]
        if fate.parked and fate.outcome in ("finished", "early_stopped", "budget_stopped", "failed"):
            pod["_log"].append("[setup_pod] AUTO_STOP=1 but the pod could not be stopped: this pod stays up, and billed")
            return  # the run is over, the pod bills on
        # Billing ended at the moment the run ended, not when someone looked.
        pod["_billed"] -= max(0.0, now - ended_at)
        pod.update(status="ERROR" if fate.outcome == "error" else "EXITED", cost=0.0, runtime=None)

    def _new_pod(self, body: dict, spot: bool, rate: float, data_center: str) -> dict:
        if any(p["name"] == body["name"] and p["status"] in ALIVE for p in self.pods.values()):
            self.duplicates.append(body["name"])  # two pods at once for one experiment: a controller's bug
        pod_id = self.add_pod(body["name"], status="PROVISIONING", cost=rate, uptime=0, gpu=body["gpu"]["id"],
                              spot=spot)
        pod = self.pods[pod_id]
        pod.update(image=body["image"], args=body.get("args", ""), env=dict(body.get("env") or {}),
                   mounts=body.get("mounts") or {}, cloud=body.get("cloud", "SECURE"), dataCenterId=data_center,
                   disk=body.get("disk", 20), startedAt=None, createdAt=_iso(self.clock()),
                   cudaVersion=HOST_CUDA[data_center])
        pod["_created"], pod["_billed"] = self.clock(), 0.0
        pod["_fate"] = self.fate(pod) if self.fate else None
        self.created += 1
        return pod

    def _placement(self, gpu_id: str, wanted: list[str], min_cuda: str | None = None) -> tuple[str | None, str | None]:
        """(data center, None) where a pod can go, or (None, why not)."""
        gpu = self.catalog.get(gpu_id)
        if gpu is None:
            return None, f"GPU type {gpu_id!r} does not exist"
        stocked = [dc for dc, level in gpu["dataCenters"].items() if level != "NONE" and (not wanted or dc in wanted)
                   and _cuda_at_least(HOST_CUDA[dc], min_cuda)]
        return (stocked[0], None) if stocked else (None, NO_CAPACITY)

    # --- REST API v2 -----------------------------------------------------------------------------
    def _rest(self, method: str, route: str, query: dict, body) -> tuple[int, object]:
        self._advance()
        if method == "GET" and route == "/v2/pods":
            listed = []
            for pod in self.pods.values():
                if self.hidden.get(pod["id"]):
                    self.hidden[pod["id"]] -= 1
                    continue
                listed.append(_public(pod))
            return 200, {"pods": listed}
        found = re.fullmatch(r"/v2/pods/([^/]+)(/action|/logs)?", route)
        if found:
            pod = self.pods.get(found.group(1))
            if pod is None:
                return _problem(404, "Not Found", "The requested Pod does not exist.")
            if method == "GET" and not found.group(2):
                return 200, _public(pod)
            if method == "GET" and found.group(2) == "/logs":
                tail = min(int((query.get("tail") or ["100"])[0]), 5000)
                return 200, Stream("".join(
                    f"id: {_iso(pod['_created'] + i)}\ndata: "
                    f"{json.dumps({'source': 'container', 'line': line, 'ts': _iso(pod['_created'] + i)})}\n\n"
                    for i, line in enumerate(pod["_log"][-tail:] if tail else [])))
            if method == "DELETE" and not found.group(2):
                return self._terminate(pod)
            if method == "POST" and found.group(2) == "/action":
                action = (body or {}).get("action")
                if action not in pod["actions"]:
                    return _problem(409, "Conflict", f"action {action!r} is not valid for a {pod['status']} pod")
                if action == "stop":
                    if pod["_fate"] is not None and pod["status"] in ALIVE and pod["id"] not in self.truth:
                        pod["_log"] += [f"[setup_pod] {line}" for line in STOPPED_LINES]
                        self.truth[pod["id"]] = "stopped"
                    pod.update(status="EXITED", cost=0.0, runtime=None)
                elif action == "terminate":
                    return self._terminate(pod)
                return 200, _public(pod)
        if method == "POST" and route == "/v2/pods":
            return self._create(body)
        found = re.fullmatch(r"/v2/network-volumes/([^/]+)", route)
        if method == "GET" and found:
            volume = self.volumes.get(found.group(1))
            return (200, volume) if volume else _problem(404, "Not Found", "The requested network volume does not exist.")
        if method == "GET" and route == "/v2/billing/pods":
            return self._pod_billing(query)
        found = re.fullmatch(r"/v2/catalog/gpus/(.+)", route)
        if method == "GET" and found:
            return self._gpu_type(found.group(1), query)
        return _problem(404, "Not Found", f"no route {method} {route} in the fake")

    def _terminate(self, pod: dict) -> tuple[int, object]:
        if (pod["mounts"].get("persistent") or {}).get("size"):
            self.volumes_deleted.append(pod["id"])  # its checkpoints are gone with it
        if pod["status"] in ALIVE and pod["_fate"] is not None and pod["id"] not in self.truth:
            self.truth[pod["id"]] = "stopped"
        self._gone_by_pod[pod["id"]] = pod["_billed"] * pod["_rate"] / 3600
        del self.pods[pod["id"]]
        return 204, None

    def _create(self, body) -> tuple[int, object]:
        if not isinstance(body, dict):
            return _problem(422, "Unprocessable Entity", "the body must be a JSON object")
        errors = [f"/{key}: unevaluated property" for key in body if key not in CREATE_FIELDS]
        errors += [f"/{key}: required" for key in ("name", "image", "gpu") if key not in body]
        gpu = body.get("gpu") or {}
        errors += [f"/gpu/{key}: unevaluated property" for key in gpu if key not in GPU_FIELDS]
        if body.get("cloud", "SECURE") not in ("SECURE", "COMMUNITY"):
            errors.append(f"/cloud: must be one of SECURE, COMMUNITY (got {body.get('cloud')!r})")
        mounts = body.get("mounts") or {}
        for mount in mounts.get("network") or []:
            errors += [f"/mounts/network/0/{key}: required" for key in ("volumeId", "path") if key not in mount]
        if "persistent" in mounts and set(mounts["persistent"]) != {"size", "path"}:
            errors.append("/mounts/persistent: needs exactly size and path")
        if not all(isinstance(v, str) for v in (body.get("env") or {}).values()):
            errors.append("/env: values must be strings")
        if errors:
            return 422, {"title": "Unprocessable Entity", "status": 422, "detail": "validation failed", "errors": errors}
        if "persistent" in mounts and "network" in mounts:
            return _problem(400, "Bad Request", "at most one of mounts.persistent and mounts.network")
        wanted = list(body.get("dataCenterIds") or [])
        for mount in mounts.get("network") or []:
            volume = self.volumes.get(mount["volumeId"])
            if volume is None:
                return _problem(400, "Bad Request", f"network volume {mount['volumeId']} does not exist")
            if wanted and volume["dataCenter"] not in wanted:
                return _problem(400, "Bad Request", "the network volume is in another data center")
            wanted = [volume["dataCenter"]]
        data_center, why = self._placement(gpu.get("id"), wanted, gpu.get("minCudaVersion"))
        if data_center is None:
            return _problem(400, "Bad Request", why)
        rate = self.catalog[gpu["id"]]["price"][body.get("cloud", "SECURE").lower()] * gpu.get("count", 1)
        created = _public(self._new_pod(body, spot=False, rate=rate, data_center=data_center))
        return 201, {k: v for k, v in created.items() if not (self.unpriced_creates and k == "cost")}

    def _pod_billing(self, query: dict) -> tuple[int, object]:
        """GET /v2/billing/pods as documented: startTime/endTime (RFC 3339) or lastN, not both;
        bucketSize; podId. One bucket here (the fake's pods all fall in it), one record per pod."""
        one = {k: v[0] for k, v in query.items()}
        if "lastN" in one and ("startTime" in one or "endTime" in one):
            return _problem(400, "Bad Request", "lastN is mutually exclusive with startTime/endTime")
        if one.get("bucketSize", "day") not in BILLING_BUCKETS:
            return _problem(400, "Bad Request", f"bucketSize must be one of {', '.join(BILLING_BUCKETS)}")
        for key in ("startTime", "endTime"):
            if key in one and not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", one[key]):
                return _problem(400, "Bad Request", f"{key}: not an RFC 3339 date-time")
        window = {"startTime": one.get("startTime", "2026-11-01T00:00:00Z"),
                  "endTime": one.get("endTime", "2026-12-02T00:00:00Z")}
        billed = {pod: usd for pod, usd in self._billed_by_pod().items() if one.get("podId") in (None, pod)}
        records = [{**window, "podId": pod, "totalAmount": usd, "gpuAmount": usd, "cpuAmount": 0.0, "diskAmount": 0.0}
                   for pod, usd in sorted(billed.items())]
        total = sum(billed.values())
        return 200, {"records": records, "metadata": {
            "query": {**window, "bucketSize": one.get("bucketSize", "day"), "podId": one.get("podId")},
            "recordCount": len(records), "uniquePodCount": len(records),
            "totals": {"totalAmount": total, "gpuAmount": total, "cpuAmount": 0.0, "diskAmount": 0.0}}}

    def _gpu_type(self, gpu_id: str, query: dict) -> tuple[int, object]:
        gpu = self.catalog.get(gpu_id)
        if gpu is None:
            return _problem(404, "Not Found", f"GPU type {gpu_id!r} not found")
        entry = {"id": gpu_id, "name": gpu["name"], "pool": None, "manufacturer": "NVIDIA", "memory": gpu["memory"],
                 "secure": True, "community": True, "price": gpu["price"], "maxCount": {"secure": 8, "community": 4}}
        if query.get("include") == ["AVAILABILITY"]:
            if query.get("product") != ["POD"]:
                return _problem(400, "Bad Request", "include=AVAILABILITY requires product")
            min_cuda = (query.get("minCudaVersion") or [None])[0]
            centers = [{"id": dc, "name": dc, "availability": level} for dc, level in gpu["dataCenters"].items()
                       if level != "NONE" and _cuda_at_least(HOST_CUDA[dc], min_cuda)]
            entry["cudaVersions"] = [{"version": version, "available": True} for version in
                                     sorted({HOST_CUDA[c["id"]] for c in centers})]
            entry["availability"] = max((c["availability"] for c in centers), default="NONE",
                                        key=["NONE", "LOW", "MEDIUM", "HIGH"].index)
            if centers:
                entry["dataCenters"] = centers
        return 200, entry

    # --- GraphQL: spot pods only -----------------------------------------------------------------
    def _graphql(self, field: str, args: dict) -> tuple[int, object]:
        self._advance()
        if field != "podRentInterruptable" or self.spot_removed:
            return 400, {"errors": [{"message": f'Cannot query field "{field}" on type "Mutation".'}]}
        given = args.get("input") or {}
        if self.spot_capacity is not None and self.spot_capacity <= 0:
            return 200, {"errors": [{"message": "There are no instances currently available", "path": [field]}],
                         "data": None}
        wanted = [given["dataCenterId"]] if given.get("dataCenterId") else []
        data_center, why = self._placement(given.get("gpuTypeId"), wanted, given.get("minCudaVersion"))
        if data_center is None:
            return 200, {"errors": [{"message": why, "path": [field]}], "data": None}
        if self.spot_capacity is not None:
            self.spot_capacity -= 1
        body = {"name": given["name"], "image": given["imageName"], "gpu": {"id": given["gpuTypeId"], "count": 1},
                "args": given.get("dockerArgs", ""), "env": {e["key"]: e["value"] for e in given.get("env") or []},
                "cloud": given.get("cloudType", "SECURE"), "disk": given.get("containerDiskInGb", 20)}
        pod = self._new_pod(body, spot=True, rate=given["bidPerGpu"], data_center=data_center)
        answer = {"id": pod["id"], "desiredStatus": "RUNNING", "machineId": "m1"}
        return 200, {"data": {field: answer if self.unpriced_creates else {**answer, "costPerHr": pod["_rate"]}}}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # as RunPod's API: kept-alive connections, chunked streams
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def log_message(self, *args):  # keep pytest output clean
                pass

            def _serve(self):
                try:
                    self._answer()
                except Exception as error:  # a broken request is a test failure, not a hung client
                    fake.server_errors.append(f"{type(error).__name__}: {error}")
                    self._send(500, {"title": "fake server", "status": 500, "detail": str(error)})

            do_GET = do_POST = do_DELETE = _serve

            def _answer(self):
                length = min(int(self.headers.get("Content-Length") or 0), 1_000_000)
                raw = self.rfile.read(length)
                parts = urlsplit(self.path)
                parts = parts._replace(path=unquote(parts.path))
                record = {"method": self.command, "route": parts.path, "query": parse_qs(parts.query),
                          "authorization": self.headers.get("Authorization"), "raw": raw.decode(errors="replace"),
                          "body": json.loads(raw) if raw else None}
                if parts.path == "/graphql":
                    document = parse(record["body"]["query"])
                    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
                    root = next(s for s in operation.selection_set.selections if isinstance(s, FieldNode))
                    variables = record["body"].get("variables") or {}
                    record.update(field=root.name.value, operation=operation.operation.value,
                                  variables=record["body"].get("variables"),
                                  args={a.name.value: value_from_ast_untyped(a.value, variables)
                                        for a in root.arguments or ()})
                    key = f"graphql {record['field']}"
                else:
                    key = f"{self.command} {parts.path}"
                with fake._lock:
                    fake.requests.append(record)
                    record["accept"] = self.headers.get("Accept")
                    over = len(fake.requests) > fake.max_requests
                    failure = next((f for f in fake.failures if fnmatch.fnmatchcase(key, f.route)), None)
                    if failure:
                        failure.times -= 1
                        if failure.times <= 0:
                            fake.failures.remove(failure)
                if over:
                    return self._send(503, {"title": "fake server", "status": 503, "detail": "request budget spent"})
                if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                    return self._send(401, {"title": "Unauthorized", "status": 401, "detail": "invalid API key"})
                if failure and not failure.late:
                    return self._send(failure.status, failure.body, headers=failure.headers)
                with fake._lock:
                    if parts.path == "/graphql":
                        status, payload = fake._graphql(record["field"], record["args"])
                    else:
                        status, payload = fake._rest(self.command, parts.path, record["query"], record["body"])
                if failure:  # done, and the answer is lost: late, or never
                    if failure.late_s is not None:
                        fake._closing.wait(failure.late_s)
                    if failure.late_s is None or fake._closing.is_set():
                        self.close_connection = True
                        return
                    try:
                        self._send(status, payload)
                    except OSError:
                        pass  # the client gave up long ago
                    return
                if isinstance(payload, Stream):
                    return self._stream(payload.text)
                self._send(status, payload)

            def _send(self, status: int, payload, headers: dict | None = None) -> None:
                if status == 204:
                    self.send_response(204)
                    self.end_headers()
                    return
                raw = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                kind = "text/html" if isinstance(payload, str) else \
                    "application/problem+json" if status >= 400 else "application/json"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(raw)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

            def _stream(self, backfill: str) -> None:
                """Server-Sent Events as RunPod sends them: the backfill, then the stream stays open
                (quiet, or with keep-alive comments) until the client hangs up."""
                self.close_connection = True
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    self._chunk(backfill.encode())
                    held_until = time.monotonic() + fake.hold_s
                    next_keepalive = time.monotonic()
                    while fake.log_mode != "close" and time.monotonic() < held_until and not fake._closing.is_set():
                        if _hung_up(self.connection):
                            return
                        if fake.log_mode == "keepalive" and time.monotonic() >= next_keepalive:
                            self._chunk(b": keep-alive\n\n")
                            next_keepalive = time.monotonic() + fake.keepalive_s
                        time.sleep(0.01)
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass  # the client hung up mid-write: what a reader that stops on its own deadline does

            def _chunk(self, data: bytes) -> None:
                if data:
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()

        return Handler


class Stream:
    """An answer sent as Server-Sent Events (the log), held open after `text`."""

    def __init__(self, text: str):
        self.text = text


def _hung_up(connection: socket.socket) -> bool:
    readable, _, _ = select.select([connection], [], [], 0)
    if not readable:
        return False
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _iso(seconds: float) -> str:
    return time.strftime(UTC_FORMAT, time.gmtime(seconds))


def _cuda_at_least(version: str, minimum: str | None) -> bool:
    def parts(text: str) -> tuple[int, ...]:
        return tuple(int(p) for p in text.split("."))

    return minimum is None or parts(version) >= parts(minimum)


def _public(pod: dict) -> dict:
    return {k: v for k, v in pod.items() if not k.startswith("_")}


def _problem(status: int, title: str, detail: str) -> tuple[int, dict]:
    return status, {"title": title, "status": status, "detail": detail}
