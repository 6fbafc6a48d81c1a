"""`compare`: one row per run under the outputs root, best first, and a plot of eval_loss and cost.

Columns: experiment, commit (what the run recorded, else the branch's head here, marked '*'),
changes (fields that differ from configs/base.py's defaults; those shared by every row are printed
once above the table), best eval_loss (@step), best CER and WER (lowest logged), steps done, cost
and status. A missing file or key shows as '-'.
"""

from __future__ import annotations

import os
import textwrap

from training.experiment.runs import Run
from training.table import markdown_table, text_table

COLUMNS = ("experiment", "commit", "changes", "eval_loss", "CER", "WER", "steps", "cost", "status")


def rows(runs: list[Run], branch_heads: dict[str, str]) -> tuple[list[list[str]], dict[str, object]]:
    """Table rows, best eval_loss first, and the changes common to every run."""
    changes = [run.changes() for run in runs]
    common = dict(changes[0]) if len(changes) > 1 else {}
    for change in changes[1:]:
        common = {k: v for k, v in common.items() if k in change and change[k] == v}

    def order(pair):
        best = pair[0].best("eval_loss")
        return (best is None, best[0] if best else 0.0, pair[0].name)

    table = []
    for run, change in sorted(zip(runs, changes), key=order):
        best = run.best("eval_loss")
        cer, wer = run.best("eval_cer"), run.best("eval_wer")
        commit = (run.commit or "")[:7] or (f"{branch_heads[run.name][:7]}*" if run.name in branch_heads else "-")
        steps = "-" if run.step is None else f"{run.step}/{run.max_steps}" if run.max_steps else str(run.step)
        table.append([
            run.name,
            commit,
            " ".join(f"{k}={_value(v)}" for k, v in change.items() if k not in common) or "-",
            f"{best[0]:.4f} @{best[1]}" if best else "-",
            f"{cer[0]:.3f}" if cer else "-",
            f"{wer[0]:.3f}" if wer else "-",
            steps,
            f"${run.cost:.2f}" if run.cost is not None else "-",
            run.state or "-",
        ])
    return table, common


def render(table: list[list[str]], common: dict[str, object], markdown: bool) -> str:
    lines = []
    if common:
        shared = "Shared by every run (vs configs/base.py): " + " ".join(f"{k}={_value(v)}" for k, v in common.items())
        lines += [shared] if markdown else textwrap.wrap(shared, width=110, subsequent_indent="  ")
        lines.append("")
    lines.append(markdown_table(COLUMNS, table) if markdown else text_table(COLUMNS, table))
    return "\n".join(lines)


def pareto_front(points: dict[str, tuple[float, float]]) -> set[str]:
    """The runs no other run beats on both (cost, CER), lower being better for both; equal runs all stay."""
    return {name for name, (cost, cer) in points.items()
            if not any(c <= cost and e <= cer and (c < cost or e < cer) for c, e in points.values())}


def cost_and_cer(runs: list[Run]) -> dict[str, tuple[float, float]]:
    """(cost so far in USD, best eval_cer) of each run that has both."""
    points = {}
    for run in runs:
        best = run.best("eval_cer")
        if run.cost is not None and best is not None:
            points[run.name] = (run.cost, best[0])
    return points


def plot(runs: list[Run], path: str) -> None:
    """eval_loss and cost against step, one colour per run in both panels, the best eval_loss starred;
    and cost against best CER, one point per run, the Pareto front (nothing cheaper and better) marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator, StrMethodFormatter

    figure, (loss_axes, cost_axes, pareto_axes) = plt.subplots(1, 3, figsize=(18, 4.8), constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for panel, key, title in ((loss_axes, "eval_loss", "eval_loss (lower is better)"),
                              (cost_axes, "cost_usd", "cost so far (USD)")):
        drawn = 0
        for index, run in enumerate(runs):
            points = run.series(key)
            if not points:
                continue
            colour = colours[index % len(colours)]
            steps, values = zip(*points)
            label = run.name
            if key == "eval_loss":
                best, at = run.best(key)
                panel.plot([at], [best], marker="*", markersize=14, color=colour, zorder=3)
                label = f"{run.name} (best {best:.3f} @{at})"
            panel.plot(steps, values, marker="o", markersize=4, linewidth=1.6, color=colour, label=label)
            drawn += 1
        panel.set_title(title)
        panel.set_xlabel("step")
        if drawn:
            panel.grid(True, alpha=0.3)
            panel.xaxis.set_major_locator(MaxNLocator(integer=True))
            panel.legend(fontsize="small")
        else:
            panel.set_xticks([])
            panel.set_yticks([])
            panel.text(0.5, 0.5, f"no run has logged {key} yet", ha="center", va="center",
                       transform=panel.transAxes, color="gray")
    cost_axes.yaxis.set_major_formatter(StrMethodFormatter("${x:g}"))
    _pareto_panel(pareto_axes, runs, colours)
    figure.suptitle(f"{len(runs)} experiment{'s' if len(runs) != 1 else ''}: eval_loss and cost by step, "
                    "cost against CER")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _value(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and (" " in value or value == ""):
        return repr(value)
    return str(value)


def _pareto_panel(axes, runs: list[Run], colours: list[str]) -> None:
    from matplotlib.ticker import StrMethodFormatter

    points = cost_and_cer(runs)
    axes.set_title("cost against best CER (Pareto front: ringed)")
    axes.set_xlabel("cost (USD)")
    axes.set_ylabel("best eval_cer")
    if not points:
        axes.set_xticks([])
        axes.set_yticks([])
        axes.text(0.5, 0.5, "no run has both a cost and eval_cer yet", ha="center", va="center",
                  transform=axes.transAxes, color="gray")
        return
    front = pareto_front(points)
    for index, run in enumerate(runs):
        if run.name not in points:
            continue
        cost, cer = points[run.name]
        axes.scatter([cost], [cer], s=60, color=colours[index % len(colours)], zorder=3)
        if run.name in front:
            axes.scatter([cost], [cer], s=220, facecolors="none", edgecolors="black", linewidths=1.5, zorder=4)
        axes.annotate(run.name, (cost, cer), textcoords="offset points", xytext=(6, 4), fontsize="small")
    line = sorted(points[name] for name in front)
    axes.plot([c for c, _ in line], [e for _, e in line], color="black", linewidth=1, linestyle="--", zorder=2)
    axes.grid(True, alpha=0.3)
    axes.xaxis.set_major_formatter(StrMethodFormatter("${x:g}"))
