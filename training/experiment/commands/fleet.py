"""`fleet run|status`: the controller that runs the queue on RunPod pods, and its table
(training.experiment.fleet)."""

from __future__ import annotations

import sys

from training.cost import WARN_FRACTION
from training.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_UNREACHABLE, UserError
from training.experiment.commands import flags
from training.experiment.commands.queue import DB


def register(commands) -> None:
    fleet = commands.add_parser("fleet", help="run the queue on RunPod pods, or show how it goes", epilog=flags.EPILOG)
    actions = fleet.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="the controller: launch, watch, relaunch, stop at the budget",
                             epilog=flags.EPILOG)
    run.add_argument("--max-pods", type=int, required=True, metavar="N", help="at most N pods at once")
    run.add_argument("--budget", type=float, default=0.0, metavar="USD",
                     help=f"the whole sweep's dollars: warn at {WARN_FRACTION * 100:.0f}%%, stop every pod at 100%% "
                          "(default 0: none)")
    run.add_argument("--escalate-after", type=int, default=2, metavar="K",
                     help="relaunch on-demand after K preemptions, or K passes without a spot pod to be had (default 2)")
    run.add_argument("--max-attempts", type=int, default=3, metavar="M",
                     help="failed attempts (dead-man stops included) before an experiment is parked as dead (default 3)")
    run.add_argument("--max-preemptions", type=int, default=8, metavar="P",
                     help="relaunches after a preemption or an ending nobody could read, before dead (default 8)")
    flags.bid(run, "without it every pod is on-demand (each experiment's --spot is queue add's)")
    run.add_argument("--spot-only", action="store_true",
                     help="with --bid: never escalate to on-demand (no spot to be had: wait; spot gone: dead)")
    run.add_argument("--unreachable-minutes", type=float, default=30.0, metavar="MIN",
                     help=f"RunPod's API unreachable this long: the controller exits {EXIT_UNREACHABLE} (its pods run "
                          "on; `fleet run` again adopts them) (default 30)")
    run.add_argument("--volume-id", required=True, metavar="ID",
                     help="the network volume every pod mounts: checkpoints survive preemption and relaunch")
    run.add_argument("--poll", type=float, default=60.0, metavar="S", help="seconds between passes (default 60)")
    run.add_argument("--retry-wait", type=float, default=300.0, metavar="S",
                     help="wait after no capacity, and first backoff after a failure, doubled each time (default 300)")
    run.add_argument("--once", action="store_true", help="one pass, then exit")
    flags.secrets(run)
    flags.deadman(run)
    status = actions.add_parser("status", help="one table of the fleet: state, attempts, dollars, results",
                                epilog=flags.EPILOG)
    flags.runs_root(status)
    status.add_argument("--billing", action="store_true",
                        help="add what RunPod billed for each experiment's pods (REST v2 billing), beside the count")
    for command in (run, status):
        command.add_argument("--db", **DB)
    fleet.set_defaults(run=cmd_fleet)


def cmd_fleet(args, argv) -> int:
    return fleet_status(args) if args.action == "status" else fleet_run(args)


def fleet_status(args) -> int:
    from training.experiment import fleet
    from training.experiment.fleet_queue import Queue, db_path
    from training.experiment.runs import read_runs
    from training.experiment.volume import open_runs
    from training.runpod import client as runpod_client

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


def fleet_run(args) -> int:
    from training.experiment import fleet, numbers
    from training.experiment.fleet_queue import Queue, db_path
    from training.experiment.gitops import Git
    from training.experiment.volume import open_runs
    from training.runpod import client as runpod_client

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
