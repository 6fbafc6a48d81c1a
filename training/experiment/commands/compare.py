"""`compare`: one row per run, best first, and a plot (training.experiment.compare)."""

from __future__ import annotations

from training.errors import EXIT_OK, UserError
from training.experiment.commands import flags


def register(commands) -> None:
    compare = commands.add_parser("compare", help="table (and plot) of every run's results and cost",
                                  epilog=flags.EPILOG)
    compare.add_argument("--markdown", action="store_true", help="a Markdown table")
    compare.add_argument("--plot", metavar="FILE.png",
                         help="draw eval_loss and cost against step, and cost against best CER, into FILE.png")
    flags.runs_root(compare)
    compare.set_defaults(run=cmd_compare)


def cmd_compare(args, argv) -> int:
    from training.experiment import compare
    from training.experiment.runs import read_runs
    from training.experiment.volume import open_runs

    root = open_runs(args.outputs, args.volume_id)
    runs = read_runs(root)
    if not runs:
        raise UserError(f"no runs in {root.label} (one directory per experiment, as train.py writes them; "
                        "pass --outputs DIR or --volume-id ID)")
    table, common = compare.rows(runs, branch_heads([run.name for run in runs]))
    print(compare.render(table, common, args.markdown))
    if args.plot:
        compare.plot(runs, args.plot)
        print(f"plot: {args.plot}")
    return EXIT_OK


def branch_heads(names: list[str]) -> dict[str, str]:
    from training.experiment.gitops import Git

    try:
        git = Git.here()
    except UserError:
        return {}
    heads = {name: git.branch_commit(name) for name in names}
    return {name: sha for name, sha in heads.items() if sha}
