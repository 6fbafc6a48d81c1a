"""The Unsloth path, checked against the installed unsloth's real GPU signatures without a GPU.

On a CPU machine `import unsloth` swaps in a CPU stub whose FastVisionModel refuses vision models,
so the real methods are read from unsloth's sources (models/loader.py, models/vision.py).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

from configs.base import TrainingConfig
from configs.loader import load_config
from conftest import REPO, fake_gpu, run_cli
from training.errors import UserError
from training.model.loading import (
    TRANSFORMERS,
    UNSLOTH,
    select_backend,
    unsloth_load_kwargs,
    unsloth_peft_kwargs,
)

spec = importlib.util.find_spec("unsloth")
pytestmark = pytest.mark.skipif(spec is None, reason="unsloth sources not installed (bash scripts/install.sh)")


def unsloth_file(relative: str) -> ast.Module:
    root = Path(spec.submodule_search_locations[0])
    return ast.parse((root / relative).read_text())


def method(module: ast.Module, class_name: str, name: str) -> ast.FunctionDef:
    for node in module.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == name:
                    return item
            raise LookupError(f"{class_name}.{name} not defined in the class itself")
    raise LookupError(f"class {class_name} not found")


def named_parameters(function: ast.FunctionDef) -> set[str]:
    args = function.args
    return {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}


def class_bases(module: ast.Module, class_name: str) -> list[str]:
    for node in module.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return [b.id for b in node.bases if isinstance(b, ast.Name)]
    raise LookupError(class_name)


@pytest.fixture(scope="module")
def sources():
    return {"loader": unsloth_file("models/loader.py"), "vision": unsloth_file("models/vision.py")}


@pytest.fixture(scope="module")
def configs():
    return [TrainingConfig(), load_config("configs/experiments/qwen3_qlora_r16.py"),
            TrainingConfig(lora_target_modules="q_proj,v_proj", lora_modules_to_save="lm_head",
                           gradient_checkpointing=False, finetune_vision_layers=False)]


def test_fast_vision_model_is_fast_model(sources):
    assert class_bases(sources["loader"], "FastVisionModel") == ["FastModel"]
    assert class_bases(sources["loader"], "FastModel") == ["FastBaseModel"]


def test_from_pretrained_accepts_every_argument(sources, configs):
    params = named_parameters(method(sources["loader"], "FastModel", "from_pretrained"))
    for config in configs:
        passed = set(unsloth_load_kwargs(config))
        assert passed <= params, f"not parameters of FastModel.from_pretrained: {passed - params}"


def test_get_peft_model_accepts_every_argument(sources, configs):
    # FastModel.get_peft_model(model, *args, **kwargs) forwards to FastBaseModel.get_peft_model.
    wrapper = method(sources["loader"], "FastModel", "get_peft_model")
    calls = [ast.unparse(n.func) for n in ast.walk(wrapper) if isinstance(n, ast.Call)]
    assert "FastBaseModel.get_peft_model" in calls
    params = named_parameters(method(sources["vision"], "FastBaseModel", "get_peft_model"))
    for config in configs:
        passed = set(unsloth_peft_kwargs(config))
        assert passed <= params, f"not parameters of FastBaseModel.get_peft_model: {passed - params}"


def test_for_training_and_for_inference_signatures(sources):
    assert named_parameters(method(sources["vision"], "FastBaseModel", "for_training")) == {
        "model", "use_gradient_checkpointing"}
    assert named_parameters(method(sources["vision"], "FastBaseModel", "for_inference")) == {"model"}


def test_values_follow_unsloths_vision_recipe():
    config = TrainingConfig()
    load = unsloth_load_kwargs(config)
    assert load["model_name"] == "unsloth/Qwen3-VL-2B-Instruct-unsloth-bnb-4bit"
    assert load["load_in_4bit"] is True and load["use_gradient_checkpointing"] == "unsloth"
    peft = unsloth_peft_kwargs(config)
    assert (peft["r"], peft["lora_alpha"], peft["lora_dropout"], peft["bias"]) == (16, 16, 0.0, "none")
    assert peft["target_modules"] is None and peft["modules_to_save"] is None
    assert peft["random_state"] == config.seed
    custom = unsloth_peft_kwargs(TrainingConfig(lora_target_modules="q_proj, v_proj", lora_modules_to_save="lm_head"))
    assert custom["target_modules"] == ["q_proj", "v_proj"] and custom["modules_to_save"] == ["lm_head"]


@pytest.mark.parametrize("backend, cuda, installed, model, expected", [
    ("auto", True, True, "unsloth/Qwen3-VL-2B-Instruct-unsloth-bnb-4bit", UNSLOTH),
    ("auto", False, True, "unsloth/Qwen3-VL-2B-Instruct-unsloth-bnb-4bit", TRANSFORMERS),
    ("auto", True, False, "unsloth/Qwen3-VL-2B-Instruct-unsloth-bnb-4bit", TRANSFORMERS),
    ("auto", True, True, "standin:qwen3-vl-mini", UNSLOTH),  # make gpu-check: the CUDA path, no download
    ("auto", False, True, "standin:qwen3-vl-mini", TRANSFORMERS),
    ("transformers", True, True, "x/y", TRANSFORMERS),
    ("unsloth", True, True, "x/y", UNSLOTH),
])
def test_backend_selection(backend, cuda, installed, model, expected):
    assert select_backend(TrainingConfig(backend=backend, model_name=model), cuda, installed) == expected


def test_forcing_unsloth_without_cuda_is_a_user_error():
    with pytest.raises(UserError, match="backend='unsloth': needs a CUDA GPU"):
        select_backend(TrainingConfig(backend="unsloth"), has_cuda=False, has_unsloth=True)


# The GPU path without a GPU: torch's device queries answer for one H100 (conftest.fake_gpu), and
# `unsloth` is a recorder that notes which of transformers, peft and trl were imported before it, then exits.
RECORDER = """import json, os, sys
with open(os.environ["UNSLOTH_IMPORT_RECORD"], "w") as out:
    json.dump(sorted(m for m in sys.modules if m.split(".")[0] in ("transformers", "peft", "trl")), out)
raise SystemExit(97)
"""
UNSLOTH_CONFIG = ("import dataclasses\n\nfrom configs.experiments.quick_val import config as parent\n\n"
                  "config = dataclasses.replace(parent, backend='unsloth')\n")


@pytest.fixture
def gpu_path(tmp_path):
    fakes = tmp_path / "fakes"
    env = fake_gpu(fakes)
    (fakes / "unsloth").mkdir()
    (fakes / "unsloth" / "__init__.py").write_text(RECORDER)
    (tmp_path / "unsloth_config.py").write_text(UNSLOTH_CONFIG)
    record = tmp_path / "imported-before-unsloth.json"
    return {**env, "UNSLOTH_IMPORT_RECORD": str(record)}, record


@pytest.mark.parametrize("command", ["train", "evaluate", "export"])
def test_gpu_path_imports_unsloth_before_transformers_peft_and_trl(tmp_path, gpu_path, command):
    env, record = gpu_path
    config = str(tmp_path / "unsloth_config.py")
    if command == "export":  # an adapter's folder: export reads the config it was trained with from it
        from training.run_config import write_config

        (tmp_path / "final").mkdir()
        (tmp_path / "final" / "adapter_config.json").write_text("{}")  # never read: unsloth ends the run first
        write_config(dataclasses.replace(load_config(config), output_dir=str(tmp_path)), str(tmp_path / "final"))
    args = {"train": ["training/train.py", "--config", config, "--set", f"output_dir={tmp_path / 'run'}"],
            "evaluate": ["training/evaluate.py", "--model", str(tmp_path), "--config", config],
            "export": ["-m", "training.experiment", "export", str(tmp_path / "final"), "--merged",
                       str(tmp_path / "merged")]}[command]
    result = run_cli(args, env=env, timeout=120)
    assert result.returncode == 97, result.stdout + result.stderr  # the recorder ran: unsloth was imported
    assert json.loads(record.read_text()) == [], "imported before unsloth"


def t4(including_emulation: bool = True) -> bool:
    """torch.cuda.is_bf16_supported on a T4: bf16 only through emulation."""
    return including_emulation


def a100(including_emulation: bool = True) -> bool:
    return True


@pytest.mark.parametrize("card, dtype, bf16, fp16", [(t4, "float16", False, True), (a100, "bfloat16", True, False)])
def test_bf16_only_where_it_is_native(monkeypatch, card, dtype, bf16, fp16):
    import torch

    from training.model.loading import compute_dtype
    from training.trainer.harness import mixed_precision

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", card)
    assert compute_dtype(True) == getattr(torch, dtype)
    assert mixed_precision(True) == {"bf16": bf16, "fp16": fp16}
    assert mixed_precision(False) == {"bf16": False, "fp16": False}
    assert unsloth_load_kwargs(TrainingConfig(), compute_dtype(True))["dtype"] == getattr(torch, dtype)
    assert compute_dtype(False) == torch.float32


def test_pinned_torch_tells_native_bf16_apart():
    import inspect

    import torch

    assert "including_emulation" in inspect.signature(torch.cuda.is_bf16_supported).parameters


def function(module: ast.Module, name: str) -> ast.FunctionDef:
    for node in module.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise LookupError(f"function {name} not found")


def test_merged_save_accepts_every_argument(sources):
    from training.model.export import UNSLOTH_SAVE_METHOD, unsloth_merged_save_kwargs

    # FastVisionModel's loaders give the model its saving methods with vision=True ...
    calls = {ast.unparse(n) for n in ast.walk(sources["vision"]) if isinstance(n, ast.Call)}
    assert "patch_saving_functions(model, vision=True)" in calls
    # ... where save_pretrained_merged is bound to unsloth_generic_save_pretrained_merged.
    save = unsloth_file("save.py")
    bound = [ast.unparse(n.value) for n in ast.walk(function(save, "patch_saving_functions"))
             if isinstance(n, ast.Assign) and [ast.unparse(t) for t in n.targets] == ["model.save_pretrained_merged"]]
    assert bound and all(b.startswith("_bind_saving_method(unsloth_generic_save_pretrained_merged,") for b in bound)
    merged = function(save, "unsloth_generic_save_pretrained_merged")
    passed = set(unsloth_merged_save_kwargs("/out", processor=object(), dtype="float16"))
    assert passed <= named_parameters(merged), f"not parameters: {passed - named_parameters(merged)}"
    # Its first parameter after self is the directory, and merged_16bit is a method it knows.
    assert [a.arg for a in merged.args.args[:3]] == ["self", "save_directory", "tokenizer"]
    assert f'"{UNSLOTH_SAVE_METHOD}"' in ast.unparse(merged) or f"'{UNSLOTH_SAVE_METHOD}'" in ast.unparse(merged)


def test_unsloth_takes_its_compile_cache_location_from_the_environment():
    # scripts/setup_pod.sh sets UNSLOTH_COMPILE_LOCATION to keep the compiled code on the volume:
    # the installed unsloth_zoo must read it (else it writes unsloth_compiled_cache/ into the clone).
    zoo = importlib.util.find_spec("unsloth_zoo")
    assert zoo is not None
    source = (Path(zoo.submodule_search_locations[0]) / "compiler.py").read_text()
    assert 'os.environ.get("UNSLOTH_COMPILE_LOCATION"' in source or 'os.getenv("UNSLOTH_COMPILE_LOCATION"' in source
    assert "UNSLOTH_COMPILE_LOCATION=" in (REPO / "scripts" / "setup_pod.sh").read_text()


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_the_merged_save_is_asked_for_the_dtype_export_was_given(sources, dtype):
    # --dtype float16 came out bf16: the merged save was never told. Unsloth's `dtype` takes a torch
    # dtype (its merge casts with .to(dtype)); None would keep the base checkpoint's.
    import torch

    from training.model.export import unsloth_merged_save_kwargs

    kwargs = unsloth_merged_save_kwargs("/out", processor=object(), dtype=dtype)
    assert kwargs["dtype"] is getattr(torch, dtype)
    # and safetensors, which Unsloth's default trades for a pickle on a host with 2 CPUs or fewer
    assert kwargs["safe_serialization"] is None
    save = unsloth_file("save.py")
    assert "_requests_float32(dtype)" in ast.unparse(function(save, "unsloth_generic_save_pretrained_merged"))
    assert "return True if safe_serialization is None else safe_serialization" in ast.unparse(
        function(save, "_normalize_safe_serialization"))


def test_the_stand_in_loads_through_unsloth_from_its_local_folder_in_4_bits(sources):
    # make gpu-check runs quick_val on a GPU: Unsloth must get the built stand-in's folder (a name
    # like standin:qwen3-vl-mini would send it to the Hub) and quantize it to 4 bits on load.
    from training.model.standin import standin_path

    config = load_config("configs/experiments/quick_val.py")
    kwargs = unsloth_load_kwargs(config)
    assert kwargs["model_name"] == str(standin_path(config.model_name))
    assert (Path(kwargs["model_name"]) / "config.json").is_file() and kwargs["load_in_4bit"] is True
    assert set(kwargs) <= named_parameters(method(sources["loader"], "FastModel", "from_pretrained"))


def test_the_gpu_check_takes_the_unsloth_backend_on_the_stand_in(tmp_path, gpu_path):
    # `make gpu-check` on a CUDA host (here torch's device queries answer for one H100): the smoke run
    # trains the stand-in through Unsloth in 4 bits, offline; the recorder standing in for unsloth
    # ends its first train.py, having seen nothing imported before it.
    env, record = gpu_path
    result = run_cli(["-m", "training.pod.smoke", "--config", "configs/experiments/quick_val.py", "--output",
                      str(tmp_path / "smoke")], env={**env, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert "[smoke] backend unsloth, 4-bit" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 1 and "FAIL: train.py exited 97" in result.stdout
    assert json.loads(record.read_text()) == [], "imported before unsloth"
    assert "gpu-check:" in (REPO / "Makefile").read_text()
