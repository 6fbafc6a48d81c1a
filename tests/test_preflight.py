"""Preflight: the verdicts and estimates table-driven, the checks on real files, and
`train.py --preflight-only` against local fakes of the hub and of W&B."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess

import pytest
from test_sources import write_imagefolder

from configs.base import STANDIN_MODEL, TrainingConfig
from conftest import QUICK_VAL, run_cli, train
from fake_servers import FakeServer, failing_first, hub_api, wandb_api
from training import estimates
from training.estimates import GIB, gpu_memory_bytes, model_shape
from training.model.loading import prequantized, unquantized_name
from training.preflight import (
    Gpu,
    backend_verdict,
    check_dataset,
    check_model,
    disk_verdict,
    git_verdict,
    gpu_verdict,
    local_dataset_problem,
    targets_verdict,
    wandb_plan,
)

REAL = TrainingConfig()  # the 4-bit Qwen3-VL 2B baseline
UNQUANTIZED = dataclasses.replace(REAL, model_name="unsloth/Qwen3-VL-2B-Instruct")
STANDIN = TrainingConfig(model_name=STANDIN_MODEL, load_in_4bit=False)
H100 = Gpu("NVIDIA H100 80GB HBM3", free=79 * GIB, total=80 * GIB)
SMALL = Gpu("NVIDIA T4", free=3 * GIB, total=15 * GIB)


# --- pure verdicts -------------------------------------------------------------------------------

@pytest.mark.parametrize("config, backend, gpu, ok, words", [
    (REAL, "transformers", None, False, "needs a CUDA GPU and none was found"),
    (dataclasses.replace(UNQUANTIZED, load_in_4bit=False), "transformers", None, True, "none needed"),
    # a -bnb-4bit checkpoint is 4-bit whatever load_in_4bit says
    (dataclasses.replace(REAL, load_in_4bit=False), "transformers", None, False, "the unquantized model"),
    (STANDIN, "transformers", None, True, "none needed"),
    (REAL, "unsloth", H100, True, "the run needs about"),
    (REAL, "unsloth", SMALL, False, "lower per_device_train_batch_size"),
    (dataclasses.replace(REAL, model_name="acme/secret-vlm"), "unsloth", H100, True, "no memory estimate"),
])
def test_gpu_verdict(config, backend, gpu, ok, words):
    check = gpu_verdict(config, backend, gpu)
    assert check.ok is ok and words in check.detail


@pytest.mark.parametrize("config, backend, cuda, unsloth, bnb, ok, words", [
    (REAL, "unsloth", True, True, True, True, "unsloth"),
    # a GPU box without the gpu extra: auto falls back to transformers, which cannot load 4 bits
    (REAL, "transformers", True, False, False, False, "is pre-quantized to 4 bits"),
    (REAL, "transformers", True, False, False, False, "bash scripts/install.sh gpu"),
    (UNQUANTIZED, "transformers", True, False, False, False, "load_in_4bit=True on this GPU needs the Unsloth"),
    (dataclasses.replace(UNQUANTIZED, load_in_4bit=False), "transformers", True, False, False, True, "transformers"),
    (dataclasses.replace(REAL, backend="transformers"), "transformers", True, True, True, False, "backend='auto'"),
    (dataclasses.replace(UNQUANTIZED, backend="transformers"), "transformers", True, True, True, True,
     "load_in_4bit=True is ignored"),
    (REAL, "unsloth", True, True, False, False, "needs bitsandbytes"),
    (REAL, "transformers", False, True, False, True, "transformers"),  # no GPU: the gpu row says what to do
    (STANDIN, "transformers", True, False, False, True, "transformers"),
])
def test_backend_verdict(config, backend, cuda, unsloth, bnb, ok, words):
    check = backend_verdict(config, backend, cuda, unsloth, bnb)
    assert check.ok is ok and words in check.detail, check.detail


def test_prequantized_checkpoints_are_recognised(tmp_path):
    assert prequantized(REAL.model_name) and unquantized_name(REAL.model_name) == "unsloth/Qwen3-VL-2B-Instruct"
    assert prequantized("unsloth/Qwen3-VL-8B-Instruct-bnb-4bit") and not prequantized(UNQUANTIZED.model_name)
    assert not prequantized(STANDIN_MODEL)
    (tmp_path / "config.json").write_text(json.dumps(
        {"quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True}}))
    assert prequantized(str(tmp_path)) and unquantized_name(str(tmp_path)) is None
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3_vl"}))
    assert not prequantized(str(tmp_path))


def test_a_4bit_checkpoint_on_the_cpu_is_refused_even_with_load_in_4bit_false(tmp_path):
    # Offline, the hub check only warns: the refusal is the gpu row's, naming the unquantized model.
    result = train(tmp_path / "run", f"model_name={REAL.model_name}", "load_in_4bit=false",
                   extra=("--preflight-only",))
    assert result.returncode == 2, result.stdout + result.stderr
    assert table(result.stdout)["gpu"] == "FAIL"
    assert "the checkpoint itself is 4-bit (bitsandbytes)" in result.stderr
    assert "--set model_name=unsloth/Qwen3-VL-2B-Instruct" in result.stderr and not (tmp_path / "run").exists()


@pytest.mark.parametrize("report, mode, has_key, action", [
    (False, "online", True, "skip"),
    (True, "offline", False, "skip"),
    (True, "disabled", True, "skip"),
    (True, "online", False, "warn"),  # the run is logged offline: worth a look, not a failure
    (True, "online", True, "validate"),
])
def test_wandb_plan(report, mode, has_key, action):
    assert wandb_plan(report, mode, has_key)[0] == action


@pytest.mark.parametrize("branch, commit, status, warning, words", [
    ("exp/r32", "abc1234", "", False, "exp/r32 @ abc1234, config committed"),
    ("exp/r32", "abc1234", " M configs/experiments/r32.py", True, "has uncommitted changes"),
    ("exp/r32", "abc1234", "?? configs/experiments/r32.py", True, "is not committed"),
    ("HEAD", "abc1234", "", False, "detached HEAD @ abc1234"),
    (None, None, None, True, "not a git checkout"),
])
def test_git_verdict(branch, commit, status, warning, words):
    check = git_verdict("configs/experiments/r32.py", branch, commit, status)
    assert check.ok and check.warning is warning and words in check.detail


@pytest.mark.parametrize("free, needed, ok", [(10 * GIB, 2 * GIB, True), (1 * GIB, 2 * GIB, False)])
def test_disk_verdict(free, needed, ok):
    check = disk_verdict("/vol/checkpoints/x", free, needed)
    assert check.ok is ok and ("lower keep_best/keep_recent" in check.detail) is not ok


@pytest.mark.parametrize("name, params", [
    ("unsloth/Qwen3-VL-2B-Instruct-unsloth-bnb-4bit", 2.1e9), ("Qwen/Qwen3-VL-8B-Instruct", 8.8e9),
    (STANDIN_MODEL, estimates.STANDIN.params), ("acme/other-vlm", None), ("./local/model", None),
])
def test_model_shape(name, params):
    shape = model_shape(name)
    assert (shape.params if shape else None) == params


def test_memory_estimate_moves_the_right_way():
    shape = model_shape(REAL.model_name)
    base = gpu_memory_bytes(REAL, shape, "unsloth")
    assert 3 * GIB < base < 8 * GIB  # a 2B model in 4 bits trains on a 8 GB card
    assert gpu_memory_bytes(dataclasses.replace(REAL, load_in_4bit=False), shape, "unsloth") > base + 2 * GIB
    assert gpu_memory_bytes(dataclasses.replace(REAL, gradient_checkpointing=False), shape, "unsloth") > base
    assert gpu_memory_bytes(dataclasses.replace(REAL, per_device_train_batch_size=8), shape, "unsloth") > base
    assert gpu_memory_bytes(dataclasses.replace(REAL, image_max_pixels=256 * 256), shape, "unsloth") < base
    eight = gpu_memory_bytes(dataclasses.replace(REAL, model_name="Qwen/Qwen3-VL-8B-Instruct"),
                             model_shape("Qwen3-VL-8B"), "unsloth")
    assert eight > base + 3 * GIB


RTX_4090 = Gpu("NVIDIA GeForce RTX 4090", free=23 * GIB, total=24 * GIB)


def test_images_are_capped_by_default_and_the_gpu_row_says_at_what():
    # Qwen3-VL's processor keeps an image up to 16.7 MP (16384 image tokens); the estimate used to
    # assume ~1 MP whatever the cap, so preflight passed and large scans ran out of memory.
    assert REAL.image_max_pixels == 1280 * 32 * 32 and estimates.image_tokens(REAL) == 1280
    check = gpu_verdict(REAL, "unsloth", RTX_4090)
    assert check.ok and "images up to 1.3 MP (1280 image tokens; image_max_pixels)" in check.detail


def test_without_a_cap_the_estimate_takes_the_processors_own_bound():
    uncapped = dataclasses.replace(REAL, image_max_pixels=-1)
    assert estimates.image_tokens(uncapped) == 16384
    assert gpu_memory_bytes(uncapped, model_shape(REAL.model_name), "unsloth") > 24 * GIB
    check = gpu_verdict(uncapped, "unsloth", RTX_4090)
    assert not check.ok and "images up to 16.8 MP (16384 image tokens; image_max_pixels=-1: Qwen3-VL's own " \
                               "bound)" in check.detail and "image_max_pixels" in check.detail.split(";")[-1]
    standin = estimates.image_tokens(dataclasses.replace(REAL, model_name=STANDIN_MODEL, image_max_pixels=-1))
    assert standin == 32  # the stand-in processor's own bound, 256 x 128


def test_disk_estimate_grows_with_kept_checkpoints_and_a_trained_head():
    shape = model_shape(REAL.model_name)
    one = estimates.checkpoint_disk_bytes(dataclasses.replace(REAL, keep_best=1, keep_recent=1), shape, "unsloth")
    many = estimates.checkpoint_disk_bytes(REAL, shape, "unsloth")
    head = estimates.checkpoint_disk_bytes(dataclasses.replace(REAL, lora_modules_to_save="lm_head"), shape,
                                           "unsloth")
    assert one < many < head


# --- checks on real files ----------------------------------------------------------------------

def test_local_imagefolder_is_parsed(tmp_path):
    write_imagefolder(tmp_path, "train", 2)
    assert local_dataset_problem(tmp_path, "image", "text") is None
    assert "text_column='label': not a column" in local_dataset_problem(tmp_path, "image", "label")
    (tmp_path / "train" / "metadata.jsonl").write_text('{"file_name": "h0.png", "text": "x"}\n{broken\n')
    assert "cannot be parsed" in local_dataset_problem(tmp_path, "image", "text")
    (tmp_path / "train" / "metadata.jsonl").write_text(json.dumps({"file_name": "gone.png", "text": "x"}) + "\n")
    assert "'gone.png' does not exist" in local_dataset_problem(tmp_path, "image", "text")


def test_local_parquet_columns(tmp_path):
    import datasets

    path = tmp_path / "rows.parquet"
    datasets.Dataset.from_dict({"image": [b"png"], "ground_truth": ["x"]}).to_parquet(str(path))
    assert local_dataset_problem(path, "image", "ground_truth") is None
    assert local_dataset_problem(tmp_path, "image", "ground_truth") is None  # a folder of parquet files
    assert "text_column='text': not a column" in local_dataset_problem(path, "image", "text")
    (tmp_path / "bad.parquet").write_text("not parquet")
    assert "not a readable parquet file" in local_dataset_problem(tmp_path / "bad.parquet", "image", "text")


def test_empty_local_folder(tmp_path):
    check = check_dataset(TrainingConfig(dataset_name=str(tmp_path)))
    assert not check.ok and "no metadata.jsonl, metadata.csv or parquet files" in check.detail


def test_local_model_needs_weights(tmp_path):
    config = TrainingConfig(model_name=str(tmp_path))
    assert "no config.json and *.safetensors weights" in check_model(config).detail
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert check_model(config).ok
    assert "no such directory" in check_model(TrainingConfig(model_name=str(tmp_path / "nope"))).detail


# --- the CLI -----------------------------------------------------------------------------------

ROWS = ("config", "output dir", "dataset", "model", "backend", "gpu", "cost", "targets", "wandb", "git")


def table(output: str) -> dict[str, str]:
    rows = [line.split("preflight  ", 1)[1] for line in output.splitlines() if "preflight  " in line]
    return {name: row[len(name):].split()[0] for row in rows for name in ROWS if row.startswith(name + " ")}


def test_preflight_only_passes_and_creates_nothing(tmp_path):
    out = tmp_path / "run"
    result = train(out, extra=("--preflight-only",))
    assert result.returncode == 0, result.stderr
    assert table(result.stdout) == dict.fromkeys(ROWS, "ok") and "preflight passed" in result.stdout
    assert f"{QUICK_VAL}: valid" in result.stdout
    assert not out.exists()


def test_every_check_runs_and_every_failure_is_reported(tmp_path):
    out = tmp_path / "run"
    result = train(out, "dataset_name=./no/such/data", "model_name=./no/such/model", extra=("--preflight-only",))
    assert result.returncode == 2
    verdicts = table(result.stdout)
    assert set(verdicts) == set(ROWS) and verdicts["dataset"] == verdicts["model"] == "FAIL"
    errors = result.stderr.splitlines()
    assert any("dataset_name='./no/such/data': no such file" in e for e in errors)
    assert any("model_name='./no/such/model': no such directory" in e for e in errors)
    assert not out.exists() and "Traceback" not in result.stderr


KEY = "0123456789abcdef0123456789abcdef01234567"
HUB_OVERRIDES = ("dataset_name=org/headers", "model_name=org/ocr-model", "load_in_4bit=false")


# Undoes conftest's offline environment: the (fake) hub may be asked.
HUB_ONLINE = {"HF_HUB_OFFLINE": "", "HF_DATASETS_OFFLINE": "", "TRANSFORMERS_OFFLINE": "", "RETRY_WAIT_SECONDS": "0.01"}


def online(hub: FakeServer, wandb: FakeServer, key: str = KEY) -> dict:
    """The environment of a run that may talk to the (fake) hub and W&B."""
    return {**HUB_ONLINE, "WANDB_MODE": "", "HF_ENDPOINT": hub.url, "WANDB_BASE_URL": wandb.url, "WANDB_API_KEY": key}


def test_hub_and_wandb_checks_survive_two_503s(tmp_path):
    repos = {"datasets/org/headers", "models/org/ocr-model"}
    hub = failing_first(2, "datasets/org/headers/auth-check", failing_first(2, "models/org/ocr-model/auth-check",
                                                                          hub_api(repos)))
    with FakeServer(hub) as hub, FakeServer(failing_first(2, "/graphql", wandb_api(KEY))) as wandb:
        result = train(tmp_path / "run", *HUB_OVERRIDES, extra=("--preflight-only",), env=online(hub, wandb))
    assert result.returncode == 0, result.stdout + result.stderr
    verdicts = table(result.stdout)
    assert verdicts["dataset"] == verdicts["model"] == verdicts["wandb"] == "ok"
    assert hub.count("datasets/org/headers/auth-check") == 3 and hub.count("models/org/ocr-model/auth-check") == 3
    assert wandb.count("/graphql") == 3 and "entity well-log-team" in result.stdout
    assert "HTTP 503, try 2/3 failed" in result.stdout
    # wandb's own verification request: `query Viewer` with the key as basic-auth password of "api".
    assert "query Viewer" in wandb.requests[-1].json()["query"]
    assert KEY not in result.stdout + result.stderr and not (tmp_path / "run").exists()


def test_hub_and_wandb_failures_say_what_and_how_many_tries(tmp_path):
    hub = failing_first(100, "datasets/org/headers", hub_api({"datasets/org/headers"}))  # down; no such model
    with FakeServer(hub) as hub, FakeServer(wandb_api(KEY)) as wandb:
        result = train(tmp_path / "run", *HUB_OVERRIDES, extra=("--preflight-only",),
                       env=online(hub, wandb, key="not-" + KEY))
    assert result.returncode == 2
    errors = "\n".join(result.stderr.splitlines())
    assert "dataset_name='org/headers': hub dataset 'org/headers': HTTP 503 (transient error, gave up after 3 tries)" \
        in errors
    assert "model_name='org/ocr-model': not found on the hub (HTTP 404)" in errors and "HF_TOKEN is not set" in errors
    assert "WANDB_API_KEY was rejected" in errors
    assert hub.count("datasets/org/headers/auth-check") == 3
    assert hub.count("models/org/ocr-model/auth-check") == 1 and wandb.count("/graphql") == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("password, verdict", [(KEY, "key valid"), ("not-" + KEY, "was rejected")])
def test_a_wandb_login_key_is_checked_as_the_run_will_use_it(tmp_path, monkeypatch, password, verdict):
    """With `wandb login` alone (~/.netrc, no WANDB_API_KEY) the run goes online, so preflight checks
    that key, as it does WANDB_API_KEY: one decision (training.wandb_env) for both."""
    from training.preflight import check_wandb
    from training.wandb_env import wandb_mode

    netrc_file = tmp_path / ".netrc"
    netrc_file.write_text(f"machine 127.0.0.1\n  login user\n  password {password}\n")
    netrc_file.chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    with FakeServer(wandb_api(KEY)) as wandb:
        environ = {"WANDB_MODE": "", "WANDB_BASE_URL": wandb.url, "RETRY_WAIT_SECONDS": "0.01"}
        check = check_wandb(dataclasses.replace(STANDIN, report_to_wandb=True), environ)
        assert wandb.count("/graphql") == 1
    assert wandb_mode(True, environ)[0] == "online"
    assert verdict in check.detail and check.ok == (password == KEY), check
    assert password not in check.detail


def load_hub_dataset_in_a_subprocess(hub: FakeServer, tmp_path):
    code = ("from training.hub.access import load_hub_dataset; from training.errors import UserError\n"
            "try:\n    print('ROWS', len(load_hub_dataset('org/headers')['train']))\n"
            "except UserError as e:\n    print('ERROR', e)\n")
    env = {**HUB_ONLINE, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")}
    return run_cli(["-c", code], env=env, timeout=120)


def test_hub_dataset_load_survives_two_503s(tmp_path):
    info = "/api/datasets/org/headers"
    with FakeServer(failing_first(2, info, hub_api({"datasets/org/headers"}))) as hub:
        result = load_hub_dataset_in_a_subprocess(hub, tmp_path)
    assert "ROWS 3" in result.stdout, result.stdout + result.stderr
    assert sum(1 for r in hub.requests if r.route == info) == 3


def test_hub_dataset_that_does_not_exist(tmp_path):
    with FakeServer(hub_api(set())) as hub:
        result = load_hub_dataset_in_a_subprocess(hub, tmp_path)
    assert "ERROR dataset_name='org/headers':" in result.stdout, result.stdout + result.stderr
    assert "set HF_TOKEN" in result.stdout and len(hub.requests) <= 3


def test_git_check_reads_without_writing(tmp_path):
    # GIT_OPTIONAL_LOCKS=0: `git status` must not refresh the index of the user's checkout.
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "x.py").write_text("config = None\n")
    before = sorted(os.listdir(repo / ".git"))
    from training.preflight import check_git

    check = check_git(str(repo / "x.py"))
    assert check.warning and sorted(os.listdir(repo / ".git")) == before


# --- target lengths ------------------------------------------------------------------------------

@pytest.mark.parametrize("lengths, limit, warning, words", [
    ([40, 71, 65], 80, False, "the longest of 3 sampled transcriptions is 71 tokens, within max_new_tokens=80"),
    ([40, 71, 65], 71, False, "within max_new_tokens=71"),  # the end-of-turn is counted in the length
    ([40, 71, 65], 64, True, "2 of 3 sampled transcriptions are longer than max_new_tokens=64"),
    ([40, 71, 65], 64, True, "set max_new_tokens to at least 71"),
    ([], 64, True, "no transcriptions"),
])
def test_targets_verdict(lengths, limit, warning, words):
    check = targets_verdict(lengths, limit)
    assert check.ok and check.warning is warning and words in check.detail


def test_preflight_warns_when_max_new_tokens_would_cut_transcriptions(tmp_path):
    # The stand-in's tokenizer counts the synthetic transcriptions at 60-75 tokens.
    result = train(tmp_path / "run", "max_new_tokens=64", extra=("--preflight-only",))
    assert result.returncode == 0, result.stdout + result.stderr
    assert table(result.stdout)["targets"] == "warn"
    assert "sampled transcriptions are longer than max_new_tokens=64" in result.stdout


@pytest.mark.parametrize("environ, ok, words", [
    ({}, False, "push_to_hub=True: HF_TOKEN is not set, so the upload to org/lr-1e4 at the end would fail"),
    ({"HF_TOKEN": "  "}, False, "HF_TOKEN is not set"),
    ({"HF_TOKEN": "hf_x"}, True, "final/ to org/lr-1e4 at the end (private)"),
])
def test_hub_push_needs_a_token_before_training(environ, ok, words):
    from training.preflight import check_hub_push

    config = TrainingConfig(push_to_hub=True, hub_model_id="org/{experiment_name}", experiment_name="lr-1e4")
    check = check_hub_push(config, environ)
    assert check.ok is ok and words in check.detail
    assert "hf_x" not in check.detail
