"""The RunPod API boundary, on the ground that stays: REST API v2 for pods, network volumes and the
GPU catalog; the runpod SDK's GraphQL helper only for spot pods, which v2 does not offer.

RunPod retires REST API v1 (rest.runpod.io/v1) and is removing GraphQL `podRentInterruptable`
(runpodctl PR #267); REST API v2 (`$RUNPOD_API_BASE_URL/v2`, default https://api.runpod.io) has
pod create/list/get, `POST /v2/pods/{id}/action` (stop, start, terminate), network volumes and a GPU
catalog with stock per data center, and answers errors as RFC 9457 problems (`title`, `status`,
`detail`, `errors`). A v2 pod carries its billed rate as `cost` (USD per hour for all its GPUs; 0
once EXITED) and its state as `status` (PROVISIONING, STARTING, RUNNING, EXITED, ERROR, TERMINATED).

Reads, stops and terminations go through training.retry (3 tries on timeouts, 429 and 5xx, waiting
at least what `Retry-After` asks); creating a pod is sent once (a retry could rent two), and a create
whose answer was lost (a timeout, a dropped connection, a 5xx) is LaunchUnconfirmed: the pod may
exist. Every failure is one UserError line (exit 2); the key travels only in the Authorization header.

A pod's log (`GET /v2/pods/{id}/logs`) is Server-Sent Events on a connection RunPod keeps open: it
is read until the backfill has come (no event for LOG_QUIET_S, keep-alive comments aside) or a
wall-clock deadline, LOG_DEADLINE_S, whatever the server keeps sending.
"""

from __future__ import annotations

import json
import os
import time
from urllib.parse import quote

from training.errors import UserError
from training.runpod.names import POD_PREFIX

BASE_URL_ENV = "RUNPOD_API_BASE_URL"  # the runpod SDK's own variable: one setting for both APIs
DEFAULT_BASE_URL = "https://api.runpod.io"
TIMEOUT_S = 30
LOG_QUIET_S = 3.0  # a log stream that sends no event for this long has sent its backfill
LOG_DEADLINE_S = 20.0  # and none is read for longer than this, whatever keeps arriving
LOG_TAIL_MAX = 5000  # RunPod's most lines of backfill
ALIVE = ("PROVISIONING", "STARTING", "RUNNING")  # states that bill for the GPU

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
# What GraphQL servers answer for a mutation that no longer exists.
_REMOVED_WORDS = ("cannot query field", "unknown field", "is not defined", "no longer supported", "deprecated")


# RunPod's refusals by HTTP status (RFC 9457 problems), the one home of what each means here.
UNAUTHORIZED, NO_BALANCE, INVALID = 401, 402, 422  # the key, the balance, a request broken by this code
FATAL = (UNAUTHORIZED, NO_BALANCE, INVALID)  # no retry and no other GPU helps: stop and say so
NOT_FOUND, STATE_FORBIDS = 404, 409  # the pod is gone; the pod's state forbids the action (already stopped)


class ApiError(UserError):
    """RunPod answered, and refused: `status` is the HTTP status (400 on a create may be no capacity);
    `retry_after`: the seconds its answer asked to wait before the next request, if it said."""

    def __init__(self, what: str, status: int | None, detail: str, retry_after: float | None = None):
        self.status, self.retry_after = status, retry_after
        super().__init__(f"RunPod API, {what}: {detail}")

    @property
    def fatal(self) -> bool:
        return self.status in FATAL


class LaunchUnconfirmed(UserError):
    """A create whose answer was lost (timeout, dropped connection, 5xx): RunPod may have made the pod.
    `price`: what it bills per hour if it exists (set by launch.rent)."""

    price: float | None = None


class SpotUnavailable(UserError):
    """No spot pod could be had: no capacity at the bid, or (`gone`) RunPod's API no longer rents spot pods."""

    def __init__(self, *problems: str, gone: bool = False):
        self.gone = gone
        super().__init__(*problems)


def api_key() -> str:
    key = os.environ.get("RUNPOD_API_KEY", "").strip()
    if not key:
        raise UserError("RUNPOD_API_KEY is not set: export it (RunPod console > Settings > API Keys); "
                        "--dry-run needs none")
    return key


def base_url() -> str:
    return (os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")


class Api:
    """REST API v2 calls with one error policy; `create_spot` is the one GraphQL call left."""

    def __init__(self, key: str, base: str | None = None, *, timeout: float = TIMEOUT_S,
                 log_quiet_s: float = LOG_QUIET_S, log_deadline_s: float = LOG_DEADLINE_S, sleep=None):
        import requests

        self.key, self.base = key, (base or base_url())
        self.timeout, self.log_quiet_s, self.log_deadline_s = timeout, log_quiet_s, log_deadline_s
        self.sleep = sleep  # how retries wait (None: time.sleep; a simulation passes its clock's)
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {key}"})

    def request(self, method: str, path: str, what: str, *, body: dict | None = None, params: dict | None = None,
                retried: bool = True):
        """The decoded JSON answer (None for 204); ApiError for a refusal, UserError when unreachable."""
        import requests

        from training.retry import NetworkCallFailed, call

        def send():
            response = self.session.request(method, f"{self.base}/v2{path}", json=body, params=params,
                                            headers={"Accept": "application/json"}, timeout=self.timeout)
            if response.status_code >= 400:
                response.raise_for_status()  # an HTTPError carrying the status, which training.retry reads
            return response

        try:
            response = call(f"RunPod API, {what}", send, retry_sleep=self.sleep) if retried else send()
        except NetworkCallFailed as failure:
            response = getattr(failure.error, "response", None)
            if response is None:
                raise UserError(f"RunPod API, {what}: unreachable ({failure.error.__class__.__name__}, "
                                f"{failure.tries} tries): try again later") from None
            raise _refusal(what, response, failure.tries if failure.transient else None) from None
        except requests.HTTPError as error:  # not retried: a create
            if error.response is not None and error.response.status_code >= 500:
                said = _refusal(what, error.response).problems[0].split(": ", 1)[1]
                raise LaunchUnconfirmed(f"RunPod API, {what}: {said}; the pod may exist all the same (a server "
                                        "error says nothing of it): check `status` before launching again") from None
            raise _refusal(what, error.response) from None
        except (requests.ConnectionError, requests.Timeout) as error:
            raise LaunchUnconfirmed(f"RunPod API, {what}: unreachable ({type(error).__name__}); the request may have "
                                    "reached RunPod: check `status` before launching again") from None
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise UserError(f"RunPod API, {what}: the answer was not JSON (RunPod may be down; try again later)") from None

    # --- pods ------------------------------------------------------------------------------------
    def pods(self) -> list[dict]:
        answer = self.request("GET", "/pods", "list pods") or {}
        return _field(answer, "pods", "list pods")

    def pod(self, pod_id: str) -> dict:
        return self.request("GET", f"/pods/{pod_id}", f"read pod {pod_id}")

    def create_pod(self, body: dict) -> dict:
        pod = self.request("POST", "/pods", "create pod", body=body, retried=False)
        if not isinstance(pod, dict) or not pod.get("id"):
            raise UserError("RunPod API, create pod: no pod in the answer (check `status` before launching again)")
        return pod

    def stop(self, pod_id: str) -> dict:
        return self.request("POST", f"/pods/{pod_id}/action", f"stop pod {pod_id}", body={"action": "stop"}) or {}

    def log_tail(self, pod_id: str, lines: int = 50) -> list[str]:
        """The last `lines` lines of the pod's container log (`GET /v2/pods/{id}/logs`, Server-Sent
        Events on a stream RunPod keeps open): the backfill, read until no event came for
        log_quiet_s (keep-alive comments do not count) or log_deadline_s has passed."""
        from training.retry import NetworkCallFailed, call

        what = f"RunPod API, read the log of pod {pod_id}"
        try:
            return call(what, self._read_log, pod_id, min(lines, LOG_TAIL_MAX), retry_sleep=self.sleep)
        except NetworkCallFailed as failure:
            raise UserError(f"{what}: {failure}") from None

    def _read_log(self, pod_id: str, lines: int) -> list[str]:
        import requests
        from urllib3.exceptions import ProtocolError, ReadTimeoutError

        events = EventLines()
        # The read timeout ends a quiet stream (requests raises ConnectionError for it on a streamed
        # body, not ReadTimeout); the deadline ends one that keeps sending keep-alives.
        with self.session.get(f"{self.base}/v2/pods/{pod_id}/logs", params={"source": "container", "tail": lines},
                              headers={"Accept": "text/event-stream"}, stream=True,
                              timeout=(self.timeout, self.log_quiet_s)) as response:
            if response.status_code >= 400:
                response.raise_for_status()
            started = last_event = time.monotonic()
            try:
                while True:
                    # read1: what has arrived, at most one chunk; read(n) would wait for n bytes.
                    chunk = response.raw.read1(65536, decode_content=True)
                    if not chunk:
                        break  # the server closed the stream: everything it had is here
                    now = time.monotonic()
                    if events.feed(chunk):
                        last_event = now
                    if now - last_event >= self.log_quiet_s or now - started >= self.log_deadline_s:
                        break
            except ReadTimeoutError:
                pass  # no byte for log_quiet_s: the backfill is in, the stream just stays open
            except ProtocolError as error:  # dropped mid-stream: the backfill may be cut short, so try again
                raise requests.exceptions.ConnectionError(error) from error
        return events.lines[-lines:]

    def terminate(self, pod_id: str) -> None:
        """Remove the pod; one that is already gone (404) counts as removed. A 409 (the pod's state
        forbids it) is the caller's ApiError."""
        try:
            self.request("DELETE", f"/pods/{pod_id}", f"terminate pod {pod_id}")
        except ApiError as error:
            if error.status != NOT_FOUND:
                raise

    # --- storage and catalog ---------------------------------------------------------------------
    def network_volume(self, volume_id: str) -> dict:
        try:
            return self.request("GET", f"/network-volumes/{volume_id}", "read network volume")
        except ApiError as error:
            if error.status == NOT_FOUND:
                raise UserError(f"--volume-id {volume_id}: no such network volume in this account "
                                "(RunPod console > Storage lists yours)") from None
            raise

    def gpu_type(self, gpu_id: str, cloud: str, count: int = 1, min_cuda: str | None = None) -> dict:
        """The catalog entry of `gpu_id`: list prices and, per data center, pod stock in `cloud` (on
        hosts whose driver runs CUDA `min_cuda` or newer, when given)."""
        params = {"include": "AVAILABILITY", "product": "POD", "cloud": cloud, "count": count}
        if min_cuda:
            params["minCudaVersion"] = min_cuda
        try:
            return self.request("GET", f"/catalog/gpus/{quote(gpu_id, safe='')}", f"read GPU type {gpu_id!r}", params=params)
        except ApiError as error:
            if error.status == NOT_FOUND:
                raise UserError(f"--gpu {gpu_id!r}: not a RunPod GPU type id (GET /v2/catalog/gpus lists them, "
                                "e.g. 'NVIDIA GeForce RTX 4090')") from None
            raise

    # --- billing ---------------------------------------------------------------------------------
    def pod_billing(self, start: str, bucket: str = "day") -> list[dict]:
        """What RunPod billed for pods from `start` (RFC 3339) to now (`GET /v2/billing/pods`): one
        record per pod per `bucket`, with `podId` and `totalAmount` in USD."""
        answer = self.request("GET", "/billing/pods", "read pod billing",
                              params={"startTime": start, "bucketSize": bucket}) or {}
        return _field(answer, "records", "read pod billing")

    # --- spot: GraphQL while it lasts -------------------------------------------------------------
    def create_spot(self, spot_input: dict) -> dict:
        """A spot pod through GraphQL `podRentInterruptable`; SpotUnavailable when none can be had."""
        import requests
        import runpod
        from runpod import error as runpod_error
        from runpod.api.graphql import run_graphql_query

        runpod.api_key = self.key  # the SDK does not read RUNPOD_API_KEY by itself
        try:
            answer = run_graphql_query(spot_mutation(spot_input))
        except runpod_error.AuthenticationError:
            raise UserError("RunPod API, create spot pod: unauthorized: check RUNPOD_API_KEY") from None
        except runpod_error.QueryError as problem:
            message = _one_line(str(problem))
            lowered = message.lower()
            if any(word in lowered for word in _REMOVED_WORDS):
                raise SpotUnavailable(f"spot pods: RunPod's API no longer rents them ({message})", gone=True) from None
            if any(word in lowered for word in _CAPACITY_WORDS):
                raise SpotUnavailable(f"spot pods: none to be had at this bid ({message})") from None
            raise UserError(f"RunPod API, create spot pod: {message}") from None
        except (requests.ConnectionError, requests.Timeout) as problem:
            raise LaunchUnconfirmed(f"RunPod API, create spot pod: unreachable ({type(problem).__name__}); the "
                                    "request may have reached RunPod: check `status` before launching again") from None
        except requests.exceptions.JSONDecodeError:
            raise UserError("RunPod API, create spot pod: the answer was not JSON (RunPod may be down)") from None
        pod = (answer.get("data") or {}).get("podRentInterruptable")
        if not pod or not pod.get("id"):
            raise UserError("RunPod API, create spot pod: no pod in the answer (check `status` before launching again)")
        return pod


class EventLines:
    """Server-Sent Events as they arrive, in chunks: the `line` of every event's JSON `data`
    (RunPod's `{"source", "line", "ts"}`); comments (`: keep-alive`), `id:` and `event:` are skipped."""

    def __init__(self):
        self.lines: list[str] = []
        self._buffer = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> bool:
        """Take a chunk; True when it completed at least one event with data."""
        self._buffer += chunk
        got = False
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                return got
            raw, self._buffer = self._buffer[:end].rstrip(b"\r"), self._buffer[end + 1:]
            text = raw.decode("utf-8", errors="replace")
            if not text:  # a blank line dispatches the event
                if self._data:
                    got = self._dispatch("\n".join(self._data)) or got
                    self._data = []
            elif text.startswith("data:"):
                self._data.append(text[5:].removeprefix(" "))

    def _dispatch(self, data: str) -> bool:
        try:
            event = json.loads(data)
        except ValueError:
            return False
        if isinstance(event, dict) and "line" in event:
            self.lines.append(str(event["line"]))
            return True
        return False


def connect() -> Api:
    """The API client with RUNPOD_API_KEY; a clear error when it is missing."""
    return Api(api_key())


def experiment_pods(api: Api, name: str | None = None) -> list[dict]:
    """Our pods (named exp-NAME), or those of experiment `name`."""
    wanted = f"{POD_PREFIX}{name}" if name else None
    return [p for p in api.pods() if (p.get("name") or "").startswith(POD_PREFIX)
            and (wanted is None or p["name"] == wanted)]


def data_centers_with(gpu: dict) -> list[tuple[str, str]]:
    """(data center id, stock level) where the catalog entry `gpu` has pods to rent, best stocked first."""
    order = {"HIGH": 0, "MEDIUM": 1, "LOW": 2}
    offered = [(dc.get("id"), dc.get("availability")) for dc in gpu.get("dataCenters") or []
               if dc.get("availability") in order]
    return sorted(offered, key=lambda item: (order[item[1]], item[0]))


def list_price(gpu: dict, cloud: str, count: int = 1) -> float | None:
    """The catalog's on-demand price in USD per hour for `count` GPUs in `cloud`, if given."""
    price = (gpu.get("price") or {}).get(cloud.lower())
    return price * count if isinstance(price, (int, float)) and price > 0 else None


def pod_volume_gb(pod: dict) -> int:
    """The size of the pod's own volume, deleted with the pod (checkpoints included); 0 for a network
    volume or none. The rule of `stop --terminate` and of the fleet: such a pod is never terminated
    without --delete-data."""
    persistent = (pod.get("mounts") or {}).get("persistent") or {}
    return persistent.get("size") or 0


def pod_rate(pod: dict) -> float | None:
    """The rate a pod bills, USD per hour: v2's `cost`, GraphQL's `costPerHr`; None when not billing."""
    for key in ("cost", "costPerHr"):
        value = pod.get(key)
        if isinstance(value, (int, float)) and value > 0:
            return float(value)
    return None


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


def _refusal(what: str, response, tries: int | None = None) -> UserError:
    from training.retry import retry_after_header

    status = response.status_code
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    detail = _one_line(str(problem.get("detail") or problem.get("title") or problem.get("message") or ""))
    errors = [_one_line(str(e)) for e in problem.get("errors") or []][:5]
    if status == UNAUTHORIZED:
        return ApiError(what, status, "unauthorized: check RUNPOD_API_KEY")
    if status == NO_BALANCE:
        return ApiError(what, status, f"insufficient balance: add funds in the RunPod console ({detail})")
    if status == INVALID:  # the request broke the API's contract: a bug here, never retried
        return ApiError(what, status, f"request refused as invalid: {'; '.join(errors) or detail}")
    if status == 400 and what == "create pod":
        # RunPod uses 400 both for no capacity and for a broken cross-field rule.
        return ApiError(what, status, f"{detail or 'refused'} (no capacity for this GPU there, or a rule of the "
                                      "request: try another --gpu or later)")
    retried = f" (gave up after {tries} tries)" if tries else ""
    wait = retry_after_header(response.headers)
    asked = f"; RunPod asks to wait {wait:.0f}s" if wait else ""
    return ApiError(what, status, f"HTTP {status}: {detail or 'no detail given'}{retried}{asked}", retry_after=wait)


def _field(answer: dict, key: str, what: str):
    if not isinstance(answer, dict) or not isinstance(answer.get(key), list):
        raise UserError(f"RunPod API, {what}: unexpected answer (no {key!r} list)")
    return answer[key]


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
