"""`new NAME` and `sweep PREFIX --grid ...`: experiment branches with their config files."""

from __future__ import annotations

from training.errors import EXIT_OK
from training.experiment import launch as launching
from training.experiment.commands import flags
from training.experiment.names import DEFAULT_PARENT


def register(commands) -> None:
    new = commands.add_parser("new", help="create an experiment branch with its config file", epilog=flags.EPILOG)
    new.add_argument("name", metavar="NAME")
    new.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                     help="a config field to change (repeatable); fields are in configs/base.py")
    origin(new)
    new.set_defaults(run=cmd_new)

    sweep = commands.add_parser("sweep", help="one experiment branch per combination of a grid", epilog=flags.EPILOG)
    sweep.add_argument("prefix", metavar="PREFIX")
    sweep.add_argument("--grid", nargs="+", required=True, metavar="FIELD=V1,V2",
                       help="values to combine, e.g. --grid learning_rate=1e-4,2e-4 r=16,32")
    sweep.add_argument("--dry-run", action="store_true", help="list the experiments, create nothing")
    sweep.add_argument("--queue", action="store_true",
                       help="also queue the branches for `fleet run` (push them first; defaults of `queue add`)")
    origin(sweep)
    sweep.set_defaults(run=cmd_sweep)


def origin(command) -> None:
    command.add_argument("--from", dest="from_rev", metavar="BRANCH",
                         help="branch to start from (default: the current one)")
    command.add_argument("--parent", metavar="FILE",
                         help=f"config to derive from (default: the --from branch's own experiment file, "
                              f"else {DEFAULT_PARENT})")
    command.add_argument("--why", help="a comment written above the overrides: why this experiment")


def cmd_new(args, argv) -> int:
    from training.experiment import create
    from training.experiment.gitops import Git

    flags.check_names([args.name])
    git = Git.here()
    plan = create.plan_new(args.name, args.overrides)
    prepared = create.prepare(git, [plan], args.from_rev, args.parent, create.command_line(argv), args.why)
    print_created(create.create(git, prepared))
    return EXIT_OK


def cmd_sweep(args, argv) -> int:
    from training.experiment import create
    from training.experiment.gitops import Git

    flags.check_names([args.prefix])
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
    made = create.create(git, prepared)
    print_created(made)
    if args.queue:
        from training.experiment.fleet_queue import Queue, db_path

        queued = Queue(db_path()).add([item.name for item in made], 0, [launching.DEFAULT_GPU], flags.DEFAULT_SPOT)
        print(f"queued {len(queued)} experiments in {db_path()}: push them, then `fleet run`")
    return EXIT_OK


def print_created(made) -> None:
    for item in made:
        print(f"created branch {item.name} ({item.commit[:7]}) with {item.path}")
    names = " ".join(item.name for item in made)
    print(f"next: git push origin {names}  then  python -m training.experiment launch {made[0].name}")
