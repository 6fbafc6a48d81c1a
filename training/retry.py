"""The one retry policy for calls over the network: the hub, W&B, RunPod's API.

Three tries with exponential backoff (RETRY_WAIT_SECONDS, then twice that), on transient errors
only: timeouts, refused or reset connections, HTTP 408/425/429 and 5xx. Anything else, 401, 403
and 404 included, fails at once: a wrong name or a bad token does not get better by waiting.
An answer's `Retry-After` (RunPod sends it with 429) is honoured: the wait is at least that long,
and one asking for more than MAX_WAIT_SECONDS ends the tries at once (the caller schedules that wait).
Either way the caller gets a NetworkCallFailed that says what failed, which kind of error it was
and how many tries were made.

    from training.retry import call
    run = call("W&B init", wandb.init, project=config.wandb_project)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from typing import TypeVar

import httpx
import requests
import tenacity
from huggingface_hub.errors import OfflineModeIsEnabled

from training.errors import UserError

log = logging.getLogger("training")

ATTEMPTS = 3
WAIT_ENV = "RETRY_WAIT_SECONDS"
DEFAULT_WAIT_SECONDS = 2.0
MAX_WAIT_SECONDS = 60.0
# 408 request timeout, 425 too early, 429 rate limited: the same request can succeed later.
TRANSIENT_STATUS = frozenset({408, 425, 429})
TRANSIENT_TYPES = (
    TimeoutError,
    ConnectionError,  # refused, reset, aborted, broken pipe
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)
# Subclasses of a transient type that no retry can fix.
PERMANENT_TYPES = (OfflineModeIsEnabled,)

T = TypeVar("T")


class NetworkCallFailed(Exception):
    """A call that failed for good: `transient` says which kind, `tries` how many were made."""

    def __init__(self, what: str, error: BaseException, tries: int):
        self.what, self.error, self.tries = what, error, tries
        self.transient = is_transient(error)
        self.status = status_code(error)
        if self.transient:
            verdict = f"transient error, gave up after {tries} tries"
        else:
            verdict = "permanent error, not retried"
        super().__init__(f"{what}: {describe(error)} ({verdict})")


def causes(error: BaseException) -> Iterator[BaseException]:
    """`error` and what it wraps: __cause__, __context__ and wandb's `.exc`, outermost first."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = getattr(current, "exc", None)
        pending += [current.__cause__, current.__context__, wrapped if isinstance(wrapped, BaseException) else None]


def status_code(error: BaseException) -> int | None:
    """The HTTP status behind `error`, if any of the errors it wraps carries a response."""
    for current in causes(error):
        response = getattr(current, "response", None)
        code = getattr(response, "status_code", None) or getattr(current, "status_code", None)
        if isinstance(code, int):
            return code
    return None


def retry_after(error: BaseException | None) -> float | None:
    """The seconds an answer behind `error` asks to wait (its `Retry-After`), if one does."""
    for current in causes(error) if error is not None else ():
        seconds = retry_after_header(getattr(getattr(current, "response", None), "headers", None))
        if seconds is not None:
            return seconds
    return None


def retry_after_header(headers) -> float | None:
    """`Retry-After` of an answer's headers in seconds (it may be seconds or an HTTP date), or None."""
    value = str(headers.get("Retry-After") or "").strip() if headers is not None else ""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, seconds) if seconds == seconds else None  # NaN: no usable answer


def is_transient(error: BaseException) -> bool:
    """Whether trying the same call again may succeed."""
    code = status_code(error)
    if code is not None:
        return code in TRANSIENT_STATUS or 500 <= code <= 599
    for current in causes(error):
        if isinstance(current, PERMANENT_TYPES):
            return False
        if isinstance(current, TRANSIENT_TYPES):
            return True
        # wandb's CommError is its network failure; its AuthenticationError subclass is a bad key.
        kind = type(current)
        if kind.__module__.startswith("wandb") and kind.__name__ == "CommError":
            return True
    return False


def describe(error: BaseException) -> str:
    """A short reason: 'HTTP 503', 'connection refused', or the error's type and first line."""
    code = status_code(error)
    if code is not None:
        return f"HTTP {code}"
    for current in causes(error):
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, ConnectionResetError):
            return "connection reset"
        if isinstance(current, (TimeoutError, requests.exceptions.Timeout, httpx.TimeoutException)):
            return "timed out"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


def base_wait(environ=os.environ) -> float:
    raw = environ.get(WAIT_ENV, "").strip()
    if not raw:
        return DEFAULT_WAIT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= MAX_WAIT_SECONDS:
        raise UserError(f"{WAIT_ENV}={raw!r}: must be a number of seconds between 0 and {MAX_WAIT_SECONDS:g} "
                        f"(default {DEFAULT_WAIT_SECONDS:g})")
    return value


def policy(what: str, sleep: Callable[[float], None] | None = None) -> tenacity.Retrying:
    """The tenacity policy: ATTEMPTS tries, waits of base, 2 x base, ... (at least what Retry-After
    asks); transient errors only. `sleep`: how to wait (a test's clock; default time.sleep)."""

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception()
        log.warning("%s: %s, try %d/%d failed; retrying in %.1fs", what, describe(error), state.attempt_number,
                    ATTEMPTS, state.upcoming_sleep)

    backoff = tenacity.wait_exponential(multiplier=base_wait(), max=MAX_WAIT_SECONDS)

    def wait(state: tenacity.RetryCallState) -> float:
        return max(backoff(state), retry_after(state.outcome.exception()) or 0.0)

    def asks_too_long(state: tenacity.RetryCallState) -> bool:
        return (retry_after(state.outcome.exception()) or 0.0) > MAX_WAIT_SECONDS

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(ATTEMPTS) | asks_too_long,
        wait=wait,
        retry=tenacity.retry_if_exception(is_transient),
        before_sleep=before_sleep,
        reraise=True,
        sleep=sleep or tenacity.nap.sleep,
    )


def call(what: str, function: Callable[..., T], *args, retry_sleep: Callable[[float], None] | None = None,
         **kwargs) -> T:
    """`function(*args, **kwargs)` under the policy; NetworkCallFailed when it fails for good.
    `retry_sleep` waits between tries instead of time.sleep (a simulation's clock)."""
    retrying = policy(what, retry_sleep)
    try:
        return retrying(function, *args, **kwargs)
    except Exception as error:
        if not (is_transient(error) or status_code(error) is not None):
            raise  # not a network failure (a bug, a missing file): the caller's to handle
        raise NetworkCallFailed(what, error, retrying.statistics.get("attempt_number", 1)) from error
