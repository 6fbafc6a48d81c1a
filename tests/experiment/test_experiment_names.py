"""Pure rules of the experiment CLI, table-driven: names to modules and pods, remote URLs for pods,
GraphQL literals for the spot mutation."""

from __future__ import annotations

import pytest
from graphql import parse
from graphql.utilities import value_from_ast_untyped

from training.errors import UserError
from training.experiment.gitops import clone_url
from training.experiment.names import config_path, module_name, name_problems
from training.runpod.client import spot_mutation
from training.runpod.names import experiment_of_pod, pod_name


@pytest.mark.parametrize("name, module", [
    ("lr-1e4", "lr_1e4"),
    ("qwen3_qlora_r32", "qwen3_qlora_r32"),
    ("s-lr1e-4-dropout0.05", "s_lr1e_4_dropout0_05"),
    ("2x-steps", "exp_2x_steps"),
    ("import", "import_"),
])
def test_module_name_is_an_identifier(name, module):
    assert module_name(name) == module and module.isidentifier()
    assert config_path(name) == f"configs/experiments/{module}.py"


@pytest.mark.parametrize("name, ok", [
    ("lr-1e4", True), ("A.b_c-1", True), ("x" * 80, True),
    ("", False), ("-x", False), ("a/b", False), ("a b", False), ("a..b", False), ("x.lock", False),
    ("x.", False), ("x" * 81, False), ("é", False), ("HEAD", False),
])
def test_name_rule(name, ok):
    assert (name_problems(name) == []) is ok


def test_pod_name_round_trip():
    assert pod_name("lr-1e4") == "exp-lr-1e4"
    assert experiment_of_pod("exp-lr-1e4") == "lr-1e4"
    assert experiment_of_pod("my-jupyter") is None and experiment_of_pod(None) is None


@pytest.mark.parametrize("url, expected, note", [
    ("https://github.com/team/harness.git", "https://github.com/team/harness.git", None),
    ("git@github.com:team/harness.git", "https://github.com/team/harness.git", "SSH"),
    ("ssh://git@gitlab.example.com:2222/team/harness.git", "https://gitlab.example.com:2222/team/harness.git", "SSH"),
    ("https://user:ghp_abc123@github.com/team/harness.git", "https://github.com/team/harness.git", "credentials"),
])
def test_clone_url_is_https_without_credentials(url, expected, note):
    clone, notes = clone_url(url)
    assert clone == expected
    assert (note is None and notes == []) or any(note in n for n in notes)


@pytest.mark.parametrize("url", ["/srv/git/harness.git", "file:///srv/git/harness.git", "../harness"])
def test_clone_url_refuses_local_paths(url):
    with pytest.raises(UserError, match="a pod can only clone"):
        clone_url(url)


def test_clone_url_never_echoes_a_token_of_a_refused_url():
    with pytest.raises(UserError) as error:
        clone_url("ftp://me:s3cret-token@host/x")
    assert "s3cret-token" not in str(error.value)


def test_spot_mutation_is_valid_graphql_with_hostile_strings():
    tricky = 'a "quoted" \\ back\nslash {{ RUNPOD_SECRET_x }}'
    spot = {"name": "exp-x", "cloudType": "SECURE", "bidPerGpu": 0.35, "gpuCount": 1, "startSsh": True,
            "env": [{"key": "K", "value": tricky}]}
    document = parse(spot_mutation(spot))
    field = document.definitions[0].selection_set.selections[0]
    assert field.name.value == "podRentInterruptable"
    assert value_from_ast_untyped(field.arguments[0].value) == spot
