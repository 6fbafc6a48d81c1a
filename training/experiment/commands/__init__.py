"""The experiment CLI's commands, one module per group; each `register(commands)` adds its parsers
and sets `run` to the function that carries the command out (args, argv) -> exit code.

- create   new, sweep
- launch   launch
- pods     status, stop
- compare  compare
- queue    queue add|list|remove
- fleet    fleet run|status
- results  publish, pull, export
- data     data push
- flags    what several commands share: pod options, run readers, names, a deprecated spelling
"""

from __future__ import annotations

from training.experiment.commands import compare, create, data, fleet, launch, pods, queue, results

GROUPS = (create, launch, pods, compare, queue, fleet, results, data)  # in the order --help lists them
