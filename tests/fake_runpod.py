"""A local stand-in for RunPod's GraphQL API (the runpod SDK reaches it through RUNPOD_API_BASE_URL).

It binds 127.0.0.1 only, answers at most `max_requests` requests and shuts itself down after
`lifetime_s` seconds. Every request is recorded with its query parsed by graphql-core, so tests
assert the exact operation and input the SDK sent; pods live in memory like a tiny account.
"""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from graphql import parse
from graphql.language import FieldNode, OperationDefinitionNode
from graphql.utilities import value_from_ast_untyped

API_KEY = "rp-test-key-not-real"
GPUS = {"NVIDIA GeForce RTX 4090": {"securePrice": 0.69, "communityPrice": 0.34},
        "NVIDIA A100 80GB PCIe": {"securePrice": 1.64, "communityPrice": 1.19}}
VOLUMES = [{"id": "vol-eu1", "name": "checkpoints", "size": 100, "dataCenterId": "EU-RO-1"}]


class FakeRunPod:
    def __init__(self, max_requests: int = 40, lifetime_s: float = 120.0):
        self.max_requests = max_requests
        self.requests: list[dict] = []
        self.pods: dict[str, dict] = {}
        self.failures: list[tuple[str, int, object]] = []  # (root field, HTTP status, body), used once each
        self.server_errors: list[str] = []  # bugs of the fake or requests it cannot read
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
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
        self._deadline.cancel()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def fail(self, field: str, status: int = 200, body: object = None, message: str | None = None) -> None:
        """The next request for `field` answers `status` with `body` (or a GraphQL error `message`)."""
        if message is not None:
            body = {"errors": [{"message": message, "path": [field]}], "data": None}
        self.failures.append((field, status, body))

    def add_pod(self, name: str, status: str = "RUNNING", volume_gb: int = 0, cost: float = 0.69,
                uptime: int = 3725) -> str:
        pod_id = f"pod{next(self._ids)}"
        self.pods[pod_id] = {"id": pod_id, "name": name, "desiredStatus": status, "costPerHr": cost,
                             "uptimeSeconds": uptime, "volumeInGb": volume_gb, "gpuCount": 1,
                             "machine": {"gpuDisplayName": "RTX 4090"}, "env": []}
        return pod_id

    def calls(self, field: str) -> list[dict]:
        return [r for r in self.requests if r["field"] == field]

    # --- the API ---------------------------------------------------------------------------------
    def _answer(self, field: str, args: dict) -> object:
        given = args.get("input") or {}
        if field == "gpuTypes":
            gpu = GPUS.get(given.get("id"))
            return [{"id": given.get("id"), "displayName": given.get("id"), **gpu,
                     "lowestPrice": {"minimumBidPrice": 0.2, "uninterruptablePrice": gpu["securePrice"]}}] if gpu else []
        if field == "myself":
            return {"id": "user1", "pubKey": "", "networkVolumes": VOLUMES, "pods": list(self.pods.values())}
        if field == "pod":
            return self.pods.get(given.get("podId"))
        if field in ("podFindAndDeployOnDemand", "podRentInterruptable"):
            pod_id = self.add_pod(given["name"], cost=given.get("bidPerGpu") or GPUS[given["gpuTypeId"]]["securePrice"],
                                  uptime=0, volume_gb=given.get("volumeInGb") or 0)
            self.pods[pod_id]["env"] = [f"{e['key']}={e['value']}" for e in given.get("env", [])]
            return {**self.pods[pod_id], "imageName": given.get("imageName"), "machineId": "m1",
                    "machine": {"podHostId": f"{pod_id}-host"}}
        if field == "podStop":
            pod = self.pods[given["podId"]]
            pod["desiredStatus"] = "EXITED"
            return {"id": pod["id"], "desiredStatus": "EXITED"}
        if field == "podTerminate":
            self.pods.pop(given["podId"])
            return None
        raise KeyError(field)

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                try:
                    self._post()
                except Exception as error:  # a broken request is a test failure, not a hung client
                    fake.server_errors.append(f"{type(error).__name__}: {error}")
                    self._send(500, {"errors": [{"message": f"fake server: {error}"}]})

            def _post(self):
                length = min(int(self.headers.get("Content-Length") or 0), 1_000_000)
                body = json.loads(self.rfile.read(length) or b"{}")
                document = parse(body["query"])
                operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
                root = next(s for s in operation.selection_set.selections if isinstance(s, FieldNode))
                variables = body.get("variables") or {}
                args = {a.name.value: value_from_ast_untyped(a.value, variables) for a in root.arguments or ()}
                record = {"path": self.path, "authorization": self.headers.get("Authorization"), "field": root.name.value,
                          "operation": operation.operation.value, "args": args, "query": body["query"],
                          "variables": body.get("variables"), "raw": body}
                with fake._lock:
                    fake.requests.append(record)
                    over = len(fake.requests) > fake.max_requests
                    failure = next((f for f in fake.failures if f[0] == record["field"]), None)
                    if failure:
                        fake.failures.remove(failure)
                if over:
                    return self._send(503, {"errors": [{"message": "fake server: request budget spent"}]})
                if self.path != "/graphql":
                    return self._send(404, "not found")
                if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                    return self._send(401, {"errors": [{"message": "Unauthorized"}]})
                if failure:
                    return self._send(failure[1], failure[2])
                with fake._lock:
                    data = fake._answer(record["field"], args)
                return self._send(200, {"data": {record["field"]: data}})

            def _send(self, status: int, payload) -> None:
                raw = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html" if isinstance(payload, str) else "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        return Handler
