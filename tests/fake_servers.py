"""Local stand-ins for the servers out of reach: the Hugging Face Hub, W&B, RunPod's API, a git host.

Each is a real HTTP server on 127.0.0.1 that the real client library (huggingface_hub, datasets,
requests, the runpod SDK, git) talks to; it records every request, answers at most
MAX_REQUESTS of them and is shut down when its `with` block ends.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_REQUESTS = 200


@dataclass
class Request:
    method: str
    path: str  # with the query string
    headers: dict
    body: bytes

    @property
    def route(self) -> str:
        return self.path.split("?")[0]

    def json(self) -> dict:
        return json.loads(self.body or b"{}")


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)

    @classmethod
    def json(cls, payload, status: int = 200, **headers) -> Reply:
        return cls(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **headers})


class FakeServer:
    """`respond(request) -> Reply` behind a threaded HTTP server on 127.0.0.1; `requests` records them."""

    def __init__(self, respond: Callable[[Request], Reply]):
        self.respond = respond
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def count(self, route_part: str, method: str | None = None) -> int:
        return sum(1 for r in self.requests if route_part in r.route and method in (None, r.method))

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30  # a client that stops sending cannot hold a thread for longer

            def log_message(self, *args) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(self.command, self.path, dict(self.headers), self.rfile.read(length))
                with server._lock:
                    server.requests.append(request)
                    over_budget = len(server.requests) > MAX_REQUESTS
                reply = Reply(503, b"request budget of the fake server exhausted") if over_budget \
                    else server.respond(request)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)

            do_GET = do_POST = do_HEAD = _serve

        return Handler


def failing_first(times: int, route_part: str, respond: Callable[[Request], Reply],
                  status: int = 503) -> Callable[[Request], Reply]:
    """`respond`, except that the first `times` requests whose route contains `route_part` get `status`."""
    seen = {"count": 0}

    def reply(request: Request) -> Reply:
        if route_part in request.route:
            seen["count"] += 1
            if seen["count"] <= times:
                return Reply(status, b"<html>temporarily unavailable</html>", {"Content-Type": "text/html"})
        return respond(request)

    return reply


# --- RunPod's REST API v2: the one call a pod makes ------------------------------------------

STOP_ROUTE = re.compile(r"^/v2/pods/([^/]+)/action$")


def runpod_api(request: Request) -> Reply:
    """`POST /v2/pods/{id}/action {"action": "stop"}` as RunPod answers it: the pod, now EXITED."""
    found = STOP_ROUTE.match(request.route)
    if request.method == "POST" and found and request.json() == {"action": "stop"}:
        return Reply.json({"id": found.group(1), "status": "EXITED", "actions": ["start", "terminate"], "cost": 0.0})
    return Reply.json({"title": "Not Found", "status": 404, "detail": f"the fake API has no {request.method} "
                       f"{request.route}"}, status=404)


def stop_requests(server: FakeServer) -> list[str]:
    """The pod ids of the stop actions the server received."""
    return [STOP_ROUTE.match(r.route).group(1) for r in server.requests
            if r.method == "POST" and STOP_ROUTE.match(r.route) and r.json() == {"action": "stop"}]


# --- W&B -------------------------------------------------------------------------------------

def wandb_api(valid_key: str) -> Callable[[Request], Reply]:
    """Answers wandb's `query Viewer` for `valid_key` (HTTP basic auth, user "api"); 401 otherwise."""
    expected = "Basic " + base64.b64encode(f"api:{valid_key}".encode()).decode()

    def reply(request: Request) -> Reply:
        if request.route != "/graphql" or "viewer" not in request.json().get("query", ""):
            return Reply(404)
        if request.headers.get("Authorization") != expected:
            return Reply.json({"errors": [{"message": "user is not logged in"}]}, status=401)
        return Reply.json({"data": {"viewer": {"id": "VXNlcjox", "entity": "well-log-team", "username": "ci"}}})

    return reply


# --- the Hugging Face Hub ---------------------------------------------------------------------

def tiny_parquet() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table({"image": [b"png"] * 3, "text": ["WELL A-1", "WELL B-2", "WELL C-3"]}), buffer)
    return buffer.getvalue()


def hub_api(repos: set[str]) -> Callable[[Request], Reply]:
    """The hub endpoints huggingface_hub and `datasets.load_dataset` use, for `repos` ("datasets/org/x",
    "models/org/y"); each dataset holds one parquet file of three rows. Anything else: RepoNotFound."""
    sha = "0" * 40
    parquet = tiny_parquet()
    data_file = "data/train-00000-of-00001.parquet"
    entry = [{"type": "file", "path": data_file, "size": len(parquet), "oid": "1" * 40}]

    def reply(request: Request) -> Reply:
        route = request.route
        api = route.startswith("/api/")
        parts = route.split("/")
        repo = "/".join(parts[2:5] if api else parts[1:4])  # "datasets/org/name"
        if not repo.startswith(("datasets/", "models/")):  # model urls have no "models/" prefix
            repo = "models/" + "/".join(parts[1:3])
        if repo not in repos:
            return Reply(404, b"", {"X-Error-Code": "RepoNotFound"})
        if route.endswith("/auth-check"):
            return Reply(200)
        if "/tree/" in route or "/paths-info/" in route:
            return Reply.json(entry)
        if api:
            return Reply.json({"id": repo.split("/", 1)[1], "sha": sha, "private": True,
                               "siblings": [{"rfilename": data_file}]})
        if "/resolve/" in route and route.endswith(data_file):
            return Reply(200, parquet, {"ETag": '"parquet-1"', "X-Repo-Commit": sha})
        return Reply(404, b"", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": sha})

    return reply


# --- a git host over HTTP, behind a token ------------------------------------------------------

def git_http(project_root: str, username: str, token: str) -> Callable[[Request], Reply]:
    """git's smart HTTP protocol (`git http-backend`) for the repositories under `project_root`,
    answering 401 to any request without HTTP basic auth `username:token`, as GitHub does."""
    expected = "Basic " + base64.b64encode(f"{username}:{token}".encode()).decode()

    def reply(request: Request) -> Reply:
        if request.headers.get("Authorization") != expected:
            return Reply(401, b"authentication required", {"WWW-Authenticate": 'Basic realm="git"'})
        path, _, query = request.path.partition("?")
        env = {"PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": project_root, "GIT_HTTP_EXPORT_ALL": "1",
               "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": request.method,
               "CONTENT_TYPE": request.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(request.body)),
               "HTTP_CONTENT_ENCODING": request.headers.get("Content-Encoding", ""),
               "GIT_PROTOCOL": request.headers.get("Git-Protocol", ""), "REMOTE_USER": username}
        out = subprocess.run(["git", "http-backend"], input=request.body, env=env, capture_output=True, timeout=30)
        head, _, body = out.stdout.partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n") if ": " in line)
        status = int(headers.pop("Status", "200").split()[0])
        return Reply(status, body, headers)

    return reply


class HubRepos:
    """Model repositories on a fake Hub, for publishing and downloading with huggingface_hub:
    create repo (POST /api/repos/create), upload_folder (preupload, then an ndjson commit with every
    file inline: the fake asks for no LFS), repo info, tree and resolve (snapshot_download). Writes
    need `token`; a private repository answers reads without it 401, as the Hub does."""

    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, dict] = {}  # "org/name" -> {"private", "files": {path: bytes}, "sha", "commits"}

    def add(self, repo_id: str, files: dict[str, bytes], private: bool = False) -> None:
        self.repos[repo_id] = {"private": private, "files": dict(files), "commits": ["initial"],
                               "sha": self._sha(files)}

    @staticmethod
    def _sha(files: dict[str, bytes]) -> str:
        import hashlib

        digest = hashlib.sha1()
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + files[path])
        return digest.hexdigest()

    @staticmethod
    def _validate_yaml(content: str) -> Reply:
        """The Hub's check of a card's metadata, as far as the harness's cards use it: base_model and
        datasets must be Hub ids (a local path or a stand-in name is refused with HTTP 400)."""
        import yaml

        if not content.startswith("---\n"):
            return Reply.json({"errors": [], "warnings": [{"message": "empty or missing yaml metadata"}]})
        metadata = yaml.safe_load(content.split("---\n", 2)[1]) or {}
        hub_id = re.compile(r"^[\w.-]+/[\w.-]+$")
        errors = [f"{key}: {value!r} is not a Hub id" for key in ("base_model", "datasets")
                  for value in ([metadata[key]] if isinstance(metadata.get(key), str) else metadata.get(key) or [])
                  if not hub_id.match(str(value))]
        if not isinstance(metadata.get("library_name", ""), str):
            errors.append("library_name: must be a string")
        return Reply.json({"errors": [{"message": e} for e in errors], "warnings": []}, status=400 if errors else 200)

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization", request.headers.get("Authorization")) == f"Bearer {self.token}"

    def __call__(self, request: Request) -> Reply:
        route, base = request.route, f"http://{request.headers.get('Host')}"
        if route == "/api/agent-harnesses":  # huggingface_hub's agent detection: none known here
            return Reply.json({"standardEnvVars": [], "harnesses": {}})
        if route == "/api/validate-yaml":
            return self._validate_yaml(request.json()["content"])
        if route == "/api/repos/create" and request.method == "POST":
            if not self._authorized(request):
                return Reply.json({"error": "Invalid credentials in Authorization header"}, status=401)
            body = request.json()
            repo_id = f"{body['organization']}/{body['name']}"
            if repo_id in self.repos:
                return Reply.json({"error": "You already created this model repo", "url": f"{base}/{repo_id}"},
                                  status=409)
            self.add(repo_id, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"},
                     private=body.get("visibility") == "private")
            return Reply.json({"url": f"{base}/{repo_id}", "name": repo_id})
        api = route.startswith("/api/models/")
        parts = route.split("/")
        repo_id = "/".join(parts[3:5] if api else parts[1:3])
        repo = self.repos.get(repo_id)
        if repo is None or (repo["private"] and not self._authorized(request)):
            return Reply.json({"error": "Repository Not Found"}, status=401 if repo else 404,
                              **{"X-Error-Code": "RepoNotFound"})
        if api and "/preupload/" in route:
            if not self._authorized(request):
                return Reply.json({"error": "write access needed"}, status=403)
            return Reply.json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                         for f in request.json()["files"]]})
        if api and "/commit/" in route:
            if not self._authorized(request):
                return Reply.json({"error": "write access needed"}, status=403)
            lines = [json.loads(line) for line in request.body.splitlines() if line.strip()]
            for line in lines:
                if line["key"] == "file":
                    repo["files"][line["value"]["path"]] = base64.b64decode(line["value"]["content"])
            repo["sha"] = self._sha(repo["files"])
            repo["commits"].append(lines[0]["value"]["summary"])
            return Reply.json({"commitUrl": f"{base}/{repo_id}/commit/{repo['sha']}", "commitOid": repo["sha"]})
        if api and "/tree/" in route:
            return Reply.json([{"type": "file", "path": path, "size": len(data), "oid": self._sha({path: data})}
                               for path, data in sorted(repo["files"].items())])
        if api:  # repo info, at a revision or not
            return Reply.json({"id": repo_id, "sha": repo["sha"], "private": repo["private"],
                               "siblings": [{"rfilename": path} for path in sorted(repo["files"])]})
        if "/resolve/" in route:
            path = route.split("/resolve/", 1)[1].split("/", 1)[1]
            if path in repo["files"]:
                data = repo["files"][path]
                return Reply(200, data, {"ETag": f'"{self._sha({path: data})}"', "X-Repo-Commit": repo["sha"]})
        return Reply(404, b"", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo["sha"]})
