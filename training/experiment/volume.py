"""Where runs' files are read and written: one small interface, two backends.

- `LocalDir(root)`: a directory here (training.run_files, shared with the pod).
- `S3Volume`: a RunPod network volume through RunPod's S3-compatible API (beta), from anywhere,
  with no pod: `open_volume(volume_id)`.

Both answer the same calls with paths relative to their root ('/'-separated): `read` (bytes, None
when missing), `json` (None when missing or torn), `children` (subdirectory names), `entries`
(every file below a path, with its size and, on S3, its ETag), `download`, `upload`, and `sub` (the
same store rooted lower down). `training.experiment.runs` reads runs through it, so `status`,
`compare`, `fleet status` and `pull` work the same on a pod and on a laptop.

RunPod's S3 API (docs.runpod.io/storage/s3-api, read 2026-12): endpoint
https://s3api-<data center, lower case>.runpod.io/, bucket = the volume id, region = the data
center, keys = an S3 API key of the account (Settings > S3 API Keys: access key `user_...`, secret
`rps_...`), separate from RUNPOD_API_KEY. Only some data centers have it (S3_DATA_CENTERS). It
implements GetObject, HeadObject, HeadBucket, ListObjects(V2), PutObject (under 500 MB) and
multipart uploads (parts of at most 500 MB), not DeleteObjects, presigned URLs, versioning or ACLs;
object keys are file paths on the volume. ListObjects on many or large files created by pods can
be slow (RunPod computes their MD5 ETag on first listing) and may fail with "the same next token
was received twice": listings here are shallow where they can be, and retried after a pause.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass

from training.errors import UserError
from training.run_files import CHUNK_BYTES, Entry, LocalDir, Store

ACCESS_KEY_ENV, SECRET_KEY_ENV = "RUNPOD_S3_ACCESS_KEY", "RUNPOD_S3_SECRET_KEY"
ENDPOINT_ENV = "RUNPOD_S3_ENDPOINT_URL"  # tests point it at a local S3 server
ENDPOINT = "https://s3api-{data_center}.runpod.io/"
# The data centers whose network volumes have the S3 API (RunPod's docs, read 2026-12).
S3_DATA_CENTERS = ("EU-CZ-1", "EU-RO-1", "EUR-IS-1", "EUR-NO-1", "US-CA-2", "US-GA-2", "US-IL-1", "US-KS-2",
                   "US-MD-1", "US-MO-1", "US-MO-2", "US-NC-1", "US-NC-2", "US-NE-1", "US-WA-1")
KEYS_PAGE = "RunPod console > Settings > S3 API Keys"
# RunPod takes a PutObject under 500 MB and multipart parts of at most 500 MB: files above
# PART_BYTES go up in parts of PART_BYTES.
PART_BYTES = 64 * 1024 * 1024
LIST_TRIES = 3
LIST_PAUSE_S = 2.0
# RunPod's docs advise retrying its 502s up to 10 times (AWS_RETRY_MODE=standard, AWS_MAX_ATTEMPTS=10);
# those variables, when set, still decide.
DEFAULT_ATTEMPTS = 10
_KEYS_IN_USE: set[str] = set()  # what _redacted() takes out of any message
REFUSED_KEY_CODES = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken",
                     "AuthorizationHeaderMalformed", "Forbidden", "403")


class S3Volume(Store):
    """A network volume (bucket = its id) below `prefix`, through a boto3 S3 client."""

    def __init__(self, client, volume_id: str, data_center: str, key_source: str, prefix: str = ""):
        self.client, self.volume_id, self.data_center, self.key_source = client, volume_id, data_center, key_source
        self.prefix = prefix.strip("/")
        where = f":{self.prefix}/" if self.prefix else ""
        self.label = f"network volume {volume_id}{where} ({data_center}, S3 API)"

    @property
    def name(self) -> str:
        return self.prefix.rsplit("/", 1)[-1]

    def sub(self, path: str) -> S3Volume:
        return S3Volume(self.client, self.volume_id, self.data_center, self.key_source, self._key(path))

    def _key(self, path: str) -> str:
        return "/".join(p for p in (self.prefix, *path.split("/")) if p)

    def read(self, path: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.volume_id, Key=self._key(path))["Body"].read()
        except ClientError as error:
            if _code(error) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self.refusal(error, f"read {self._key(path)}") from None
        except Exception as error:  # botocore's connection errors: one line, no traceback
            raise self.unreachable(error) from None

    def _list(self, prefix: str, delimiter: str | None) -> tuple[list[dict], list[str]]:
        """(objects, common prefixes) under `prefix`, every page, retried as RunPod's docs advise."""
        from botocore.exceptions import ClientError, PaginationError

        arguments = {"Bucket": self.volume_id, "Prefix": prefix, **({"Delimiter": delimiter} if delimiter else {})}
        for attempt in range(1, LIST_TRIES + 1):
            objects, prefixes = [], []
            try:
                for page in self.client.get_paginator("list_objects_v2").paginate(**arguments):
                    objects += page.get("Contents") or []
                    prefixes += [p["Prefix"] for p in page.get("CommonPrefixes") or []]
                return objects, prefixes
            except PaginationError as error:  # "the same next token was received twice": RunPod is hashing
                if attempt == LIST_TRIES:
                    raise UserError(f"{self.label}: listing {prefix or '/'} failed {LIST_TRIES} times ({error}); "
                                    "RunPod computes the checksums of files pods wrote on the first listing: "
                                    "try again in a few minutes") from None
                time.sleep(LIST_PAUSE_S * attempt)
            except ClientError as error:
                raise self.refusal(error, f"list {prefix or '/'}") from None
            except Exception as error:
                raise self.unreachable(error) from None
        raise AssertionError("unreachable")

    def children(self, path: str = "") -> list[str]:
        base = self._key(path)
        base = f"{base}/" if base else ""
        objects, prefixes = self._list(base, "/")
        # RunPod also lists empty directories as keys ending in '/'.
        names = {p[len(base):].strip("/") for p in prefixes}
        names |= {o["Key"][len(base):].strip("/") for o in objects if o["Key"].endswith("/") and o["Key"] != base}
        return sorted(n for n in names if n)

    def entries(self, path: str = "") -> list[Entry]:
        base = self._key(path)
        base = f"{base}/" if base else ""
        objects, _ = self._list(base, None)
        return sorted((Entry(o["Key"][len(base):], int(o["Size"]), (o.get("ETag") or "").strip('"') or None)
                       for o in objects if not o["Key"].endswith("/")), key=lambda e: e.path)

    def download(self, path: str, local: str, digest=None) -> None:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.volume_id, Key=self._key(path))["Body"]
            with open(local, "wb") as out:
                for chunk in iter(lambda: body.read(CHUNK_BYTES), b""):
                    out.write(chunk)
                    if digest is not None:
                        digest.update(chunk)
        except ClientError as error:
            raise self.refusal(error, f"read {self._key(path)}") from None
        except OSError:
            raise
        except Exception as error:
            raise self.unreachable(error) from None

    def upload(self, local: str, path: str) -> None:
        """One PutObject under PART_BYTES (RunPod: under 500 MB), else a multipart upload in PART_BYTES parts."""
        from boto3.exceptions import S3UploadFailedError
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import ClientError

        key = self._key(path)
        try:
            if os.path.getsize(local) < PART_BYTES:
                with open(local, "rb") as body:
                    self.client.put_object(Bucket=self.volume_id, Key=key, Body=body)
            else:
                config = TransferConfig(multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, max_concurrency=4)
                self.client.upload_file(local, self.volume_id, key, Config=config)
        except ClientError as error:
            raise self.refusal(error, f"write {key}") from None
        except S3UploadFailedError as error:  # a multipart upload's ClientError, wrapped
            cause = error.__cause__ or error.__context__
            if isinstance(cause, ClientError):
                raise self.refusal(cause, f"write {key}") from None
            raise UserError(f"{self.label}: write {key}: {_redacted(str(error))}") from None
        except OSError:
            raise
        except Exception as error:
            raise self.unreachable(error) from None

    # --- errors, one line each, never a key ---------------------------------------------------------
    def refusal(self, error, what: str) -> UserError:
        code = _code(error)
        if code in REFUSED_KEY_CODES:
            return UserError(refused_key(self.volume_id, self.key_source, code))
        if code == "RequestTimeTooSkewed":
            return UserError(f"{self.label}: the request was refused because this machine's clock is more than an "
                             "hour off (RequestTimeTooSkewed): set the clock right and try again")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = _redacted(error.response.get("Error", {}).get("Message") or "")
        return UserError(f"{self.label}: {what}: {code or f'HTTP {status}'}" + (f" ({message})" if message else ""))

    def unreachable(self, error: Exception) -> UserError:
        return UserError(f"{self.label}: the S3 API is unreachable ({type(error).__name__}): check the network "
                         "and try again later")


# --- opening a volume --------------------------------------------------------------------------------
def endpoint(data_center: str) -> str:
    return os.environ.get(ENDPOINT_ENV) or ENDPOINT.format(data_center=data_center.lower())


@dataclass(frozen=True)
class Keys:
    """An S3 API key in memory (never printed, never written) and where it came from."""

    access: str
    secret: str
    token: str | None
    source: str  # the variables or the profile, for messages
    session: object  # the botocore session that read them, to build the client with

    def __repr__(self) -> str:
        return f"Keys(source={self.source!r})"


def s3_keys() -> Keys:
    """RUNPOD_S3_ACCESS_KEY and RUNPOD_S3_SECRET_KEY, else the standard AWS chain
    (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, then AWS_PROFILE or the default profile of
    ~/.aws/credentials and ~/.aws/config)."""
    import botocore.session
    from botocore.credentials import create_credential_resolver
    from botocore.exceptions import BotoCoreError

    access, secret = os.environ.get(ACCESS_KEY_ENV, "").strip(), os.environ.get(SECRET_KEY_ENV, "").strip()
    if access and secret:
        _KEYS_IN_USE.update((access, secret))
        # AWS_PROFILE plays no part with RunPod's variables (a profile it names need not even exist).
        session = botocore.session.Session(session_vars={"profile": (None, None, None, None)})
        return Keys(access, secret, None, f"{ACCESS_KEY_ENV}/{SECRET_KEY_ENV}", session)
    if access or secret:
        missing = SECRET_KEY_ENV if access else ACCESS_KEY_ENV
        raise UserError(f"{missing} is not set (the other half of the S3 API key is): export both, from {KEYS_PAGE}")
    session = botocore.session.get_session()  # a new one each time: the environment of this call
    try:
        resolver = create_credential_resolver(session)
        for provider in ("iam-role", "container-role"):  # a laptop has no instance metadata to wait for
            resolver.remove(provider)
        found = resolver.load_credentials()
    except BotoCoreError as error:  # e.g. AWS_PROFILE names no profile
        raise UserError(f"S3 API key: {_redacted(str(error))} (export {ACCESS_KEY_ENV} and {SECRET_KEY_ENV} "
                        f"instead, from {KEYS_PAGE})") from None
    if found is None:
        raise UserError(f"no S3 API key: export {ACCESS_KEY_ENV} (user_...) and {SECRET_KEY_ENV} (rps_...) from "
                        f"{KEYS_PAGE}, or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE; RUNPOD_API_KEY "
                        "alone does not open the S3 API")
    frozen = found.get_frozen_credentials()
    _KEYS_IN_USE.update(v for v in (frozen.access_key, frozen.secret_key, frozen.token) if v)
    source = {"env": "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"}.get(found.method, f"the AWS profile ({found.method})")
    return Keys(frozen.access_key, frozen.secret_key, frozen.token, source, session)


def client_config():
    from botocore.config import Config

    return Config(
        s3={"addressing_style": "path"},  # https://s3api-<dc>.runpod.io/<volume id>/<key>
        # RunPod's API lists no flexible checksums (x-amz-checksum-*): botocore sends and checks
        # them only where the S3 protocol requires them, as it did before 1.36.
        request_checksum_calculation="when_required", response_checksum_validation="when_required",
        retries={"mode": os.environ.get("AWS_RETRY_MODE") or "standard",
                 "max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS") or DEFAULT_ATTEMPTS)},
        connect_timeout=15, read_timeout=120, max_pool_connections=16)


def open_volume(volume_id: str, api=None) -> S3Volume:
    """The network volume `volume_id` through RunPod's S3 API: its data center from RunPod's API
    (GET /v2/network-volumes/{id}), the S3 keys from the environment, and one HeadBucket that proves
    both. Each way it can fail is one UserError saying which and what to do."""
    from training.runpod import client as runpod_client

    keys = s3_keys()  # no network yet: the cheapest problem first
    api = api or runpod_client.connect()
    data_center = api.network_volume(volume_id).get("dataCenter") or ""
    if data_center not in S3_DATA_CENTERS:
        raise UserError(f"--volume-id {volume_id}: its data center {data_center or '(unknown)'} has no S3 API (RunPod "
                        f"offers it in {', '.join(S3_DATA_CENTERS)}): read it from a pod that mounts it, or keep "
                        "the runs on a volume in one of those")
    import boto3
    from botocore.exceptions import ClientError

    client = boto3.session.Session(botocore_session=keys.session).client(
        "s3", aws_access_key_id=keys.access, aws_secret_access_key=keys.secret, aws_session_token=keys.token,
        region_name=data_center, endpoint_url=endpoint(data_center), config=client_config())
    volume = S3Volume(client, volume_id, data_center, keys.source)
    try:
        client.head_bucket(Bucket=volume_id)
    except ClientError as error:
        if _code(error) in ("NoSuchBucket", "404", "NotFound"):
            raise UserError(f"--volume-id {volume_id}: the S3 API of {data_center} does not know it (NoSuchBucket): "
                            "check the id (RunPod console > Storage)") from None
        raise volume.refusal(error, "open") from None
    except Exception as error:
        raise volume.unreachable(error) from None
    return volume


def refused_key(volume_id: str, source: str, code: str) -> str:
    return (f"--volume-id {volume_id}: the S3 API refused the key from {source} ({code}): the access key is the "
            f"user_... id and the secret the rps_... value of an S3 API key ({KEYS_PAGE}), not RUNPOD_API_KEY")


def open_runs(outputs: str | None, volume_id: str | None, api=None) -> Store:
    """The runs' root: <volume>/checkpoints through the S3 API with `volume_id`, else the local
    directory (--outputs, else <VOLUME_PATH or ./outputs>/checkpoints)."""
    from configs.layout import CHECKPOINTS_DIR
    from training.experiment.names import outputs_root

    if volume_id:
        return open_volume(volume_id, api).sub(CHECKPOINTS_DIR)
    return LocalDir(outputs_root(outputs))


def add_volume_flag(command, help_text: str) -> None:
    """--volume-id, the same flag and meaning in every command that reads the volume."""
    command.add_argument("--volume-id", metavar="ID", help=help_text + f"; through RunPod's S3 API with "
                         f"{ACCESS_KEY_ENV}/{SECRET_KEY_ENV} (or the AWS variables or profile) and RUNPOD_API_KEY")


# --- what a file's checksum must be -------------------------------------------------------------------
def file_etag(path: str, part_bytes: int = PART_BYTES) -> str:
    """The ETag S3 gives `path` uploaded as upload() does: its MD5 when it goes in one PutObject
    (under part_bytes), else the MD5 of its parts' MD5s followed by -<parts>."""
    if os.path.getsize(path) < part_bytes:
        digest = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as source:
            for chunk in iter(lambda: source.read(CHUNK_BYTES), b""):
                digest.update(chunk)
        return digest.hexdigest()
    parts = []
    with open(path, "rb") as source:
        for block in iter(lambda: source.read(part_bytes), b""):
            parts.append(hashlib.md5(block, usedforsecurity=False).digest())
    return f"{hashlib.md5(b''.join(parts), usedforsecurity=False).hexdigest()}-{len(parts)}"


def _code(error) -> str:
    return str(getattr(error, "response", {}).get("Error", {}).get("Code") or "")


def _redacted(text: str) -> str:
    """`text` without the S3 keys' values, whatever a library put in it."""
    for value in _KEYS_IN_USE:
        text = text.replace(value, "***")
    return " ".join(text.split())[:300]
