"""The retry policy: which errors are transient, how many tries, what the final error says."""

from __future__ import annotations

import httpx
import pytest
import requests
from huggingface_hub.errors import OfflineModeIsEnabled

from fake_servers import FakeServer, Reply, failing_first
from training.errors import UserError
from training.retry import ATTEMPTS, NetworkCallFailed, base_wait, call, describe, is_transient, status_code


@pytest.fixture(autouse=True)
def short_waits(monkeypatch):
    monkeypatch.setenv("RETRY_WAIT_SECONDS", "0.01")


def http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"{status} error", response=response)


def wrapped(error: BaseException) -> Exception:
    try:
        try:
            raise error
        except BaseException as inner:
            raise RuntimeError("a library's own error") from inner
    except RuntimeError as outer:
        return outer


def wandb_error(name: str) -> Exception:
    import wandb.errors

    return getattr(wandb.errors, name)("run initialization has timed out")


@pytest.mark.parametrize("error, transient, described", [
    (http_error(503), True, "HTTP 503"),
    (http_error(500), True, "HTTP 500"),
    (http_error(429), True, "HTTP 429"),
    (http_error(408), True, "HTTP 408"),
    (http_error(401), False, "HTTP 401"),
    (http_error(403), False, "HTTP 403"),
    (http_error(404), False, "HTTP 404"),
    (ConnectionRefusedError(111, "refused"), True, "connection refused"),
    (ConnectionResetError(104, "reset"), True, "connection reset"),
    (TimeoutError("slow"), True, "timed out"),
    (requests.exceptions.ConnectTimeout("slow"), True, "timed out"),
    (requests.exceptions.ConnectionError("no route"), True, "ConnectionError: no route"),
    (httpx.ReadTimeout("slow"), True, "timed out"),
    (httpx.ConnectError("refused"), True, "ConnectError: refused"),
    (httpx.RemoteProtocolError("server disconnected"), True, "RemoteProtocolError: server disconnected"),
    (OfflineModeIsEnabled("HF_HUB_OFFLINE=1"), False, "OfflineModeIsEnabled: HF_HUB_OFFLINE=1"),
    (wrapped(http_error(502)), True, "HTTP 502"),  # the status is found through __cause__
    (wrapped(ConnectionResetError(104, "reset")), True, "connection reset"),
    (ValueError("a bug"), False, "ValueError: a bug"),
    (FileNotFoundError("missing.parquet"), False, "FileNotFoundError: missing.parquet"),
])
def test_transient_or_permanent(error, transient, described):
    assert is_transient(error) is transient
    assert describe(error) == described


def test_wandb_errors():
    assert is_transient(wandb_error("CommError"))
    assert not is_transient(wandb_error("AuthenticationError"))  # a bad key: subclass of CommError
    assert not is_transient(wandb_error("UsageError"))


class Flaky:
    def __init__(self, *errors: BaseException):
        self.errors, self.calls = list(errors), 0

    def __call__(self, value):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return value


def test_transient_errors_are_tried_three_times():
    flaky = Flaky(http_error(503), ConnectionResetError(104, "reset"))
    assert call("thing", flaky, 42) == 42
    assert flaky.calls == 3


def test_giving_up_says_which_kind_and_how_many_tries():
    flaky = Flaky(*[http_error(503)] * 5)
    with pytest.raises(NetworkCallFailed) as failure:
        call("hub dataset 'org/x'", flaky, 1)
    assert flaky.calls == ATTEMPTS == 3
    assert str(failure.value) == "hub dataset 'org/x': HTTP 503 (transient error, gave up after 3 tries)"
    assert failure.value.transient and failure.value.tries == 3 and failure.value.status == 503


def test_permanent_errors_fail_at_once():
    flaky = Flaky(http_error(404), http_error(404))
    with pytest.raises(NetworkCallFailed) as failure:
        call("hub model 'org/m'", flaky, 1)
    assert flaky.calls == 1
    assert str(failure.value) == "hub model 'org/m': HTTP 404 (permanent error, not retried)"


def test_other_errors_pass_through_untouched():
    flaky = Flaky(KeyError("split"))
    with pytest.raises(KeyError):
        call("thing", flaky, 1)
    assert flaky.calls == 1


def test_real_client_against_a_server_that_fails_twice():
    def ok(request):
        return Reply.json({"ok": True})

    def get(url):
        response = requests.get(url, timeout=5)
        response.raise_for_status()
        return response.json()

    with FakeServer(failing_first(2, "/thing", ok)) as server:
        assert call("GET /thing", get, f"{server.url}/thing") == {"ok": True}
    assert server.count("/thing") == 3


@pytest.mark.parametrize("raw, seconds", [("", 2.0), ("0", 0.0), ("0.5", 0.5), (" 3 ", 3.0)])
def test_base_wait_from_the_environment(raw, seconds):
    assert base_wait({"RETRY_WAIT_SECONDS": raw}) == seconds


@pytest.mark.parametrize("raw", ["soon", "-1", "nan", "1e9"])
def test_bad_base_wait_is_a_user_error(raw):
    with pytest.raises(UserError, match=f"RETRY_WAIT_SECONDS='{raw}': must be a number of seconds"):
        base_wait({"RETRY_WAIT_SECONDS": raw})


def test_waits_double(monkeypatch):
    monkeypatch.setenv("RETRY_WAIT_SECONDS", "0.2")
    slept = []
    flaky = Flaky(*[http_error(503)] * 3)
    from training import retry

    policy = retry.policy("thing")
    policy.sleep = slept.append  # tenacity's own hook for its sleeps
    with pytest.raises(requests.HTTPError):
        policy(flaky, 1)
    assert slept == [0.2, 0.4]


def test_status_code_of_plain_errors():
    assert status_code(ValueError("x")) is None
