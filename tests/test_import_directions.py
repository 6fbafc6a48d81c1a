"""The import directions of the house, read from the source (an AST walk, nothing imported):

- `configs` imports nothing of `training` (the config files are loaded everywhere, torch or not);
- the laptop CLI (`training.experiment`, `training.runpod`) never imports torch, transformers, the
  trainer or the model code itself, and what it imports at module level never does either (so
  `python -m training.experiment` runs on a laptop without them); the one exception is the export
  command's own module (LAPTOP_MAY_RUN), imported when that command runs;
- no cycle between the units of `training` (a subpackage, or a module at its top), lazy imports
  within functions included: a cycle hidden in a function is still a cycle to the reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

HEAVY = ("torch", "torchvision", "transformers", "peft", "trl", "unsloth", "unsloth_zoo", "bitsandbytes")
LAPTOP = ("training.experiment", "training.runpod")
NOT_FOR_THE_LAPTOP = ("training.trainer", "training.model", "training.train")
# The one door: `export` merges the adapter into its base, which takes torch by nature; the command
# imports it when it runs, never at module level.
LAPTOP_MAY_RUN = ("training.model.export",)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(name: str, modules: dict) -> str:
    return name if modules[name]["package"] else name.rpartition(".")[0]


def read_modules(root: Path) -> dict:
    """{module: {"package": bool, "imports": [(name, at_module_level)]}} over training/ and configs/."""
    modules = {}
    for path in sorted([*root.glob("training/**/*.py"), *root.glob("configs/**/*.py")]):
        modules[module_name(path, root)] = {"path": path, "package": path.name == "__init__.py", "imports": []}
    for name, module in modules.items():
        tree = ast.parse(module["path"].read_text(encoding="utf-8"))
        module["imports"] = list(imports(tree, package_of(name, modules), modules))
    return modules


def imports(tree: ast.Module, package: str, modules: dict):
    def walk(node, top: bool):
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                yield from ((alias.name, top) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join([*package.split(".")[:len(package.split(".")) - child.level + 1], base]).strip(".")
                for alias in child.names:  # `from training import errors` imports the module training.errors
                    yield (f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base), top
            yield from walk(child, inner)
    yield from walk(tree, True)


def unit(name: str) -> str | None:
    """The node of the package graph: training.<subpackage> or training.<top module>; configs."""
    parts = name.split(".")
    if parts[0] == "configs":
        return "configs"
    if parts[0] == "training" and len(parts) > 1:
        return ".".join(parts[:2])
    return None


def within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def direction_problems(root: Path) -> list[str]:
    modules = read_modules(root)
    problems = []
    for name, module in modules.items():
        for target, top in module["imports"]:
            if within(name, ("configs",)) and within(target, ("training",)):
                problems.append(f"{name} imports {target}: configs imports nothing of training")
            if within(name, LAPTOP) and within(target, HEAVY + NOT_FOR_THE_LAPTOP) and (top or target not in LAPTOP_MAY_RUN):
                problems.append(f"{name} imports {target}: the laptop CLI never imports it")
    for start in (n for n in modules if within(n, LAPTOP)):
        for chain in heavy_chains(start, modules):
            problems.append(f"{start} imports {chain[-1]} at module level: {' -> '.join(chain)}")
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in unit_cycles(modules)]
    return problems


def heavy_chains(start: str, modules: dict) -> list[list[str]]:
    """The module-level import chains from `start` that end in a heavy library or trainer/model code."""
    seen, chains, stack = {start}, [], [[start]]
    while stack:
        chain = stack.pop()
        for target, top in modules[chain[-1]]["imports"]:
            if not top:
                continue
            if within(target, HEAVY + NOT_FOR_THE_LAPTOP):
                chains.append([*chain, target])
            # importing a.b.c runs a/__init__ and a/b/__init__ first
            for step in (".".join(target.split(".")[:i]) for i in range(1, target.count(".") + 2)):
                if step in modules and step not in seen:
                    seen.add(step)
                    stack.append([*chain, step])
    return chains


def unit_cycles(modules: dict) -> list[list[str]]:
    edges: dict[str, set[str]] = {}
    for name, module in modules.items():
        for target, _top in module["imports"]:
            a, b = unit(name), unit(target)
            if a and b and a != b and target.split(".")[0] in ("training", "configs"):
                edges.setdefault(a, set()).add(b)
    cycles, done = [], set()
    for start in sorted(edges):  # one cycle per start, found depth first
        cycle = cycle_from(start, [start], edges, done)
        if cycle:
            cycles.append(cycle)
        done.add(start)
    return cycles


def cycle_from(start: str, path: list[str], edges: dict, done: set) -> list[str] | None:
    for nxt in sorted(edges.get(path[-1], ())):
        if nxt == start:
            return [*path, start]
        if nxt not in path and nxt not in done:
            found = cycle_from(start, [*path, nxt], edges, done)
            if found:
                return found
    return None


def test_the_import_directions_hold():
    problems = direction_problems(REPO)
    assert not problems, "\n".join(problems)


def test_the_walk_sees_what_it_must(tmp_path):
    """The rules catch each kind of breach on a miniature tree (else the test above could not fail)."""
    for path, text in {"configs/__init__.py": "", "configs/loader.py": "def f():\n    from training import git_cli\n",
                       "training/__init__.py": "", "training/git_cli.py": "",
                       "training/experiment/__init__.py": "", "training/experiment/launch.py": "from training import cost\n",
                       "training/cost.py": "import torch\n", "training/a.py": "def f():\n    from training import b\n",
                       "training/b.py": "from training import a\n"}.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    problems = "\n".join(direction_problems(tmp_path))
    assert "configs.loader imports training.git_cli" in problems
    assert "training.experiment.launch imports torch at module level: training.experiment.launch -> " \
           "training.cost -> torch" in problems
    assert "import cycle: training.a -> training.b -> training.a" in problems
