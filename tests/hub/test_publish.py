"""Publishing to the Hub, pulling and evaluating from it: the real CLIs against a local fake of the
Hub's HTTP API (huggingface_hub honours HF_ENDPOINT), with secrets planted in the environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from configs.base import ConfigError, TrainingConfig
from conftest import QUICK_VAL, run_cli
from fake_servers import FakeServer, HubRepos, failing_first
from training.hub.publish import hub_repo_id, render_card

TOKEN = "hf_planted0write0token0aaaaaaaaaaaa"
WRONG_TOKEN = "hf_planted0wrong0token0bbbbbbbbbbbb"
PLANTED = {"WANDB_API_KEY": "0123456789abcdef0123456789abcdefplanted0", "GIT_TOKEN": "ghp_planted0git0token0cccccccccc",
           "RUNPOD_API_KEY": "rpa_planted0runpod0key0dddddddddd"}
SECRETS = [TOKEN, WRONG_TOKEN, *PLANTED.values()]
REPO_ID = "org/quick-pub"


def hub_env(server: FakeServer, tmp: Path, token: str | None) -> dict:
    env = {"HF_HUB_OFFLINE": "", "TRANSFORMERS_OFFLINE": "", "HF_DATASETS_OFFLINE": "", "HF_ENDPOINT": server.url, "HF_HOME": str(tmp / "hf-home"),
           "RETRY_WAIT_SECONDS": "0.01", "HF_TOKEN": token or "", **PLANTED}
    return env


def no_secret_in(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a planted secret reached {where}"


@pytest.fixture(scope="module")
def published(module_mktemp):
    """One finished run whose end-of-run upload fails (HF_TOKEN refused), then the printed retry
    command run with a good token while the Hub answers create-repo 503 once."""
    tmp = module_mktemp("publish")
    out, hub = tmp / "run", HubRepos(TOKEN)
    with FakeServer(hub) as server:
        run = run_cli(["training/train.py", "--config", QUICK_VAL, "--set", f"output_dir={out}",
                       "--set", "push_to_hub=True", "--set", "hub_model_id=org/{experiment_name}",
                       "--set", "experiment_name=quick-pub", "--set", "hub_test_samples=4", "--set", "max_steps=2",
                       "--set", "eval_steps=100", "--set", "save_steps=100", "--set", "gpu_hourly_rate=1.0"],
                      env=hub_env(server, tmp, WRONG_TOKEN))
    with FakeServer(failing_first(1, "/api/repos/create", hub)) as server:
        retry = run_cli(["-m", "training.experiment", "publish", str(out), "--to", REPO_ID],
                        env=hub_env(server, tmp, TOKEN))
        creates = server.count("/api/repos/create")
    return {"tmp": tmp, "out": out, "hub": hub, "run": run, "retry": retry, "creates": creates}


def test_a_failed_upload_leaves_the_run_finished_and_says_how_to_retry(published):
    run, out = published["run"], published["out"]
    assert run.returncode == 0, run.stdout + run.stderr
    failure = [line for line in run.stdout.splitlines() if "publishing failed" in line]
    assert len(failure) == 1 and "the Hub refused HF_TOKEN (HTTP 401)" in failure[0], run.stdout
    assert f"retry with: python -m training.experiment publish {out} --to {REPO_ID}" in run.stdout
    status = json.loads((out / "run_status.json").read_text())
    assert status["status"] == "finished" and "HTTP 401" in status["hub_error"]


def test_the_retry_command_publishes_through_a_503(published):
    retry, hub = published["retry"], published["hub"]
    assert retry.returncode == 0, retry.stdout + retry.stderr
    assert published["creates"] == 2  # a 503, then success: training.retry's second try
    assert "HTTP 503, try 1/3 failed" in retry.stdout + retry.stderr
    repo = hub.repos[REPO_ID]
    assert repo["private"] is True  # hub_private defaults to True
    for name in ("adapter_model.safetensors", "adapter_config.json", "processor_config.json", "tokenizer.json",
                 "training_config.json", "eval-test.json", "README.md"):
        assert name in repo["files"], name
    final = published["out"] / "final"
    assert repo["files"]["adapter_model.safetensors"] == (final / "adapter_model.safetensors").read_bytes()


def test_the_card_holds_the_test_scores_and_the_run_and_no_secret(published):
    card = published["hub"].repos[REPO_ID]["files"]["README.md"].decode()
    scores = json.loads((published["out"] / "final" / "eval-test.json").read_text())
    assert scores["samples"] == 4 and scores["split"] == "test"
    assert f"| CER | {scores['cer']:.4f} |" in card and f"| WER | {scores['wer']:.4f} |" in card
    assert f"| exact match | {scores['exact_match']:.2%} |" in card
    status = json.loads((published["out"] / "run_status.json").read_text())
    assert "| steps | 2 / 2 (finished) |" in card and "| GPU | CPU |" in card
    assert f"commit `{status['git_commit']}`" in card and "USD over 1 session(s)" in card
    assert card.startswith("---\nlibrary_name: peft\n")
    for name, data in published["hub"].repos[REPO_ID]["files"].items():
        no_secret_in(data.decode("latin-1"), f"the uploaded {name}")
    for path in published["out"].rglob("*"):
        if path.is_file():
            no_secret_in(path.read_bytes().decode("latin-1"), str(path))
    for result in (published["run"], published["retry"]):
        no_secret_in(result.stdout + result.stderr, "the log")


def test_evaluate_and_pull_from_the_hub(published):
    tmp, hub, final = published["tmp"], published["hub"], published["out"] / "final"
    with FakeServer(hub) as server:
        env = hub_env(server, tmp, TOKEN)
        scored = run_cli(["training/evaluate.py", "--model", REPO_ID, "--limit", "4",
                          "--output", str(tmp / "hub-eval.json")], env=env)
        pulled = run_cli(["-m", "training.experiment", "pull", REPO_ID, "--into", str(tmp / "pulled")], env=env)
        # pull's old spelling of --into (--to is a Hub id, publish's): still taken, with a warning
        again = run_cli(["-m", "training.experiment", "pull", REPO_ID, "--to", str(tmp / "pulled")], env=env)
    assert scored.returncode == 0, scored.stdout + scored.stderr
    report, local = json.loads((tmp / "hub-eval.json").read_text()), json.loads((final / "eval-test.json").read_text())
    assert report["model"] == REPO_ID
    assert [r["prediction"] for r in report["results"]] == [r["prediction"] for r in local["results"]]
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    files = sorted(p.name for p in final.iterdir())
    assert sorted(p.name for p in (tmp / "pulled").iterdir()) == sorted([*files, ".gitattributes"])
    for name in files:
        assert (tmp / "pulled" / name).read_bytes() == (final / name).read_bytes(), name
    assert again.returncode == 2 and "already exists; pass --force" in again.stderr
    assert "warning: --to is deprecated here, use --into" in again.stderr and "deprecated" not in pulled.stderr


@pytest.mark.parametrize("command", [["-m", "training.experiment", "pull", REPO_ID, "--into", "{tmp}/nothing"],
                                     ["training/evaluate.py", "--model", REPO_ID]])
def test_a_private_repo_without_a_token_is_a_clear_error(published, command):
    tmp = published["tmp"]
    with FakeServer(published["hub"]) as server:
        # A machine that never had it: huggingface_hub serves a cached copy when the Hub says no.
        env = {**hub_env(server, tmp, None), "HF_HOME": str(tmp / "fresh-hf-home")}
        result = run_cli([part.format(tmp=tmp) for part in command], env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "HTTP 401" in errors[0] and "HF_TOKEN is not set" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp / "nothing").exists()


def test_publish_without_a_token_changes_nothing(published):
    tmp = published["tmp"]
    with FakeServer(published["hub"]) as server:
        result = run_cli(["-m", "training.experiment", "publish", str(published["out"]), "--to", "org/other"],
                         env=hub_env(server, tmp, None))
        assert server.count("/api/") == 0
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: publishing to org/other: HF_TOKEN is not set; set it to a token with "
                                     "write access to org (https://huggingface.co/settings/tokens)")


# --- the card and the config fields, pure ------------------------------------------------------

FACTS = {"config": {"model_name": "unsloth/Qwen3-VL-2B-Instruct-unsloth-bnb-4bit", "experiment_name": "lr-1e4",
                    "dataset_name": "wrath/well-log-headers-ocr", "r": 16, "lora_alpha": 16, "max_steps": 500},
         "scores": None, "status": {"step": 500, "max_steps": 500, "status": "finished",
                                    "wandb_url": "https://wandb.ai/oilco/well-log-ocr/runs/abc"},
         "cost_usd": 1.234, "gpus": ["1 x NVIDIA GeForce RTX 4090"], "sessions": 2}


def test_card_metadata_names_hub_ids_only():
    card = render_card("oilco/lr-1e4", FACTS)
    assert "base_model: unsloth/Qwen3-VL-2B-Instruct-unsloth-bnb-4bit" in card
    assert "- wrath/well-log-headers-ocr" in card and "base_model:adapter:unsloth/Qwen3-VL-2B" in card
    assert "| GPU | 1 x NVIDIA GeForce RTX 4090 |" in card and "1.23 USD over 2 session(s)" in card
    assert "https://wandb.ai/oilco/well-log-ocr/runs/abc" in card
    assert "Not scored" in card
    standin = render_card("org/x", {**FACTS, "config": {"model_name": "standin:qwen3-vl-mini",
                                                        "dataset_name": "/data/headers"}})
    assert "base_model" not in standin and "datasets" not in standin


def test_a_secret_in_a_run_file_is_redacted_from_the_card(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    leaky = {**FACTS, "status": {**FACTS["status"], "wandb_url": f"https://x/?token={TOKEN}"}}
    card = render_card("oilco/lr-1e4", leaky)
    assert TOKEN not in card and "?token=***" in card


def test_hub_model_id_fills_in_the_experiment():
    config = TrainingConfig(push_to_hub=True, hub_model_id="oilco/{experiment_name}", experiment_name="lr-1e4")
    assert hub_repo_id(config) == "oilco/lr-1e4"


@pytest.mark.parametrize("fields, problem", [
    ({"push_to_hub": True}, "push_to_hub=True: needs hub_model_id='ORG/NAME'"),
    ({"hub_model_id": "no-org"}, "hub_model_id='no-org': must be 'ORG/NAME'"),
    ({"hub_model_id": "a/b/c"}, "hub_model_id='a/b/c': must be 'ORG/NAME'"),
    ({"hub_test_samples": -2}, "hub_test_samples=-2: must be -1"),
])
def test_publishing_fields_are_validated(fields, problem):
    with pytest.raises(ConfigError) as error:
        TrainingConfig(**fields)
    assert any(p.startswith(problem) for p in error.value.problems), error.value.problems


def test_pull_an_experiment_by_name_from_its_branch_config(tmp_path, monkeypatch, capsys):
    from experiment_repo import experiment, in_process, make_repo, tree_files

    work = make_repo(tmp_path, tree_files())
    cli = in_process(monkeypatch, capsys)
    assert cli(work, "new", "pub-exp", "--set", "hub_model_id=org/{experiment_name}").returncode == 0
    assert cli(work, "new", "no-hub", "--set", "r=8").returncode == 0
    hub = HubRepos(TOKEN)
    hub.add("org/pub-exp", {"adapter_config.json": b"{}", "README.md": b"---\nlibrary_name: peft\n---\n"})
    with FakeServer(hub) as server:
        env = {**hub_env(server, tmp_path, None), "VOLUME_PATH": ""}
        pulled = experiment(work, "pull", "pub-exp", env=env)
        refused = experiment(work, "pull", "no-hub", env=env)
    assert pulled.returncode == 0, pulled.stderr
    final = work / "outputs" / "checkpoints" / "pub-exp" / "final"
    assert (final / "adapter_config.json").read_bytes() == b"{}"
    assert refused.returncode == 2
    assert refused.stderr == ("error: no-hub: the branch's configs/experiments/no_hub.py sets no hub_model_id; "
                              "pull ORG/NAME instead\n")


@pytest.mark.parametrize("model_name, recorded, expected", [
    ("unsloth/Qwen3-VL-2B-Instruct-unsloth-bnb-4bit", "org/other-base", "org/other-base"),
    ("unsloth/Qwen3-VL-2B-Instruct-unsloth-bnb-4bit", "unsloth/qwen3-vl-2b-instruct-unsloth-bnb-4bit",
     "unsloth/Qwen3-VL-2B-Instruct-unsloth-bnb-4bit"),  # the same repository, as Unsloth records it
    ("standin:qwen3-vl-mini", "/home/me/.cache/well-log-harness/qwen3-vl-mini", "standin:qwen3-vl-mini"),
    ("org/base", "/local/base", "org/base"),
])
def test_a_published_adapter_is_scored_on_the_base_it_names(tmp_path, model_name, recorded, expected):
    from training.evaluation.evaluate import on_adapter_base

    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": recorded}))
    assert on_adapter_base(TrainingConfig(model_name=model_name), str(tmp_path)).model_name == expected
