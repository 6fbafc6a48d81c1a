"""python -m training.experiment new|sweep|launch|status|stop|compare|queue|fleet|publish|pull|export|data:
experiments as git branches.

Exit codes: 0 done; 2 bad input, a refused command (nothing was changed) or a RunPod API error,
one `error:` line per problem on stderr.
"""

from __future__ import annotations

import argparse
import sys

from training.cost import WARN_FRACTION
from training.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USER_ERROR, UserError
from training.experiment import launch as launching
from training.experiment import results
from training.experiment.names import DEFAULT_PARENT, name_problems
from training.experiment.volume import add_volume_flag

OUTPUTS_HELP = "runs' root (default: <VOLUME_PATH or ./outputs>/checkpoints)"
VOLUME_RUNS_HELP = "read the runs from this network volume's checkpoints/ instead, from anywhere (no pod)"

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
    sweep.add_argument("--queue", action="store_true",
                       help="also queue the branches for `fleet run` (push them first; defaults of `queue add`)")
    origin(sweep)

    launch = commands.add_parser("launch", help="rent a RunPod pod that trains an experiment branch", epilog=EPILOG)
    launch.add_argument("name", metavar="NAME")
    launch.add_argument("--gpu", default=launching.DEFAULT_GPU, metavar="TYPE",
                        help=f"RunPod GPU type id (default: {launching.DEFAULT_GPU})")
    launch.add_argument("--spot", action="store_true",
                        help="an interruptible (spot) pod; needs --bid. RunPod's REST API v2 has no spot pods: this "
                             "uses GraphQL podRentInterruptable while RunPod still offers it")
    launch.add_argument("--bid", type=float, metavar="USD", help="spot: the most paid per GPU-hour")
    launch.add_argument("--volume-id", metavar="ID",
                        help=f"network volume, mounted at {launching.VOLUME_MOUNT}; the pod goes to its data center (default: a "
                             f"{launching.POD_VOLUME_GB} GB pod volume, deleted with the pod)")
    launch.add_argument("--image", default=launching.DEFAULT_IMAGE, help="container image (default: %(default)s)")
    launch.add_argument("--fallback-on-demand", action="store_true",
                        help="with --spot: when no spot pod can be had, launch an on-demand pod instead")
    launch.add_argument("--cloud", choices=("SECURE", "COMMUNITY"),
                        help="RunPod cloud (default: SECURE; network volumes exist only there)")
    launch.add_argument("--remote", help="git remote the pod clones (default: the branch's upstream, else origin)")
    launch.add_argument("--config", metavar="PATH", help="config file in the branch (default: its experiment file)")
    launch.add_argument("--wandb-entity", help="W&B entity, for the run URL (default: $WANDB_ENTITY)")
    launch.add_argument("--wandb-secret", metavar="NAME", help="RunPod secret holding WANDB_API_KEY")
    launch.add_argument("--hf-secret", metavar="NAME", help="RunPod secret holding HF_TOKEN")
    launch.add_argument("--git-secret", metavar="NAME", help="RunPod secret holding GIT_TOKEN (private repos)")
    launch.add_argument("--no-auto-stop", dest="auto_stop", action="store_false",
                        help="keep the pod running after training (default: it stops itself, AUTO_STOP=1)")
    deadman(launch)
    launch.add_argument("--smoke", action="store_true",
                        help="run the smoke run on the pod (python -m training.pod.smoke: every path, small) "
                             "instead of training")
    launch.add_argument("--dry-run", action="store_true", help="print the exact request and send nothing")

    status = commands.add_parser("status", help="pods of experiments, with their runs' progress", epilog=EPILOG)
    status.add_argument("name", nargs="?", metavar="NAME")
    runs_root(status)

    stop = commands.add_parser("stop", help="stop (or terminate) an experiment's pod", epilog=EPILOG)
    stop.add_argument("name", metavar="NAME")
    stop.add_argument("--terminate", action="store_true", help="remove the pod entirely (ends all billing)")
    stop.add_argument("--delete-data", action="store_true",
                      help="with --terminate: allow deleting a pod volume that holds checkpoints")

    compare = commands.add_parser("compare", help="table (and plot) of every run's results and cost", epilog=EPILOG)
    compare.add_argument("--markdown", action="store_true", help="a Markdown table")
    compare.add_argument("--plot", metavar="FILE.png",
                         help="draw eval_loss and cost against step, and cost against best CER, into FILE.png")
    runs_root(compare)
    add_fleet_commands(commands)
    results.add_commands(commands, EPILOG)
    add_data_commands(commands)
    return main


def runs_root(command) -> None:
    """Where a command reads runs: --outputs DIR or --volume-id ID, not both."""
    where = command.add_mutually_exclusive_group()
    where.add_argument("--outputs", metavar="DIR", help=OUTPUTS_HELP)
    add_volume_flag(where, VOLUME_RUNS_HELP)


def add_data_commands(commands) -> None:
    """`data push`: a dataset folder onto the network volume, from a machine without a GPU."""
    data = commands.add_parser("data", help="datasets on the network volume", epilog=EPILOG)
    actions = data.add_subparsers(dest="action", required=True, metavar="ACTION")
    push = actions.add_parser("push", epilog=EPILOG, help="upload a local dataset folder to the network volume "
                              "(resumable: files already there are skipped)")
    push.add_argument("directory", metavar="DIR", help="a folder dataset_name reads (metadata.jsonl or .csv beside "
                                                     "the images, split subfolders, or parquet files)")
    add_volume_flag(push, "the network volume to upload to (its data/NAME)")
    push.add_argument("--as", dest="name", metavar="NAME", help="its name on the volume (default: DIR's own name)")


def add_fleet_commands(commands) -> None:
    """`queue add|list|remove` and `fleet run|status`: sweeps that run themselves (training.experiment.fleet)."""
    db = {"metavar": "PATH", "help": "the fleet's SQLite file (default: $FLEET_DB, else outputs/fleet.sqlite)"}
    queue = commands.add_parser("queue", help="the fleet's queue of experiments", epilog=EPILOG)
    actions = queue.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="queue experiment branches (pushed) for `fleet run`", epilog=EPILOG)
    add.add_argument("names", nargs="+", metavar="NAME")
    add.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    add.add_argument("--gpu", default=launching.DEFAULT_GPU, metavar="TYPE[,TYPE...]",
                     help=f"GPU types in order of preference, tried in turn on no capacity (default {launching.DEFAULT_GPU})")
    kind = add.add_mutually_exclusive_group()
    kind.add_argument("--spot", dest="spot", action="store_true", default=True, help="spot pods (the default)")
    kind.add_argument("--on-demand", dest="spot", action="store_false", help="on-demand pods from the start")
    listing = actions.add_parser("list", help="the queue with each experiment's state", epilog=EPILOG)
    remove = actions.add_parser("remove", help="take an experiment off the queue", epilog=EPILOG)
    remove.add_argument("name", metavar="NAME")
    for command in (add, listing, remove):
        command.add_argument("--db", **db)

    fleet = commands.add_parser("fleet", help="run the queue on RunPod pods, or show how it goes", epilog=EPILOG)
    actions = fleet.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="the controller: launch, watch, relaunch, stop at the budget", epilog=EPILOG)
    run.add_argument("--max-pods", type=int, required=True, metavar="N", help="at most N pods at once")
    run.add_argument("--budget", type=float, default=0.0, metavar="USD",
                     help=f"the whole sweep's dollars: warn at {WARN_FRACTION * 100:.0f}%%, stop every pod at 100%% (default 0: none)")
    run.add_argument("--escalate-after", type=int, default=2, metavar="K",
                     help="relaunch on-demand after K preemptions, or K passes without a spot pod to be had (default 2)")
    run.add_argument("--max-attempts", type=int, default=3, metavar="M",
                     help="failed attempts (dead-man stops included) before an experiment is parked as dead (default 3)")
    run.add_argument("--max-preemptions", type=int, default=8, metavar="P",
                     help="relaunches after a preemption or an ending nobody could read, before dead (default 8)")
    run.add_argument("--bid", type=float, metavar="USD", help="spot bid per GPU-hour; without it every pod is on-demand")
    run.add_argument("--spot-only", action="store_true",
                     help="with --bid: never escalate to on-demand (no spot to be had: wait; spot gone: dead)")
    run.add_argument("--unreachable-minutes", type=float, default=30.0, metavar="MIN",
                     help="RunPod's API unreachable this long: the controller exits 75 (its pods run on; "
                          "`fleet run` again adopts them) (default 30)")
    run.add_argument("--volume-id", required=True, metavar="ID",
                     help="the network volume every pod mounts: checkpoints survive preemption and relaunch")
    run.add_argument("--poll", type=float, default=60.0, metavar="S", help="seconds between passes (default 60)")
    run.add_argument("--retry-wait", type=float, default=300.0, metavar="S",
                     help="wait after no capacity, and first backoff after a failure, doubled each time (default 300)")
    run.add_argument("--once", action="store_true", help="one pass, then exit")
    run.add_argument("--wandb-secret", metavar="NAME", help="RunPod secret holding WANDB_API_KEY")
    run.add_argument("--hf-secret", metavar="NAME", help="RunPod secret holding HF_TOKEN")
    run.add_argument("--git-secret", metavar="NAME", help="RunPod secret holding GIT_TOKEN (private repos)")
    run.add_argument("--max-lifetime-hours", type=float, default=12.0, metavar="H",
                     help="dead-man switch: each pod stops itself H hours after it started (default 12)")
    run.add_argument("--idle-stop-minutes", type=float, default=30.0, metavar="MIN",
                     help="dead-man switch: each pod stops itself after MIN minutes of an idle GPU (default 30)")
    status = actions.add_parser("status", help="one table of the fleet: state, attempts, dollars, results",
                                epilog=EPILOG)
    runs_root(status)
    status.add_argument("--billing", action="store_true",
                        help="add what RunPod billed for each experiment's pods (REST v2 billing), beside the count")
    for command in (run, status):
        command.add_argument("--db", **db)


def deadman(command) -> None:
    command.add_argument("--max-lifetime-hours", type=float, default=launching.DEFAULT_MAX_LIFETIME_H, metavar="H",
                         help="dead-man switch: the pod stops itself H hours after it started, so a pod that cannot "
                              "end its run never bills for ever (default %(default)g; 0: never)")
    command.add_argument("--idle-stop-minutes", type=float, default=0.0, metavar="MIN",
                         help="dead-man switch: the pod stops itself after MIN minutes of an idle GPU once training "
                              "has started (default 0: never)")


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
    made = create.create(git, prepared)
    _print_created(made)
    if args.queue:
        from training.experiment.fleet_queue import Queue, db_path

        queued = Queue(db_path()).add([item.name for item in made], 0, [launching.DEFAULT_GPU], True)
        print(f"queued {len(queued)} experiments in {db_path()}: push them, then `fleet run`")
    return EXIT_OK


def cmd_launch(args, argv) -> int:
    from training.experiment import numbers
    from training.experiment.gitops import Git

    numbers.check(args)

    options = launching.LaunchOptions(
        name=args.name, gpu=args.gpu, spot=args.spot, bid=args.bid, volume_id=args.volume_id, image=args.image,
        cloud=args.cloud, remote=args.remote, config=args.config, wandb_entity=args.wandb_entity,
        wandb_secret=args.wandb_secret, hf_secret=args.hf_secret, git_secret=args.git_secret,
        auto_stop=args.auto_stop, fallback_on_demand=args.fallback_on_demand, max_lifetime_h=args.max_lifetime_hours,
        idle_stop_min=args.idle_stop_minutes, dry_run=args.dry_run,
        smoke=args.smoke)
    return launching.launch(Git.here(), options, sys.stdout)


def cmd_status(args, argv) -> int:
    from training.experiment.status import status

    def has_branch(name):
        from training.experiment.gitops import Git

        try:
            return Git.here().branch_commit(name) is not None
        except UserError:
            return False

    from training.experiment.volume import open_runs
    from training.runpod import client as runpod_client

    api = runpod_client.connect()
    return status(args.name, open_runs(args.outputs, args.volume_id, api), has_branch, sys.stdout, api)


def cmd_stop(args, argv) -> int:
    from training.experiment.status import stop

    _check_names([args.name])
    return stop(args.name, args.terminate, args.delete_data, sys.stdout)


def cmd_compare(args, argv) -> int:
    from training.experiment import compare
    from training.experiment.runs import read_runs
    from training.experiment.volume import open_runs

    root = open_runs(args.outputs, args.volume_id)
    runs = read_runs(root)
    if not runs:
        raise UserError(f"no runs in {root.label} (one directory per experiment, as train.py writes them; "
                        "pass --outputs DIR or --volume-id ID)")
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


def cmd_queue(args, argv) -> int:
    from training.experiment import numbers
    from training.experiment.fleet_queue import Queue, db_path

    if args.action == "add":  # every check before the file is opened (or created)
        _check_names(args.names)
        numbers.check(args)
        gpus = [g.strip() for g in args.gpu.split(",") if g.strip()]
        if not gpus:
            raise UserError("--gpu: name at least one GPU type")
    queue = Queue(db_path(args.db))
    if args.action == "add":
        queue.add(args.names, args.priority, gpus, args.spot)
        print(f"queued {', '.join(args.names)} (priority {args.priority}, {'spot' if args.spot else 'on-demand'}, "
              f"{', '.join(gpus)})")
    elif args.action == "remove":
        queue.remove(args.name)
        print(f"removed {args.name} from the queue")
    else:
        rows = queue.rows()
        if not rows:
            print(f"the queue in {db_path(args.db)} is empty")
        for row in rows:
            print(f"{row['name']:<32} {row['state']:<14} priority {row['priority']:<3} "
                  f"{'spot' if row['spot'] and not row['on_demand'] else 'on-demand':<9} {row['gpus']}")
    return EXIT_OK


def cmd_fleet(args, argv) -> int:
    from training.experiment import fleet, numbers
    from training.experiment.fleet_queue import Queue, db_path
    from training.experiment.runs import read_runs
    from training.experiment.volume import open_runs
    from training.runpod import client as runpod_client

    if args.action == "status":
        queue = Queue(db_path(args.db))
        rows = queue.rows()
        api = runpod_client.connect() if args.volume_id or args.billing else None
        root = open_runs(args.outputs, args.volume_id, api)
        runs = {run.where.name: run for run in read_runs(root, [row["name"] for row in rows])}
        budget = float(queue.get("budget_usd", "0") or 0)
        billed = None
        if args.billing:
            from training.experiment.billing import billed_by_experiment

            billed = billed_by_experiment(api, queue, rows)
        for line in fleet.status_table(rows, runs, budget, billed):
            print(line)
        return EXIT_OK
    from training.experiment.gitops import Git

    # Every check before the file is opened (or created) and before RunPod is asked anything.
    problems = numbers.problems(args, required_nonzero=("--max-lifetime-hours",))
    if args.spot_only and args.bid is None:
        problems.append("--spot-only needs --bid USD (without --bid every pod is on-demand)")
    if problems:
        raise UserError(*problems)
    api = runpod_client.connect()
    git = Git.here()
    queue = Queue(db_path(args.db))
    options = fleet.FleetOptions(
        max_pods=args.max_pods, budget_usd=args.budget, escalate_after=args.escalate_after,
        max_attempts=args.max_attempts, max_preemptions=args.max_preemptions, bid=args.bid,
        spot_only=args.spot_only, retry_wait_s=args.retry_wait, poll_s=args.poll,
        unreachable_s=args.unreachable_minutes * 60, volume_id=args.volume_id,
        launch=dict(wandb_secret=args.wandb_secret, hf_secret=args.hf_secret, git_secret=args.git_secret,
                    max_lifetime_h=args.max_lifetime_hours, idle_stop_min=args.idle_stop_minutes))
    runs = None  # the runs on the network volume, where each says how it ended: the first source of outcomes
    try:
        runs = open_runs(None, args.volume_id, api)
    except UserError as problem:
        print(f"warning: outcomes from the pods' logs only, the volume's files are not readable here: {problem}",
              file=sys.stderr)
    try:
        return fleet.Fleet(queue, api, git, options, sys.stdout, runs=runs).run(once=args.once)
    except KeyboardInterrupt:
        print("fleet: stopped (Ctrl-C); its pods run on, and `fleet run` again adopts them", file=sys.stderr)
        return EXIT_INTERRUPTED


def cmd_data(args, argv) -> int:
    import os

    from training.experiment.transfer import push_dataset
    from training.experiment.volume import open_volume

    if not args.volume_id:
        raise UserError("data push: --volume-id ID is required (the network volume to upload to)")
    name = args.name or os.path.basename(os.path.normpath(args.directory))
    _check_names([name])
    if not os.path.isdir(args.directory):
        raise UserError(f"data push {args.directory}: no such directory")
    push_dataset(args.directory, open_volume(args.volume_id), name, progress=None)
    return EXIT_OK


COMMANDS = {"new": cmd_new, "sweep": cmd_sweep, "launch": cmd_launch, "status": cmd_status, "stop": cmd_stop,
            "compare": cmd_compare, "queue": cmd_queue, "fleet": cmd_fleet, "data": cmd_data, **results.COMMANDS}

if __name__ == "__main__":
    sys.exit(main())
