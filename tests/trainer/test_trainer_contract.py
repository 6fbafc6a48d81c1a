"""Every private transformers/torch API the harness overrides or calls, pinned against the installed
(pinned) versions. A new transformers release that renames, re-signs or stops calling one of them
fails here, loudly, instead of silently changing how checkpoints are written or resumed on a pod.

To use another private API: add it to PRIVATE_APIS with the reason, and the hook it relies on to
CALLED_FROM; `test_no_private_api_outside_the_list` finds any that is not listed.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
import torch
from transformers import Trainer

ROOT = Path(__file__).resolve().parents[2]

# (owner, name): (parameter names after self, why the harness needs it)
PRIVATE_APIS = {
    (Trainer, "_save_checkpoint"): (("model", "trial"), "atomic checkpoints: staged, manifest, renamed into place"),
    (Trainer, "_get_output_dir"): (("trial",), "points the Trainer's checkpoint-<step> at .staging/ while saving"),
    (Trainer, "_load_optimizer_and_scheduler"): (("checkpoint",),
                                                 "CPU ranks under torchrun; a new learning_rate rebased on resume"),
    (Trainer, "_load_from_checkpoint"): (("resume_from_checkpoint", "model"),
                                         "final/ from the last checkpoint without a step past max_steps"),
    (Trainer, "_save_optimizer_and_scheduler"): (("output_dir",),
                                                 "a SIGTERM save publishes without the optimizer state, added after"),
    (torch.optim.lr_scheduler.LRScheduler, "_last_lr"): ((), "what get_last_lr() returns after a rebase"),
}

# The Trainer method whose source must still call each overridden hook: an override that is no
# longer called does nothing, with no error anywhere.
CALLED_FROM = {
    "_get_output_dir": "_save_checkpoint",
    "_save_checkpoint": "_maybe_log_save_evaluate",
    "_load_optimizer_and_scheduler": "_prepare_for_training",
    "_load_from_checkpoint": "train",
    "_save_optimizer_and_scheduler": "_save_checkpoint",
}

# Private-looking names that are documented public API of their owner.
PUBLIC_BY_CONTRACT = {"_replace", "_asdict", "_fields"}  # namedtuple


@pytest.mark.parametrize("owner, name", list(PRIVATE_APIS), ids=[name for _, name in PRIVATE_APIS])
def test_private_api_exists_with_the_signature_we_call(owner, name):
    expected, _why = PRIVATE_APIS[(owner, name)]
    if not expected:  # an attribute: set by the constructor, so look at an instance
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        assert hasattr(scheduler, name), f"{owner.__name__}.{name} is gone"
        assert scheduler.get_last_lr() is getattr(scheduler, name), "get_last_lr() no longer returns _last_lr"
        return
    method = getattr(owner, name, None)
    assert callable(method), f"{owner.__name__}.{name} is gone from this transformers"
    parameters = tuple(p for p in inspect.signature(method).parameters if p != "self")
    assert parameters == expected, f"{owner.__name__}.{name}{parameters}: the harness calls it as {expected}"


@pytest.mark.parametrize("hook, caller", list(CALLED_FROM.items()))
def test_overridden_hook_is_still_called_by_the_trainer(hook, caller):
    source = inspect.getsource(getattr(Trainer, caller))
    assert f"self.{hook}(" in source, f"Trainer.{caller} no longer calls self.{hook}(): our override would be dead"


def private_names_used(path: Path) -> set[str]:
    """Private attributes of other objects that a module reads, writes or calls, and the private
    methods its Trainer subclasses override."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = set()  # names a class of ours defines itself are ours, not the library's
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = {ast.unparse(base) for base in node.bases}
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name.startswith("_") and not item.name.startswith("__"):
                    if bases & {"Trainer", "transformers.Trainer"} and hasattr(Trainer, item.name):
                        continue  # an override: checked below, from the Trainer's side
                    own.add(item.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in [e for t in targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]:
                if isinstance(target, ast.Attribute) and ast.unparse(target.value) == "self":
                    own.add(target.attr)
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and {ast.unparse(b) for b in node.bases} & {"Trainer"}:
            used |= {item.name for item in node.body if isinstance(item, ast.FunctionDef)
                     and item.name.startswith("_") and not item.name.startswith("__") and hasattr(Trainer, item.name)}
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if node.attr not in own and node.attr not in PUBLIC_BY_CONTRACT:
                used.add(node.attr)
    return used


def test_no_private_api_outside_the_list():
    listed = {name for _, name in PRIVATE_APIS}
    found = {}
    for path in sorted((ROOT / "training").rglob("*.py")):
        for name in private_names_used(path) - listed:
            found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert not found, f"private APIs used but not pinned in PRIVATE_APIS: {found}"


def test_the_scan_finds_a_private_call(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("class T(Trainer):\n    def _save_checkpoint(self, model, trial):\n        pass\n"
                      "class Ours:\n    def __init__(self):\n        self._mine: int = 1\n"
                      "def f(trainer):\n    return trainer._inner_training_loop, Ours()._mine\n")
    assert private_names_used(module) == {"_save_checkpoint", "_inner_training_loop"}
