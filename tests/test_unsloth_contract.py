"""The Unsloth path, checked against the installed unsloth's real GPU signatures without a GPU.

On a CPU machine `import unsloth` swaps in a CPU stub whose FastVisionModel refuses vision models,
so the real methods are read from unsloth's sources (models/loader.py, models/vision.py).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from configs.base import TrainingConfig
from configs.loader import load_config
from training.errors import UserError
from training.modeling import (
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
    ("auto", True, True, "standin:qwen3-vl-mini", TRANSFORMERS),
    ("transformers", True, True, "x/y", TRANSFORMERS),
    ("unsloth", True, True, "x/y", UNSLOTH),
])
def test_backend_selection(backend, cuda, installed, model, expected):
    assert select_backend(TrainingConfig(backend=backend, model_name=model), cuda, installed) == expected


def test_forcing_unsloth_without_cuda_is_a_user_error():
    with pytest.raises(UserError, match="backend='unsloth': needs a CUDA GPU"):
        select_backend(TrainingConfig(backend="unsloth"), has_cuda=False, has_unsloth=True)


def test_unsloth_takes_its_compile_cache_location_from_the_environment():
    # scripts/setup_pod.sh sets UNSLOTH_COMPILE_LOCATION to keep the compiled code on the volume:
    # the installed unsloth_zoo must read it (else it writes unsloth_compiled_cache/ into the clone).
    zoo = importlib.util.find_spec("unsloth_zoo")
    assert zoo is not None
    source = (Path(zoo.submodule_search_locations[0]) / "compiler.py").read_text()
    assert 'os.environ.get("UNSLOTH_COMPILE_LOCATION"' in source or 'os.getenv("UNSLOTH_COMPILE_LOCATION"' in source
    assert "UNSLOTH_COMPILE_LOCATION=" in (Path(__file__).resolve().parent.parent / "scripts" / "setup_pod.sh").read_text()
