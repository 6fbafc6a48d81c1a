"""`experiment export DIR --merged OUT` on the stand-in: the merged model, loaded with plain
transformers, transcribes exactly as the adapter on its base does."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pytest

from training.experiment.__main__ import main as experiment


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = experiment(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def final(memorised):
    """The suite's shared trained run (conftest.memorised): export only reads it."""
    return memorised


def transcriptions(model, processor, config, count: int = 4) -> list[str]:
    from training.data.collator import VisionChatCollator
    from training.data.sources import load_split, take
    from training.evaluation.generation import transcribe

    split = take(load_split(config, "test"), count)
    collator = VisionChatCollator(processor, config.instruction, config.image_max_pixels)
    return transcribe(model, collator, [split[i]["image"] for i in range(len(split))], config.max_new_tokens)


def test_merged_model_transcribes_as_the_adapter(final, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from training.model.inference import load_trained
    from training.run_config import saved_config

    exact, half = tmp_path / "merged-fp32", tmp_path / "merged"
    for args in (["--dtype", "float32"], []):  # default: bfloat16
        target = exact if args else half
        code, out, err = cli("export", str(final.parent), "--merged", str(target), *args)
        assert code == 0, out + err
        assert (target / "model.safetensors").exists() and not (target / "adapter_config.json").exists()
    assert json.loads((half / "config.json").read_text())["dtype"] == "bfloat16"
    merged = AutoModelForImageTextToText.from_pretrained(exact, dtype=torch.float32)
    assert not hasattr(merged, "peft_config")
    config = saved_config(str(final))
    adapter = load_trained(str(final), config, "transformers")
    expected = transcriptions(adapter.model, adapter.processor, config)
    assert any(expected), "the adapter writes something"
    assert transcriptions(merged, AutoProcessor.from_pretrained(exact), config) == expected
    # The 16-bit export is the same merge, rounded once: greedy text on a barely trained stand-in
    # can flip on near-ties, so its weights are compared instead.
    full, rounded = load_file(str(exact / "model.safetensors")), load_file(str(half / "model.safetensors"))
    assert full.keys() == rounded.keys()
    assert all(torch.equal(full[k].to(torch.bfloat16), rounded[k]) for k in full)


def test_an_existing_output_is_refused_and_left_alone(final, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    code, _, err = cli("export", str(final), "--merged", str(taken))
    assert code == 2 and err == f"error: --merged {taken}: already exists; remove it or choose another directory\n"
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]


def test_a_directory_without_an_adapter_is_refused(tmp_path):
    code, _, err = cli("export", str(tmp_path), "--merged", str(tmp_path / "out"))
    assert code == 2 and "no adapter in" in err
    assert not (tmp_path / "out").exists()
