"""The Trainer train.py builds, and its callbacks.

- harness.py         HarnessTrainer (save/load overrides, evaluation with transcription) and its arguments
- budget.py          the budget cap, from the cost meter
- early_stopping.py  stop on an eval_loss plateau
- preemption.py      SIGTERM: save a checkpoint and stop
- progress.py        throughput and the log line
- tracking.py        W&B and metrics.jsonl
"""
