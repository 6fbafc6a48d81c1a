"""Checkpoints and everything that keeps a run's place on disk.

- lifecycle.py    one run's line as one object: start (resume, damaged, fork), prune, final/, the Hub
- checkpoints.py  the on-disk format: layout, atomic publish, manifest, verify, scan, delete
- save.py         writing files and directories so they appear whole or not at all (final/ too)
- state.py        HarnessState, the harness's loop state saved in every checkpoint
- retention.py    which checkpoints to keep (pure policy)
- resume.py       which checkpoint to resume, what a config change means (pure)
- run_lock.py     one trainer per output directory
- eval_loss.py    a non-finite eval_loss is no eval_loss (retention, best, early stopping)
"""
