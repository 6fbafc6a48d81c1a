"""Results leave the pod: final/ to a Hugging Face Hub repository with its model card, and back.

- `publish(final_dir, repo_id, private)`: writes final/README.md (the card) and uploads final/
  (adapter, processor, training_config.json, eval-test.json, the card) in one commit.
- `after_run(config, score)`: the end of a finished run with push_to_hub: scores the test split
  for the card, publishes, and never raises: a failure is logged with the command that retries it.

Every Hub call goes through `training.retry` and uses HF_TOKEN, which never reaches the card, the
log or any file: the card is built only from the files a run writes, and redacted once more.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from configs.base import TrainingConfig
from training.errors import UserError
from training.hub.access import hf_token
from training.redaction import redact_secrets
from training.retry import NetworkCallFailed, call

log = logging.getLogger("training")

CARD_FILE = "README.md"
SCORES_FILE = "eval-test.json"  # what `evaluate.py --split test` writes beside the adapter
TOKEN_PAGE = "https://huggingface.co/settings/tokens"


def hub_repo_id(config: TrainingConfig) -> str:
    """hub_model_id with "{experiment_name}" filled in ('/' in a name would make a third part)."""
    return config.hub_model_id.replace("{experiment_name}", config.experiment_name.replace("/", "-"))


def retry_command(output_dir: str, repo_id: str) -> str:
    return f"python -m training.experiment publish {output_dir} --to {repo_id}"


# --- the card ----------------------------------------------------------------------------------

def run_facts(final_dir: str) -> dict:
    """What the card says, from the files of the run: final/training_config.json and eval-test.json,
    and the output_dir's run_status.json and cost_ledger.json (absent ones are left out)."""
    from training.cost import LEDGER_FILE, session_usd
    from training.run_config import CONFIG_FILE
    from training.run_files import LocalDir  # the runs' reader: files missing or torn read as None
    from training.run_status import STATUS_FILE

    run, final = LocalDir(os.path.dirname(os.path.abspath(final_dir))), LocalDir(final_dir)
    ledger = run.json(LEDGER_FILE) or {}
    sessions = [s for s in ledger.get("sessions", []) if isinstance(s, dict)]
    status = run.json(STATUS_FILE) or {}
    cost = status.get("cost_usd")
    if cost is None and sessions:
        cost = session_usd(sessions)
    return {
        "config": final.json(CONFIG_FILE) or _state_config(final_dir),
        "scores": final.json(SCORES_FILE),
        "status": status,
        "cost_usd": cost,
        "gpus": sorted({s["gpu"] for s in sessions if s.get("gpu")}),
        "sessions": len(sessions),
    }


def _state_config(adapter_dir: str) -> dict:
    """A checkpoint's config, from its harness_state.json (final/ has training_config.json)."""
    import dataclasses

    from training.run_config import saved_config

    config = saved_config(adapter_dir)
    return dataclasses.asdict(config) if config else {}


def card_metadata(config: dict) -> str:
    """The card's YAML header; base_model and datasets only when they are Hub ids (the Hub rejects
    other values there, and the offline stand-ins are not on the Hub)."""
    from huggingface_hub import ModelCardData

    from training.hub.access import is_local_path

    def hub_id(name: str) -> str | None:
        return name if name and ":" not in name and not is_local_path(name) and name.count("/") == 1 else None

    model, dataset = hub_id(config.get("model_name", "")), hub_id(config.get("dataset_name", ""))
    tags = ["peft", "lora", "image-text-to-text", "ocr", "well-log-ocr"]
    if model:
        tags.append(f"base_model:adapter:{model}")
    data = ModelCardData(base_model=model, library_name="peft", pipeline_tag="image-text-to-text", tags=tags,
                         datasets=[dataset] if dataset else None)
    return data.to_yaml()


def render_card(repo_id: str, facts: dict) -> str:
    """README.md of the published repository: metadata, test scores, how it was trained, how to use it."""
    config, scores, status = facts["config"], facts["scores"], facts["status"]
    name = config.get("experiment_name") or repo_id.split("/")[-1]
    base = config.get("model_name", "?")
    lines = ["---", card_metadata(config).strip(), "---", "", f"# {repo_id}", "",
             f"A LoRA adapter on `{base}` that transcribes the headers of oil-and-gas well logs (image in, "
             f"text out), trained by the well-log OCR harness as experiment `{name}`.", "",
             "## Test-split scores", ""]
    if scores and all(k in scores for k in ("cer", "wer", "exact_match")):
        lines += ["| metric | value |", "| --- | --- |", f"| CER | {scores['cer']:.4f} |",
                  f"| WER | {scores['wer']:.4f} |", f"| exact match | {scores['exact_match']:.2%} |", "",
                  f"{scores.get('samples', '?')} samples of the `{scores.get('split', 'test')}` split of "
                  f"`{scores.get('dataset', config.get('dataset_name', '?'))}`, greedy decoding "
                  "(`training/evaluate.py`)."]
    else:
        lines.append("Not scored: run `python training/evaluate.py --model DIR --split test` on the adapter "
                     "and publish again.")
    step, max_steps = status.get("step"), status.get("max_steps", config.get("max_steps"))
    per_step = (config.get("per_device_train_batch_size") or 0) * (config.get("gradient_accumulation_steps") or 0)
    cost = facts["cost_usd"]
    rows = [
        ("steps", f"{step if step is not None else '?'} / {max_steps if max_steps is not None else '?'}"
                  f" ({status.get('status', 'unknown')})"),
        ("GPU", ", ".join(facts["gpus"]) or "not recorded"),
        ("cost", f"{cost:.2f} USD over {facts['sessions']} session(s)" if isinstance(cost, (int, float))
         else "not recorded"),
        ("git", f"branch `{status.get('git_branch') or '?'}`, commit `{status.get('git_commit') or '?'}`"),
        ("W&B run", status.get("wandb_url") or "none (W&B off or offline)"),
        ("dataset", f"`{config.get('dataset_name', '?')}`"),
        ("LoRA", f"r={config.get('r')}, lora_alpha={config.get('lora_alpha')}, "
                 f"lora_dropout={config.get('lora_dropout')}, target `{config.get('lora_target_modules')}`"
                 + (f", trained in full `{config['lora_modules_to_save']}`" if config.get("lora_modules_to_save")
                    else "")),
        ("optimisation", f"learning_rate={config.get('learning_rate')}, {per_step or '?'} samples a step per "
                         f"device, seed {config.get('seed')}"),
    ]
    lines += ["", "## Training", "", "| | |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in rows]
    lines += ["", "The whole config is in `training_config.json`, every test transcription in "
              f"`{SCORES_FILE}`.", "", "## Use", "", "```bash",
              f"python training/evaluate.py --model {repo_id}          # score it again",
              f"python -m training.experiment pull {repo_id} --into final  # the files, to load with PEFT",
              "```", ""]
    return redact_secrets("\n".join(lines))


def write_card(final_dir: str, repo_id: str, facts: dict) -> str:
    path = os.path.join(final_dir, CARD_FILE)
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as out:
        out.write(render_card(repo_id, facts))
    os.replace(temporary, path)  # a reader sees the old card or the new one
    return path


# --- upload ------------------------------------------------------------------------------------

def _api():
    from huggingface_hub import HfApi

    return HfApi()  # reads HF_ENDPOINT


def publish(final_dir: str, repo_id: str, private: bool) -> str:
    """Card into final/, then final/ to `repo_id` (created when missing): the repository's URL.
    UserError when it cannot be done, saying what to do."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    token = hf_token()
    if not token:
        raise UserError(f"publishing to {repo_id}: HF_TOKEN is not set; set it to a token with write access "
                        f"to {repo_id.split('/')[0]} ({TOKEN_PAGE})")
    if not os.path.exists(os.path.join(final_dir, "adapter_config.json")):
        raise UserError(f"{final_dir}: no adapter_config.json; give an output_dir, its final/ or a checkpoint-<step>/")
    facts = run_facts(final_dir)
    write_card(final_dir, repo_id, facts)
    api = _api()
    commit = (facts["status"].get("git_commit") or "")[:7]
    message = f"{facts['config'].get('experiment_name') or 'adapter'}" + (f" @ {commit}" if commit else "") + \
        f": step {facts['status'].get('step', '?')}"
    try:
        url = call(f"hub create repo {repo_id!r}", api.create_repo, repo_id, private=private, exist_ok=True,
                   token=token)
        call(f"hub upload to {repo_id!r}", api.upload_folder, repo_id=repo_id, folder_path=final_dir,
             commit_message=message, token=token)
    except NetworkCallFailed as error:
        raise UserError(f"publishing to {repo_id}: {write_explain(error, repo_id)}") from None
    except OfflineModeIsEnabled:
        raise UserError(f"publishing to {repo_id}: offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE); "
                        "unset it to publish") from None
    return str(url)


def write_explain(error: NetworkCallFailed, repo_id: str) -> str:
    if error.status in (401, 403):
        return (f"the Hub refused HF_TOKEN (HTTP {error.status}): it needs write access to "
                f"{repo_id.split('/')[0]} ({TOKEN_PAGE})")
    return redact_secrets(f"{error}; check the network and HF_ENDPOINT, then publish again")


# --- the end of a finished run ------------------------------------------------------------------

def after_run(config: TrainingConfig, score: Callable[[str, int], None]) -> None:
    """With push_to_hub, on rank 0: score final/ on the test split for the card with `score`
    (training.evaluation.evaluate.score_test_split, handed in so that the Hub package never imports
    the evaluation), then publish it. Never raises: the run is finished whatever the Hub says, so a failure
    is logged, with the command that retries it, and noted in run_status.json."""
    from training import distributed
    from training.checkpointing.save import FINAL_DIR
    from training.run_status import update_status

    if not config.push_to_hub or not distributed.is_main():
        return
    repo_id, final = hub_repo_id(config), os.path.join(config.output_dir, FINAL_DIR)
    if config.hub_test_samples != 0:
        score(final, config.hub_test_samples)
    try:
        url = publish(final, repo_id, config.hub_private)
    except Exception as error:  # noqa: BLE001  (nothing may fail a finished run)
        reason = "; ".join(error.problems) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
        reason = redact_secrets(reason)
        log.error("publishing failed: %s. The run itself finished; retry with: %s", reason,
                  retry_command(config.output_dir, repo_id))
        update_status(config.output_dir, hub_error=reason, hub_model_id=repo_id)
        return
    log.info("published %s to %s", final, url)
    update_status(config.output_dir, hub_url=url, hub_model_id=repo_id)
