"""`publish`, `pull`, `export`: an experiment's results out of the pod, to the Hub and back.

    python -m training.experiment publish NAME|DIR [--to ORG/NAME] [--public]
    python -m training.experiment pull NAME|ORG/NAME [--into DIR] [--force]
    python -m training.experiment pull NAME --volume-id ID [--checkpoint best|latest|STEP] [--into DIR] [--force]
    python -m training.experiment export NAME|DIR --merged OUT [--dtype bfloat16]

NAME is an experiment (its run in <VOLUME_PATH or ./outputs>/checkpoints/NAME, its config on the
branch NAME); DIR an output_dir, its final/ or a checkpoint-<step>/. `--to` is a Hub id (publish's);
pull writes `--into` a directory (its old `--to` still works, with a warning).
"""

from __future__ import annotations

import os

from training.errors import EXIT_OK, UserError
from training.experiment.commands import flags
from training.experiment.names import config_path, name_problems, outputs_root
from training.experiment.volume import add_volume_flag


def register(commands) -> None:
    epilog = flags.EPILOG
    publish = commands.add_parser("publish", epilog=epilog,
                                  help="upload a run's final/ adapter with a model card to the Hugging Face Hub")
    publish.add_argument("source", metavar="NAME|DIR", help="an experiment, an output_dir, final/ or a checkpoint")
    publish.add_argument("--to", metavar="ORG/NAME", help="Hub repository (default: the run's hub_model_id)")
    publish.add_argument("--public", action="store_true",
                         help="create the repository public (default: the run's hub_private, True)")
    flags.outputs(publish)
    publish.set_defaults(run=cmd_publish)

    pull = commands.add_parser("pull", epilog=epilog, help="download an experiment's final/ (or a checkpoint): from "
                               "the Hub, or with --volume-id from the network volume")
    pull.add_argument("source", metavar="NAME|ORG/NAME",
                      help="an experiment (its branch's hub_model_id) or a Hub repository")
    add_volume_flag(pull, "copy the run's final/ from this network volume instead of the Hub (verified; no pod, "
                          "no Hub)")
    pull.add_argument("--checkpoint", metavar="best|latest|STEP",
                      help="with --volume-id: a checkpoint instead of final/: the lowest eval_loss, the newest "
                           "complete one, or checkpoint-STEP")
    pull.add_argument("--into", metavar="DIR", help="where (default: <outputs>/checkpoints/NAME/final, or "
                                                   "/checkpoint-STEP)")
    pull.add_argument("--to", dest="into", action=flags.Deprecated, instead="--into (--to is a Hub id, publish's)")
    pull.add_argument("--force", action="store_true", help="replace DIR when it exists")
    flags.outputs(pull)
    pull.set_defaults(run=cmd_pull)

    export = commands.add_parser("export", epilog=epilog,
                                 help="write a merged model (base + adapter) that plain transformers loads")
    export.add_argument("source", metavar="NAME|DIR", help="an experiment, an output_dir, final/ or a checkpoint")
    export.add_argument("--merged", required=True, metavar="OUT", help="directory to write (must not exist)")
    export.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"),
                        help="the merged weights' type, on either backend (default: bfloat16; float32 for CPUs)")
    flags.outputs(export)
    export.set_defaults(run=cmd_export)


def adapter_dir(source: str, outputs: str | None) -> str:
    """The adapter directory meant by NAME|DIR: DIR itself, DIR/final, or the experiment's final/."""
    from training.checkpointing.save import FINAL_DIR

    if os.path.isdir(source):
        candidates = [source, os.path.join(source, FINAL_DIR)]
    elif not name_problems(source):
        candidates = [os.path.join(outputs_root(outputs), source, FINAL_DIR)]
    else:
        raise UserError(f"{source}: no such directory, nor an experiment name")
    for candidate in candidates:
        if os.path.exists(os.path.join(candidate, "adapter_config.json")):
            return os.path.abspath(candidate)
    raise UserError(f"{source}: no adapter in {' or '.join(candidates)} (a finished run has final/; "
                    "pass an output_dir, its final/ or a checkpoint-<step>/)")


def cmd_publish(args, argv) -> int:
    from training.console import setup_logging
    from training.evaluation.evaluate import score_test_split
    from training.hub.publish import SCORES_FILE, hub_repo_id, publish
    from training.run_config import saved_config

    setup_logging()  # the scoring's and the retries' progress lines
    final = adapter_dir(args.source, args.outputs)
    config = saved_config(final)
    repo_id = args.to or (hub_repo_id(config) if config and config.hub_model_id else None)
    if not repo_id:
        raise UserError(f"{args.source}: no --to ORG/NAME, and the run's config has no hub_model_id")
    _check_repo_id(repo_id, "--to")
    if config and config.hub_test_samples != 0 and not os.path.exists(os.path.join(final, SCORES_FILE)):
        score_test_split(final, config.hub_test_samples)
    private = False if args.public else (config.hub_private if config else True)
    url = publish(final, repo_id, private)
    print(f"published {final} to {url}")
    return EXIT_OK


def cmd_pull(args, argv) -> int:
    from training.checkpointing.save import FINAL_DIR
    from training.hub.download import download

    if args.volume_id:
        return _pull_from_volume(args)
    if args.checkpoint:
        raise UserError("--checkpoint: checkpoints are on the network volume only: add --volume-id ID (the Hub "
                        "holds final/)")
    if "/" in args.source:
        repo_id, name = args.source, args.source.split("/", 1)[1]
        _check_repo_id(repo_id, "pull")
    elif name_problems(args.source):
        raise UserError(*name_problems(args.source))
    else:
        name = args.source
        repo_id = _branch_hub_id(name)
    target = os.path.abspath(args.into or os.path.join(outputs_root(args.outputs), name, FINAL_DIR))
    if os.path.exists(target) and not args.force:
        raise UserError(f"--into {target}: already exists; pass --force to replace it, or another --into")
    print(f"pulled {repo_id} into {download(repo_id, target)}")
    return EXIT_OK


def _pull_from_volume(args) -> int:
    from configs.layout import CHECKPOINTS_DIR
    from training.checkpointing.save import FINAL_DIR
    from training.experiment.transfer import choose_checkpoint, pull_from_volume
    from training.experiment.volume import open_volume

    if "/" in args.source or name_problems(args.source):
        raise UserError(*(name_problems(args.source) or [f"pull {args.source} --volume-id: name an experiment (its "
                                                         "run on the volume), not a Hub repository"]))
    name = args.source
    if args.checkpoint and not (args.checkpoint in ("best", "latest") or args.checkpoint.isdigit()):
        raise UserError(f"--checkpoint {args.checkpoint}: best, latest or a step number")
    if args.into and os.path.exists(args.into) and not args.force:
        raise UserError(f"--into {os.path.abspath(args.into)}: already exists; pass --force to replace it, or another "
                        "--into")
    run = open_volume(args.volume_id).sub(f"{CHECKPOINTS_DIR}/{name}")
    source = choose_checkpoint(run, args.checkpoint) if args.checkpoint else FINAL_DIR
    target = os.path.abspath(args.into or os.path.join(outputs_root(args.outputs), name, source))
    pull_from_volume(run, source, target, args.force)
    return EXIT_OK


def cmd_export(args, argv) -> int:
    from training.console import setup_logging
    from training.model.export import export_merged

    setup_logging()
    out = export_merged(adapter_dir(args.source, args.outputs), args.merged, args.dtype)
    print(f"merged model in {out}: load it with AutoModelForImageTextToText.from_pretrained({out!r})")
    return EXIT_OK


def _check_repo_id(repo_id: str, what: str) -> None:
    from configs.layout import HUB_ID_PATTERN

    if not HUB_ID_PATTERN.match(repo_id) or "{" in repo_id:
        raise UserError(f"{what} {repo_id}: a Hub repository is ORG/NAME (letters, digits, '.', '_', '-')")


def _branch_hub_id(name: str) -> str:
    """The Hub repository an experiment publishes to: hub_model_id of the config on its branch."""
    from configs.base import TrainingConfig
    from training.experiment import configfile
    from training.experiment.gitops import Git
    from training.hub.publish import hub_repo_id

    git = Git.here()
    commit = git.branch_commit(name)
    if commit is None:
        raise UserError(f"{name}: no such branch here; pull ORG/NAME to name the Hub repository itself")
    path = config_path(name)
    if not git.has_file(commit, path):
        raise UserError(f"{name}: the branch has no {path}; pull ORG/NAME to name the Hub repository itself")
    result = configfile.validate(git, commit, {}, [path]).get(path, {})
    values = result.get("config")
    if not values:
        problems = result.get("problems") or ["it does not load"]
        raise UserError(f"{name}: the branch's {path}: {problems[0]}")
    config = TrainingConfig(**{**values, "experiment_name": name})
    if not config.hub_model_id:
        raise UserError(f"{name}: the branch's {path} sets no hub_model_id; pull ORG/NAME instead")
    return hub_repo_id(config)

