"""python -m training.experiment new|sweep|launch|status|stop|compare: experiments as git branches.

Exit codes: 0 done; 2 bad input, a refused command (nothing was changed) or a RunPod API error,
one `error:` line per problem on stderr.
"""

from __future__ import annotations

import argparse
import sys

from training.errors import EXIT_OK, EXIT_USER_ERROR, UserError
from training.experiment import launch as launching
from training.experiment.names import DEFAULT_PARENT, name_problems, outputs_root

EPILOG = "Exit codes: 0 done, 2 bad input, refused (nothing changed) or RunPod API error."


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m training.experiment", epilog=EPILOG,
                                   description="Experiments as git branches: create, launch on RunPod, follow, compare.")
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def origin(command):
        command.add_argument("--from", dest="from_rev", metavar="BRANCH",
                             help="branch to start from (default: the current one)")
        command.add_argument("--parent", metavar="FILE",
                             help=f"config to derive from (default: the --from branch's own experiment file, "
                                  f"else {DEFAULT_PARENT})")
        command.add_argument("--why", help="a comment written above the overrides: why this experiment")

    new = commands.add_parser("new", help="create an experiment branch with its config file", epilog=EPILOG)
    new.add_argument("name", metavar="NAME")
    new.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                     help="a config field to change (repeatable); fields are in configs/base.py")
    origin(new)

    sweep = commands.add_parser("sweep", help="one experiment branch per combination of a grid", epilog=EPILOG)
    sweep.add_argument("prefix", metavar="PREFIX")
    sweep.add_argument("--grid", nargs="+", required=True, metavar="FIELD=V1,V2",
                       help="values to combine, e.g. --grid learning_rate=1e-4,2e-4 r=16,32")
    sweep.add_argument("--dry-run", action="store_true", help="list the experiments, create nothing")
    origin(sweep)

    launch = commands.add_parser("launch", help="rent a RunPod pod that trains an experiment branch", epilog=EPILOG)
    launch.add_argument("name", metavar="NAME")
    launch.add_argument("--gpu", default=launching.DEFAULT_GPU, metavar="TYPE",
                        help=f"RunPod GPU type id (default: {launching.DEFAULT_GPU})")
    launch.add_argument("--spot", action="store_true", help="an interruptible (spot) pod; needs --bid")
    launch.add_argument("--bid", type=float, metavar="USD", help="spot: the most paid per GPU-hour")
    launch.add_argument("--volume-id", metavar="ID",
                        help=f"network volume mounted at {launching.VOLUME_MOUNT} (default: a "
                             f"{launching.POD_VOLUME_GB} GB pod volume, deleted with the pod)")
    launch.add_argument("--image", default=launching.DEFAULT_IMAGE, help="container image (default: %(default)s)")
    launch.add_argument("--cloud", choices=("ALL", "SECURE", "COMMUNITY"),
                        help="RunPod cloud (default: SECURE with --volume-id, else ALL)")
    launch.add_argument("--remote", help="git remote the pod clones (default: the branch's upstream, else origin)")
    launch.add_argument("--config", metavar="PATH", help="config file in the branch (default: its experiment file)")
    launch.add_argument("--wandb-entity", help="W&B entity, for the run URL (default: $WANDB_ENTITY)")
    launch.add_argument("--wandb-secret", metavar="NAME", help="RunPod secret holding WANDB_API_KEY")
    launch.add_argument("--hf-secret", metavar="NAME", help="RunPod secret holding HF_TOKEN")
    launch.add_argument("--git-secret", metavar="NAME", help="RunPod secret holding GIT_TOKEN (private repos)")
    launch.add_argument("--no-auto-stop", dest="auto_stop", action="store_false",
                        help="keep the pod running after training (default: it stops itself, AUTO_STOP=1)")
    launch.add_argument("--smoke", action="store_true",
                        help="run the smoke run on the pod (python -m training.smoke: every path, small) "
                             "instead of training")
    launch.add_argument("--dry-run", action="store_true", help="print the exact request and send nothing")

    status = commands.add_parser("status", help="pods of experiments, with their runs' progress", epilog=EPILOG)
    status.add_argument("name", nargs="?", metavar="NAME")
    status.add_argument("--outputs", metavar="DIR", help="runs' root (default: <VOLUME_PATH or ./outputs>/checkpoints)")

    stop = commands.add_parser("stop", help="stop (or terminate) an experiment's pod", epilog=EPILOG)
    stop.add_argument("name", metavar="NAME")
    stop.add_argument("--terminate", action="store_true", help="remove the pod entirely (ends all billing)")
    stop.add_argument("--delete-data", action="store_true",
                      help="with --terminate: allow deleting a pod volume that holds checkpoints")

    compare = commands.add_parser("compare", help="table (and plot) of every run's results and cost", epilog=EPILOG)
    compare.add_argument("--markdown", action="store_true", help="a Markdown table")
    compare.add_argument("--plot", metavar="FILE.png", help="draw eval_loss and cost against step into FILE.png")
    compare.add_argument("--outputs", metavar="DIR", help="runs' root (default: <VOLUME_PATH or ./outputs>/checkpoints)")
    return main


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args, argv)
    except UserError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_USER_ERROR


def cmd_new(args, argv) -> int:
    from training.experiment import create
    from training.experiment.gitops import Git

    _check_names([args.name])
    git = Git.here()
    plan = create.plan_new(args.name, args.overrides)
    prepared = create.prepare(git, [plan], args.from_rev, args.parent, create.command_line(argv), args.why)
    _print_created(create.create(git, prepared))
    return EXIT_OK


def cmd_sweep(args, argv) -> int:
    from training.experiment import create
    from training.experiment.gitops import Git

    _check_names([args.prefix])
    plans = create.plan_sweep(args.prefix, args.grid)
    git = Git.here()
    # A dry run makes every check a sweep makes, so one that passes means the sweep will.
    prepared = create.prepare(git, plans, args.from_rev, args.parent, create.command_line(argv), args.why)
    if args.dry_run:
        print(f"dry run: {len(plans)} experiments from {prepared.from_label}, parent {prepared.parent_path} "
              "(nothing was created):")
        for plan in plans:
            print(f"  {plan.name:<40} {' '.join(plan.overrides)}")
        return EXIT_OK
    _print_created(create.create(git, prepared))
    return EXIT_OK


def cmd_launch(args, argv) -> int:
    from training.experiment.gitops import Git

    options = launching.LaunchOptions(
        name=args.name, gpu=args.gpu, spot=args.spot, bid=args.bid, volume_id=args.volume_id, image=args.image,
        cloud=args.cloud, remote=args.remote, config=args.config, wandb_entity=args.wandb_entity,
        wandb_secret=args.wandb_secret, hf_secret=args.hf_secret, git_secret=args.git_secret,
        auto_stop=args.auto_stop, dry_run=args.dry_run, smoke=args.smoke)
    return launching.launch(Git.here(), options, sys.stdout)


def cmd_status(args, argv) -> int:
    from training.experiment.status import status

    def has_branch(name):
        from training.experiment.gitops import Git

        try:
            return Git.here().branch_commit(name) is not None
        except UserError:
            return False

    return status(args.name, outputs_root(args.outputs), has_branch, sys.stdout)


def cmd_stop(args, argv) -> int:
    from training.experiment.status import stop

    _check_names([args.name])
    return stop(args.name, args.terminate, args.delete_data, sys.stdout)


def cmd_compare(args, argv) -> int:
    from training.experiment import compare
    from training.experiment.runs import read_runs

    root = outputs_root(args.outputs)
    runs = read_runs(root)
    if not runs:
        raise UserError(f"no runs in {root} (one directory per experiment, as train.py writes them; "
                        "pass --outputs DIR)")
    table, common = compare.rows(runs, _branch_heads([run.name for run in runs]))
    print(compare.render(table, common, args.markdown))
    if args.plot:
        compare.plot(runs, args.plot)
        print(f"plot: {args.plot}")
    return EXIT_OK


def _branch_heads(names: list[str]) -> dict[str, str]:
    from training.experiment.gitops import Git

    try:
        git = Git.here()
    except UserError:
        return {}
    heads = {name: git.branch_commit(name) for name in names}
    return {name: sha for name, sha in heads.items() if sha}


def _check_names(names: list[str]) -> None:
    problems = [p for name in names for p in name_problems(name)]
    if problems:
        raise UserError(*problems)


def _print_created(made) -> None:
    for item in made:
        print(f"created branch {item.name} ({item.commit[:7]}) with {item.path}")
    names = " ".join(item.name for item in made)
    print(f"next: git push origin {names}  then  python -m training.experiment launch {made[0].name}")


COMMANDS = {"new": cmd_new, "sweep": cmd_sweep, "launch": cmd_launch, "status": cmd_status, "stop": cmd_stop,
            "compare": cmd_compare}

if __name__ == "__main__":
    sys.exit(main())
