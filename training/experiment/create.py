"""`new` and `sweep`: experiment branches, each one commit adding its config file on top of --from.

Everything is checked before anything is written: a clean tree, free names, strict overrides, and
every config loaded as its branch will have it. Then the commits are made without touching the work
tree, and the branches are created in one transaction, all or none.
"""

from __future__ import annotations

import itertools
import re
import shlex
from dataclasses import dataclass

from configs.loader import parse_overrides, unknown_field_hint
from training.errors import UserError
from training.experiment import configfile
from training.experiment.gitops import Git
from training.experiment.names import config_path, module_name, name_problems

MAX_SWEEP = 64  # a typo in a grid should not make hundreds of branches
# Short names of common fields in sweep branch names; other fields keep their own name.
SHORT = {"learning_rate": "lr", "lora_alpha": "alpha", "lora_dropout": "dropout", "max_steps": "steps",
         "per_device_train_batch_size": "bs", "gradient_accumulation_steps": "ga", "warmup_steps": "warmup",
         "weight_decay": "wd", "train_subset": "train", "lr_scheduler_type": "sched"}


@dataclass
class Plan:
    name: str
    overrides: list[str]  # FIELD=VALUE as the user wrote them, for the commit message
    values: dict[str, object]
    problems: list[str]  # of the overrides; reported with those the full config validation finds


@dataclass
class Prepared:
    plans: list[Plan]
    from_commit: str
    from_label: str  # the --from branch, or the commit's short id
    parent_path: str
    files: dict[str, str]  # config path -> file text
    command: str


@dataclass
class Created:
    name: str
    commit: str
    path: str


def plan_new(name: str, overrides: list[str]) -> Plan:
    values, problems = parse_overrides(overrides)
    problems += _forbidden(values)
    values.pop("experiment_name", None)
    return Plan(name, [_normalise(item) for item in overrides], values, problems)


def plan_sweep(prefix: str, grid: list[str]) -> list[Plan]:
    """One plan per combination of the grid, named PREFIX-<short field><value>-..."""
    axes: list[tuple[str, list[str]]] = []
    problems = []
    for item in grid:
        field, sep, raw = item.partition("=")
        field = field.strip()
        values = [v.strip() for v in raw.split(",")]
        if not sep or not field or any(v == "" for v in values):
            problems.append(f"--grid {item!r}: expected FIELD=V1,V2,..., e.g. --grid learning_rate=1e-4,2e-4")
        elif field in dict(axes):
            problems.append(f"--grid {item}: {field} is given twice; list all its values in one FIELD=V1,V2")
        elif len(set(values)) != len(values):
            problems.append(f"--grid {item}: a value is repeated")
        else:
            _, field_problems = parse_overrides([f"{field}={v}" for v in values])
            if field_problems and field_problems[0].startswith(f"--set {field}=") and "unknown field" in field_problems[0]:
                field_problems = [f"--grid {item}: {unknown_field_hint(field)}"]
            problems += [p.replace("--set ", "--grid ", 1) for p in field_problems]
            axes.append((field, values))
    if problems:
        raise UserError(*problems)
    combinations = list(itertools.product(*[[(f, v) for v in values] for f, values in axes]))
    if len(combinations) > MAX_SWEEP:
        raise UserError(f"--grid gives {len(combinations)} experiments; at most {MAX_SWEEP} per sweep")
    plans = []
    for combination in combinations:
        name = "-".join([prefix] + [f"{SHORT.get(f, f)}{_slug(v)}" for f, v in combination])
        plans.append(plan_new(name, [f"{f}={v}" for f, v in combination]))
    return plans


def prepare(git: Git, plans: list[Plan], from_rev: str | None, parent: str | None, command: str,
            why: str | None = None) -> Prepared:
    """Every check, and the files to commit; writes nothing."""
    dirty = git.dirty_paths()
    if dirty:
        shown = ", ".join(dirty[:5]) + (" ..." if len(dirty) > 5 else "")
        raise UserError(f"the working tree has uncommitted changes ({shown}): commit or stash them first")
    from_branch = from_rev if from_rev is not None else git.current_branch()
    from_commit = git.commit_of(from_rev or "HEAD")
    if from_commit is None:
        raise UserError(f"--from {from_rev}: no such branch or commit")
    if from_rev is not None and git.branch_commit(from_rev) is None:
        from_branch = None  # a tag or commit: it has no experiment file of its own by name
    parent_path = configfile.choose_parent(git, from_commit, from_branch, parent)

    files: dict[str, str] = {}
    names = [plan.name for plan in plans]
    # Override problems are reported with the first batch that stops: every problem at once.
    overrides = [f"experiment {plan.name}: {p}" if len(plans) > 1 else p for plan in plans for p in plan.problems]
    problems = []
    for plan in plans:
        problems += name_problems(plan.name)
        if git.branch_commit(plan.name) is not None:
            problems.append(f"experiment {plan.name}: branch already exists (pick another name, or delete it "
                            f"with git branch -D {plan.name})")
    modules = [module_name(n) for n in names]
    for module in {m for m in modules if modules.count(m) > 1}:
        problems.append(f"names {', '.join(n for n in names if module_name(n) == module)} share the config file "
                        f"{module}.py: make them differ in letters or digits")
    if problems:
        raise UserError(*overrides, *problems)
    for plan in plans:
        path = config_path(plan.name)
        if git.has_file(from_commit, path):
            problems.append(f"experiment {plan.name}: {path} already exists in {from_branch or from_commit[:7]}")
        files[path] = configfile.render(plan.name, parent_path, plan.values, command, why)
    if problems:
        raise UserError(*overrides, *problems)

    results = configfile.validate(git, from_commit, files, list(files))
    for plan in plans:
        for problem in results[config_path(plan.name)]["problems"]:
            problem = _as_set_problem(problem, plan)
            problems.append(f"experiment {plan.name}: {problem}" if len(plans) > 1 else problem)
    if overrides or problems:
        raise UserError(*overrides, *problems)

    return Prepared(plans, from_commit, from_branch or from_commit[:7], parent_path, files, command)


def commit_all(git: Git, prepared: Prepared) -> list[Created]:
    """One commit per plan on top of --from; objects only, no ref yet."""
    created = []
    for plan in prepared.plans:
        path = config_path(plan.name)
        subject = " ".join([f"Exp: {plan.name}", *plan.overrides])
        body = (f"Config {path}, parent {prepared.parent_path}, from {prepared.from_label}.\n"
                f"Created by: {prepared.command}")
        commit = git.commit_files(prepared.from_commit, {path: prepared.files[path]}, f"{subject}\n\n{body}\n")
        created.append(Created(plan.name, commit, path))
    return created


def create(git: Git, prepared: Prepared) -> list[Created]:
    created = commit_all(git, prepared)
    git.create_branches({c.name: c.commit for c in created})
    return created


def command_line(argv: list[str]) -> str:
    return " ".join(["python -m training.experiment", *(shlex.quote(a) for a in argv)])


def _forbidden(values: dict[str, object]) -> list[str]:
    if "experiment_name" in values:
        return ["--set experiment_name=...: the experiment's name is its branch; leave experiment_name unset"]
    return []


def _normalise(item: str) -> str:
    field, _, raw = item.partition("=")
    return f"{field.strip()}={raw.strip()}"


def _slug(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", value).strip("_.-") or "x"


def _as_set_problem(problem: str, plan: Plan) -> str:
    # The loader says "<file>: field=value: rule"; an overridden field is the user's --set.
    _, _, rest = problem.partition(": ")
    field = rest.split("=", 1)[0]
    if field in plan.values:
        return f"--set {rest}"
    return problem
