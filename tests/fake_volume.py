"""A RunPod network volume's S3-compatible API on 127.0.0.1, for the tests: moto's S3 server (a real
S3 protocol implementation) with its IAM key checks on, behind a thin layer that applies what RunPod
documents for network volumes (docs.runpod.io/storage/s3-api, read 2026-12):

- the bucket is the volume id: buckets exist from the start and cannot be created or deleted
  (CreateBucket, DeleteBucket: 501 NotImplemented);
- not implemented (501): DeleteObjects, GetBucketLocation, versioning, ACLs, policies, tagging,
  encryption, object lock, RestoreObject, presigned URLs;
- PutObject takes under 500 MB, a multipart part at most 500 MB (400 EntityTooLarge);
- only a key of the account opens it (403 InvalidAccessKeyId / SignatureDoesNotMatch otherwise).

Run as a process (`start()` in the tests): it prints one JSON line, {"url", "access_key",
"secret_key"}, and serves until its stdin closes. Control routes, outside S3's namespace ('_' is
not allowed in a bucket name): GET /_volume/log (every S3 request so far: method, key, query,
status), POST /_volume/log/clear, POST /_volume/faults with {"fail_puts_after": N} (then every
object PUT answers 503 SlowDown) or {"corrupt_key": KEY} (GETs of KEY answer a flipped byte, as
a bad link would), {} to clear.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

VOLUMES = ("vol-eu1",)  # tests/fake_runpod.py: vol-eu1 is in EU-RO-1, which has the S3 API
REGION = "EU-RO-1"
PUT_LIMIT = 500 * 1000 * 1000
NOT_IMPLEMENTED = {"location", "versioning", "acl", "policy", "tagging", "encryption", "object-lock", "delete",
                   "restore", "X-Amz-Signature", "Signature"}
POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


class RunPodRules:
    """WSGI middleware: RunPod's refusals, a request log and injected faults, in front of moto."""

    def __init__(self, app):
        self.app, self.log, self.faults, self.sealed = app, [], {}, False
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        method, path = environ["REQUEST_METHOD"], unquote(environ.get("PATH_INFO", ""))
        if path.startswith("/_volume/"):
            return self.control(method, path, environ, start_response)
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        bucket, _, key = path.lstrip("/").partition("/")
        refusal = self.refusal(method, bucket, key, query, int(environ.get("CONTENT_LENGTH") or 0)) if self.sealed else None
        if refusal is None and method == "PUT" and key and self.faults.get("fail_puts_after") is not None:
            with self.lock:
                if self.faults["fail_puts_after"] <= 0:
                    refusal = (503, "SlowDown", "Please reduce your request rate.")
                else:
                    self.faults["fail_puts_after"] -= 1
        if self.sealed:
            with self.lock:
                self.log.append({"method": method, "bucket": bucket, "key": key, "query": sorted(query),
                                 "status": refusal[0] if refusal else None})
        if refusal is not None:
            status, code, message = refusal
            body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
                    f"<Resource>{path}</Resource></Error>").encode()
            environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            start_response(f"{status} {code}", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
            return [body]
        entry = self.log[-1] if self.sealed else None

        def answered(status, headers, exc_info=None):
            if entry is not None:
                entry["status"] = int(status.split()[0])
            return start_response(status, headers, exc_info)

        body = self.app(environ, answered)
        if method == "GET" and key and key == self.faults.get("corrupt_key"):
            data = bytearray(b"".join(body))
            if data:
                data[len(data) // 2] ^= 0xFF
            return [bytes(data)]
        return body

    def refusal(self, method: str, bucket: str, key: str, query: dict, length: int):
        if not bucket:
            return None  # ListBuckets
        if not key and method in ("PUT", "DELETE") and not query:
            return 501, "NotImplemented", "Network volumes are created and deleted in the Runpod console."
        unsupported = NOT_IMPLEMENTED.intersection(query)
        if unsupported:
            return 501, "NotImplemented", f"{sorted(unsupported)[0]} is not implemented."
        if method == "PUT" and key and length > PUT_LIMIT:
            return 400, "EntityTooLarge", "Use a multipart upload (parts of at most 500MB)."
        return None

    def control(self, method, path, environ, start_response):
        raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        with self.lock:
            if path == "/_volume/log" and method == "GET":
                payload = self.log
            elif path == "/_volume/log/clear":
                self.log.clear()
                payload = {}
            elif path == "/_volume/faults":
                self.faults = json.loads(raw or b"{}")
                payload = self.faults
            else:
                payload = {"error": f"no route {method} {path}"}
            body = json.dumps(payload).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def serve() -> None:
    import boto3
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    class Quiet(MotoRequestHandler):
        def log_request(self, *args, **kwargs):  # keep pytest's output clean
            pass

    rules = RunPodRules(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, rules, threaded=True, request_handler=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.port}"
    # Set up as RunPod's console would, before the keys are checked: the account, its S3 API key, its volumes.
    setup = {"endpoint_url": url, "region_name": "us-east-1", "aws_access_key_id": "setup",
             "aws_secret_access_key": "setup"}
    iam = boto3.client("iam", **setup)
    iam.create_user(UserName="runpod-user")
    iam.put_user_policy(UserName="runpod-user", PolicyName="volumes", PolicyDocument=json.dumps(POLICY))
    key = iam.create_access_key(UserName="runpod-user")["AccessKey"]
    s3 = boto3.client("s3", **setup)
    for volume in VOLUMES:
        s3.create_bucket(Bucket=volume)
    ActionAuthenticatorMixin.request_count = 0
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # from now on every request must be signed with the key
    rules.sealed = True
    print(json.dumps({"url": url, "access_key": key["AccessKeyId"], "secret_key": key["SecretAccessKey"]}), flush=True)
    sys.stdin.read()  # until the test process closes the pipe (or dies)
    server.shutdown()


@dataclass
class FakeVolume:
    url: str
    access_key: str
    secret_key: str
    process: subprocess.Popen

    def _call(self, method: str, route: str, payload=None):
        import requests

        answer = requests.request(method, f"{self.url}/_volume/{route}", json=payload, timeout=10)
        answer.raise_for_status()
        return answer.json()

    def log(self) -> list[dict]:
        return self._call("GET", "log")

    def clear_log(self) -> None:
        self._call("POST", "log/clear")

    def faults(self, **faults) -> None:
        self._call("POST", "faults", faults)

    def env(self) -> dict:
        """The environment a user sets for the S3 API, pointed at this server."""
        return {"RUNPOD_S3_ACCESS_KEY": self.access_key, "RUNPOD_S3_SECRET_KEY": self.secret_key,
                "RUNPOD_S3_ENDPOINT_URL": self.url, "AWS_MAX_ATTEMPTS": "2", "NO_PROXY": "127.0.0.1,localhost"}

    def client(self):
        """A boto3 client with the account's key, for writing what pods would write."""
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name=REGION, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key)

    def put_tree(self, local, prefix: str, volume: str = VOLUMES[0]) -> None:
        """Every file under the directory `local` at `prefix`/..., as a pod's writes appear through
        RunPod's S3 API, and its empty directories as keys ending in '/' (RunPod lists those)."""
        client = self.client()
        for root, dirs, files in os.walk(local):
            relative = os.path.relpath(root, local).replace(os.sep, "/")
            base = prefix if relative == "." else f"{prefix}/{relative}"
            if not dirs and not files:
                client.put_object(Bucket=volume, Key=f"{base}/", Body=b"")
            for name in files:
                with open(os.path.join(root, name), "rb") as source:
                    client.put_object(Bucket=volume, Key=f"{base}/{name}", Body=source.read())

    def keys(self, prefix: str = "", volume: str = VOLUMES[0]) -> dict[str, int]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=volume, Prefix=prefix)
        return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents") or []}

    def wipe(self, volume: str = VOLUMES[0]) -> None:
        """Every object deleted, one by one (RunPod has no DeleteObjects)."""
        client = self.client()
        for key in self.keys(volume=volume):
            client.delete_object(Bucket=volume, Key=key)
        self.faults()
        self.clear_log()

    def stop(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start() -> FakeVolume:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    process = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env=env)
    line = process.stdout.readline()
    if not line:
        process.kill()
        raise RuntimeError(f"the fake volume server did not start (exit {process.wait()})")
    ready = json.loads(line)
    return FakeVolume(ready["url"], ready["access_key"], ready["secret_key"], process)


if __name__ == "__main__":
    serve()
