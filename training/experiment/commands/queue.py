"""`queue add|list|remove`: the fleet's queue of experiments (training.experiment.fleet_queue)."""

from __future__ import annotations

from training.errors import EXIT_OK
from training.experiment.commands import flags

DB = {"metavar": "PATH", "help": "the fleet's SQLite file (default: $FLEET_DB, else outputs/fleet.sqlite)"}


def register(commands) -> None:
    queue = commands.add_parser("queue", help="the fleet's queue of experiments", epilog=flags.EPILOG)
    actions = queue.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="queue experiment branches (pushed) for `fleet run`", epilog=flags.EPILOG)
    add.add_argument("names", nargs="+", metavar="NAME")
    add.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    flags.gpus(add, "tried in turn on no capacity")
    flags.pricing(add)
    listing = actions.add_parser("list", help="the queue with each experiment's state", epilog=flags.EPILOG)
    remove = actions.add_parser("remove", help="take an experiment off the queue", epilog=flags.EPILOG)
    remove.add_argument("name", metavar="NAME")
    for command in (add, listing, remove):
        command.add_argument("--db", **DB)
    queue.set_defaults(run=cmd_queue)


def cmd_queue(args, argv) -> int:
    from training.experiment import numbers
    from training.experiment.fleet_queue import Queue, db_path

    if args.action == "add":  # every check before the file is opened (or created)
        flags.check_names(args.names)
        numbers.check(args)
        gpus = flags.gpu_list(args.gpu)
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
